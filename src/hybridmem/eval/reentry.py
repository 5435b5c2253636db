"""Re-entry metrics that need no weights: presence gain and motion score, against counterfactual renders.

A subject that leaves the view and comes back can fail in two ways a procedural generator can render
exactly (hybridmem.data.counterfactual): it vanished (the target re-rendered with the subject erased) or it
froze where it was last seen (re-rendered with the subject held at its last seen pose). These metrics ask
whether a generation is closer to the truth than to each failure, inside the subject's pixels only, so a
blurred background cannot buy a score the way it buys whole-frame PSNR.

Shape letters: T target frames, H/W pixels, K scored frames, N scored pixels (pooled over frames), 3 colour
channels. Frames are "T H W 3" uint8 RGB, mapped to [0, 1] (x / 255) before anything is measured.

Contrast. A naive PSNR inside the subject's mask rewards degenerate output: a dark frame "matches" a dark
subject, a frame painted in the subject's mean colour matches it better than the erased render does. So both
metrics compare *contrast*, the subject's pixels relative to their own surroundings in the same image:

    ring R_t     the region's tight box at frame t, grown on each side by RING_FRACTION of the box's size
                 along that axis (at least RING_MIN_MARGIN px), minus the region, minus every subject pixel
                 of ground truth (and of the counterfactual render the region includes), minus the
                 BORDER px next to the frame's edges (where decoders leave seams)
    contrast     contrast(X)[t, p, c] = X[t, p, c] - mean_{q in R_t} X[t, q, c]   for p in the region at t
    MSE_c(X, Y)  mean over every scored frame, region pixel and channel of (contrast(X) - contrast(Y))^2
    PSNR_c(X)    10 log10(1 / max(MSE_c(X, GT), MSE_FLOOR))   (capped at 100 dB, as hybridmem.eval.metrics)

Contrast is unchanged by adding one colour to a whole frame, and zero for any image that is one colour over
the region and its ring ("flat": a one-colour frame, the subject's mean colour included, or a smooth
background with no subject).

Presence gain (dB), over the target frames where the re-entering subject is visible in ground truth, region
M = the true subject mask:

    presence_gain = PSNR_c(generation) - max(PSNR_c(erased render), PSNR_c(flat))

where flat has contrast 0 everywhere (PSNR_c(flat) = 10 log10(1 / mean(contrast(GT)^2))). A generation must
reproduce the subject's contrast against its surroundings better than both "nothing there" baselines:
- ground truth scores the cap, 100 - max(...) dB;
- any one-colour frame scores PSNR_c(flat) - max(...) <= 0 exactly;
- the erased render scores <= 0, and so does the erased render shifted by a constant colour (contrast is
  shift-invariant; up to uint8 clipping);
- dark mush (noise around a dark level) adds its own variance to the error: < PSNR_c(flat), so < 0.
A colour-shifted *ground truth* keeps its presence gain: the subject is drawn where it is, standing out
from its surroundings as in truth; a shift is not the failure this metric looks for (whole-frame PSNR and
the background metrics see it).

Motion score (dB), over the target frames where both the true subject and the frozen render's subject are
in view (where the frozen subject is out of view the frozen render is the erased one over the region, and a
frame cannot tell "where it went" from "where it was left": measured, two held-out test clips whose frozen
subject stayed out of view scored +70 to +80 dB for every method, copy-last included), region U = true
mask M union the frozen render's mask of the subject (frozen_ids == subject_id), ring around U as above
(it also leaves out the frozen render's subject pixels), contrast and MSE_c over U:

    ratio(X)     = 10 log10(max(MSE_c(X, frozen), MSE_FLOOR) / max(MSE_c(X, GT), MSE_FLOOR))
    motion_score = ratio(generation) - ratio(erased render)

ratio alone (positive: X looks more like where the subject truly went than like where it was left) is
biased by the two subjects' sizes: an image with no subject is MSE_c(., frozen) ~ the frozen subject's
contrast energy away from the frozen render and the true subject's away from the truth, so when the camera
has come back closer to where the subject was left, the frozen subject is several times larger than the
true one, and "forgetting" scores well. Measured on rendered 64 px test clips: the erased render's ratio
was +6.6 and +7.7 dB on two of four clips (a frozen subject of 250-320 px against a true one of 14-83 px),
-0.03 and +0.3 on the others. Subtracting the erased render's ratio puts "the subject left out" at exactly
0 on every clip, as presence gain does; equivalently motion_score = (gain over the erased render towards
the truth) - (gain over the erased render towards the frozen render), each gain a PSNR_c difference over U.
Ground truth scores best (large positive: 100 - PSNR_c(GT vs frozen) minus the erased render's ratio), the
frozen render worst (large negative), the erased render 0 and a flat image about 0. Each term is within
[-100, +100] dB, so the score is finite. When the frozen render equals the truth over U (the subject did
not move while unseen), motion cannot be told from standing still: n/a.

A clip without counterfactual renders, without instance masks, or whose subject is never visible in the
target (or fills every frame, leaving no ring) gets the string "n/a: <reason>" instead of a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hybridmem.errors import DataError
from hybridmem.eval.metrics import PSNR_CAP_DB, check_videos

RING_FRACTION = 0.5  # the ring reaches half the subject's box size beyond the box on each side
RING_MIN_MARGIN = 2  # px: a ring for subjects a few pixels tall
BORDER = 2  # px next to the frame's edges left out of the ring
MSE_FLOOR = 10.0 ** (-PSNR_CAP_DB / 10.0)  # 1e-10: identical contrast scores the 100 dB cap
METRICS = ("presence_gain", "motion_score")


# --- regions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContrastRegion:
    """Where contrast is measured: for each scored frame, the region's pixels and the ring around them."""

    frames: np.ndarray  # "K" target frame indices
    region: np.ndarray  # "K H W" bool
    ring: np.ndarray  # "K H W" bool

    @property
    def pixels(self) -> int:
        return int(self.region.sum())


def ring_mask(region: "H W", excluded: "H W") -> "H W":
    """The ring around one frame's region (see the module docstring); empty when the region is."""
    ring = np.zeros_like(region, dtype=bool)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return ring
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    margin_y = max(RING_MIN_MARGIN, math.ceil(RING_FRACTION * (y1 - y0)))
    margin_x = max(RING_MIN_MARGIN, math.ceil(RING_FRACTION * (x1 - x0)))
    ring[max(0, y0 - margin_y) : y1 + margin_y, max(0, x0 - margin_x) : x1 + margin_x] = True
    ring &= ~region & ~excluded
    ring[:BORDER] = ring[-BORDER:] = False
    ring[:, :BORDER] = ring[:, -BORDER:] = False
    return ring


def contrast_region(region: "T H W", excluded: "T H W") -> ContrastRegion:
    """The frames whose region is non-empty and has a non-empty ring, with both masks."""
    frames, regions, rings = [], [], []
    for index, (mask, other) in enumerate(zip(region.astype(bool), excluded.astype(bool), strict=True)):
        ring = ring_mask(mask, other)
        if mask.any() and ring.any():
            frames.append(index)
            regions.append(mask)
            rings.append(ring)
    height, width = region.shape[1:]
    empty = np.zeros((0, height, width), dtype=bool)
    return ContrastRegion(
        frames=np.array(frames, dtype=np.int64),
        region=np.stack(regions) if regions else empty,
        ring=np.stack(rings) if rings else empty,
    )


def contrast(frames: "T H W 3", region: ContrastRegion) -> "N 3":
    """Each region pixel minus the mean of its frame's ring, per channel, in [0, 1] units, pooled."""
    values = []
    for frame, mask, ring in zip(frames[region.frames], region.region, region.ring, strict=True):
        # subtract in 0..255 units, then scale: sums of integers are exact, so a one-colour image has
        # contrast exactly 0 (dividing first would leave rounding residue of ~1e-16)
        image = frame.astype(np.float64)  # "H W 3"
        values.append((image[mask] - image[ring].mean(axis=0)) / 255.0)  # "Nk 3"
    return np.concatenate(values) if values else np.zeros((0, 3))


def contrast_mse(contrast_a: "N 3", contrast_b: "N 3") -> float:
    return float(np.mean((contrast_a - contrast_b) ** 2))


def contrast_psnr(mse: float) -> float:
    """10 log10(1 / MSE) with the MSE floored at MSE_FLOOR (so at most the 100 dB cap)."""
    return 10.0 * math.log10(1.0 / max(mse, MSE_FLOOR))


# --- the two metrics ------------------------------------------------------------------------------


def _check(generated, ground_truth, instance_ids, render, render_ids=None) -> None:
    check_videos(generated, ground_truth)
    check_videos(render, ground_truth)
    for name, ids in (("instance_ids", instance_ids), ("counterfactual ids", render_ids)):
        if ids is not None and ids.shape != ground_truth.shape[:3]:
            raise DataError(f"{name}: shape {ids.shape} != target frames' {ground_truth.shape[:3]}")


def presence_gain(
    generated: "T H W 3",
    ground_truth: "T H W 3",
    erased: "T H W 3",
    instance_ids: "T H W",
    subject_id: int,
) -> dict:
    """Presence gain (module docstring) and its parts: {"presence_gain", "psnr_c", "psnr_c_erased",
    "psnr_c_flat", "frames", "pixels"}; presence_gain is NaN when no frame can be scored.

    instance_ids: ground-truth ids of the target frames (0 background, k subject k)."""
    _check(generated, ground_truth, instance_ids, erased)
    subject = instance_ids == subject_id  # "T H W"
    region = contrast_region(subject, instance_ids > 0)
    if region.frames.size == 0:
        return {"presence_gain": math.nan, "frames": 0, "pixels": 0}
    truth = contrast(ground_truth, region)  # "N 3"
    psnr = contrast_psnr(contrast_mse(contrast(generated, region), truth))
    psnr_erased = contrast_psnr(contrast_mse(contrast(erased, region), truth))
    psnr_flat = contrast_psnr(contrast_mse(np.zeros_like(truth), truth))
    return {
        "presence_gain": psnr - max(psnr_erased, psnr_flat),
        "psnr_c": psnr,
        "psnr_c_erased": psnr_erased,
        "psnr_c_flat": psnr_flat,
        "frames": int(region.frames.size),
        "pixels": region.pixels,
    }


def _ratio_db(mse_frozen: float, mse_truth: float) -> float:
    return 10.0 * math.log10(max(mse_frozen, MSE_FLOOR) / max(mse_truth, MSE_FLOOR))


def motion_score(
    generated: "T H W 3",
    ground_truth: "T H W 3",
    frozen: "T H W 3",
    erased: "T H W 3",
    instance_ids: "T H W",
    frozen_ids: "T H W",
    subject_id: int,
) -> dict:
    """Motion score (module docstring) and its parts: {"motion_score", "ratio_db", "ratio_db_erased",
    "mse_c_truth", "mse_c_frozen", "mse_c_truth_frozen", "frames", "pixels"}; motion_score is NaN when no
    frame can be scored or the frozen render equals the truth over the region (mse_c_truth_frozen <=
    MSE_FLOOR)."""
    _check(generated, ground_truth, instance_ids, frozen, frozen_ids)
    check_videos(erased, ground_truth)
    truth_mask = instance_ids == subject_id  # "T H W"
    held_mask = frozen_ids == subject_id  # "T H W"
    # frames where both the true and the frozen subject are in view: in the others the frozen render is the
    # erased one over the region, so nothing there tells "where it went" from "where it was left"
    visible = truth_mask.any(axis=(1, 2)) & held_mask.any(axis=(1, 2))  # "T"
    union = (truth_mask | held_mask) & visible[:, None, None]
    region = contrast_region(union, (instance_ids > 0) | (frozen_ids > 0))
    if region.frames.size == 0:
        return {"motion_score": math.nan, "frozen_in_view": bool(visible.any()), "frames": 0, "pixels": 0}
    generated_contrast, erased_contrast = contrast(generated, region), contrast(erased, region)
    truth, held = contrast(ground_truth, region), contrast(frozen, region)
    mse_truth = contrast_mse(generated_contrast, truth)
    mse_frozen = contrast_mse(generated_contrast, held)
    separation = contrast_mse(truth, held)
    ratio = _ratio_db(mse_frozen, mse_truth)
    ratio_erased = _ratio_db(contrast_mse(erased_contrast, held), contrast_mse(erased_contrast, truth))
    return {
        "motion_score": ratio - ratio_erased if separation > MSE_FLOOR else math.nan,
        "frozen_in_view": bool(visible.any()),
        "ratio_db": ratio,
        "ratio_db_erased": ratio_erased,
        "mse_c_truth": mse_truth,
        "mse_c_frozen": mse_frozen,
        "mse_c_truth_frozen": separation,
        "frames": int(region.frames.size),
        "pixels": region.pixels,
    }


def reentry_metrics(clip, generated: "T H W 3") -> dict:
    """Both metrics of one clip's generated target segment, for the eval record.

    Returns {"presence_gain": float | "n/a: ...", "motion_score": float | "n/a: ...", "reentry_detail":
    {...}}: a number, or the reason it could not be computed (no counterfactual renders: the clip's
    counterfactuals_note; no instance masks; the subject never visible in the target or filling it)."""
    counterfactuals = getattr(clip, "counterfactuals", None)
    if counterfactuals is None:
        note = getattr(clip, "counterfactuals_note", "") or "the clip has no counterfactual renders"
        return _not_scored(note)
    if clip.instance_ids is None:
        return _not_scored("the clip has no instance masks")
    ground_truth = clip.frames[clip.target]
    target_ids = clip.instance_ids[clip.target]
    subject_id = int(counterfactuals.subject_id)
    presence = presence_gain(generated, ground_truth, counterfactuals.erased_frames, target_ids, subject_id)
    motion = motion_score(
        generated,
        ground_truth,
        counterfactuals.frozen_frames,
        counterfactuals.erased_frames,
        target_ids,
        counterfactuals.frozen_ids,
        subject_id,
    )
    unscored = f"subject {subject_id} is never visible with a background ring in the target frames"
    record = {
        "presence_gain": presence["presence_gain"],
        "motion_score": motion["motion_score"],
        "reentry_detail": {"subject_id": subject_id, "presence": presence, "motion": motion},
    }
    if not math.isfinite(record["presence_gain"]):
        record["presence_gain"] = f"n/a: {unscored}"
    if not math.isfinite(record["motion_score"]):
        if motion["frames"] == 0 and not motion.get("frozen_in_view", True):
            reason = f"the frozen subject {subject_id} is never in view while the true one is"
        elif motion["frames"] == 0:
            reason = unscored
        else:
            reason = f"the frozen render equals the truth over subject {subject_id} (it did not move)"
        record["motion_score"] = f"n/a: {reason}"
    return record


def _not_scored(reason: str) -> dict:
    return {key: f"n/a: {reason}" for key in METRICS} | {"reentry_detail": None}
