"""kill -9 at a point of each long command, rerun, compare with an uninterrupted run. `world generate`'s
own case is tests/world/test_generate.py::test_resume_after_killing_a_run. Each starts Python processes
(torch imports), so they are `slow`: `pytest -m slow tests/reliability`."""

from __future__ import annotations

import json

import pytest
import torch

from hybridmem.data import cache
from hybridmem.models.checkpoint import load_model
from hybridmem.train import state as train_state
from train.helpers import make_latent_cache

from .helpers import hybridmem, kill9, run_cli, tiny_dataset, tiny_vae, wait_for

pytestmark = pytest.mark.slow


def _kill_when(argv, predicate, timeout=600):
    """Start `hybridmem ARGV`, SIGKILL its process group once `predicate()` holds; True if it was killed
    before finishing (False: it finished first, the test then only checks the rerun)."""
    process = hybridmem(*argv)
    try:
        reached = wait_for(predicate, timeout=timeout, process=process)
        finished = process.poll() is not None
    finally:
        kill9(process)
    assert reached, process.stderr.read().decode()
    return not finished


def _same_weights(a, b):
    first, second = load_model(a).state_dict(), load_model(b).state_dict()
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("kill") / "data", num_clips=6)


def test_encode_killed_then_rerun(data, tmp_path):
    vae = tiny_vae(tmp_path / "vae")
    argv = ["encode", "--data", data, "--vae", vae, "--device", "cpu"]
    assert run_cli([*argv, "--out", tmp_path / "straight"])[0] == 0
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", killed], lambda: len(cache.cached_clip_ids(killed)) >= 1)
    assert run_cli([*argv, "--out", killed])[0] == 0
    assert cache.cached_clip_ids(killed) == cache.cached_clip_ids(tmp_path / "straight")
    for clip_id in cache.cached_clip_ids(killed):
        a = cache.read_clip_entry(killed / "clips" / f"{clip_id}.safetensors")
        b = cache.read_clip_entry(tmp_path / "straight" / "clips" / f"{clip_id}.safetensors")
        for key in cache.TENSOR_KEYS:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_train_world_killed_then_resumed(tmp_path):
    latents = make_latent_cache(tmp_path / "cache", clips=3)
    argv = ["train", "world", "--cache", latents, "--device", "cpu", "--preset", "tiny", "--steps", 30,
            "--save-every", 10, "--batch-size", 2, "--lr", "1e-3", "--warmup", 2]  # fmt: skip
    assert run_cli([*argv, "--out", tmp_path / "straight"])[0] == 0
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", killed], lambda: train_state.latest_checkpoint(killed) is not None)
    code, err = run_cli([*argv, "--out", killed, "--resume"])
    assert code == 0, err
    _same_weights(killed / "final", tmp_path / "straight" / "final")


def test_train_vae_killed_then_resumed(data, tmp_path):
    argv = ["train", "vae", "--data", data, "--device", "cpu", "--preset", "tiny", "--steps", 8,
            "--save-every", 2, "--batch-size", 1, "--val-clips", 1, "--norm-windows", 2,
            "--frames", 5]  # fmt: skip
    assert run_cli([*argv, "--out", tmp_path / "straight"])[0] == 0
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", killed], lambda: train_state.latest_checkpoint(killed) is not None)
    code, err = run_cli([*argv, "--out", killed, "--resume"])
    assert code == 0, err
    _same_weights(killed / "final", tmp_path / "straight" / "final")


def test_eval_killed_then_rerun(data, tmp_path):
    argv = ["eval", "--baseline", "copy-last", "--data", data, "--split", "train", "--side-by-side-clips", 0,
            "--weights-dir", tmp_path / "none"]  # fmt: skip
    assert run_cli([*argv, "--out", tmp_path / "straight"])[0] == 0
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", killed], lambda: any((killed / "generations").rglob("*.npz")))
    assert run_cli([*argv, "--out", killed])[0] == 0
    methods = [
        json.loads((folder / "aggregate.json").read_text())["methods"]
        for folder in (killed, tmp_path / "straight")
    ]
    assert methods[0] == methods[1]


def test_recipe_smoke_killed_then_rerun(tmp_path):
    argv = ["recipe", "--budget", "smoke", "--device", "cpu"]
    assert run_cli([*argv, "--out", tmp_path / "straight"])[0] == 0
    killed = tmp_path / "killed"
    # killed while its VAE trains (a long stage with checkpoints), then rerun to the end
    _kill_when([*argv, "--out", killed], lambda: train_state.latest_checkpoint(killed / "vae") is not None)
    code, err = run_cli([*argv, "--out", killed])
    assert code == 0, err
    aggregates = [
        json.loads((folder / "eval" / "aggregate.json").read_text())
        for folder in (killed, tmp_path / "straight")
    ]
    assert aggregates[0]["methods"] == aggregates[1]["methods"]
