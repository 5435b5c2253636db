"""Pixel metrics that need no weights: PSNR and SSIM over frames, re-entry windows, subject boxes, background.

Shape glossary: T frames, H/W pixels, C colour channels (3), S subjects. Frames are "T H W 3" uint8 RGB;
they are mapped to [0, 1] (x / 255) before any metric, so PSNR and SSIM use a data range of 1.

Conventions (documented here once, used by the report):
- Whole-frame PSNR (`psnr`): PSNR of a frame = 10 log10(1 / MSE) over all its pixels and channels, capped at
  `PSNR_CAP_DB` (100 dB), so identical frames score exactly 100 dB; a clip's PSNR is the mean of its
  per-frame PSNRs (the paper's per-frame convention). Whole-frame SSIM likewise: mean of per-frame SSIMs.
- Region metrics (`reentry_psnr`/`_ssim`, `reentry_box_psnr`/`_ssim`, `background_psnr`/`_ssim`): one value
  per region per clip. PSNR from the squared error pooled over every pixel (and channel) of the region in all
  of the clip's target frames: 10 log10(1 / mean squared error); SSIM = mean of the SSIM map over the same
  pixels. No per-frame value is capped or averaged, so one wrong re-entering subject among three perfect
  ones dominates the pooled error instead of being averaged with two 100 dB frames. The pooled PSNR is still
  capped at 100 dB (reached only when the region is identical, or nearly so over millions of pixels).
- SSIM: Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03 (Wang et al. 2004), computed per channel and
  averaged over channels; variances are clamped at 0. The map is computed with reflect padding (5 px) so it
  has one value per pixel; a frame's score is the mean of the whole map, as torchmetrics 1.9
  `structural_similarity_index_measure` does (tested to 1e-6 relative). scikit-image's
  `structural_similarity(gaussian_weights=True, sigma=1.5, data_range=1)` differs on three counts: it
  averages the map without its 5-pixel border, it pads with half-sample symmetric reflection (scipy's
  'reflect', ours is 'mirror'), and by default it scales the variances by N / (N - 1) (sample covariance,
  N = 121). Measured with benchmarks/ssim_vs_skimage.py (scikit-image 0.26): up to 2.6e-2 per frame on
  rendered 128 px clips (copy-last vs target; clip means 0.8-1.7e-2), 1e-4 to 2e-3 on synthetic 64-256 px
  frames. It is not a constant offset: compare SSIMs only within one implementation.
- Boxes are pixel edges (x0, y0, x1, y1): a box covers columns x0 .. x1 - 1 and rows y0 .. y1 - 1; a box
  of NaNs means "not visible".
- Background = pixels farther than `BACKGROUND_MARGIN` (10 px, twice the SSIM window radius) from every
  ground-truth subject pixel (Chebyshev distance). With that margin any change confined to within 5 px of
  the subject (a blanked subject, or one drawn up to 5 px off) leaves background PSNR and background SSIM
  exactly unchanged: no background pixel's SSIM window reaches the changed pixels.
- Re-entry: an "entry" event in the target segment whose subject has an earlier "exit" event. The re-entry
  window is the whole target frames from the clip's first re-entry to the end; the re-entry box region is,
  for each re-entering subject, its ground-truth box in the frames from its re-entry on (the union when a
  clip has several re-entries).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from einops import rearrange
from scipy import ndimage

from hybridmem.errors import DataError

PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
BACKGROUND_MARGIN = 2 * (SSIM_WINDOW // 2)


def check_videos(pred: "T H W 3", target: "T H W 3") -> None:
    """Raise `DataError` unless both are uint8 videos of one shape."""
    for name, video in (("prediction", pred), ("target", target)):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise DataError(
                f"{name}: expected a 'T H W 3' uint8 RGB video, got dtype {video.dtype} shape {video.shape}"
            )
    if pred.shape != target.shape:
        raise DataError(
            f"prediction shape {pred.shape} != target shape {target.shape}; generate as many frames as the "
            "target segment has, at the clip's resolution"
        )


def to_unit(frames: "T H W 3") -> "T 3 H W":
    """uint8 frames -> float64 tensor in [0, 1], channels first."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(frames)).double() / 255.0, "t h w c -> t c h w")


def _masked_mean(values: "T H W", mask: "T H W | None") -> np.ndarray:
    """Mean over pixels per frame ("T"), restricted to `mask`; NaN for a frame whose mask is empty."""
    if mask is None:
        return values.mean(axis=(1, 2))
    mask = mask.astype(bool)
    count = mask.sum(axis=(1, 2))
    total = np.where(mask, values, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def psnr_per_frame(pred: "T H W 3", target: "T H W 3", mask: "T H W | None" = None) -> np.ndarray:
    """PSNR in dB per frame ("T"), capped at PSNR_CAP_DB; with `mask`, over masked pixels (NaN if none)."""
    check_videos(pred, target)
    squared_error = ((pred.astype(np.float64) - target.astype(np.float64)) / 255.0) ** 2  # "T H W 3"
    mse = _masked_mean(squared_error.mean(axis=-1), mask)  # "T"
    with np.errstate(divide="ignore", invalid="ignore"):
        psnr = 10.0 * np.log10(1.0 / mse)
    return np.where(np.isnan(mse), np.nan, np.minimum(psnr, PSNR_CAP_DB))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps ("K" = size) centred on the middle tap."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def _blur(images: "T H W C", taps: np.ndarray) -> "T H W C":
    """Separable Gaussian blur over H and W, reflect borders (scipy 'mirror' = torch 'reflect': dcb|abcd).

    scipy's float64 filters run ~5x faster on CPU than torch's float64 conv2d, which has no fast kernel.
    """
    rows = ndimage.correlate1d(images, taps, axis=2, mode="mirror")
    return ndimage.correlate1d(rows, taps, axis=1, mode="mirror")


def ssim_map(pred: "T H W 3", target: "T H W 3") -> "T H W":
    """SSIM map per pixel (mean over colour channels), same size as the frames (reflect padding)."""
    check_videos(pred, target)
    height, width = pred.shape[1:3]
    radius = SSIM_WINDOW // 2
    if min(height, width) <= radius:
        raise DataError(f"SSIM needs frames larger than {radius} px on each side, got {height}x{width}")
    x = pred.astype(np.float64) / 255.0  # "T H W 3"
    y = target.astype(np.float64) / 255.0
    taps = gaussian_window()
    mu_x, mu_y = _blur(x, taps), _blur(y, taps)
    # Clamp: E[x^2] - mu^2 can dip below 0 by rounding on flat regions.
    var_x = np.maximum(_blur(x * x, taps) - mu_x**2, 0.0)
    var_y = np.maximum(_blur(y * y, taps) - mu_y**2, 0.0)
    cov_xy = _blur(x * y, taps) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(axis=-1)  # "T H W"


def ssim_per_frame(pred: "T H W 3", target: "T H W 3", mask: "T H W | None" = None) -> np.ndarray:
    """SSIM per frame ("T"): mean of the SSIM map over all pixels or over the masked ones (NaN if none)."""
    return _masked_mean(ssim_map(pred, target), mask)


# --- regions --------------------------------------------------------------------------------------


def boxes_from_masks(masks: "T H W") -> "T 4":
    """Tight pixel-edge box (x0, y0, x1, y1) of each frame's True pixels; NaN where a frame has none."""
    masks = masks.astype(bool)
    boxes = np.full((masks.shape[0], 4), np.nan)
    for index, mask in enumerate(masks):
        rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
        if rows.any():
            y0, y1 = np.flatnonzero(rows)[[0, -1]]
            x0, x1 = np.flatnonzero(cols)[[0, -1]]
            boxes[index] = (x0, y0, x1 + 1, y1 + 1)
    return boxes


def masks_from_boxes(boxes: "T 4", height: int, width: int) -> "T H W":
    """Boolean masks of the pixels whose centres lie inside each box; all False for a NaN box."""
    centres_x = np.arange(width) + 0.5
    centres_y = np.arange(height) + 0.5
    masks = np.zeros((boxes.shape[0], height, width), dtype=bool)
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        if np.isnan(x0):
            continue
        inside_x = (centres_x >= x0) & (centres_x < x1)
        inside_y = (centres_y >= y0) & (centres_y < y1)
        masks[index] = inside_y[:, None] & inside_x[None, :]
    return masks


def background_mask(instance_ids: "T H W", margin: int = BACKGROUND_MARGIN) -> "T H W":
    """Pixels farther than `margin` px (Chebyshev) from every subject pixel (instance id > 0)."""
    subject = instance_ids > 0
    if margin > 0:
        subject = ndimage.maximum_filter(subject, size=(1, 2 * margin + 1, 2 * margin + 1), mode="constant")
    return ~subject


def reentry_events(events, context_frames: int) -> list[tuple[int, int]]:
    """(subject_id, target frame index) of each entry in the target segment that follows an exit."""
    reentries = []
    for event in events:
        if event.kind != "entry" or event.frame < context_frames:
            continue
        exited_before = any(
            other.subject_id == event.subject_id and other.kind == "exit" and other.frame < event.frame
            for other in events
        )
        if exited_before:
            reentries.append((event.subject_id, event.frame - context_frames))
    return sorted(reentries, key=lambda pair: (pair[1], pair[0]))


def pooled_psnr(pred: "T H W 3", target: "T H W 3", mask: "T H W | None" = None) -> float:
    """PSNR of the squared error pooled over every masked pixel and channel of all frames, capped at
    PSNR_CAP_DB; NaN when the mask is empty."""
    check_videos(pred, target)
    squared_error = ((pred.astype(np.float64) - target.astype(np.float64)) / 255.0) ** 2  # "T H W 3"
    per_pixel = squared_error.mean(axis=-1)  # "T H W"
    if mask is not None:
        mask = mask.astype(bool)
        if not mask.any():
            return math.nan
        per_pixel = per_pixel[mask]
    mse = float(per_pixel.mean())
    return PSNR_CAP_DB if mse == 0.0 else min(10.0 * math.log10(1.0 / mse), PSNR_CAP_DB)


def pooled_mean(values: "T H W", mask: "T H W") -> float:
    """Mean of a per-pixel map over every masked pixel of all frames; NaN when the mask is empty."""
    mask = mask.astype(bool)
    return float(values[mask].mean()) if mask.any() else math.nan


def reentry_regions(instance_ids: "T H W | None", reentries: list[tuple[int, int]], shape: tuple):
    """(window mask, box mask) "T H W" of a clip's re-entries (see the module docstring); box is None
    without instance masks."""
    frames, height, width = shape
    window = np.zeros(shape, dtype=bool)
    box = None if instance_ids is None else np.zeros(shape, dtype=bool)
    for subject_id, start in reentries:
        window[start:] = True
        if box is not None:
            boxes = boxes_from_masks(instance_ids[start:] == subject_id)
            box[start:] |= masks_from_boxes(boxes, height, width)
    return window, box


def pixel_metrics(
    pred: "T H W 3",
    target: "T H W 3",
    instance_ids: "T H W | None" = None,
    reentries: list[tuple[int, int]] | None = None,
) -> dict:
    """All weight-free pixel metrics of one clip's target segment; NaN where a region is absent.

    instance_ids: ground-truth instance ids of the target frames (0 = background), or None when the
    layout has no masks (then background and box metrics are NaN). reentries: from `reentry_events`.
    Returns whole-frame means of per-frame values, one pooled value per region, and the per-frame PSNR/SSIM
    curves (for plots).
    """
    reentries = reentries or []
    # 1. whole frames: mean of per-frame values
    psnr = psnr_per_frame(pred, target)
    ssim_values = ssim_map(pred, target)  # "T H W"
    ssim = ssim_values.mean(axis=(1, 2))
    result = {
        "psnr": float(psnr.mean()),
        "ssim": float(ssim.mean()),
        "psnr_per_frame": psnr.tolist(),
        "ssim_per_frame": ssim.tolist(),
    }
    # 2. background outside the (dilated) ground-truth subject masks, pooled over the clip
    if instance_ids is not None:
        background = background_mask(instance_ids)
        result["background_psnr"] = pooled_psnr(pred, target, background)
        result["background_ssim"] = pooled_mean(ssim_values, background)
    else:
        result["background_psnr"] = result["background_ssim"] = math.nan
    # 3. re-entry window and re-entry boxes, each pooled over the clip
    result["reentry_psnr"] = result["reentry_ssim"] = math.nan
    result["reentry_box_psnr"] = result["reentry_box_ssim"] = math.nan
    if reentries:
        window, box = reentry_regions(instance_ids, reentries, ssim_values.shape)
        result["reentry_psnr"] = pooled_psnr(pred, target, window)
        result["reentry_ssim"] = pooled_mean(ssim_values, window)
        if box is not None:
            result["reentry_box_psnr"] = pooled_psnr(pred, target, box)
            result["reentry_box_ssim"] = pooled_mean(ssim_values, box)
    result["num_reentries"] = len(reentries)
    return result
