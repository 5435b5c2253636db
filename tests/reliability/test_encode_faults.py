"""hybridmem encode reruns: on its own cache (resume), shards into one cache, an interrupted run, and the
refusals: another VAE (even one retrained in place), and a VAE run stopped before its final/."""

from __future__ import annotations

import pytest
import torch

from hybridmem.data import cache
from hybridmem.data.encode import encode_split
from hybridmem.errors import CheckpointError, DataError
from hybridmem.models.checkpoint import load_model
from hybridmem.train import state as train_state

from .helpers import run_cli, snapshot, tiny_dataset, tiny_vae


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("encode")
    return {"data": tiny_dataset(root / "data", num_clips=3), "vae": tiny_vae(root / "vae")}


def _encode(inputs, out, **kwargs):
    return encode_split(inputs["data"], inputs["vae"], out, "train", "cpu", progress=False, **kwargs)


def _tensors(out):
    return {
        clip_id: {k: v for k, v in cache.read_clip_entry(out / "clips" / f"{clip_id}.safetensors").items()
                  if isinstance(v, torch.Tensor)}
        for clip_id in cache.cached_clip_ids(out)
    }  # fmt: skip


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "cache"
    assert _encode(inputs, out) == {"encoded": 3, "skipped": 0, "total": 3}
    return out


def test_rerun_on_its_own_cache_resumes(inputs, reference):
    """Issue 12 case 1: the VAE config held tuples, cache.json lists: every rerun was refused."""
    code, err = run_cli(["encode", "--data", inputs["data"], "--vae", inputs["vae"], "--out", reference])
    assert code == 0, err


def test_interrupted_encode_continues(inputs, reference, tmp_path):
    out = tmp_path / "cache"
    _encode(inputs, out)
    (out / "clips" / "000002.safetensors").unlink()  # killed before this clip was written ...
    (out / "clips" / ".000002.abc.tmp").write_bytes(b"half")  # ... while writing its temp file
    assert _encode(inputs, out) == {"encoded": 1, "skipped": 2, "total": 3}
    torch.testing.assert_close(_tensors(out), _tensors(reference), rtol=0, atol=0)


def test_shards_fill_one_cache(inputs, reference, tmp_path):
    out = tmp_path / "cache"
    assert _encode(inputs, out, shard=(1, 2))["encoded"] == 1
    assert _encode(inputs, out, shard=(0, 2))["encoded"] == 2
    torch.testing.assert_close(_tensors(out), _tensors(reference), rtol=0, atol=0)


def test_vae_retrained_in_place_is_refused(inputs, tmp_path):
    vae = tiny_vae(tmp_path / "vae", seed=0)
    out = tmp_path / "cache"
    encode_split(inputs["data"], vae, out, "train", "cpu", progress=False, shard=(0, 3))
    retrained = load_model(vae)
    with torch.no_grad():
        next(retrained.parameters()).add_(0.1)  # same config, other weights
    from hybridmem.models.checkpoint import save_model

    save_model(retrained, vae)
    before = snapshot(out)
    with pytest.raises(DataError, match="vae_sha256"):
        encode_split(inputs["data"], vae, out, "train", "cpu", progress=False, shard=(1, 3))
    assert snapshot(out) == before


def test_cache_of_another_dataset_is_refused(inputs, tmp_path):
    out = tmp_path / "cache"
    _encode(inputs, out, shard=(0, 3))
    other = tiny_dataset(tmp_path / "other", num_clips=3, seed=7)
    with pytest.raises(DataError, match="data: "):
        encode_split(other, inputs["vae"], out, "train", "cpu", progress=False)


def test_vae_run_without_final_is_refused(inputs, tmp_path):
    """Issue 12 case 4: a VAE run killed before final/ was used silently, with no latent normalisation."""
    run = tmp_path / "vae_run"
    vae = load_model(inputs["vae"])
    train_state.save_checkpoint(run, 10, vae, None, {"preset": "tiny"})
    code, err = run_cli(["encode", "--data", inputs["data"], "--vae", run, "--out", tmp_path / "cache"])
    assert code == 2 and "step_00000010" in err and str(run / "final") in err and "--resume" in err, err
    assert "Traceback" not in err and not (tmp_path / "cache" / "clips").exists()
    with pytest.raises(CheckpointError, match="latent normalisation"):
        encode_split(inputs["data"], run / "checkpoints" / "step_00000010", tmp_path / "c2", "train", "cpu")
