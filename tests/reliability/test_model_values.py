"""Weights and outputs are finite (issue 26): a NaN weight, `rope_theta: -1` or an all-zero VAE latent_scale
gave a black video or all-zero latents with exit 0, and another model's weights copied into a folder were
used. Loading names the bad tensor or field; a non-finite or constant generation is an error, not a video."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hybridmem.errors import CheckpointError
from hybridmem.models.checkpoint import load_model, save_model
from hybridmem.models.memory import MemoryConfig
from hybridmem.models.world import build_world_model
from tiny import save_tiny_world

from .helpers import run_cli, snapshot, tiny_dataset, tiny_vae


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"world": save_tiny_world(root / "world"), "vae": tiny_vae(root / "vae"), "root": root}


def _copy(folder, tmp_path, name="model"):
    shutil.copytree(folder, tmp_path / name)
    return tmp_path / name


def _edit_weights(folder, edit):
    """Rewrite model.safetensors with `edit(state)` applied, keeping its metadata (a corrupt or diverged
    file, not a foreign one)."""
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata=metadata)


def _edit_config(folder, **fields):
    document = json.loads((folder / "config.json").read_text())
    document["config"].update(fields)
    (folder / "config.json").write_text(json.dumps(document))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_named(models, tmp_path, value):
    folder = _copy(models["world"], tmp_path)
    name = sorted(load_file(str(folder / "model.safetensors")))[3]

    def poison(state):
        state[name].view(-1)[0] = value

    _edit_weights(folder, poison)
    with pytest.raises(CheckpointError, match=rf"non-finite weights .* in {name} \(1 of"):
        load_model(folder)


@pytest.mark.parametrize(
    "model, field, value",
    [("world", "rope_theta", -1.0), ("world", "rope_theta", 0.0), ("world", "eps", 0.0),
     ("vae", "latent_scale", "all zero"), ("vae", "latent_scale", "one zero"), ("vae", "eps", 5.0)],
)  # fmt: skip
def test_config_values_out_of_range_are_named(models, tmp_path, model, field, value):
    folder = _copy(models[model], tmp_path)
    if field == "latent_scale":
        channels = len(json.loads((folder / "config.json").read_text())["config"][field])
        value = [0.0] * channels if value == "all zero" else [1.0] * (channels - 1) + [0.0]
    _edit_config(folder, **{field: value})
    with pytest.raises(CheckpointError, match=rf"config field '{field}' = .* out of range .*allowed"):
        load_model(folder)


def test_sample_with_a_bad_config_value_exits_2_and_writes_nothing(models, tmp_path):
    """Issue 26: rope_theta -1 in config.json gave an all-black video, exit 0."""
    folder = _copy(models["world"], tmp_path)
    _edit_config(folder, rope_theta=-1.0)
    clip = tiny_dataset(tmp_path / "data", num_clips=1) / "train" / "000000"
    out = tmp_path / "out"
    code, err = run_cli(["sample", "--clip", clip, "--checkpoint", folder, "--vae", models["vae"],
                         "--out", out / "s.mp4", "--steps", "2", "--device", "cpu"])  # fmt: skip
    assert code == 2 and "rope_theta" in err and "Traceback" not in err, err
    assert not out.exists() or snapshot(out) == {}


def test_another_models_weights_in_a_folder_are_refused(models, tmp_path):
    """Issue 26: another memory's weights copied into a model folder were used, exit 0."""
    torch.manual_seed(0)
    other = save_model(build_world_model("tiny", memory=MemoryConfig(kind="window")), tmp_path / "window")
    folder = _copy(models["world"], tmp_path)
    window_config = json.loads((other / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(window_config))  # window's config beside hydra's weights
    with pytest.raises(CheckpointError, match="weights do not match|does not describe the weights"):
        load_model(folder)
    full = _copy(other, tmp_path, "full")  # same tensors (no memory weights), other config: refused too
    _edit_config(full, memory={**window_config["config"]["memory"], "kind": "full"})
    with pytest.raises(CheckpointError, match=r"memory.kind: 'full' in config.json, .*saved with 'window'"):
        load_model(full)
    _edit_config(full, memory=window_config["config"]["memory"])
    load_model(full)  # the pair as saved loads


def test_a_model_folder_without_the_record_still_loads(models, tmp_path):
    """Weights saved before save_model recorded their config (or by another writer) are not refused."""
    folder = _copy(models["world"], tmp_path)
    save_file(load_file(str(folder / "model.safetensors")), str(folder / "model.safetensors"))
    load_model(folder)


@pytest.mark.parametrize(
    "values, message",
    [(torch.tensor([1.0, float("nan")]), "1 of 2 non-finite"), (torch.zeros(3, 4), "all 0, one constant")],
)
def test_non_finite_or_constant_outputs_are_errors(values, message):
    from hybridmem.models.checkpoint import check_model_output

    with pytest.raises(CheckpointError, match=message):
        check_model_output(values, "generation: the decoded frames", "the VAE")
    check_model_output(torch.arange(4.0), "generation: the decoded frames", "the VAE")


def test_a_generation_of_nan_is_an_error_not_a_black_video(models, tmp_path, monkeypatch):
    """A model whose weights pass the load checks but compute NaN (here: the world model's forward)."""
    from hybridmem.models.world import WorldModel

    real = WorldModel.forward
    monkeypatch.setattr(WorldModel, "forward", lambda self, *a, **k: real(self, *a, **k) * float("nan"))
    clip = tiny_dataset(tmp_path / "data", num_clips=1) / "train" / "000000"
    out = tmp_path / "out"
    code, err = run_cli(["sample", "--clip", clip, "--checkpoint", models["world"], "--vae", models["vae"],
                         "--out", out / "s.mp4", "--steps", "2", "--device", "cpu"])  # fmt: skip
    assert code == 2 and "non-finite" in err and "the world model" in err and "Traceback" not in err, err
    assert not list(out.glob("*.mp4"))


def test_encode_with_an_all_zero_latent_scale_is_refused(models, tmp_path):
    """Issue 26: a VAE whose latent_scale is all zeros encoded all-zero latents, exit 0."""
    vae = _copy(models["vae"], tmp_path, "vae")
    channels = len(json.loads((vae / "config.json").read_text())["config"]["latent_scale"])
    _edit_config(vae, latent_scale=[0.0] * channels)
    data = tiny_dataset(tmp_path / "data", num_clips=1)
    code, err = run_cli(["encode", "--data", data, "--vae", vae, "--out", tmp_path / "cache"])
    assert code == 2 and "latent_scale" in err and "Traceback" not in err, err
    assert not list((tmp_path / "cache").rglob("*.safetensors"))
