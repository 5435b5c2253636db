import os
import socket

import torch
import torch.multiprocessing as mp

from hybridmem.train import state as train_state
from hybridmem.train.world import train_world

from .helpers import make_latent_cache, tiny_vae_config, tiny_world_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def act_as_torchrun_rank(rank, world_size, port):
    """The environment torchrun gives rank `rank` of `world_size` on this machine; one thread each."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


def worker(rank, world_size, port, cache, out, results):
    act_as_torchrun_rank(rank, world_size, port)
    config = tiny_world_config(cache, out, steps=3, batch_size=1, save_every=0, ema_decay=0.999)
    result = train_world(config)
    torch.save({"weights": result["model"].state_dict(), "losses": result["losses"]}, results / f"{rank}.pt")


def test_two_ranks_hold_identical_weights(tmp_path):
    cache = make_latent_cache(tmp_path / "cache", clips=4)
    mp.spawn(worker, args=(2, free_port(), cache, tmp_path / "run", tmp_path), nprocs=2, join=True)
    rank0, rank1 = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    for name, weight in rank0["weights"].items():
        assert torch.equal(weight, rank1["weights"][name]), name
    # the ranks read different clips, and only rank 0 wrote the run
    assert rank0["losses"] != rank1["losses"]
    assert [p.name for p in train_state.list_checkpoints(tmp_path / "run")] == ["step_00000003"]
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def vae_worker(rank, world_size, port, data, out, results):
    from hybridmem.train.vae import train_vae

    act_as_torchrun_rank(rank, world_size, port)
    config = tiny_vae_config(data, out, steps=2, batch_size=1, lr=1e-4, save_every=0, norm_windows=2)
    result = train_vae(config)
    torch.save(
        {"weights": result["model"].state_dict(), "losses": result["losses"]}, results / f"vae{rank}.pt"
    )


def test_two_ranks_train_the_vae_in_step(tmp_path):
    import numpy as np

    from hybridmem.data.clip import Clip
    from hybridmem.world.layout import write_clip

    rng = np.random.default_rng(0)
    for index in range(2):
        clip = Clip(
            frames=rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8),
            cameras=np.tile(np.eye(4), (9, 1, 1)),
            intrinsics=np.array([8.0, 8.0, 8.0, 8.0]),
            context_frames=5,
            fps=8.0,
        )
        write_clip(clip, tmp_path / "data" / "train" / f"{index:06d}")
    mp.spawn(vae_worker, args=(2, free_port(), tmp_path / "data", tmp_path / "run", tmp_path), nprocs=2)
    rank0, rank1 = torch.load(tmp_path / "vae0.pt"), torch.load(tmp_path / "vae1.pt")
    for name, weight in rank0["weights"].items():
        assert torch.equal(weight, rank1["weights"][name]), name
    assert rank0["losses"] != rank1["losses"]
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
