"""Rendering the counterfactuals of a clip (hybridmem.data.counterfactual): the same plan with one change.

    erased = the plan without subject s;  frozen = the plan with s held at its pose of `last_seen_frame`
    extrapolated = the plan with s walking on from `last_seen_frame` at its velocity there (a diagnostic:
                   what a model that extrapolated the subject's last seen motion in a straight line would
                   draw; benchmarks/reentry_bounds.py)

Only the target segment is rendered (the plans are cut to it), so a val/test clip costs one extra clip render.
The renderer is deterministic, so everything but the changed subject is pixel-identical to the clip's own
target frames (tests check this).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hybridmem.data.counterfactual import Counterfactuals

# plan fields indexed by subject first ("S ..."), and those with a time axis (after the subject axis, if any)
_PER_SUBJECT = ("subject_names", "subject_families", "path_families", "positions", "headings", "gait_phase")
_PER_SUBJECT += ("speeds",)
_TIMED_PER_SUBJECT = ("positions", "headings", "gait_phase", "speeds")


def _replace(plan, fields: dict):
    """A copy of `plan` with `fields` replaced; a dataclass plan is validated again (__post_init__)."""
    if dataclasses.is_dataclass(plan):
        return dataclasses.replace(plan, **fields)
    copy = type(plan)(**vars(plan))  # plan-like namespaces (the tests' fake planner)
    vars(copy).update(fields)
    return copy


def _target_cut(plan, context_frames: int) -> dict:
    """The fields of `plan` restricted to frames [context_frames, T)."""
    target = slice(context_frames, int(plan.num_frames))
    fields = {"num_frames": int(plan.num_frames) - context_frames, "cameras": plan.cameras[target]}
    for name in _TIMED_PER_SUBJECT:
        if hasattr(plan, name):
            fields[name] = np.asarray(getattr(plan, name))[:, target]
    return fields


def erased_plan(plan, s: int, context_frames: int):
    """The target segment of `plan` without subject index s."""
    fields = _target_cut(plan, context_frames)
    keep = [k for k in range(len(plan.subject_names)) if k != s]
    for name in _PER_SUBJECT:
        if not hasattr(plan, name):
            continue
        value = fields.get(name, getattr(plan, name))
        fields[name] = np.asarray(value)[keep] if isinstance(value, np.ndarray) else [value[k] for k in keep]
    return _replace(plan, fields)


def frozen_plan(plan, s: int, last_seen_frame: int, context_frames: int):
    """The target segment of `plan` with subject index s held at its pose of clip frame `last_seen_frame`."""
    held = {}
    for name in _TIMED_PER_SUBJECT:
        if hasattr(plan, name):
            value = np.array(getattr(plan, name), dtype=np.float64)  # a copy
            value[s, last_seen_frame + 1 :] = 0.0 if name == "speeds" else value[s, last_seen_frame]
            held[name] = value
    return _replace(plan, _target_cut(_replace(plan, held), context_frames))


def extrapolated_plan(plan, s: int, last_seen_frame: int, context_frames: int, history: int = 4):
    """The target segment of `plan` with subject index s moving on from clip frame `last_seen_frame` in a
    straight line at its mean ground velocity over the `history` frames before it, facing the way it
    faced there, its gait advancing at the same rate (a subject standing still stays, like the frozen one).
    """
    first = max(0, last_seen_frame - history)
    span = last_seen_frame - first
    steps = np.arange(int(plan.num_frames), dtype=np.float64) - last_seen_frame  # frames after last seen
    after = steps > 0
    moved = {}
    for name in ("positions", "gait_phase"):
        value = np.array(getattr(plan, name), dtype=np.float64)  # a copy
        rate = (value[s, last_seen_frame] - value[s, first]) / span if span else 0.0 * value[s, 0]
        step = steps[after].reshape(-1, *([1] * (value.ndim - 2)))
        value[s, after] = value[s, last_seen_frame] + step * rate
        moved[name] = value
    held = {}
    for name in ("headings", "speeds"):
        value = np.array(getattr(plan, name), dtype=np.float64)
        value[s, last_seen_frame + 1 :] = value[s, last_seen_frame]
        held[name] = value
    return _replace(plan, _target_cut(_replace(plan, {**moved, **held}), context_frames))


def render_counterfactuals(
    renderer, plan, s: int, last_seen_frame: int, entry_frame: int, context_frames: int
) -> Counterfactuals:
    """Render the erased and frozen target segments of subject index s (instance id s + 1)."""
    erased = renderer.render(erased_plan(plan, s, context_frames))
    frozen = renderer.render(frozen_plan(plan, s, last_seen_frame, context_frames))
    # the erased render numbers the remaining subjects 1..S-1; give them their ids in the clip back
    original_ids = np.array([0] + [k + 1 for k in range(len(plan.subject_names)) if k != s], np.uint8)
    return Counterfactuals(
        subject_id=s + 1,
        last_seen_frame=int(last_seen_frame),
        entry_frame=int(entry_frame),
        erased_frames=np.asarray(erased.frames, np.uint8),
        erased_ids=original_ids[np.asarray(erased.instance_ids)],
        frozen_frames=np.asarray(frozen.frames, np.uint8),
        frozen_ids=np.asarray(frozen.instance_ids, np.uint8),
    )
