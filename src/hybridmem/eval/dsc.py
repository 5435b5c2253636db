"""Dynamic subject consistency (DSC), as defined by the HyDRA paper.

For one subject and one segment (predicted target, ground-truth target, or context frames):
1. CLIP ViT-B/16 patch tokens of each whole frame (class token dropped; hybridmem.eval.features);
2. RoIAlign 7x7 (sampling ratio 2, aligned) of the token grid on the subject's box mapped to patch-grid
   coordinates (x * grid_w / W, y * grid_h / H);
3. mean over the 7x7 bins, then L2-normalise: one embedding per frame in which the subject is visible
   (frames whose box is NaN are skipped).
A segment's score against another is the mean of all pairwise cosine similarities between their frames'
embeddings: DSC_ctx = predicted vs context, DSC_GT = predicted vs ground truth. A clip's DSC is the mean over
its subjects that have embeddings on both sides (NaN if none).

Note on the ceiling: because every frame is compared with every other frame, DSC_GT of a perfect prediction
is the subject's self-similarity across the target frames, which is 1 only when its appearance is constant.

Boxes: context and ground-truth boxes come from the instance masks. Predicted boxes are the ground-truth
boxes by default ("gt": measures whether the right subject is in the right place) or the colour-histogram
tracker's boxes ("tracker", hybridmem.eval.tracker), in the frames where the ground truth shows the subject.

Shape letters: T frames, H/W pixels, h/w patch grid, D feature width, N/M embeddings.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from hybridmem.eval.roi_align import roi_align

ROI_BINS = 7
ROI_SAMPLING_RATIO = 2


def boxes_to_grid(boxes: "T 4", image_size: tuple[int, int], grid_size: tuple[int, int]) -> "T 4":
    """Pixel-edge boxes of an H x W frame -> the same boxes in h x w patch-grid coordinates."""
    height, width = image_size
    grid_h, grid_w = grid_size
    scale = np.array([grid_w / width, grid_h / height, grid_w / width, grid_h / height])
    return np.asarray(boxes, dtype=np.float64) * scale


def roi_embeddings(patch_tokens: "T h w D", grid_boxes: "T 4") -> "N D":
    """Unit embeddings of the frames whose box is not NaN: RoIAlign 7x7, mean over bins, L2-normalise."""
    grid_boxes = np.asarray(grid_boxes, dtype=np.float64)
    visible = ~np.isnan(grid_boxes).any(axis=1)
    if not visible.any():
        return patch_tokens.new_zeros((0, patch_tokens.shape[-1]))
    frame_index = np.flatnonzero(visible).astype(np.float64)[:, None]
    rois = torch.from_numpy(np.concatenate([frame_index, grid_boxes[visible]], axis=1)).to(patch_tokens.dtype)
    feature_maps = rearrange(patch_tokens, "t h w d -> t d h w")
    pooled = roi_align(feature_maps, rois, (ROI_BINS, ROI_BINS), 1.0, ROI_SAMPLING_RATIO, aligned=True)
    return F.normalize(pooled.mean(dim=(2, 3)), dim=-1)  # "N D"


def mean_pairwise_cosine(embeddings_a: "N D", embeddings_b: "M D") -> float:
    """Mean of cos(a_i, b_j) over all pairs; NaN when either side is empty."""
    if embeddings_a.shape[0] == 0 or embeddings_b.shape[0] == 0:
        return math.nan
    unit_a = F.normalize(embeddings_a.double(), dim=-1)
    unit_b = F.normalize(embeddings_b.double(), dim=-1)
    return float((unit_a @ unit_b.T).mean())


def dsc_scores(
    clip_encoder,
    predicted: "Tt H W 3",
    ground_truth: "Tt H W 3",
    context: "Tc H W 3",
    predicted_boxes: dict,
    ground_truth_boxes: dict,
    context_boxes: dict,
) -> dict:
    """DSC_ctx and DSC_GT of one clip, averaged over subjects; the boxes dicts map subject id -> "T 4"."""
    image_size = predicted.shape[1:3]
    # 1. patch tokens once per segment, shared by all subjects
    tokens = {
        "predicted": clip_encoder.patch_tokens(predicted),
        "ground_truth": clip_encoder.patch_tokens(ground_truth),
        "context": clip_encoder.patch_tokens(context),
    }
    grid_size = tuple(tokens["predicted"].shape[1:3])
    # 2. per subject: embeddings of each segment, then pairwise scores
    per_subject = {}
    for subject_id in sorted(ground_truth_boxes):
        embeddings = {
            name: roi_embeddings(tokens[name], boxes_to_grid(boxes[subject_id], image_size, grid_size))
            for name, boxes in (
                ("predicted", predicted_boxes),
                ("ground_truth", ground_truth_boxes),
                ("context", context_boxes),
            )
            if subject_id in boxes
        }
        if "predicted" not in embeddings:
            continue
        per_subject[subject_id] = {
            "dsc_ctx": mean_pairwise_cosine(
                embeddings["predicted"], embeddings.get("context", torch.zeros(0, 1))
            ),
            "dsc_gt": mean_pairwise_cosine(embeddings["predicted"], embeddings["ground_truth"]),
        }
    # 3. clip score: mean over subjects that have a score
    result = {}
    for key in ("dsc_ctx", "dsc_gt"):
        values = [scores[key] for scores in per_subject.values() if not math.isnan(scores[key])]
        result[key] = float(np.mean(values)) if values else math.nan
    result["dsc_per_subject"] = {str(subject_id): scores for subject_id, scores in per_subject.items()}
    return result
