"""Shared pieces of the reliability tests: running the CLI in-process or as a process, snapshots of a
folder, a tiny dataset (fake renderer), a tiny VAE and holding a run-folder lock from another process."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hybridmem.cli import main
from hybridmem.world import generate as gen
from hybridmem.world.config import WorldConfig
from world.test_generate import FakeRenderer, fake_plan_clip  # tests/ is on sys.path (rootdir packages)

TINY_WORLD = dict(width=32, height=32, context_frames=9, target_frames=9, min_hidden_frames=3, supersample=1)
TINY_WORLD_FLAGS = [
    "--width", "32", "--height", "32", "--context-frames", "9", "--target-frames", "9",
    "--min-hidden-frames", "2", "--supersample", "1", "--no-progress",
]  # fmt: skip


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`hybridmem ARGV` in this process: (exit code, stderr); argparse's SystemExit is an exit code."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:
            code = stop.code
    return code, err.getvalue()


def hybridmem(*argv, **kwargs) -> subprocess.Popen:
    """`hybridmem ARGV` as its own process group (so kill -9 reaches its workers too)."""
    command = [sys.executable, "-m", "hybridmem.cli", *[str(a) for a in argv]]
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(command, start_new_session=True, **kwargs)


def kill9(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(predicate, timeout: float = 120.0, process: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process is not None and process.poll() is not None:
            return predicate()
        time.sleep(0.02)
    return False


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (lock files excluded: a refused run may touch its own lock)."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.name.startswith(".hybridmem"):
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@contextlib.contextmanager
def fake_renderer():
    """world.generate's planner and renderer replaced by the tiny fakes of tests/world (in-process only)."""
    planner, make_renderer = gen._planner, gen._make_renderer
    gen._planner = lambda: fake_plan_clip
    gen._make_renderer = lambda config: FakeRenderer(config.width, config.height)
    try:
        yield
    finally:
        gen._planner, gen._make_renderer = planner, make_renderer


def tiny_dataset(out: Path, num_clips: int = 2, seed: int = 0, split: str = "train") -> Path:
    with fake_renderer():
        gen.generate(
            WorldConfig(**TINY_WORLD, max_subjects=2, seed=seed), out, num_clips=num_clips, split=split,
            progress=False,
        )  # fmt: skip
    return out


def tiny_vae(folder: Path, seed: int = 0) -> Path:
    """A tiny untrained VAE with a latent normalisation, saved as a model folder."""
    import torch

    from hybridmem.models.checkpoint import save_model
    from hybridmem.models.vae import build_vae

    torch.manual_seed(seed)
    vae = build_vae("tiny")
    channels = vae.config.latent_channels
    vae.set_latent_normalization(np.zeros(channels), np.ones(channels) * (1.0 + seed))
    save_model(vae, folder)
    return folder


HOLD_SCRIPT = """
import sys, time
from hybridmem import runlock
runlock.acquire(sys.argv[1], "a test holder", name=sys.argv[2])
print("locked", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def lock_held_elsewhere(folder: Path, name: str = ""):
    """Another live process holding the run-folder lock of `folder` (as a first writer would)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(folder), name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()
