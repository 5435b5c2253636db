"""`hybridmem encode`: encode a dataset split once into a latent cache (see data/cache.py for the layout).

    hybridmem encode --data runs/world --vae runs/vae/final --out runs/cache/train --split train
    hybridmem encode --data runs/world --vae runs/vae/final --out runs/cache/val --split val --store-logvar
    hybridmem encode --data /data/hmw --vae runs/vae --out /data/cache/train --shard 3/16   # one job of 16

Context and target segments are encoded separately by the causal VAE (each must have 4k+1 frames), so the
first latent frame of each segment stands for one video frame. Latents are the posterior mean (the mode);
`--store-logvar` keeps the log-variance too, for training on posterior samples. Clips already in the cache
are skipped, so an interrupted run resumes where it stopped, and shards (`--shard i/N`) fill one cache
side by side (each shard is locked: a second run of the same shard is refused while the first lives).

A cache belongs to one VAE and one dataset split: cache.json records the VAE's config and content hash
(sha256 of its weights and config), the data folder and the split, and a rerun with another VAE, split or
--store-logvar is refused. Each cached clip records what it was made from (`made_from`: the content hash of
its clip folder, every file, and the VAE's), and every rerun compares it with the clip in --data: a data
folder regenerated or edited at the same path is noticed (moved to another path with the same contents, it
is not a change). Entries made from other contents, and (unsharded) entries whose clip is gone from --data,
are refused, naming them, or with `--overwrite` encoded again (gone ones removed). `--vae RUN` needs the
finished VAE (RUN/final, which holds the latent normalisation); a run stopped before its end is refused
rather than encoded with a checkpoint's unnormalised latents.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hybridmem.errors import DataError
from hybridmem.geometry import WARP_SOURCES, latent_frame_indices, normalised_intrinsics, relative_poses
from hybridmem.validation import check_choice


def list_clip_folders(data_dir: str | Path, split: str | None) -> list[Path]:
    """Clip folders of a split, sorted: DATA/<split>/* (or DATA/* with split None) holding clip files."""
    root = Path(data_dir) / split if split else Path(data_dir)
    if not root.is_dir():
        valid = (
            sorted(p.name for p in Path(data_dir).iterdir() if p.is_dir()) if Path(data_dir).is_dir() else []
        )
        raise DataError(
            f"{root}: no such split folder; splits found in {data_dir}: {', '.join(valid) or 'none'}"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no clip folders; generate data with `hybridmem world generate`")
    return folders


def latent_cameras(
    cameras: "T 4 4", context_frames: int, temporal_stride: int
) -> tuple["Fc+Ft 4 4", int, int]:
    """Camera of each latent frame (frames 0, s, 2s, ... of each segment), relative to the first target one.

    Returns (cameras "Fc+Ft 4 4" float32, Fc, Ft). Each segment must have s*k + 1 frames.
    """
    total = cameras.shape[0]
    target_frames = total - context_frames
    for name, count in (("context", context_frames), ("target", target_frames)):
        if count < 1 or (count - 1) % temporal_stride:
            raise DataError(
                f"{name} segment has {count} frames; the VAE needs {temporal_stride}k+1 frames per segment "
                f"(for example {temporal_stride * 2 + 1})"
            )
    context_index = latent_frame_indices(context_frames, temporal_stride)
    target_index = context_frames + latent_frame_indices(target_frames, temporal_stride)
    per_latent = cameras[np.concatenate([context_index, target_index])]
    relative = relative_poses(per_latent, cameras[target_index[0]])
    return relative.astype(np.float32), len(context_index), len(target_index)


def segment_latent_cameras(
    context_cameras: "Tc 4 4", target_cameras: "Tt 4 4", temporal_stride: int
) -> "Fc+Ft 4 4":
    """Cameras of the context's and the target's latent frames, relative to the first target latent frame
    (latent_cameras of the two segments given apart)."""
    cameras = np.concatenate([context_cameras, target_cameras])
    relative, _, _ = latent_cameras(cameras, len(context_cameras), temporal_stride)
    return relative


def frames_to_tensor(frames: "T H W 3"):
    """uint8 frames -> "1 T 3 H W" float32 in [-1, 1] (the VAE's input range)."""
    import torch
    from einops import rearrange

    video = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return rearrange(video, "t h w c -> 1 t c h w")


def vae_temporal_stride(vae) -> int:
    """Video frames per latent frame after the first (VAEConfig.temporal_factor)."""
    return int(vae.config.temporal_factor)


def encode_clip(
    vae, clip, device, store_logvar: bool = False, store_warp: bool = False, warp_source: str = "context"
) -> tuple[dict, dict]:
    """One Clip -> (tensors, metadata) for the cache. Latents are the posterior mean.

    store_warp: also `target_warp_latents` "Ft C h w", the latents of the context warped into each target view
    by the camera rotations (hybridmem.warp): the condition of a world model with DiTConfig.warp_condition.
    """
    import torch

    stride = vae_temporal_stride(vae)
    cameras, _, _ = latent_cameras(clip.cameras, clip.context_frames, stride)
    height, width = clip.frames.shape[1:3]
    tensors = {
        "cameras": torch.from_numpy(cameras),
        "intrinsics": torch.from_numpy(normalised_intrinsics(clip.intrinsics, width, height)),
    }
    with torch.no_grad():
        for name, segment in (("context", clip.context), ("target", clip.target)):
            posterior = vae.encode(frames_to_tensor(clip.frames[segment]).to(device))
            # The world model sees normalised latents (VAEConfig.latent_shift/scale): (z - shift) * scale.
            latents = vae.normalize(posterior.mode())  # 1 F C h w
            tensors[f"{name}_latents"] = latents[0].float().cpu()  # F C h w
            if store_logvar:
                # normalize is affine, so normalize(1) - normalize(0) is the per-channel scale, and the
                # log-variance of the normalised latents is logvar + 2 log(scale)
                scale = vae.normalize(torch.ones_like(latents)) - vae.normalize(torch.zeros_like(latents))
                logvar = posterior.logvar + 2 * torch.log(scale)  # 1 F C h w
                tensors[f"{name}_logvar"] = logvar[0].float().cpu()  # F C h w
        if store_warp:
            from hybridmem.warp import rotation_warp

            warped, _ = rotation_warp(
                clip.frames[clip.context],
                clip.cameras[clip.context],
                clip.cameras[clip.target],
                clip.intrinsics,
                source=warp_source,
            )
            posterior = vae.encode(frames_to_tensor(warped).to(device))
            tensors["target_warp_latents"] = vae.normalize(posterior.mode())[0].float().cpu()  # Ft C h w
    return tensors, clip_metadata(clip)


def clip_metadata(clip) -> dict:
    """What a cache entry records of its clip besides tensors: caption, events, source, lengths, fps."""
    events = [{"subject_id": e.subject_id, "kind": e.kind, "frame": e.frame} for e in clip.events]
    return {
        "caption": clip.caption,
        "events": events,
        "source": str(clip.source),
        "context_frames": clip.context_frames,
        "target_frames": clip.target_frames,
        "fps": clip.fps,
    }


def encode_split(
    data_dir: str | Path,
    vae_dir: str | Path,
    out_dir: str | Path,
    split: str | None = "train",
    device: str = "auto",
    store_logvar: bool = False,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    store_warp: bool = False,
    warp_source: str = "context",
) -> dict:
    """Encode every clip of a split not yet in the cache; returns {"encoded", "skipped", "total"}.

    warp_source: with store_warp, the context frames the warp reads (hybridmem.geometry.WARP_SOURCES).

    shard (i, N): only the clips whose position in the sorted split is i mod N, so N jobs (any job array,
    any machines sharing the cache folder) together encode the split once.
    overwrite: encode again the cached clips made from other contents or another VAE (default: refuse).
    """

    from hybridmem import runlock
    from hybridmem.errors import ConfigError

    check_choice(warp_source, WARP_SOURCES, "--warp-source")
    if warp_source != "context" and not store_warp:
        raise ConfigError(
            "--warp-source needs --store-warp (it says which context frames the stored warp reads)"
        )
    from hybridmem.device import resolve_device
    from hybridmem.models.checkpoint import load_model

    # 1. inputs and the cache's identity (a cache belongs to one VAE and one split: refuse to mix)
    out_dir, folders = open_split(data_dir, split, out_dir, shard)
    torch_device = resolve_device(device)
    vae_dir = resolve_finished_vae(vae_dir)
    vae = load_model(vae_dir, map_location=torch_device)
    index = {
        "vae": str(Path(vae_dir).resolve()),
        # the JSON form, as read back from cache.json: the config's tuples are lists there
        "vae_config": runlock.normalised(vae.config.to_dict()),
        "vae_sha256": runlock.model_sha256(vae_dir)
        if (Path(vae_dir) / "model.safetensors").is_file()
        else None,
        "split": split,
        "data": str(Path(data_dir).resolve()),  # where it came from; each entry records its clip's contents
        "temporal_stride": vae_temporal_stride(vae),
        "store_logvar": store_logvar,
        **({"store_warp": True} if store_warp else {}),
        # recorded only when not the default, so caches made before the option stay current
        **({"warp_source": warp_source} if store_warp and warp_source != "context" else {}),
        "content_records": True,
    }
    made_from = {"vae_sha256": index["vae_sha256"], "store_logvar": store_logvar}
    if store_warp:  # only recorded when on, so entries made before the flag existed stay current
        made_from["store_warp"] = True
        if warp_source != "context":
            made_from["warp_source"] = warp_source

    # 2. encode what the cache lacks
    def encode_one(clip) -> tuple[dict, dict]:
        return encode_clip(vae, clip, torch_device, store_logvar, store_warp, warp_source)

    return fill_cache(
        out_dir,
        folders,
        index,
        made_from,
        encode_one,
        shard=shard,
        overwrite=overwrite,
        progress=progress,
        desc="encode",
        models="the VAE",
    )


def open_split(
    data_dir: str | Path, split: str | None, out_dir: str | Path, shard: tuple[int, int]
) -> tuple[Path, list[Path]]:
    """(the checked --out folder, this shard's clip folders of the split) for an encode command; --data
    still being written by `world generate` is refused."""
    from hybridmem import runlock

    index_in_shard, shard_count = shard
    out_dir = runlock.check_out_folder(out_dir)
    runlock.refuse_being_written(data_dir, "--data", "wait for `world generate` to finish, then encode")
    return out_dir, list_clip_folders(data_dir, split)[index_in_shard::shard_count]


def is_model_output(name: str) -> bool:
    """Whether a cache entry's tensor came out of a model (latents, the caption's embedding), so a broken
    model shows in it; cameras, intrinsics and log-variances are not checked."""
    return name.endswith("_latents") or name == "caption_embedding"


def fill_cache(
    out_dir: Path,
    folders: list[Path],
    index: dict,
    made_from: dict,
    encode_one: Callable,
    shard: tuple[int, int],
    overwrite: bool,
    progress: bool,
    desc: str,
    models: str,
) -> dict:
    """Encode into the cache `out_dir` each clip folder it lacks or holds made otherwise: what every encode
    command does once it knows its cache's identity. Returns {"encoded", "skipped", "total"}.

    index: this run's cache.json (compared with the one there by check_same_cache, then written);
    made_from: what each entry records it was made from, besides its clip's content hash;
    encode_one(clip) -> (tensors, metadata): one Clip's entry; it loads its models on first use, so a run
    with nothing to encode loads none; models: who made the outputs, for the error a broken output raises
    ("the VAE"). The shard (i, N) is locked while it runs; `overwrite`, `progress` and `desc` (the progress
    bar's label) as in encode_split.
    """
    from hybridmem import runlock
    from hybridmem.data.cache import CLIPS_DIR, read_index, write_clip_entry, write_index
    from hybridmem.data.hmworld import load_clip
    from hybridmem.models.checkpoint import check_model_output

    index_in_shard, shard_count = shard
    lock = runlock.acquire(out_dir, "encode", name=f"encode-{index_in_shard}of{shard_count}")
    try:
        # 1. the cache's identity: another VAE, split or setting is refused (or, with overwrite, redone)
        changed = False
        if (out_dir / "cache.json").exists():
            changed = check_same_cache(out_dir, read_index(out_dir), index, overwrite)
        # 2. which clips to encode: missing ones, and (refused without --overwrite) those made otherwise
        todo, stale, gone = plan_clips(out_dir, folders, made_from, changed, shard_count == 1)
        if (stale or gone) and not overwrite:
            raise DataError(describe_stale(out_dir, stale, gone))
        write_index(out_dir, index)
        for clip_id in gone:  # entries this cache holds for clips no longer in --data (unsharded runs)
            (out_dir / CLIPS_DIR / f"{clip_id}.safetensors").unlink()

        # 3. encode
        iterator = todo
        if progress:
            from tqdm import tqdm

            iterator = tqdm(todo, desc=desc, unit="clip")
        for folder in iterator:
            clip_sha256 = runlock.clip_sha256(folder)  # hashed before it is read: what the entry is made from
            clip = load_clip(folder)
            tensors, metadata = encode_one(clip)
            for name, values in tensors.items():  # a broken model: an error, not a cache of NaN or zeros
                if is_model_output(name):
                    check_model_output(values, f"encode: {folder}: its {name}", models)
            metadata["made_from"] = {**made_from, "clip_sha256": clip_sha256}
            write_clip_entry(out_dir, folder.name, tensors, metadata)
        return {"encoded": len(todo), "skipped": len(folders) - len(todo), "total": len(folders)}
    finally:
        lock.release()


# what must match for a rerun to add clips to an existing cache (a key an older cache.json lacks is skipped).
# "data", the path, only for caches made before entries recorded their clips' contents.
# precision: recorded by `encode --official` (the release's models in fp32 or bf16); absent from ours
IDENTITY_KEYS = ("vae_config", "vae_sha256", "store_logvar", "split", "precision")
LEGACY_IDENTITY_KEYS = (*IDENTITY_KEYS, "data")


def check_same_cache(out_dir: Path, existing: dict, index: dict, overwrite: bool = False) -> bool:
    """Compare cache.json (`existing`) with this run's `index`: DataError naming each difference when it was
    made by another VAE, split or --store-logvar, unless `overwrite` (then True: its clips are redone)."""
    keys = IDENTITY_KEYS if existing.get("content_records") else LEGACY_IDENTITY_KEYS
    changed = [
        f"{key}: {_short(existing.get(key))} there, {_short(index.get(key))} now"
        for key in keys
        if key in existing and index.get(key) is not None and existing[key] != index[key]
    ]
    # store_warp is recorded only when on: a cache without the key has no warp latents
    if bool(existing.get("store_warp", False)) != bool(index.get("store_warp", False)):
        changed.append(
            f"store_warp: {bool(existing.get('store_warp'))} there, {bool(index.get('store_warp'))} now"
        )
    elif existing.get("warp_source", "context") != index.get("warp_source", "context"):
        changed.append(
            f"warp_source: {existing.get('warp_source', 'context')} there, "
            f"{index.get('warp_source', 'context')} now"
        )
    if changed and not overwrite:
        raise DataError(
            f"{out_dir}: holds latents of another VAE, precision, --store-logvar / --store-warp setting or "
            f"dataset ({'; '.join(changed)}); pass --overwrite to encode its clips again, a new --out "
            "folder, or delete this cache"
        )
    return bool(changed)


def plan_clips(
    out_dir: Path, folders: list[Path], made_from: dict, redo_unrecorded: bool, whole_split: bool
) -> tuple[list[Path], list[tuple[str, str]], list[str]]:
    """(clip folders to encode, stale entries as (clip id, why), entries whose clip is gone).

    A cached entry is current when its `made_from` equals this run's (the clip folder's content hash, the
    VAE's hash, --store-logvar). An entry written before entries recorded it is kept, unless the cache's
    identity changed (`redo_unrecorded`). Gone entries are looked for only when `whole_split` (a shard
    sees only its own clips)."""
    from hybridmem import runlock
    from hybridmem.data.cache import CLIPS_DIR, cached_clip_ids, read_entry_metadata

    cached = set(cached_clip_ids(out_dir))
    todo, stale = [], []
    for folder in folders:
        if folder.name not in cached:
            todo.append(folder)
            continue
        metadata = read_entry_metadata(out_dir / CLIPS_DIR / f"{folder.name}.safetensors") or {}
        recorded = metadata.get("made_from")
        if not isinstance(recorded, dict):
            if redo_unrecorded:
                todo.append(folder)
                stale.append((folder.name, "made before entries recorded their inputs, by another VAE"))
            continue
        wanted = {**made_from, "clip_sha256": runlock.clip_sha256(folder)}
        if recorded != wanted:
            why = [
                "the clip's contents changed" if key == "clip_sha256" else f"{key} differs"
                for key in sorted(set(recorded) | set(wanted))
                if recorded.get(key) != wanted.get(key)
            ]
            todo.append(folder)
            stale.append((folder.name, ", ".join(why)))
    gone = sorted(cached - {folder.name for folder in folders}) if whole_split else []
    return todo, stale, gone


def describe_stale(out_dir: Path, stale: list[tuple[str, str]], gone: list[str]) -> str:
    parts = []
    if stale:
        shown = "; ".join(f"{clip_id} ({why})" for clip_id, why in stale[:5])
        more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
        parts.append(f"{len(stale)} cached clip(s) were encoded from other contents of --data: {shown}{more}")
    if gone:
        shown = ", ".join(gone[:5]) + (f" and {len(gone) - 5} more" if len(gone) > 5 else "")
        parts.append(f"{len(gone)} cached clip(s) are no longer in --data: {shown}")
    return (
        f"{out_dir}: {'; '.join(parts)} (was the data folder regenerated?); pass --overwrite to encode "
        "them again (and drop the gone ones), or choose a new --out"
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resolve_finished_vae(path: str | Path) -> Path:
    """The model folder of a finished VAE: a model folder, or a run's final/ (with its latent normalisation).

    A run without final/ (stopped before its end) or a training checkpoint is refused: its weights have no
    latent normalisation, so its latents would not be the zero-mean, unit-variance ones the world model
    is trained on.
    """
    from hybridmem import runlock
    from hybridmem.errors import CheckpointError
    from hybridmem.runfolder import resolve_model_folder

    path = Path(path)
    if not (path / "config.json").is_file():  # a run folder: its final/ is replaced while it trains
        runlock.refuse_being_written(path, "--vae", "wait for its training to finish, or pass RUN/final")
    folder = Path(resolve_model_folder(path))
    if not (folder.parent / "state.json").is_file():  # not RUN/checkpoints/step_N/{model,ema}
        return folder
    run = folder.parent.parent.parent
    raise CheckpointError(
        f"--vae {path}: resolves to the training checkpoint {folder.parent.name}, not a finished VAE "
        f"({run / 'final'} does not exist: the run stopped before fitting the latent normalisation, so "
        f"its latents would not be normalised). Finish it with `hybridmem train vae ... --out {run} "
        "--resume`, or pass a finished VAE's model folder"
    )


def run(args: argparse.Namespace) -> int:
    from hybridmem.errors import ConfigError
    from hybridmem.runfolder import parse_shard

    if args.vae is None:
        raise ConfigError("--vae VAE is required (or, for the paper's model, --official DIR)")
    summary = encode_split(
        args.data,
        args.vae,
        args.out,
        args.split or None,
        args.device,
        args.store_logvar,
        progress=True,
        shard=parse_shard(args.shard),
        overwrite=args.overwrite,
        store_warp=args.store_warp,
        warp_source=args.warp_source,
    )
    print(f"encode: {summary['encoded']} clips encoded, {summary['skipped']} already cached -> {args.out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="encode a dataset split into a latent cache",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="dataset folder (holding split folders)")
    parser.add_argument(
        "--vae", default=None, help="VAE checkpoint folder (models.checkpoint.save_model); required"
    )
    parser.add_argument(
        "--out", required=True, help="cache folder (created; clips already there are kept and skipped)"
    )
    parser.add_argument("--split", default="train", help="split folder under --data; '' for DATA itself")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--store-logvar", action="store_true", help="also store the posterior log-variance")
    parser.add_argument(
        "--store-warp",
        action="store_true",
        help="also store the latents of the context warped into each target view (hybridmem.warp): the "
        "condition of world models trained with --warp-condition",
    )
    parser.add_argument(
        "--warp-source",
        choices=WARP_SOURCES,
        default="context",
        help="with --store-warp: the context frames the warp reads, context (all) | last (the last context "
        "frame only, which every memory sees); train world's --warp-source must match",
    )
    parser.add_argument(
        "--shard", default="0/1", help="i/N: encode only clips i, i+N, i+2N, ... of the split"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="encode again the cached clips made from other clip contents or another VAE, and drop those "
        "no longer in --data (default: refuse them)",
    )
    parser.set_defaults(func=run)
