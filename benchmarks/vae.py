"""Reconstruction quality and speed of a trained VAE on whole held-out segments, beside the bicubic baseline.

    .venv/bin/python benchmarks/vae.py --vae src/hybridmem/assets/checkpoints/vae --data runs/ref_cpu/data \
        --split test --lengths 33,65 --json benchmarks/results/vae_cpu.json --plot docs/images/vae_psnr.png

For every clip of the split and every length L of `--lengths` (4k+1), the first L frames of the clip are
encoded and decoded as ONE segment (posterior mean, frames clamped), the way `hybridmem encode` and sampling
use the VAE, and scored per frame: PSNR (on [0, 1]) and SSIM (hybridmem.eval.metrics), then averaged per
frame index over clips. The same frames go through the trivial baseline of the same compression, each frame
area-downsampled by the VAE's spatial factor and upsampled bicubically, with no learning. A VAE that does
not beat that baseline is not worth its parameters; one whose curve falls with the frame index does not hold
whole segments. Throughput: frames per second of encode and of decode on the same segments (after one
untimed warm-up), on this machine's torch threads.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from hybridmem.data.encode import list_clip_folders
from hybridmem.data.hmworld import load_clip
from hybridmem.eval.metrics import psnr_per_frame, ssim_per_frame
from hybridmem.models.checkpoint import load_model
from hybridmem.runfolder import resolve_model_folder


def to_model(frames: "T H W 3") -> torch.Tensor:
    return rearrange(torch.from_numpy(frames).float() / 127.5 - 1.0, "t h w c -> 1 t c h w")


def to_uint8(video: torch.Tensor) -> "T H W 3":
    video = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(video[0], "t c h w -> t h w c").numpy()


def bicubic_baseline(frames: "T H W 3", factor: int) -> "T H W 3":
    video = rearrange(torch.from_numpy(frames).float() / 127.5 - 1.0, "t h w c -> t c h w")
    small = F.avg_pool2d(video, factor)
    return to_uint8(F.interpolate(small, scale_factor=factor, mode="bicubic", align_corners=False)[None])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vae", required=True, help="VAE model folder or training run")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=0, help="clips to score (0: all)")
    parser.add_argument("--lengths", default="33,65", help="comma-separated segment lengths (4k+1)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write the per-frame PSNR curves here (PNG)")
    args = parser.parse_args(argv)
    lengths = [int(value) for value in args.lengths.split(",")]
    vae = load_model(resolve_model_folder(args.vae)).eval()
    factor = vae.config.spatial_factor
    folders = list_clip_folders(args.data, args.split)
    if args.clips:
        folders = folders[: args.clips]
    clips = [load_clip(folder).frames for folder in folders]
    too_short = [length for length in lengths if any(len(frames) < length for frames in clips)]
    if too_short or not clips:
        parser.error(f"segments of {too_short} frames need clips at least that long (or no clips found)")

    results = {
        "vae": str(args.vae),
        "vae_config": {
            k: v for k, v in vae.config.to_dict().items() if k not in ("latent_shift", "latent_scale")
        },
        "data": str(args.data),
        "split": args.split,
        "clips": len(clips),
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "lengths": {},
    }
    with torch.no_grad():
        vae.decode(vae.encode(to_model(clips[0][: lengths[0]])).mode())  # warm-up, untimed
        for length in lengths:
            rows = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
            encode_s = decode_s = 0.0
            for frames in clips:
                segment = frames[:length]
                started = time.perf_counter()
                latents = vae.encode(to_model(segment)).mode()
                encode_s += time.perf_counter() - started
                started = time.perf_counter()
                decoded = vae.decode(latents)
                decode_s += time.perf_counter() - started
                reconstruction = to_uint8(decoded)
                baseline = bicubic_baseline(segment, factor)
                rows["psnr"].append(psnr_per_frame(reconstruction, segment))
                rows["ssim"].append(ssim_per_frame(reconstruction, segment))
                rows["bicubic_psnr"].append(psnr_per_frame(baseline, segment))
                rows["bicubic_ssim"].append(ssim_per_frame(baseline, segment))
            curves = {name: np.stack(values).mean(0) for name, values in rows.items()}
            total_frames = length * len(clips)
            results["lengths"][str(length)] = {
                "psnr": float(np.mean(rows["psnr"])),
                "ssim": float(np.mean(rows["ssim"])),
                "worst_frame_index_psnr": float(curves["psnr"].min()),
                "bicubic_psnr": float(np.mean(rows["bicubic_psnr"])),
                "bicubic_ssim": float(np.mean(rows["bicubic_ssim"])),
                "psnr_by_frame": [round(float(v), 3) for v in curves["psnr"]],
                "ssim_by_frame": [round(float(v), 4) for v in curves["ssim"]],
                "bicubic_psnr_by_frame": [round(float(v), 3) for v in curves["bicubic_psnr"]],
                "encode_frames_per_s": total_frames / encode_s,
                "decode_frames_per_s": total_frames / decode_s,
            }
            row = results["lengths"][str(length)]
            print(
                f"{length:3d} frames x {len(clips)} clips: PSNR {row['psnr']:.2f} dB (worst frame index "
                f"{row['worst_frame_index_psnr']:.2f}), SSIM {row['ssim']:.4f}; bicubic baseline "
                f"{row['bicubic_psnr']:.2f} dB / {row['bicubic_ssim']:.4f}; encode "
                f"{row['encode_frames_per_s']:.0f} frames/s, decode {row['decode_frames_per_s']:.0f} frames/s"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 3.5))
        styles = ["-", "--", "-.", ":"]
        for number, (length, row) in enumerate(results["lengths"].items()):
            # the grouped VAE's curves coincide where the segments overlap: its receptive field is one group
            axis.plot(
                row["psnr_by_frame"],
                linestyle=styles[number % len(styles)],
                linewidth=2.5 - number,
                label=f"VAE, {length}-frame segments",
            )
        longest = max(results["lengths"], key=int)
        axis.plot(
            results["lengths"][longest]["bicubic_psnr_by_frame"],
            color="gray",
            linewidth=1,
            label="bicubic baseline",
        )
        axis.set_xlabel("frame index in the segment")
        axis.set_ylabel("PSNR (dB)")
        axis.set_title(f"VAE reconstruction, {len(clips)} held-out {args.split} clips")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot, dpi=120)
        plt.close(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
