"""hybridmem.official.files: one reader for every checkpoint file kind of the release, with errors that name
the file and the fix (the check of a state against its model is tested in tests/models/test_checkpoint.py)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from hybridmem.errors import CheckpointError
from hybridmem.official.files import read_official_states, read_state_dict


def small_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(3, 2, generator=generator),
        "a.bias": torch.randn(3, generator=generator),
        "b.weight": torch.randn(2, 3, generator=generator).bfloat16(),  # mixed dtypes stay as stored
        "c.scale": torch.randn(4, generator=generator),
    }


def assert_same(state: dict, expected: dict) -> None:
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key


# ----------------------------------------------------------------------------------------------------------
# Reading


@pytest.mark.parametrize("kind", ["bare.pth", "wrapped.ckpt", "legacy.pt", "one.safetensors"])
def test_every_file_kind_reads_to_the_same_tensors(tmp_path, kind):
    state = small_state()
    path = tmp_path / kind
    if kind == "bare.pth":
        torch.save(state, path)
    elif kind == "wrapped.ckpt":  # a training checkpoint: the weights under "state_dict", beside others
        torch.save({"state_dict": state, "epoch": 3}, path)
    elif kind == "legacy.pt":  # torch < 1.6's format, which cannot be memory-mapped
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        save_file(state, str(path))
    assert_same(read_state_dict(path), state)


def test_a_sharded_safetensors_index_reads_each_key_from_its_shard(tmp_path):
    state = small_state()
    shards = {"model-1.safetensors": ["a.weight", "a.bias"], "model-2.safetensors": ["b.weight", "c.scale"]}
    for shard, keys in shards.items():
        # each shard also holds a stale copy of a key the index assigns to the other shard: not read
        stale = "c.scale" if shard == "model-1.safetensors" else "a.bias"
        save_file(
            {**{key: state[key] for key in keys}, stale: torch.zeros_like(state[stale])},
            str(tmp_path / shard),
        )
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(
        json.dumps({"weight_map": {key: shard for shard, keys in shards.items() for key in keys}})
    )
    assert_same(read_state_dict(index), state)


def test_an_index_whose_shard_lacks_a_listed_key_names_the_key_and_the_fix(tmp_path):
    save_file({"a.weight": torch.zeros(2)}, str(tmp_path / "model-1.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(
        json.dumps({"weight_map": {"a.weight": "model-1.safetensors", "a.bias": "model-1.safetensors"}})
    )
    with pytest.raises(
        CheckpointError, match="1 key\\(s\\) listed but absent from their shard: a.bias"
    ) as error:
        read_state_dict(index)
    assert str(index) in str(error.value) and "fetch them again" in str(error.value)


def test_an_index_naming_an_absent_shard_names_the_shard(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a.weight": "model-9.safetensors"}}))
    with pytest.raises(CheckpointError, match="no such file; it should be a shard of") as error:
        read_state_dict(index)
    assert str(tmp_path / "model-9.safetensors") in str(error.value)


@pytest.mark.parametrize("content", ["not json", '{"metadata": {}}', '["weight_map"]', '{"weight_map": 3}'])
def test_a_malformed_index_is_refused(tmp_path, content):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(content)
    with pytest.raises(CheckpointError, match="not a safetensors index") as error:
        read_state_dict(index)
    assert str(index) in str(error.value)


def test_unreadable_files_name_the_file_and_what_it_should_be(tmp_path):
    what = "the Wan2.1 VAE (Wan2.1_VAE.pth)"
    with pytest.raises(CheckpointError, match="no such file; it should be the Wan2.1 VAE") as error:
        read_state_dict(tmp_path / "absent.pth", what)
    assert str(tmp_path / "absent.pth") in str(error.value) and "Nothing here downloads" in str(error.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(
        CheckpointError, match="junk.pth: not a readable torch checkpoint .*it should be the Wan"
    ):
        read_state_dict(tmp_path / "junk.pth", what)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable safetensors file"):
        read_state_dict(tmp_path / "junk.safetensors", what)


@pytest.mark.parametrize(
    "content",
    [[torch.zeros(1)], {"a": torch.zeros(1), "b": 3}, {0: torch.zeros(1)}, {"state_dict": {"a": 1}}],
)
def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path, content):
    torch.save(content, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="odd.pth: not a state dict \\(a dict of name -> tensor"):
        read_state_dict(tmp_path / "odd.pth")


def test_later_files_replace_earlier_keys_and_the_source_names_all(tmp_path):
    base, fine_tuned = small_state(0), {"a.weight": torch.ones(3, 2), "d.new": torch.ones(1)}
    save_file(base, str(tmp_path / "wan.safetensors"))
    torch.save(fine_tuned, tmp_path / "hydra.pth")
    state, source = read_official_states([tmp_path / "wan.safetensors", tmp_path / "hydra.pth"])
    assert_same(state, {**base, **fine_tuned})
    assert source == f"{tmp_path / 'wan.safetensors'} + {tmp_path / 'hydra.pth'}"
    with pytest.raises(CheckpointError, match="no weight files given; pass hydra.pth"):
        read_official_states([], what="hydra.pth")
