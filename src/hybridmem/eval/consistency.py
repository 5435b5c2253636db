"""VBench subject and background consistency.

VBench (Huang et al. 2024) scores a video's temporal consistency from per-frame features f_t, each
L2-normalised: for every frame t > 0 it averages the cosine similarity to the previous frame and to the first
frame, each clamped at 0 from below (VBench's `max(0.0, F.cosine_similarity(...))`), and the score is the mean
over t > 0 (T - 1 terms). Subject consistency uses DINO ViT-B/16 class tokens, background consistency CLIP
ViT-B/16 image embeddings (hybridmem.eval.features). A video of one frame has no score (NaN).

Shape letters: T frames, D feature width.
"""

from __future__ import annotations

import math

import torch.nn.functional as F


def vbench_consistency(features: "T D") -> float:
    """Mean over t > 0 of (max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2."""
    if features.shape[0] < 2:
        return math.nan
    unit = F.normalize(features.double(), dim=-1)  # "T D"
    to_previous = (unit[1:] * unit[:-1]).sum(-1).clamp(min=0.0)  # "T-1"
    to_first = (unit[1:] * unit[:1]).sum(-1).clamp(min=0.0)  # "T-1"
    return float(((to_previous + to_first) / 2).mean())


def subject_consistency(dino, frames: "T H W 3") -> float:
    """VBench subject consistency of a uint8 video with a `DinoEncoder`."""
    return vbench_consistency(dino.class_features(frames))


def background_consistency(clip, frames: "T H W 3") -> float:
    """VBench background consistency of a uint8 video with a `ClipEncoder`."""
    return vbench_consistency(clip.image_embeddings(frames))
