"""RoIAlign in plain torch (torchvision cannot be installed next to this torch).

Semantics follow torchvision.ops.roi_align (Mask R-CNN's RoIAlign) with `aligned=True` by default:
- a box (x0, y0, x1, y1) is given in input coordinates and multiplied by `spatial_scale`; with
  aligned=True half a cell is subtracted so that a feature cell's centre sits at integer + 0.5 in those
  coordinates, i.e. box edges are pixel edges (aligned=False keeps the legacy "+0 / min size 1" form);
- each of the out_h x out_w bins averages grid_h x grid_w bilinear samples placed at the centres of a
  regular sub-grid; grid = `sampling_ratio` per side, or ceil(box size / bins) when sampling_ratio <= 0;
- a sample more than one cell outside the map contributes 0; otherwise its coordinate is clamped to the map;
- with the adaptive grid, a box that is empty or reversed (x1 < x0 or y1 < y0) gets zeros, as torchvision's
  loops over a grid of <= 0 samples do; with a fixed sampling_ratio it is sampled as given (bins of negative
  size), as in torchvision.

Shape letters: B batch, C channels, H/W feature grid, R boxes, h/w output bins, g sub-samples per bin
side, Ny/Nx samples per box along y/x (h g, w g).
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


def _sample_coords(start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: int) -> torch.Tensor:
    """Box starts and bin sizes "R" -> sample positions "R (bins grid)": bin * size + sub-sample centre."""
    dtype = start.dtype
    offsets = (
        torch.arange(bins, dtype=dtype)[:, None] + (torch.arange(grid, dtype=dtype)[None, :] + 0.5) / grid
    )
    return start[:, None] + bin_size[:, None] * offsets.flatten()[None, :]


def _pool(
    features: "B C H W", batch_index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, grid: tuple
) -> torch.Tensor:
    """Bilinear samples at ys "R Ny" x xs "R Nx" of map batch_index "R", averaged per bin -> "R C h w"."""
    _, _, height, width = features.shape
    y_low, y_high, wy_low, wy_high, y_valid = _bilinear_weights(ys, height)
    x_low, x_high, wx_low, wx_high, x_valid = _bilinear_weights(xs, width)
    b = batch_index[:, None, None]  # "R 1 1"

    def corner(y_index, x_index, y_weight, x_weight):
        values = features[b, :, y_index[:, :, None], x_index[:, None, :]]  # "R Ny Nx C"
        return values * (y_weight[:, :, None] * x_weight[:, None, :])[..., None]

    samples = (
        corner(y_low, x_low, wy_low, wx_low)
        + corner(y_low, x_high, wy_low, wx_high)
        + corner(y_high, x_low, wy_high, wx_low)
        + corner(y_high, x_high, wy_high, wx_high)
    )  # "R Ny Nx C"
    samples = samples * (y_valid[:, :, None] & x_valid[:, None, :]).to(samples.dtype)[..., None]
    grid_h, grid_w = grid
    binned = rearrange(samples, "r (h gh) (w gw) c -> r c h w (gh gw)", gh=grid_h, gw=grid_w)
    return binned.sum(-1) / max(grid_h * grid_w, 1)


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
    offset = 0.5 if aligned else 0.0
    boxes = boxes.to(features.dtype)
    batch_index = boxes[:, 0].long()
    # 1. boxes in feature coordinates and bin sizes
    start_x, start_y = boxes[:, 1] * spatial_scale - offset, boxes[:, 2] * spatial_scale - offset
    box_w, box_h = (boxes[:, 3] - boxes[:, 1]) * spatial_scale, (boxes[:, 4] - boxes[:, 2]) * spatial_scale
    if not aligned:  # legacy: force malformed boxes to 1x1
        box_w, box_h = box_w.clamp(min=1.0), box_h.clamp(min=1.0)
    bin_w, bin_h = box_w / out_w, box_h / out_h
    # 2. a fixed sub-grid: every box at once
    if sampling_ratio > 0:
        grid = (sampling_ratio, sampling_ratio)
        ys = _sample_coords(start_y, bin_h, out_h, sampling_ratio)  # "R (h g)"
        xs = _sample_coords(start_x, bin_w, out_w, sampling_ratio)  # "R (w g)"
        return _pool(features, batch_index, ys, xs, grid)
    # 3. adaptive sub-grid (ceil(box size / bins) per side): one box at a time
    pooled = features.new_zeros((boxes.shape[0], features.shape[1], out_h, out_w))
    for index in range(boxes.shape[0]):
        grid_h, grid_w = math.ceil(box_h[index] / out_h), math.ceil(box_w[index] / out_w)
        # An empty or reversed box has no samples on some side (grid <= 0): torchvision's loops then run
        # zero times and it returns zeros; a box reversed on both sides must not slip through as a
        # positive product of two negative grids.
        if grid_h <= 0 or grid_w <= 0:
            continue
        one = slice(index, index + 1)
        ys = _sample_coords(start_y[one], bin_h[one], out_h, grid_h)
        xs = _sample_coords(start_x[one], bin_w[one], out_w, grid_w)
        pooled[index] = _pool(features, batch_index[one], ys, xs, (grid_h, grid_w))[0]
    return pooled
