"""The latent cache: every clip of a split encoded once by the VAE, one safetensors file per clip.

    CACHE/
        cache.json                  format, VAE checkpoint, split, latent shape, temporal stride
        clips/<clip_id>.safetensors context_latents "Fc C h w", target_latents "Ft C h w",
                                    [context_logvar, target_logvar,] cameras "Fc+Ft 4 4",
                                    intrinsics "4", [caption_embedding "Lp Dc"]; metadata: caption,
                                    events (JSON), source, frame counts

Cameras are camera-to-world poses of each latent frame (video frames 0, 4, 8, ... of each segment)
relative to the first target latent frame; intrinsics are normalised (fx/W, fy/H, cx/W, cy/H). Each clip
file is written through hybridmem.publish (temp file, checked against its header, renamed), so a cache is
always a set of complete clips and an interrupted `hybridmem encode` resumes by skipping the files that
exist. Each entry's metadata also records what made it (`made_from`: the clip's content hash and the VAE's),
which `hybridmem encode` compares with the data folder on every rerun.

A cache made by `encode --official` (hybridmem.official.encode) holds each clip's umT5 caption embedding
with only its prompt's Lp rows; cache.json's `caption_length` (512) is the rows the reader pads it back to
with zeros, as the official pipeline feeds it.

Shape glossary: F latent frames (Fc context, Ft target), C latent channels, h/w latent grid, B batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from hybridmem import jsonio
from hybridmem.errors import DataError

CACHE_FORMAT = 1
INDEX_FILE = "cache.json"
CLIPS_DIR = "clips"
TENSOR_KEYS = ("context_latents", "target_latents", "cameras", "intrinsics")
OPTIONAL_TENSOR_KEYS = ("context_logvar", "target_logvar")
# messages of errors that are the machine's, not the file's (mmap/open failing under a huge batch)
_RESOURCE_ERRORS = ("Cannot allocate memory", "Too many open files", "Out of memory")


def write_clip_entry(
    cache_dir: str | Path, clip_id: str, tensors: dict[str, torch.Tensor], metadata: dict
) -> Path:
    """Write one clip through hybridmem.publish (temp file, checked, renamed)."""
    from safetensors.torch import save_file

    from hybridmem import publish

    missing = [key for key in TENSOR_KEYS if key not in tensors]
    if missing:
        raise ValueError(f"write_clip_entry: missing tensors {missing}")
    path = Path(cache_dir) / CLIPS_DIR / f"{clip_id}.safetensors"
    state = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    text_metadata = {key: json.dumps(value) for key, value in metadata.items()}
    with publish.staged(path, check=publish.check_safetensors) as temp:
        save_file(state, temp, metadata=text_metadata)
    return path


def write_index(cache_dir: str | Path, index: dict) -> None:
    from hybridmem import publish

    # a unique temp name: encode shards running side by side write the same index concurrently
    publish.write_json(Path(cache_dir) / INDEX_FILE, {"format": CACHE_FORMAT, **index})


def _metadata(handle, path) -> dict:
    """The JSON values of a safetensors header's metadata (hybridmem.jsonio: repeated keys and numbers out
    of range are errors naming the entry and key)."""
    return {
        key: jsonio.loads(value, f"{path} metadata '{key}'", expect=None)
        for key, value in (handle.metadata() or {}).items()
    }


def read_entry_metadata(path: str | Path) -> dict | None:
    """The JSON metadata of a cache entry, read from its header only; None when unreadable (a cut or
    foreign file: the dataset reader names it)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return _metadata(handle, path)
    except Exception:  # safetensors raises several types for a truncated or foreign file
        return None


def read_index(cache_dir: str | Path) -> dict:
    path = Path(cache_dir) / INDEX_FILE
    if not path.is_file():
        raise DataError(
            f"{path}: missing; build the cache with `hybridmem encode --data DIR --vae VAE --out CACHE`"
        )
    index = jsonio.read_json(path, fix="delete the cache and encode again")
    if index.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: cache format {index.get('format')} is not {CACHE_FORMAT}; encode again")
    return index


def read_clip_entry(path: str | Path) -> dict:
    """One cached clip: its tensors plus caption (str), events (list of dicts), clip_id and frame counts."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            # cloned: a tensor that shares the file's mapping keeps it open, and a large batch of items
            # would run out of mappings (vm.max_map_count) and blame the file
            entry = {key: handle.get_tensor(key).clone() for key in handle.keys()}
            metadata = _metadata(handle, path)
    except Exception as error:  # safetensors raises several types for a truncated or foreign file
        if isinstance(error, MemoryError) or any(text in str(error) for text in _RESOURCE_ERRORS):
            raise DataError(
                f"{path}: could not be read for lack of memory or file handles ({error}); the file is not "
                "at fault: lower --batch-size or --num-workers"
            ) from error
        raise DataError(
            f"{path}: unreadable cache entry ({error}); delete it and rerun `hybridmem encode`"
        ) from error
    missing = [key for key in TENSOR_KEYS if key not in entry]
    if missing:
        raise DataError(f"{path}: cache entry lacks {missing}; delete it and rerun `hybridmem encode`")
    for key, tensor in entry.items():  # a NaN here surfaced as "loss is nan; lower --lr", the wrong cause
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise DataError(
                f"{path}: cache entry's '{key}' holds {count} non-finite values (NaN or infinity); delete it "
                "and rerun `hybridmem encode` (with --overwrite if the VAE is at fault)"
            )
    entry["caption"] = metadata.get("caption", "")
    entry["events"] = metadata.get("events", [])
    entry["clip_id"] = path.stem
    entry["source"] = metadata.get("source", "")
    return entry


def entry_made_from(path: str | Path) -> dict | None:
    """What a cache entry was made from (its clip folder's content hash, the VAE's ...), None when the
    entry predates these records or cannot be read."""
    made_from = (read_entry_metadata(path) or {}).get("made_from")
    return made_from if isinstance(made_from, dict) else None


def contents_sha256(cache_dir: str | Path) -> str:
    """One hash of what a cache holds: each clip id with what its entry was made from (read from the
    headers), or the entry file's own hash where it has no such record. Two caches of other clips, or of
    the same clips regenerated, differ; a cache moved elsewhere does not."""
    import hashlib

    from hybridmem import runlock

    digest = hashlib.sha256()
    for clip_id in cached_clip_ids(cache_dir):
        path = Path(cache_dir) / CLIPS_DIR / f"{clip_id}.safetensors"
        made_from = entry_made_from(path)
        made = json.dumps(made_from, sort_keys=True) if made_from else runlock.file_sha256(path)
        digest.update(f"{clip_id}\0{made}\n".encode())
    return digest.hexdigest()


def cached_clip_ids(cache_dir: str | Path) -> list[str]:
    folder = Path(cache_dir) / CLIPS_DIR
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.safetensors"))


class LatentCacheDataset(Dataset):
    """Items of a latent cache, in clip-id order.

    item: {"context_latents": "Fc C h w", "target_latents": "Ft C h w", "cameras": "Fc+Ft 4 4",
           "intrinsics": "4", "caption": str, "events": list, "clip_id": str, ...}; an official cache's
           "caption_embedding" comes padded with zero rows to cache.json's caption_length: "L Dc"
    """

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir)
        self.index = read_index(self.cache_dir)
        self.clip_ids = cached_clip_ids(self.cache_dir)
        if not self.clip_ids:
            raise DataError(f"{self.cache_dir / CLIPS_DIR}: no cached clips; run `hybridmem encode` first")

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, index: int) -> dict:
        path = self.cache_dir / CLIPS_DIR / f"{self.clip_ids[index]}.safetensors"
        entry = read_clip_entry(path)
        length = self.index.get("caption_length")
        if "caption_embedding" in entry and length:
            rows = entry["caption_embedding"]  # Lp Dc, the prompt's rows
            if rows.ndim != 2 or rows.shape[0] > length:
                raise DataError(
                    f"{path}: caption_embedding of shape {tuple(rows.shape)} is not (at most {length}, Dc); "
                    "delete it and rerun `hybridmem encode --official`"
                )
            entry["caption_embedding"] = torch.cat(
                [rows, rows.new_zeros(length - rows.shape[0], rows.shape[1])]
            )
        return entry


def collate_latents(items: list[dict]) -> dict:
    """Stack tensors into "B ..." (all clips must share shapes); strings and events become lists."""
    batch = {}
    for key, value in items[0].items():
        if isinstance(value, torch.Tensor):
            shapes = {tuple(item[key].shape) for item in items}
            if len(shapes) > 1:
                ids = [item["clip_id"] for item in items]
                raise DataError(
                    f"latent cache: clips {ids} have different '{key}' shapes {sorted(shapes)}; "
                    "encode clips of one length and resolution into one cache"
                )
            batch[key] = torch.stack([item[key] for item in items])
        else:
            batch[key] = [item[key] for item in items]
    return batch
