"""Exit and entry events from rendered instance masks, and the acceptance rule of HM-World clips.

Pure functions on arrays. Shape letters: T frames (context then target), H/W pixels, S subjects.
A subject's visible fraction is the number of pixels it covers in the rendered frame divided by the pixels it
would cover unoccluded and without the image border (`full_pixels`, from the renderer). Visibility uses two
thresholds (hysteresis) so that a subject flickering around one threshold does not produce a burst of events:
hidden -> visible when the fraction reaches `visible_threshold`, visible -> hidden when it falls below
`hidden_threshold`.
"""

from __future__ import annotations

import numpy as np

from hybridmem.data.clip import Event

ACCEPTED = "accepted"
# Rejection reasons, ordered by how far a clip got; a clip is rejected for the furthest stage any of its
# subjects reached.
REJECTION_REASONS = (
    "no_subject_visible_in_context",
    "no_exit_after_seen_in_context",
    "hidden_too_short",
    "no_reentry_in_target",
)


def visible_fractions(instance_ids: "T H W", full_pixels: "S T") -> "S T":
    """Fraction of each subject's unoccluded in-frame area that is visible (0 where it covers nothing)."""
    instance_ids = np.asarray(instance_ids)
    full_pixels = np.asarray(full_pixels, dtype=np.float64)
    num_subjects, num_frames = full_pixels.shape
    if instance_ids.shape[0] != num_frames:
        raise ValueError(f"instance_ids has {instance_ids.shape[0]} frames, full_pixels {num_frames}")
    # One bincount over (frame, id) pairs instead of S x T mask sums; 256 bins hold every uint8 id.
    frame_offsets = np.arange(num_frames, dtype=np.int64)[:, None, None] * 256
    counts = np.bincount((instance_ids.astype(np.int64) + frame_offsets).ravel(), minlength=num_frames * 256)
    counts = counts.reshape(num_frames, 256)[:, 1 : num_subjects + 1].T  # "S T": id s+1 is subject s
    safe_full = np.where(full_pixels > 0, full_pixels, 1.0)
    return np.where(full_pixels > 0, np.minimum(counts / safe_full, 1.0), 0.0)


def visibility_states(fractions: "S T", visible_threshold: float, hidden_threshold: float) -> "S T":
    """Boolean visibility with hysteresis; a subject starts visible iff it reaches `visible_threshold`."""
    fractions = np.asarray(fractions, dtype=np.float64)
    visible = np.zeros(fractions.shape, dtype=bool)
    if fractions.shape[1] == 0:
        return visible
    state = fractions[:, 0] >= visible_threshold
    visible[:, 0] = state
    for t in range(1, fractions.shape[1]):
        state = np.where(state, fractions[:, t] >= hidden_threshold, fractions[:, t] >= visible_threshold)
        visible[:, t] = state
    return visible


def find_events(visible: "S T") -> list[Event]:
    """Exits (visible at t-1, hidden at t) and entries (the reverse), sorted by frame then subject."""
    visible = np.asarray(visible, dtype=bool)
    change = visible[:, 1:] != visible[:, :-1]  # "S T-1": True where frame t+1 differs from frame t
    subjects, frames = np.nonzero(change)
    events = [
        Event(subject_id=int(s) + 1, kind="entry" if visible[s, t + 1] else "exit", frame=int(t) + 1)
        for s, t in zip(subjects, frames, strict=True)
    ]
    return sorted(events, key=lambda event: (event.frame, event.subject_id))


def hidden_runs(visible_row: "T bool") -> list[tuple[int, int]]:
    """(exit frame, end) of every hidden run that follows a visible frame; end = entry frame or T."""
    visible_row = np.asarray(visible_row, dtype=bool)
    runs = []
    num_frames = len(visible_row)
    for t in range(1, num_frames):
        if visible_row[t - 1] and not visible_row[t]:
            end = t
            while end < num_frames and not visible_row[end]:
                end += 1
            runs.append((t, end))
    return runs


def subject_stage(
    visible_row: "T bool", *, context_frames: int, min_hidden_frames: int, require_reentry: bool
) -> int:
    """How far one subject goes towards the acceptance rule: an index into REJECTION_REASONS, or 4 = accepted.

    Accepted: visible in some context frame, then out of view for >= min_hidden_frames consecutive frames,
    then (when `require_reentry`) visible again at a target frame.
    """
    visible_row = np.asarray(visible_row, dtype=bool)
    seen = np.flatnonzero(visible_row[:context_frames])
    if len(seen) == 0:
        return 0
    stage = 1
    num_frames = len(visible_row)
    for exit_frame, end in hidden_runs(visible_row):
        if exit_frame <= seen[0]:
            continue
        stage = max(stage, 2)
        if end - exit_frame < min_hidden_frames:
            continue
        stage = max(stage, 3)
        reentered_in_target = end < num_frames and end >= context_frames
        if reentered_in_target or not require_reentry:
            return 4
    return stage


def reentering_subject(
    visible: "S T", *, context_frames: int, min_hidden_frames: int
) -> tuple[int, int, int] | None:
    """The first subject (lowest index) that meets the acceptance rule with a re-entry in the target.

    Returns (subject index s, last_seen_frame, entry_frame): last_seen_frame is the last context frame in
    which s was visible before the qualifying hidden run (what a model saw last), entry_frame the target
    frame where s is visible again. None when no subject re-enters.
    """
    visible = np.asarray(visible, dtype=bool)
    num_frames = visible.shape[1]
    for s, row in enumerate(visible):
        seen = np.flatnonzero(row[:context_frames])
        if len(seen) == 0:
            continue
        for exit_frame, end in hidden_runs(row):
            if exit_frame <= seen[0] or end - exit_frame < min_hidden_frames:
                continue
            if context_frames <= end < num_frames:
                before = np.flatnonzero(row[: min(exit_frame, context_frames)])
                return s, int(before[-1]), int(end)
    return None


def acceptance(visible: "S T", *, context_frames: int, min_hidden_frames: int, require_reentry: bool) -> str:
    """ACCEPTED, or the rejection reason of the subject that got furthest (see REJECTION_REASONS)."""
    stages = [
        subject_stage(
            row,
            context_frames=context_frames,
            min_hidden_frames=min_hidden_frames,
            require_reentry=require_reentry,
        )
        for row in np.asarray(visible, dtype=bool)
    ]
    best = max(stages, default=0)
    return ACCEPTED if best == len(REJECTION_REASONS) else REJECTION_REASONS[best]


def boxes_from_ids(instance_ids: "T H W", num_subjects: int) -> "S T 4":
    """Pixel boxes (x0, y0, x1, y1) enclosing each subject's visible pixels; NaN where it has none.

    x1/y1 are exclusive pixel edges, so a single pixel at column u spans [u, u+1].
    """
    instance_ids = np.asarray(instance_ids)
    num_frames = instance_ids.shape[0]
    boxes = np.full((num_subjects, num_frames, 4), np.nan)
    for s in range(num_subjects):
        mask = instance_ids == s + 1  # "T H W"
        rows, cols = mask.any(axis=2), mask.any(axis=1)  # "T H", "T W"
        for t in np.flatnonzero(rows.any(axis=1)):
            ys, xs = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
            boxes[s, t] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes
