"""Dynamic subject consistency (DSC), the HyDRA paper's metric, in two named definitions.

Both compare a segment's subject embeddings with another segment's: DSC_ctx = predicted target vs context,
DSC_GT = predicted target vs ground-truth target; a score is the mean of all pairwise cosine similarities
between the two segments' per-frame embeddings (every frame with every frame), so DSC_GT of a perfect
prediction is the subject's self-similarity across the target frames, 1 only when its appearance is constant.
A frame's embedding: CLIP ViT-B/16 patch tokens (class token dropped; hybridmem.eval.features), RoIAlign 7x7
(aligned) of the token grid on the subject box, mean over the 7x7 bins, L2-normalised.

`official` (the default): the official eval_dsc.py of the HyDRA repository (commit f2c66606), step by step:
1. one box per frame around all subject pixels (its `cv2.boundingRect` of every red pixel of the dynamic
   mask), which is the union of the subjects' boxes; a frame without subject pixels is skipped;
2. each visible frame through CLIPProcessor: shorter side to 224 (PIL bicubic), centre crop 224 x 224
   (`ClipEncoder.patch_tokens_cropped`);
3. the box divided by the full frame's width and height, then multiplied by the patch grid side (14): the
   official scaling ignores the crop, so on a non-square frame the box does not line up with what the crop
   shows (on a 16:9 frame the crop keeps the middle 56% of the width; a subject near a side edge is pooled
   from the wrong place, or from outside the map);
4. RoIAlign with torchvision's default sampling ratio -1 (adaptive: ceil(box size / 7) samples per bin side).
When a segment (context, ground-truth target or predicted target) shows no subject in any frame, the official
script raises ValueError("No valid subject boxes were provided.") and gives no score; we record both DSC
values of that clip as NaN (n/a in the report, left out of the means) with the reason in `dsc_undefined`.
The official predicted boxes come from tracking the subject in the generated frames with YOLOv11 (the
release leaves `track_subject` undefined); here they are `--boxes gt` or `--boxes tracker`
(hybridmem.eval.protocol), each subject's boxes united per frame as in step 1.

`per-subject`: each subject scored on its own box and the clip's DSC the mean over subjects that have
embeddings on both sides (NaN if none); each whole frame squashed to 224 x 224 (`patch_tokens_squashed`) so
that a pixel box maps exactly onto the patch grid (x * grid_w / W, y * grid_h / H); RoIAlign sampling ratio 2.
Where the official definition misplaces boxes (non-square frames) or mixes subjects into one box (several
subjects, one of them wrong), this is the more faithful measurement; it is not the paper's number.

Shape letters: T frames, H/W pixels, h/w patch grid, D feature width, N/M embeddings, S subjects.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from hybridmem.eval.roi_align import roi_align
from hybridmem.validation import check_choice

ROI_BINS = 7
OFFICIAL_SAMPLING_RATIO = -1  # torchvision.ops.roi_align's default, which the official script keeps
PER_SUBJECT_SAMPLING_RATIO = 2
DSC_DEFINITIONS = {
    "official": "official eval_dsc.py: one box around all subjects per frame, CLIPProcessor resize + centre "
    "crop with boxes scaled to the full frame, RoIAlign sampling ratio -1",
    "per-subject": "per subject on its own box, frames squashed to the CLIP input so boxes align with the "
    "patch grid, RoIAlign sampling ratio 2, mean over subjects (not the paper's definition)",
}
SEGMENTS = ("predicted", "ground_truth", "context")


def boxes_to_grid(boxes: "T 4", image_size: tuple[int, int], grid_size: tuple[int, int]) -> "T 4":
    """Pixel-edge boxes of an H x W frame -> the same boxes in h x w patch-grid coordinates.

    With a squashed frame this is exact; it is also the official scaling (box / frame size * grid side),
    which the official script applies to centre-cropped frames as well."""
    height, width = image_size
    grid_h, grid_w = grid_size
    scale = np.array([grid_w / width, grid_h / height, grid_w / width, grid_h / height])
    return np.asarray(boxes, dtype=np.float64) * scale


def union_boxes(boxes_by_subject: dict, num_frames: int) -> "T 4":
    """One box per frame around every subject's box (the bounding box of all subject pixels); NaN rows
    where no subject is visible."""
    union = np.full((num_frames, 4), np.nan)
    for boxes in boxes_by_subject.values():
        boxes = np.asarray(boxes, dtype=np.float64)
        visible = ~np.isnan(boxes).any(axis=1)
        both = visible & ~np.isnan(union).any(axis=1)
        only_new = visible & ~both
        union[only_new] = boxes[only_new]
        union[both, :2] = np.minimum(union[both, :2], boxes[both, :2])
        union[both, 2:] = np.maximum(union[both, 2:], boxes[both, 2:])
    return union


def roi_embeddings(patch_tokens: "T h w D", grid_boxes: "T 4", sampling_ratio: int) -> "N D":
    """Unit embeddings of the frames whose box is not NaN: RoIAlign 7x7, mean over bins, L2-normalise."""
    grid_boxes = np.asarray(grid_boxes, dtype=np.float64)
    visible = ~np.isnan(grid_boxes).any(axis=1)
    if not visible.any():
        return patch_tokens.new_zeros((0, patch_tokens.shape[-1]))
    frame_index = np.flatnonzero(visible).astype(np.float64)[:, None]
    rois = torch.from_numpy(np.concatenate([frame_index, grid_boxes[visible]], axis=1)).to(patch_tokens.dtype)
    feature_maps = rearrange(patch_tokens, "t h w d -> t d h w")
    pooled = roi_align(feature_maps, rois, (ROI_BINS, ROI_BINS), 1.0, sampling_ratio, aligned=True)
    return F.normalize(pooled.mean(dim=(2, 3)), dim=-1)  # "N D"


def mean_pairwise_cosine(embeddings_a: "N D", embeddings_b: "M D") -> float:
    """Mean of cos(a_i, b_j) over all pairs; NaN when either side is empty."""
    if embeddings_a.shape[0] == 0 or embeddings_b.shape[0] == 0:
        return math.nan
    unit_a = F.normalize(embeddings_a.double(), dim=-1)
    unit_b = F.normalize(embeddings_b.double(), dim=-1)
    return float((unit_a @ unit_b.T).mean())


# --- official -------------------------------------------------------------------------------------


def official_embeddings(clip_encoder, frames: "T H W 3", boxes: "T 4") -> "N D":
    """The official per-frame embeddings of one segment: only frames with a box go through CLIP."""
    boxes = np.asarray(boxes, dtype=np.float64)
    visible = ~np.isnan(boxes).any(axis=1)
    if not visible.any():
        return torch.zeros(0, 1)
    tokens = clip_encoder.patch_tokens_cropped(frames[visible])  # "N h w D" of the centre crops
    side = tokens.shape[1]
    # the official scaling: normalised by the full frame, times the crop's grid side
    grid_boxes = boxes_to_grid(boxes[visible], frames.shape[1:3], (side, side))
    return roi_embeddings(tokens, grid_boxes, OFFICIAL_SAMPLING_RATIO)


def dsc_official(clip_encoder, frames: dict, boxes_by_segment: dict) -> dict:
    """frames: segment -> "T H W 3"; boxes_by_segment: segment -> {subject id: "T 4"}."""
    union = {name: union_boxes(boxes_by_segment[name], frames[name].shape[0]) for name in SEGMENTS}
    empty = [name for name in SEGMENTS if np.isnan(union[name]).any(axis=1).all()]
    counts = {name: int((~np.isnan(union[name]).any(axis=1)).sum()) for name in SEGMENTS}
    if empty:  # the official script raises ValueError here and scores nothing
        return {
            "dsc_ctx": math.nan,
            "dsc_gt": math.nan,
            "dsc_frames": counts,
            "dsc_undefined": f"no subject visible in the {' or '.join(empty)} frames (the official "
            "eval_dsc.py raises ValueError there; this clip has no DSC)",
        }
    embeddings = {name: official_embeddings(clip_encoder, frames[name], union[name]) for name in SEGMENTS}
    return {
        "dsc_ctx": mean_pairwise_cosine(embeddings["predicted"], embeddings["context"]),
        "dsc_gt": mean_pairwise_cosine(embeddings["predicted"], embeddings["ground_truth"]),
        "dsc_frames": counts,
    }


# --- per subject ----------------------------------------------------------------------------------


def dsc_per_subject(clip_encoder, frames: dict, boxes_by_segment: dict) -> dict:
    """Each subject on its own box, squashed frames; clip score = mean over subjects with a score."""
    image_size = frames["predicted"].shape[1:3]
    # 1. patch tokens once per segment, shared by all subjects
    tokens = {name: clip_encoder.patch_tokens_squashed(frames[name]) for name in SEGMENTS}
    grid_size = tuple(tokens["predicted"].shape[1:3])
    # 2. per subject: embeddings of each segment, then pairwise scores
    per_subject = {}
    for subject_id in sorted(boxes_by_segment["ground_truth"]):
        embeddings = {
            name: roi_embeddings(
                tokens[name],
                boxes_to_grid(boxes_by_segment[name][subject_id], image_size, grid_size),
                PER_SUBJECT_SAMPLING_RATIO,
            )
            for name in SEGMENTS
            if subject_id in boxes_by_segment[name]
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


def dsc_scores(
    clip_encoder,
    predicted: "Tt H W 3",
    ground_truth: "Tt H W 3",
    context: "Tc H W 3",
    predicted_boxes: dict,
    ground_truth_boxes: dict,
    context_boxes: dict,
    definition: str = "official",
) -> dict:
    """DSC_ctx and DSC_GT of one clip; the boxes dicts map subject id -> pixel-edge boxes "T 4"."""
    check_choice(definition, DSC_DEFINITIONS, "--dsc-definition")
    frames = {"predicted": predicted, "ground_truth": ground_truth, "context": context}
    boxes = {"predicted": predicted_boxes, "ground_truth": ground_truth_boxes, "context": context_boxes}
    if definition == "official":
        return dsc_official(clip_encoder, frames, boxes)
    return dsc_per_subject(clip_encoder, frames, boxes)
