"""Pieces both training loops share: the learning-rate schedule, precision, the optimizer update, the
step-indexed data order.

The data order is a pure function of (seed, step, rank): sample position p = step * global_batch +
rank * batch + i walks through one seeded permutation per epoch. A resumed run therefore reads exactly the
batches the uninterrupted run would have read, with no sampler state to save, and DDP ranks read disjoint
samples.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from hybridmem.errors import ConfigError
from hybridmem.train.config import PRECISIONS
from hybridmem.validation import check_choice


def learning_rate(step: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up from base_lr / warmup to base_lr over `warmup` steps, then constant."""
    if warmup <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup)


def epoch_permutation(dataset_size: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(dataset_size)


def batch_indices(
    step: int, batch_size: int, dataset_size: int, seed: int, rank: int = 0, world_size: int = 1
) -> list[int]:
    """Dataset indices of one rank's batch at `step` (pure; see the module docstring)."""
    start = (step * world_size + rank) * batch_size
    indices, permutations = [], {}
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, dataset_size)
        if epoch not in permutations:
            permutations[epoch] = epoch_permutation(dataset_size, seed, epoch)
        indices.append(int(permutations[epoch][offset]))
    return indices


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields batch_indices(step, ...) for step in [start_step, end_step): a DataLoader batch_sampler."""

    def __init__(self, start_step, end_step, batch_size, dataset_size, seed, rank=0, world_size=1):
        self.start_step, self.end_step = start_step, end_step
        self.args = (batch_size, dataset_size, seed, rank, world_size)

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            yield batch_indices(step, *self.args)


def check_precision(precision: str, device: torch.device) -> None:
    check_choice(precision, PRECISIONS, "--precision")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device (gradient scaling); use bf16 or fp32 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")


def autocast(precision: str, device: torch.device):
    """Mixed-precision context for the forward pass (weights and optimizer stay fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A real scaler for fp16 (small gradients underflow otherwise); a disabled one for fp32/bf16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def optimizer_step(
    loss: torch.Tensor,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float,
) -> torch.Tensor:
    """One update: backward through the scaler, clip the gradient norm to `grad_clip` (0: no clipping),
    step. Returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()
    return grad_norm


def rank_generator(seed: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The training generator of one rank (noise, timesteps): distinct per rank, fixed by the seed."""
    return torch.Generator(device).manual_seed(seed * 1_000_003 + rank * 7919 + 17)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
