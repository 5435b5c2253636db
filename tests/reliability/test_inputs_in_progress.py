"""Inputs still being written are refused (issue 26): `encode` while `world generate` wrote the same data
said "7 clips encoded" while the split grew to 24; `eval` of a run still training used its newest
checkpoint and said so only in run.json. Every command refuses an input folder whose lock a live writer
holds, and a named checkpoint of a training run is used."""

from __future__ import annotations

import pytest

from hybridmem.errors import HybridmemError
from hybridmem.train.vae import train_vae
from hybridmem.train.world import train_world
from train.helpers import make_latent_cache, tiny_vae_config, tiny_world_config

from .helpers import lock_held_elsewhere, run_cli, tiny_dataset, tiny_vae


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("in_progress")
    cache = make_latent_cache(root / "cache", clips=2)
    run = root / "run"
    train_world(tiny_world_config(cache, run, steps=2))  # the tiny VAE's 4 latent channels
    return {"data": tiny_dataset(root / "data", num_clips=1), "vae": tiny_vae(root / "vae"), "cache": cache,
            "run": run, "root": root}  # fmt: skip


def test_encode_refuses_data_that_generate_is_writing(inputs, tmp_path):
    argv = ["encode", "--data", inputs["data"], "--vae", inputs["vae"], "--out", tmp_path / "cache"]
    with lock_held_elsewhere(inputs["data"], name="generate-0of1"):
        code, err = run_cli(argv)
        assert code == 2 and "--data" in err and "still being written by pid" in err, err
        assert "world generate" in err and "Traceback" not in err and not (tmp_path / "cache").exists()
    assert run_cli(argv)[0] == 0  # once the writer is gone (a killed one's lock is stale too)


def test_training_refuses_data_and_caches_still_being_written(inputs, tmp_path):
    with lock_held_elsewhere(inputs["data"], name="generate-1of2"):
        with pytest.raises(HybridmemError, match="--data .* still being written"):
            train_vae(tiny_vae_config(inputs["data"], tmp_path / "vae", steps=1))
    with lock_held_elsewhere(inputs["cache"], name="encode-0of1"):
        with pytest.raises(HybridmemError, match="--cache .* still being written"):
            train_world(tiny_world_config(inputs["cache"], tmp_path / "world", steps=1))
    assert not (tmp_path / "vae").exists() and not (tmp_path / "world").exists()


def _eval(inputs, checkpoint, out):
    return ["eval", "--checkpoint", checkpoint, "--vae", inputs["vae"], "--data", inputs["data"], "--split",
            "train", "--out", out, "--weights-dir", out.parent / "no_weights", "--side-by-side-clips", 0,
            "--steps", 1, "--allow-other-vae"]  # fmt: skip


def test_eval_and_sample_refuse_a_run_that_is_still_training(inputs, tmp_path):
    run = inputs["run"]
    clip = inputs["data"] / "train" / "000000"
    with lock_held_elsewhere(run):  # as `train world --resume` holds it
        code, err = run_cli(_eval(inputs, run, tmp_path / "eval"))
        assert code == 2 and "--checkpoint" in err and "still being written" in err, err
        assert "checkpoints/step_N" in err and "Traceback" not in err and not (tmp_path / "eval").exists()
        sample = ["sample", "--clip", clip, "--checkpoint", run, "--vae", inputs["vae"], "--steps", 1]
        code, err = run_cli([*sample, "--out", tmp_path / "s.mp4", "--device", "cpu", "--allow-other-vae"])
        assert code == 2 and "still being written" in err and not (tmp_path / "s.mp4").exists(), err
        # a named checkpoint is a fixed set of files: used while the run goes on
        code, err = run_cli(_eval(inputs, run / "checkpoints" / "step_00000002", tmp_path / "named"))
        assert code == 0, err
