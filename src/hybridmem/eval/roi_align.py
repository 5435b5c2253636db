"""RoIAlign in plain torch (torchvision cannot be installed next to this torch).

Semantics follow torchvision.ops.roi_align (Mask R-CNN's RoIAlign) with `aligned=True` by default:
- a box (x0, y0, x1, y1) is given in input coordinates and multiplied by `spatial_scale`; with
  aligned=True half a cell is subtracted so that a feature cell's centre sits at integer + 0.5 in those
  coordinates, i.e. box edges are pixel edges (aligned=False keeps the legacy "+0 / min size 1" form);
- each of the out_h x out_w bins averages grid_h x grid_w bilinear samples placed at the centres of a
  regular sub-grid; grid = `sampling_ratio` per side, or ceil(box size / bins) when sampling_ratio <= 0;
- a sample more than one cell outside the map contributes 0; otherwise its coordinate is clamped to the map.

Shape letters: B batch, C channels, H/W feature grid, R boxes, h/w output bins, g sub-samples.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange


def _bilinear_weights(coords: torch.Tensor, size: int) -> tuple:
    """Coordinates "N" along an axis of length `size` -> low/high indices, their weights, validity."""
    valid = (coords >= -1.0) & (coords <= size)
    coords = coords.clamp(min=0.0)
    low = coords.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coords = torch.where(at_edge, low.to(coords.dtype), coords)
    frac_high = coords - low.to(coords.dtype)
    return low, high, 1.0 - frac_high, frac_high, valid


def roi_align(
    features: "B C H W",
    boxes: "R 5",
    output_size: tuple[int, int] = (7, 7),
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> "R C h w":
    """Average of bilinear samples per bin for each box; boxes rows are (batch index, x0, y0, x1, y1)."""
    out_h, out_w = output_size
    _, channels, height, width = features.shape
    offset = 0.5 if aligned else 0.0
    pooled = features.new_zeros((boxes.shape[0], channels, out_h, out_w))
    # One box at a time: the adaptive sub-grid size differs per box; within a box everything is batched.
    for index, (batch_index, x0, y0, x1, y1) in enumerate(boxes.tolist()):
        start_x, start_y = x0 * spatial_scale - offset, y0 * spatial_scale - offset
        box_w, box_h = (x1 - x0) * spatial_scale, (y1 - y0) * spatial_scale
        if not aligned:  # legacy: force malformed boxes to 1x1
            box_w, box_h = max(box_w, 1.0), max(box_h, 1.0)
        bin_w, bin_h = box_w / out_w, box_h / out_h
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(box_h / out_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(box_w / out_w)
        if grid_h * grid_w == 0:  # empty box with adaptive sampling: torchvision returns zeros too
            continue
        # 1. sample coordinates: bin index * bin size + sub-sample centre
        dtype = features.dtype
        ys = (
            start_y
            + torch.arange(out_h, dtype=dtype)[:, None] * bin_h
            + (torch.arange(grid_h, dtype=dtype)[None, :] + 0.5) * bin_h / grid_h
        ).flatten()  # "(h g)"
        xs = (
            start_x
            + torch.arange(out_w, dtype=dtype)[:, None] * bin_w
            + (torch.arange(grid_w, dtype=dtype)[None, :] + 0.5) * bin_w / grid_w
        ).flatten()  # "(w g)"
        y_low, y_high, wy_low, wy_high, y_valid = _bilinear_weights(ys, height)
        x_low, x_high, wx_low, wx_high, x_valid = _bilinear_weights(xs, width)
        # 2. bilinear interpolation on the sample grid (outer products of the per-axis weights)
        fmap = features[int(batch_index)]  # "C H W"
        samples = (
            fmap[:, y_low][:, :, x_low] * (wy_low[:, None] * wx_low[None, :])
            + fmap[:, y_low][:, :, x_high] * (wy_low[:, None] * wx_high[None, :])
            + fmap[:, y_high][:, :, x_low] * (wy_high[:, None] * wx_low[None, :])
            + fmap[:, y_high][:, :, x_high] * (wy_high[:, None] * wx_high[None, :])
        )  # "C (h gh) (w gw)"
        samples = samples * (y_valid[:, None] & x_valid[None, :]).to(dtype)
        # 3. average the sub-samples of each bin
        samples = rearrange(samples, "c (h gh) (w gw) -> c h w (gh gw)", gh=grid_h, gw=grid_w)
        pooled[index] = samples.sum(-1) / max(grid_h * grid_w, 1)
    return pooled
