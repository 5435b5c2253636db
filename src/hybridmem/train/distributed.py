"""torchrun / DDP helpers: one process per device, rank 0 logs and saves.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; without them we run as a single
process. The backend is NCCL when each rank has a CUDA device and gloo otherwise (CPU runs and tests).

    # one machine, 8 GPUs
    torchrun --nproc_per_node 8 -m hybridmem.cli train world --cache CACHE --out RUN ...
    # two machines: run the same line on each; RUN and CACHE on a shared file system (every rank reads
    # the checkpoint on --resume, only global rank 0 writes)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id job42 --rdzv_backend c10d \
        --rdzv_endpoint HOST0:29500 -m hybridmem.cli train world --cache CACHE --out RUN ...

--batch-size is per rank: the global batch is batch_size * WORLD_SIZE.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from hybridmem.device import resolve_device


@dataclass
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group when launched by torchrun; a plain single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=30)
        )
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=torch_device)


def cleanup(distributed: DistributedContext) -> None:
    if distributed.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(distributed: DistributedContext) -> None:
    if distributed.is_distributed:
        dist.barrier()


def wrap_ddp(model: nn.Module, distributed: DistributedContext) -> nn.Module:
    """DDP on more than one rank; the bare model otherwise. DDP broadcasts rank 0's weights at wrap time."""
    if not distributed.is_distributed:
        return model
    device_ids = [distributed.device.index] if distributed.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(value: torch.Tensor, distributed: DistributedContext) -> torch.Tensor:
    """Mean of a tensor over ranks (a copy; identity on one rank)."""
    value = value.detach().clone()
    if distributed.is_distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= distributed.world_size
    return value


def gather_objects(obj, distributed: DistributedContext) -> list:
    """Every rank's `obj`, in rank order, on every rank (for per-rank RNG states)."""
    if not distributed.is_distributed:
        return [obj]
    gathered = [None] * distributed.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj, distributed: DistributedContext):
    """Rank 0's `obj` on every rank."""
    if not distributed.is_distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
