"""`hybridmem encode --official DIR`: a dataset split encoded by the release's Wan2.1 VAE and umT5, into the
latent cache `hybridmem encode` writes (data/cache.py), for fine-tuning HyDRA (`train world --official`).

    hybridmem encode --official ckpts --data runs/world --out runs/cache_wan/train --split train

Each clip's context and target segments (4k+1 frames each) are encoded apart by the Wan2.1 VAE with the
official normalisation, frames mapped to [-1, 1] as the official pipeline maps them (p / 127.5 - 1), tiled
as the pipeline tiles them. Each clip's caption is embedded by umT5 (tokenised to 512, rows past the prompt
zero, as the official pipeline feeds it) and stored as `caption_embedding` "Lp Dc" with only the prompt's Lp
rows; the cache reader pads it back with zeros to cache.json's `caption_length` (512) rows.

The cache records the VAE that made it as `vae_sha256`, the content hash of the release's VAE file (the
model fine-tuned on it records the same, so sampling refuses another VAE), and each entry records it in
`made_from` with the text encoder's file name and size, so a rerun with another release is refused (or
redone with --overwrite) as a rerun with another VAE is. Models run in --precision (fp32 by default; bf16 as
the official pipeline runs them, half the memory: umT5-xxl is 23 GB in fp32) on --device; the cache records it
and stores float32 latents either way.

Layer: official (below the command line, above data): data/encode.py registers `encode` and cannot import
this room, so `register` here adds --official to that parser and routes it (hybridmem.cli registers
`encode` through this module).

Shape glossary: T video frames, F latent frames (Fc context, Ft target), C latent channels (16), h/w latent
grid, L caption tokens (512), Lp a prompt's tokens, Dc caption width.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hybridmem.errors import ConfigError, DataError
from hybridmem.validation import check_choice

TEMPORAL_STRIDE = 4  # Wan2.1's VAE
FRAME_MULTIPLE = 16  # the VAE's factor 8 times the DiT's patch 2


def release_vae_sha256(release) -> str:
    """The identity of the release's VAE: the content hash of its file (what a cache and a fine-tuned model
    record as `vae_sha256`)."""
    from hybridmem import runlock

    return runlock.file_sha256(release.vae_file)


def text_encoder_record(release) -> dict:
    """The text encoder's file, by name and size (hashing umT5-xxl's 11 GB for every rerun would cost
    minutes; a replaced file of another size is noticed)."""
    return {"file": release.text_encoder_file.name, "bytes": release.text_encoder_file.stat().st_size}


def encode_official_clip(vae, text_encoder, tokenizer, clip, device, dtype=None) -> tuple[dict, dict]:
    """One Clip -> (tensors, metadata) for the cache: the official latents, cameras, and the caption's
    umT5 embedding without its zero rows."""
    import torch
    from einops import rearrange

    from hybridmem.data.encode import clip_metadata, latent_cameras
    from hybridmem.geometry import normalised_intrinsics

    height, width = clip.frames.shape[1:3]
    if height % FRAME_MULTIPLE or width % FRAME_MULTIPLE:
        raise DataError(
            f"{clip.source}: frames of {width}x{height}; the official model needs multiples of "
            f"{FRAME_MULTIPLE} both ways (Wan2.1's VAE factor 8 times the DiT patch 2); generate clips of "
            "such a size (the paper's: 832x480)"
        )
    cameras, _, _ = latent_cameras(clip.cameras, clip.context_frames, TEMPORAL_STRIDE)
    tensors = {
        "cameras": torch.from_numpy(cameras),
        "intrinsics": torch.from_numpy(normalised_intrinsics(clip.intrinsics, width, height)),
    }
    with torch.no_grad():
        for name, segment in (("context", clip.context), ("target", clip.target)):
            frames = torch.from_numpy(np.ascontiguousarray(clip.frames[segment]))  # T H W 3 uint8
            video = rearrange(frames, "t h w c -> 1 c t h w").float() / 127.5 - 1.0  # 1 3 T H W
            latents = vae.encode(video.to(device=device, dtype=dtype or torch.float32))  # 1 C F h w
            tensors[f"{name}_latents"] = rearrange(latents[0], "c f h w -> f c h w").float().cpu()
        ids, mask = tokenizer([clip.caption])  # 1 L
        embedding = text_encoder.encode_prompt(ids.to(device), mask.to(device))  # 1 L Dc
        length = int(mask.sum())
        tensors["caption_embedding"] = embedding[0, :length].float().cpu()  # Lp Dc
    return tensors, clip_metadata(clip)


def encode_official_split(
    data_dir: str | Path,
    official: str | Path,
    out_dir: str | Path,
    split: str | None = "train",
    device: str = "auto",
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    precision: str = "fp32",
) -> dict:
    """Encode every clip of a split not yet in the cache with the release in `official` (its models in
    `precision`, "fp32" or "bf16"); returns
    {"encoded", "skipped", "total"}. The cache is filled as hybridmem.data.encode.encode_split fills it, by
    the same fill_cache (shards, resume, stale entries refused without `overwrite`)."""
    import dataclasses
    import functools

    from hybridmem import runlock
    from hybridmem.data.encode import fill_cache, open_split
    from hybridmem.device import resolve_device
    from hybridmem.official.release import find_release
    from hybridmem.official.text import TEXT_LENGTH, load_text_encoder, load_tokenizer
    from hybridmem.official.vae import load_wan_vae

    # 1. inputs and the cache's identity (one release's VAE, one split)
    out_dir, folders = open_split(data_dir, split, out_dir, shard)
    release = find_release(official)
    torch_device = resolve_device(device)
    check_choice(precision, ("fp32", "bf16"), "precision")
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    vae_sha256 = release_vae_sha256(release)
    index = {
        "vae": str(release.vae_file.resolve()),
        "vae_config": runlock.normalised({"official": dataclasses.asdict(release.vae_config)}),
        "vae_sha256": vae_sha256,
        "split": split,
        "data": str(Path(data_dir).resolve()),
        "temporal_stride": TEMPORAL_STRIDE,
        "store_logvar": False,
        "content_records": True,
        "official": str(Path(official).resolve()),
        "caption_length": TEXT_LENGTH,  # caption_embedding rows when read (zeros past the prompt)
        "precision": precision,
    }
    made_from = {
        "vae_sha256": vae_sha256,
        "store_logvar": False,
        "text_encoder": text_encoder_record(release),
        "precision": precision,
    }

    # 2. the release's VAE, text encoder and tokenizer, loaded for the first clip to encode (none when the
    # cache holds them all)
    @functools.cache
    def release_models() -> tuple:
        vae = load_wan_vae(release.vae_file, release.vae_config, dtype=dtype, device=torch_device)
        text_encoder = load_text_encoder(
            release.text_encoder_file, release.text_config, dtype=dtype, device=torch_device
        )
        return vae, text_encoder, load_tokenizer(release.tokenizer_folder)

    def encode_one(clip) -> tuple[dict, dict]:
        vae, text_encoder, tokenizer = release_models()
        return encode_official_clip(vae, text_encoder, tokenizer, clip, torch_device, dtype)

    # 3. encode what the cache lacks
    return fill_cache(
        out_dir,
        folders,
        index,
        made_from,
        encode_one,
        shard=shard,
        overwrite=overwrite,
        progress=progress,
        desc="encode (official)",
        models="the release's models",
    )


def run(args: argparse.Namespace) -> int:
    """`encode`: --official DIR here, --vae VAE in hybridmem.data.encode."""
    from hybridmem.data import encode
    from hybridmem.runfolder import parse_shard

    if args.official is None:
        if args.precision is not None:
            raise ConfigError("--precision goes with --official (the release's models); drop it")
        return encode.run(args)
    given = [
        flag
        for flag, value in (
            ("--vae", args.vae),
            ("--store-logvar", args.store_logvar),
            ("--store-warp", args.store_warp),
            ("--warp-source", args.warp_source != "context"),
        )
        if value
    ]
    if given:
        raise ConfigError(
            f"--official DIR brings its own VAE (Wan2.1's, no warp or log-variance); drop {given[0]}"
        )
    summary = encode_official_split(
        args.data,
        args.official,
        args.out,
        args.split or None,
        args.device,
        progress=True,
        shard=parse_shard(args.shard),
        overwrite=args.overwrite,
        precision=args.precision or "fp32",
    )
    print(
        f"encode: {summary['encoded']} clips encoded by the release's Wan2.1 VAE and umT5, "
        f"{summary['skipped']} already cached -> {args.out}"
    )
    return 0


def register(subparsers) -> None:
    """The `encode` command of hybridmem.data.encode, with --official DIR routed here."""
    from hybridmem.data import encode

    encode.register(subparsers)
    parser = subparsers.choices["encode"]
    parser.add_argument(
        "--official",
        default=None,
        metavar="DIR",
        help="encode with the released Wan2.1 VAE and umT5 in DIR (the official ckpts layout) instead of "
        "--vae: the cache `train world --official DIR` fine-tunes HyDRA on; captions embedded too",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="--official: the release models' dtype (default fp32; bf16 as the official pipeline: half the "
        "memory)",
    )
    parser.set_defaults(func=run)
