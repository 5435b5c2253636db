import math

import pytest
import torch

from hybridmem.eval.roi_align import roi_align


def _bilinear_reference(fmap, y, x):
    """torchvision's bilinear_interpolate, one scalar sample at a time."""
    channels, height, width = fmap.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(channels, dtype=fmap.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(math.floor(y)), int(math.floor(x))
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * fmap[:, y_low, x_low]
        + hy * lx * fmap[:, y_low, x_high]
        + ly * hx * fmap[:, y_high, x_low]
        + ly * lx * fmap[:, y_high, x_high]
    )


def _roi_align_reference(features, boxes, output_size, spatial_scale, sampling_ratio, aligned):
    out_h, out_w = output_size
    result = torch.zeros(len(boxes), features.shape[1], out_h, out_w, dtype=features.dtype)
    offset = 0.5 if aligned else 0.0
    for r, (b, x0, y0, x1, y1) in enumerate(boxes.tolist()):
        sx, sy = x0 * spatial_scale - offset, y0 * spatial_scale - offset
        w, h = (x1 - x0) * spatial_scale, (y1 - y0) * spatial_scale
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        bw, bh = w / out_w, h / out_h
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(h / out_h)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(w / out_w)
        for ph in range(out_h):
            for pw in range(out_w):
                total = torch.zeros(features.shape[1], dtype=features.dtype)
                for iy in range(gh):
                    for ix in range(gw):
                        y = sy + ph * bh + (iy + 0.5) * bh / gh
                        x = sx + pw * bw + (ix + 0.5) * bw / gw
                        total += _bilinear_reference(features[int(b)], y, x)
                result[r, :, ph, pw] = total / max(gh * gw, 1)
    return result


@pytest.mark.parametrize("sampling_ratio", [2, 0, -1])
@pytest.mark.parametrize("aligned", [True, False])
def test_matches_slow_reference(sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 9, 11, generator=generator, dtype=torch.float64)
    boxes = torch.tensor(
        [
            [0, 1.3, 2.2, 7.9, 8.1],
            [1, -2.0, -1.5, 4.0, 3.0],  # partly outside the map
            [1, 8.5, 6.0, 14.0, 12.0],  # beyond the right/bottom edges
            [0, 3.0, 3.0, 3.4, 3.2],  # smaller than a bin
            [0, 8.0, 7.0, 1.0, 2.0],  # reversed by more than a bin on both sides
            [1, 6.0, 1.0, 2.0, 8.0],  # reversed along x only
        ],
        dtype=torch.float64,
    )
    for scale in (1.0, 0.5):
        fast = roi_align(features, boxes, (7, 5), scale, sampling_ratio, aligned)
        slow = _roi_align_reference(features, boxes, (7, 5), scale, sampling_ratio, aligned)
        torch.testing.assert_close(fast, slow)


def test_constant_map_gives_constant_bins():
    features = torch.full((1, 2, 6, 6), 3.0)
    out = roi_align(features, torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]]), (7, 7))
    torch.testing.assert_close(out, torch.full((1, 2, 7, 7), 3.0))


def test_reversed_box_with_adaptive_grid_gives_zeros_like_torchvision():
    features = torch.randn(1, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reversed_boxes = torch.tensor([[0, 8.0, 8.0, 0.5, 0.5], [0, 1.0, 8.0, 8.0, 0.5]], dtype=torch.float64)
    out = roi_align(features, reversed_boxes, (7, 7), 1.0, -1, aligned=True)
    torch.testing.assert_close(out, torch.zeros(2, 2, 7, 7, dtype=torch.float64))
