"""Checkpoint files of the official release, for every part (DiT, VAE, text encoder): reading them.

    state = read_state_dict("ckpts/hydra.pth", what="the released HyDRA DiT (hydra.pth)")
    check_state_matches(model.state_dict(), state, "ckpts/hydra.pth", fix="pass the released hydra.pth")

One reader takes every file kind the release and DiffSynth use: `.safetensors`, a sharded
`.safetensors.index.json`, and torch files (`.pth`, `.ckpt`, `.pt`), bare or wrapped in "state_dict".
Every problem is a CheckpointError that names the file, the keys at fault where there are any, and what to
pass instead. Nothing here downloads. The check of a state against the model it is for
(`check_state_matches`, and `brief_list`) lives in hybridmem.models.checkpoint, which load_model shares.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from hybridmem.errors import CheckpointError
from hybridmem.models.checkpoint import brief_list

_RELEASE_FILE = "a weight file of the released Wan2.1-T2V-1.3B / HyDRA model"


def read_state_dict(path: str | os.PathLike, what: str = _RELEASE_FILE) -> dict[str, torch.Tensor]:
    """The tensors of one checkpoint file, on the CPU, in their stored dtype (bf16, fp32 or mixed).

    `.safetensors` (one file), `.safetensors.index.json` (shards named by its weight_map, beside it), or a
    torch file (`.pth`, `.ckpt`, `.pt`: a bare state dict or one wrapped in "state_dict"). Torch files are
    read with weights_only (a checkpoint is data, never code to run) and mmap (the file is paged in as it is
    read, so a large checkpoint, umT5-xxl's 11 GB, does not have to fit in memory twice). `what` says what
    the file should be, for the errors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such file; it should be {what}. Nothing here downloads: fetch the released files "
            "yourself and pass the path of this one"
        )
    if path.name.endswith(".safetensors.index.json"):
        return _read_sharded(path, what)
    if path.name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({error}); it should be {what}"
            ) from None
    return _read_torch(path, what)


def _read_torch(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            # files written by torch < 1.6 (not a zip archive) cannot be memory-mapped; the same tensors,
            # read into memory
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle, zip and torch errors all mean "not a checkpoint"
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(error).__name__}: {str(error)[:200]}); "
            f"it should be {what}"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a training checkpoint (Lightning's hydra.ckpt) wraps the weights
    if not isinstance(loaded, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise CheckpointError(
            f"{path}: not a state dict (a dict of name -> tensor, bare or under 'state_dict'; got "
            f"{type(loaded).__name__}); it should be {what}"
        )
    return loaded


def _read_sharded(index_path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors a safetensors index lists, each from the shard its weight_map names."""
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{index_path}: not a safetensors index (a JSON object with 'weight_map': name -> shard file) "
            f"({type(error).__name__}: {error}); it should be {what}"
        ) from None
    state = {}
    for shard in shards:
        for key, tensor in read_state_dict(index_path.parent / shard, f"a shard of {what}").items():
            if weight_map.get(key) == shard:
                state[key] = tensor
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise CheckpointError(
            f"{index_path}: {len(absent)} key(s) listed but absent from their shard: {brief_list(absent)}; "
            "the shards beside it are not the ones this index was written for: fetch them again"
        )
    return state


def read_official_states(
    paths: Iterable[str | os.PathLike], what: str = _RELEASE_FILE
) -> tuple[dict[str, torch.Tensor], str]:
    """Several files merged in order (a later file replaces an earlier one's keys, as hydra.pth replaces the
    Wan2.1 weights it fine-tuned); returns the merged state and the files' names, for errors."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise CheckpointError(f"no weight files given; pass {what}")
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        state.update(read_state_dict(path, what))
    return state, " + ".join(str(path) for path in paths)
