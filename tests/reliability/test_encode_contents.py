"""`hybridmem encode` knows its clips by their contents, not the data folder's path (issue 19): a data folder
regenerated at the same path is noticed, a moved one with the same contents is not a change."""

from __future__ import annotations

import shutil

import pytest
import torch

from hybridmem.data import cache

from .helpers import run_cli, snapshot, tiny_dataset, tiny_vae


@pytest.fixture
def encoded(tmp_path):
    data = tiny_dataset(tmp_path / "data", num_clips=3)
    vae = tiny_vae(tmp_path / "vae")
    out = tmp_path / "cache"
    code, err = run_cli(["encode", "--data", data, "--vae", vae, "--out", out])
    assert code == 0, err
    return {"data": data, "vae": vae, "out": out}


def _encode(encoded, *extra, data=None):
    data = data or encoded["data"]
    return run_cli(["encode", "--data", data, "--vae", encoded["vae"], "--out", encoded["out"], *extra])


def test_data_regenerated_at_the_same_path_is_noticed(encoded, tmp_path):
    """Issue 19: after the data folder was regenerated at the same path, encode said "0 clips encoded, 3
    already cached" (its identity recorded the data path, not the clips' contents)."""
    shutil.rmtree(encoded["data"])
    tiny_dataset(encoded["data"], num_clips=3, seed=7)
    before = snapshot(encoded["out"])
    code, err = _encode(encoded)
    assert code == 2 and "3 cached clip(s) were encoded from other contents of --data" in err, err
    assert "000000 (the clip's contents changed)" in err and "--overwrite" in err
    assert snapshot(encoded["out"]) == before
    code, err = _encode(encoded, "--overwrite")
    assert code == 0, err
    # the same as a fresh cache of the new data
    fresh = tmp_path / "fresh"
    assert run_cli(["encode", "--data", encoded["data"], "--vae", encoded["vae"], "--out", fresh])[0] == 0
    assert cache.cached_clip_ids(fresh) == cache.cached_clip_ids(encoded["out"])
    for clip_id in cache.cached_clip_ids(fresh):
        redone, new = (
            cache.read_clip_entry(root / "clips" / f"{clip_id}.safetensors")
            for root in (encoded["out"], fresh)
        )
        assert {k: v for k, v in redone.items() if not isinstance(v, torch.Tensor)} == {
            k: v for k, v in new.items() if not isinstance(v, torch.Tensor)
        }
        for key, value in new.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(redone[key], value), key
    assert _encode(encoded)[0] == 0  # and a rerun now resumes


def test_one_edited_clip_is_named(encoded):
    caption = encoded["data"] / "train" / "000001" / "caption.txt"
    caption.write_text(caption.read_text() + "edited\n")
    code, err = _encode(encoded)
    assert code == 2 and "1 cached clip(s)" in err and "000001" in err and "000000" not in err, err


def test_data_moved_with_the_same_contents_resumes(encoded, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(encoded["data"], moved)
    before = snapshot(encoded["out"] / "clips")
    code, err = _encode(encoded, data=moved)
    assert code == 0, err
    assert snapshot(encoded["out"] / "clips") == before


def test_clip_gone_from_the_data_is_refused_or_dropped(encoded):
    shutil.rmtree(encoded["data"] / "train" / "000002")
    code, err = _encode(encoded)
    assert code == 2 and "no longer in --data: 000002" in err, err
    assert _encode(encoded, "--overwrite")[0] == 0
    assert cache.cached_clip_ids(encoded["out"]) == ["000000", "000001"]


def test_every_entry_records_what_made_it(encoded):
    from hybridmem import runlock

    entry = encoded["out"] / "clips" / "000000.safetensors"
    made_from = cache.read_entry_metadata(entry)["made_from"]
    assert made_from == {
        "clip_sha256": runlock.clip_sha256(encoded["data"] / "train" / "000000"),
        "vae_sha256": runlock.model_sha256(encoded["vae"]),
        "store_logvar": False,
    }
