"""A training run is what it says it is (issue 26): a finished model is not replaced, a corrupt newest
checkpoint is not a silent restart, and --resume refuses every change of the run's flags or inputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hybridmem.errors import CheckpointError, ConfigError
from hybridmem.models.checkpoint import load_model
from hybridmem.runfolder import CHECKPOINTS_DIR
from hybridmem.train.logging import read_metrics
from hybridmem.train.vae import train_vae
from hybridmem.train.world import train_world
from train.helpers import make_latent_cache, tiny_vae_config, tiny_world_config

from .helpers import run_cli, snapshot, tiny_dataset, tiny_vae


@pytest.fixture(scope="module")
def latent_cache(tmp_path_factory):
    return make_latent_cache(tmp_path_factory.mktemp("cache"), clips=3)


@pytest.fixture(scope="module")
def two_step_run(latent_cache, tmp_path_factory):
    """A world run stopped at step 2 of 4 (checkpoint step_2), copied by each test that changes it."""
    run = tmp_path_factory.mktemp("runs") / "run"
    train_world(tiny_world_config(latent_cache, run, steps=2))
    return run


@pytest.fixture
def run_copy(two_step_run, tmp_path):
    shutil.copytree(two_step_run, tmp_path / "run")
    return tmp_path / "run"


def _state_step(path):
    return json.loads((path / "state.json").read_text())["step"]


def test_a_finished_model_without_checkpoints_is_not_replaced(latent_cache, run_copy):
    """Issue 26: `train --out RUN` with RUN/final but no checkpoints/ replaced the finished model, exit 0."""
    shutil.rmtree(run_copy / CHECKPOINTS_DIR)
    before = snapshot(run_copy)
    for resume in (False, True):
        with pytest.raises(CheckpointError, match="holds a finished model"):
            train_world(tiny_world_config(latent_cache, run_copy, resume=resume))
    argv = ["train", "world", "--cache", latent_cache, "--out", run_copy, "--device", "cpu", "--steps", 2]
    code, err = run_cli(argv)
    assert code == 2 and "final" in err and "Traceback" not in err, err
    assert snapshot(run_copy) == before


def test_a_finished_vae_without_checkpoints_is_not_replaced(tmp_path):
    data = tiny_dataset(tmp_path / "data", num_clips=1)
    run = tmp_path / "vae"
    tiny_vae(run / "final")
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="holds a finished model"):
        train_vae(tiny_vae_config(data, run, steps=1))
    assert snapshot(run) == before


@pytest.mark.parametrize("corrupt", ["state.json", "model.safetensors", "optimizer.pt"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_newest_good_one(
    latent_cache, tmp_path, capfd, corrupt
):
    """Issue 26: --resume with a corrupt newest state.json said 'starting at step 0' and replaced final/
    and the metrics. Now the newest checkpoint that loads is resumed, the skipped one named, and the run ends
    as the uninterrupted one."""
    straight = train_world(tiny_world_config(latent_cache, tmp_path / "straight", steps=6))
    run = tmp_path / "run"
    train_world(tiny_world_config(latent_cache, run, steps=4))
    newest = run / CHECKPOINTS_DIR / "step_00000004"
    target = {"state.json": newest, "model.safetensors": newest / "model", "optimizer.pt": newest}[corrupt]
    (target / corrupt).write_bytes((target / corrupt).read_bytes()[:40])  # cut short
    capfd.readouterr()
    resumed = train_world(tiny_world_config(latent_cache, run, steps=6, resume=True))
    err = capfd.readouterr().err
    assert "step_00000004" in err and "resuming from step_00000002 (step 2)" in err, err
    assert resumed["losses"] == straight["losses"][2:]
    assert [v for _, _, v in read_metrics(run, "loss")] == straight["losses"]
    for name, tensor in load_model(tmp_path / "straight" / "final").state_dict().items():
        assert torch.equal(tensor, load_model(run / "final").state_dict()[name]), name


def test_no_loadable_checkpoint_is_refused_not_restarted(latent_cache, run_copy):
    (run_copy / CHECKPOINTS_DIR / "step_00000002" / "state.json").write_text("{cut")
    before = snapshot(run_copy)
    with pytest.raises(CheckpointError, match="no checkpoint can be resumed.*step_00000002"):
        train_world(tiny_world_config(latent_cache, run_copy, resume=True))
    with pytest.raises(CheckpointError, match="already holds checkpoints"):  # nor restarted without --resume
        train_world(tiny_world_config(latent_cache, run_copy))
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "change",
    [
        {"shift": 3.0}, {"warmup": 2}, {"ema_decay": 0.5}, {"weight_decay": 0.1}, {"grad_clip": 0.5},
        {"lr": 2e-3}, {"precision": "bf16"}, {"objective": "mean"}, {"timestep_distribution": "logit_normal"},
    ],
)  # fmt: skip
def test_resume_with_a_changed_setting_is_refused(latent_cache, run_copy, change):
    """Issue 26: --shift, --warmup, --ema-decay, --weight-decay, --grad-clip, --precision, --lr changed on
    --resume were accepted (one run mixing two settings); any field that defines the run is refused now,
    naming it with both values, and nothing in the run is rewritten."""
    ((key, value),) = change.items()
    before = snapshot(run_copy)
    with pytest.raises(
        CheckpointError, match=rf"--{key.replace('_', '-')} .* \(now {value!r}\).*another --out"
    ):
        train_world(tiny_world_config(latent_cache, run_copy, resume=True, **change))
    assert snapshot(run_copy) == before


def test_resume_with_a_cache_of_other_clips_of_the_same_vae_is_refused(latent_cache, run_copy, tmp_path):
    other = make_latent_cache(tmp_path / "other", clips=3, seed=1)  # same (absent) VAE, other latents
    with pytest.raises(CheckpointError, match="cache_contents"):
        train_world(tiny_world_config(other, run_copy, resume=True))
    moved = tmp_path / "moved"
    shutil.copytree(latent_cache, moved)  # the same cache elsewhere resumes: contents, not paths
    assert train_world(tiny_world_config(moved, run_copy, resume=True))["step"] == 4


def test_steps_can_only_grow(latent_cache, run_copy, tmp_path):
    """Issue 26: --resume --steps below the step reached wrote train_config.json of 10 steps for a model of
    40 (and the VAE said 'done: step 2' at step 6)."""
    train_world(tiny_world_config(latent_cache, run_copy, resume=True, steps=6))
    for steps in (1, 4):
        with pytest.raises(CheckpointError, match=f"--steps {steps} is below the 6 steps.*--steps 6 or more"):
            train_world(tiny_world_config(latent_cache, run_copy, resume=True, steps=steps))
    data = tiny_dataset(tmp_path / "data", num_clips=1)
    train_vae(tiny_vae_config(data, tmp_path / "vae", steps=2))
    with pytest.raises(CheckpointError, match="--steps 1 is below"):
        train_vae(tiny_vae_config(data, tmp_path / "vae", steps=1, resume=True))


def test_vae_resume_refuses_other_settings_and_other_clips(tmp_path):
    data = tiny_dataset(tmp_path / "data", num_clips=1)
    train_vae(tiny_vae_config(data, tmp_path / "vae", steps=2))
    with pytest.raises(CheckpointError, match=r"--lr 0.001 \(now 0.01\)"):
        train_vae(tiny_vae_config(data, tmp_path / "vae", lr=1e-2, resume=True))
    shutil.rmtree(data)
    tiny_dataset(data, num_clips=1, seed=5)  # regenerated at the same path
    with pytest.raises(CheckpointError, match="data_contents"):
        train_vae(tiny_vae_config(data, tmp_path / "vae", resume=True))


def test_subject_weight_refuses_masks_of_regenerated_data(tmp_path):
    """Issue 26: after the data was regenerated at the same path, --subject-weight read masks of the new
    clips beside latents of the old (5.6% of cells differed), exit 0."""
    data = tiny_dataset(tmp_path / "data", num_clips=2)
    vae = tiny_vae(tmp_path / "vae")
    assert run_cli(["encode", "--data", data, "--vae", vae, "--out", tmp_path / "cache"])[0] == 0
    config = dict(subject_weight=2.0, steps=1, batch_size=1)
    train_world(tiny_world_config(tmp_path / "cache", tmp_path / "ok", **config))  # the data it was made from
    shutil.rmtree(data)
    tiny_dataset(data, num_clips=2, seed=9)
    with pytest.raises(ConfigError, match="--subject-weight: .* changed since .*encode --overwrite"):
        train_world(tiny_world_config(tmp_path / "cache", tmp_path / "run", **config))


def test_a_change_on_purpose_is_recorded_in_the_runs_history(latent_cache, run_copy, tmp_path):
    """The other way out of a refusal: --change SETTING lets a resumed run differ, and run.json keeps the
    change with the step it took effect at; from then on the new value is the run's."""
    changed = tiny_world_config(latent_cache, run_copy, resume=True, steps=3, lr=2e-3, change=("lr",))
    assert train_world(changed)["step"] == 3
    history = json.loads((run_copy / "run.json").read_text())["inputs"]["history"]
    assert history == [{"step": 2, "field": "lr", "from": 0.001, "to": 0.002}]
    assert train_world(tiny_world_config(latent_cache, run_copy, resume=True, lr=2e-3))["step"] == 4
    with pytest.raises(CheckpointError, match=r"--lr 0.002 \(now 0.001\).*--change SETTING"):
        train_world(tiny_world_config(latent_cache, run_copy, resume=True, steps=5))
    other = make_latent_cache(tmp_path / "other", clips=3, seed=1)
    more = tiny_world_config(other, run_copy, resume=True, steps=5, lr=2e-3, change=("cache",))
    assert train_world(more)["step"] == 5
    fields = [
        entry["field"] for entry in json.loads((run_copy / "run.json").read_text())["inputs"]["history"]
    ]
    assert fields == ["lr", "cache_contents"]


@pytest.mark.parametrize(
    "argv, message",
    [(["--change", "lr"], "--change goes with --resume"),
     (["--resume", "--change", "rate"], "--change rate: not a setting of the run; valid: cache, affinity")],
)  # fmt: skip
def test_change_names_a_setting_and_needs_resume(latent_cache, tmp_path, argv, message):
    code, err = run_cli(["train", "world", "--cache", latent_cache, "--out", tmp_path / "run", *argv])
    assert code == 2 and message in err and "Traceback" not in err, err
