"""How far our SSIM (hybridmem.eval.metrics, = torchmetrics 1.9) is from scikit-image's, per frame.

    python benchmarks/ssim_vs_skimage.py                          # synthetic frames only
    python benchmarks/ssim_vs_skimage.py --data runs/world/test   # plus rendered clips (target vs copy-last)

scikit-image is not a dependency; install it anywhere on PYTHONPATH (e.g. `pip install --target DIR
scikit-image lazy_loader` then PYTHONPATH=DIR). It is called as structural_similarity(gaussian_weights=True,
sigma=1.5, data_range=1.0, channel_axis=-1), once with use_sample_covariance=False (Wang et al.'s
population statistics, as ours) and once with its default True. Prints the largest and mean absolute
per-frame difference for each setting.

Measured 2026-11 on the 2-core CPU, scikit-image 0.26.0, 4 rendered 128x128 test clips (33 target frames):
rendered clips (copy-last vs target) differ by up to 2.6e-2 per frame (clip means 0.8-1.7e-2); synthetic
frames by 1e-4 to 2e-3 (largest on small smooth frames).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hybridmem.eval import metrics


def _skimage_ssim(pred: "H W 3", target: "H W 3", sample_covariance: bool) -> float:
    from skimage.metrics import structural_similarity

    return structural_similarity(
        pred.astype(np.float64) / 255.0,
        target.astype(np.float64) / 255.0,
        gaussian_weights=True,
        sigma=1.5,
        data_range=1.0,
        channel_axis=-1,
        use_sample_covariance=sample_covariance,
    )


def _differences(pred: "T H W 3", target: "T H W 3") -> dict:
    ours = metrics.ssim_per_frame(pred, target)
    result = {}
    for sample_covariance in (False, True):
        theirs = np.array([_skimage_ssim(p, t, sample_covariance) for p, t in zip(pred, target, strict=True)])
        result[sample_covariance] = np.abs(ours - theirs)
    return result


def _synthetic(size: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Four frame pairs: 'noise' (independent-ish random pixels) or 'smooth' (blurred, shifted by 1 px)."""
    if kind == "noise":
        target = rng.integers(0, 256, size=(4, size, size, 3), dtype=np.uint8)
        pred = ((target.astype(int) * 3 + rng.integers(0, 256, size=target.shape)) // 4).astype(np.uint8)
        return pred, target
    from scipy import ndimage

    base = ndimage.gaussian_filter(rng.random((4, size + 2, size + 2, 3)), sigma=(0, 4, 4, 0))
    base = (base - base.min()) / (base.max() - base.min()) * 255
    return base[:, 1:-1, 2:].astype(np.uint8)[:, :, :size], base[:, 1:-1, 1:-1].astype(np.uint8)


def _rendered(folder: Path, limit: int):
    from hybridmem.data.hmworld import load_clip

    for clip_folder in sorted(path for path in folder.iterdir() if path.is_dir())[:limit]:
        clip = load_clip(clip_folder)
        target = clip.frames[clip.target]
        copy_last = np.repeat(clip.frames[clip.context_frames - 1][None], target.shape[0], axis=0)
        yield clip_folder.name, target.shape[1:3], copy_last, target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="a split folder of rendered clips")
    parser.add_argument("--clips", type=int, default=4, help="clips of --data to use (default 4)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for size in (64, 128, 256):
        for kind in ("noise", "smooth"):
            rows.append((f"{kind} {size}x{size}", _differences(*_synthetic(size, kind, rng))))
    if args.data:
        for name, (height, width), pred, target in _rendered(args.data, args.clips):
            rows.append((f"clip {name} {width}x{height} copy-last", _differences(pred, target)))
    print("| frames | max abs diff (population cov.) | mean | max (skimage default: sample cov.) | mean |")
    print("|---|---:|---:|---:|---:|")
    for label, differences in rows:
        population, sample = differences[False], differences[True]
        print(
            f"| {label} | {population.max():.2e} | {population.mean():.2e} | "
            f"{sample.max():.2e} | {sample.mean():.2e} |"
        )


if __name__ == "__main__":
    main()
