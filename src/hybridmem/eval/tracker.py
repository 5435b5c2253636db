"""A weight-free subject tracker for predicted boxes: colour-histogram matching seeded from the context.

The template is the joint RGB histogram (BINS per channel) of the subject's last visible context box. In
each predicted frame every box of the template's size on a regular grid of positions (stride: a quarter of
the box's shorter side) is scored by the Bhattacharyya coefficient sum_i sqrt(p_i q_i) between its
normalised histogram and the template's; the best box wins, ties going to the box nearest the previous one.
Histograms of all positions come from an integral histogram, so a frame costs O(H W BINS^3) once plus O(1)
per position. The search covers the whole frame, because a re-entering subject may come back anywhere.

This is deliberately simple: it follows a subject whose colours differ from the background, and it tells the
report where the model put the subject when it did not put it where the ground truth has it. It does not
decide whether the subject is visible: the frames to score are those where the ground truth shows it.

Shape letters: T frames, H/W pixels, Q histogram bins (BINS^3).
"""

from __future__ import annotations

import numpy as np

BINS = 4


def _bin_indices(frame: "H W 3", bins: int) -> "H W":
    quantised = (frame.astype(np.int64) * bins) // 256  # "H W 3" in [0, bins)
    return (quantised[..., 0] * bins + quantised[..., 1]) * bins + quantised[..., 2]


def colour_histogram(frame: "H W 3", box: "4", bins: int = BINS) -> np.ndarray:
    """Normalised joint RGB histogram "Q" of the pixels of an integer-rounded box."""
    x0, y0, x1, y1 = _round_box(box, frame.shape[:2])
    indices = _bin_indices(frame[y0:y1, x0:x1], bins).ravel()
    counts = np.bincount(indices, minlength=bins**3).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def _round_box(box: "4", size: tuple[int, int]) -> tuple[int, int, int, int]:
    height, width = size
    x0, y0 = int(np.clip(np.floor(box[0]), 0, width - 1)), int(np.clip(np.floor(box[1]), 0, height - 1))
    x1, y1 = int(np.clip(np.ceil(box[2]), x0 + 1, width)), int(np.clip(np.ceil(box[3]), y0 + 1, height))
    return x0, y0, x1, y1


def integral_histogram(frame: "H W 3", bins: int = BINS) -> "H+1 W+1 Q":
    """I[y, x, q] = number of pixels of bin q in rows < y and columns < x."""
    height, width = frame.shape[:2]
    one_hot = np.zeros((height + 1, width + 1, bins**3), dtype=np.float32)
    rows, cols = np.indices((height, width))
    one_hot[rows + 1, cols + 1, _bin_indices(frame, bins)] = 1.0
    return one_hot.cumsum(axis=0).cumsum(axis=1)


def best_box(
    frame: "H W 3", template: np.ndarray, box_size: tuple[int, int], previous: "4", bins: int = BINS
):
    """The box of `box_size` (h, w) whose histogram best matches `template`; returns (box "4", score)."""
    height, width = frame.shape[:2]
    box_h, box_w = min(box_size[0], height), min(box_size[1], width)
    stride = max(1, min(box_h, box_w) // 4)
    integral = integral_histogram(frame, bins)
    # 1. candidate top-left corners on the stride grid, always including the last valid position
    ys = np.unique(np.append(np.arange(0, height - box_h + 1, stride), height - box_h))
    xs = np.unique(np.append(np.arange(0, width - box_w + 1, stride), width - box_w))
    top, left = np.meshgrid(ys, xs, indexing="ij")  # "Ny Nx"
    # 2. all candidate histograms at once from the integral histogram
    counts = (
        integral[top + box_h, left + box_w]
        - integral[top, left + box_w]
        - integral[top + box_h, left]
        + integral[top, left]
    )  # "Ny Nx Q"
    scores = np.sqrt(np.maximum(counts, 0.0) / (box_h * box_w) * template).sum(-1)  # "Ny Nx"
    # 3. best score; among near-ties the box closest to the previous one
    centre_x, centre_y = (previous[0] + previous[2]) / 2, (previous[1] + previous[3]) / 2
    distance = np.hypot(left + box_w / 2 - centre_x, top + box_h / 2 - centre_y)
    candidates = scores >= scores.max() - 1e-9
    flat = np.flatnonzero(candidates.ravel())[np.argmin(distance.ravel()[candidates.ravel()])]
    y, x = int(top.ravel()[flat]), int(left.ravel()[flat])
    return np.array([x, y, x + box_w, y + box_h], dtype=np.float64), float(scores.ravel()[flat])


def track_boxes(
    frames: "T H W 3",
    template_frame: "H W 3",
    template_box: "4",
    visible: np.ndarray | None = None,
    bins: int = BINS,
) -> "T 4":
    """Boxes of the template subject in each frame; NaN rows where `visible` ("T" bool) is False."""
    template = colour_histogram(template_frame, template_box, bins)
    x0, y0, x1, y1 = _round_box(template_box, template_frame.shape[:2])
    box_size = (y1 - y0, x1 - x0)
    boxes = np.full((frames.shape[0], 4), np.nan)
    previous = np.array([x0, y0, x1, y1], dtype=np.float64)
    for index, frame in enumerate(frames):
        if visible is not None and not visible[index]:
            continue
        boxes[index], _ = best_box(frame, template, box_size, previous, bins)
        previous = boxes[index]
    return boxes
