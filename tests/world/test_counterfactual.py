"""Counterfactual renders: the re-entering subject erased, frozen where last seen, or walking on."""

import dataclasses

import numpy as np
import pytest

from hybridmem.data.counterfactual import COUNTERFACTUALS_FILE, Counterfactuals, load_counterfactuals
from hybridmem.data.hmworld import load_clip
from hybridmem.errors import DataError
from hybridmem.world import events, splits
from hybridmem.world import generate as gen
from hybridmem.world.config import WorldConfig
from hybridmem.world.counterfactual import erased_plan, extrapolated_plan, frozen_plan
from hybridmem.world.plan import plan_clip

pytest.importorskip("moderngl")

# supersample 1: no anti-aliased edge mixes a subject into its neighbours, so pixel comparisons are exact
SMALL = WorldConfig(
    width=64, height=40, context_frames=9, target_frames=9, min_hidden_frames=3, supersample=1, seed=3
)


@pytest.fixture(scope="module")
def renderer():
    from hybridmem.world.render import Renderer

    with Renderer(SMALL.width, SMALL.height, supersample=SMALL.supersample) as r:
        yield r


def first_accepted(renderer, split, clip_index=0):
    split_plan = splits.split_plan(SMALL)
    for attempt in range(SMALL.max_attempts):
        verdict, clip = gen.render_candidate(renderer, SMALL, split_plan, split, clip_index, attempt)
        if verdict == events.ACCEPTED:
            return clip
    raise AssertionError("no accepted candidate")


def test_reentering_subject_picks_the_first_qualifying_run():
    # subject 0 never leaves; subject 1 leaves at 3, back at 7 (hidden 4 frames), context is 5 frames
    visible = np.array([[1] * 10, [1, 1, 1, 0, 0, 0, 0, 1, 1, 1]], dtype=bool)
    assert events.reentering_subject(visible, context_frames=5, min_hidden_frames=3) == (1, 2, 7)
    # hidden too briefly, or back during the context: none
    assert events.reentering_subject(visible, context_frames=5, min_hidden_frames=5) is None
    assert events.reentering_subject(visible, context_frames=8, min_hidden_frames=3) is None
    # last seen is the last *context* frame when the exit comes after the context
    late = np.array([[1, 1, 1, 1, 1, 1, 0, 0, 0, 1]], dtype=bool)
    assert events.reentering_subject(late, context_frames=4, min_hidden_frames=3) == (0, 3, 9)


def test_plans_change_only_the_chosen_subject():
    rng = np.random.default_rng(0)
    plan = plan_clip(
        rng, scene="meadow", subject_names=["human_01", "horse"], num_frames=12, fps=8.0, width=64, height=40
    )
    erased = erased_plan(plan, 0, context_frames=5)
    assert erased.subject_names == ["horse"] and erased.num_frames == 7
    np.testing.assert_array_equal(erased.positions[0], plan.positions[1, 5:])
    np.testing.assert_array_equal(erased.cameras, plan.cameras[5:])
    frozen = frozen_plan(plan, 1, last_seen_frame=3, context_frames=5)
    assert frozen.subject_names == plan.subject_names and frozen.num_frames == 7
    for name in ("positions", "headings", "gait_phase"):
        held = getattr(frozen, name)[1]
        assert np.all(held == getattr(plan, name)[1, 3]), name  # held at frame 3's pose
        np.testing.assert_array_equal(getattr(frozen, name)[0], getattr(plan, name)[0, 5:])  # others move
    assert np.all(frozen.speeds[1] == 0)


def test_extrapolated_plan_walks_on_in_a_straight_line():
    rng = np.random.default_rng(1)
    plan = plan_clip(
        rng, scene="meadow", subject_names=["human_01", "horse"], num_frames=14, fps=8.0, width=64, height=40
    )
    last_seen, history = 6, 4
    moved = extrapolated_plan(plan, 1, last_seen_frame=last_seen, context_frames=5, history=history)
    assert moved.num_frames == 9 and moved.subject_names == plan.subject_names
    np.testing.assert_array_equal(moved.positions[0], plan.positions[0, 5:])  # the others move as planned
    velocity = (plan.positions[1, last_seen] - plan.positions[1, last_seen - history]) / history
    for clip_frame in range(5, 14):  # slow reference: one frame at a time
        k = clip_frame - 5
        if clip_frame <= last_seen:  # up to last seen, the plan itself
            np.testing.assert_array_equal(moved.positions[1, k], plan.positions[1, clip_frame])
            continue
        expected = plan.positions[1, last_seen] + (clip_frame - last_seen) * velocity
        np.testing.assert_allclose(moved.positions[1, k], expected, atol=1e-12)
        assert moved.headings[1, k] == plan.headings[1, last_seen]
        assert moved.speeds[1, k] == plan.speeds[1, last_seen]
    # a subject that stood still over the history stays where it was (the frozen pose)
    still = plan.positions.copy()
    still[1, last_seen - history : last_seen + 1] = plan.positions[1, last_seen]
    stopped = extrapolated_plan(
        dataclasses.replace(plan, positions=still), 1, last_seen_frame=last_seen, context_frames=5
    )
    assert np.all(stopped.positions[1, last_seen - 5 :] == plan.positions[1, last_seen])


def test_generated_test_clip_has_exact_counterfactuals(renderer):
    clip = first_accepted(renderer, "test")
    cf = clip.counterfactuals
    assert isinstance(cf, Counterfactuals) and clip.counterfactuals_note == ""
    target = clip.frames[clip.target].astype(int)
    ids = clip.instance_ids[clip.target]
    cf.check(clip.target_frames, SMALL.height, SMALL.width)
    subject = ids == cf.subject_id
    assert subject.any() and not np.any(cf.erased_ids == cf.subject_id)
    # the subject re-enters at entry_frame, after being last seen at last_seen_frame in the context
    assert cf.last_seen_frame < clip.context_frames <= cf.entry_frame
    assert np.any(clip.instance_ids[cf.last_seen_frame] == cf.subject_id)
    assert np.any(clip.instance_ids[cf.entry_frame] == cf.subject_id)
    # erased: outside the subject only its shadow can go, which can only brighten a pixel
    erased = cf.erased_frames.astype(int)
    assert np.all(erased[~subject] >= target[~subject] - 1)
    assert np.mean(np.abs(erased - target)[subject]) > 5  # and the subject is really gone
    # other subjects keep their ids and pixels where the erased subject did not cover them
    others = (ids > 0) & ~subject
    np.testing.assert_array_equal(cf.erased_ids[others], ids[others])
    # frozen: the same subject drawn elsewhere (it moved on in truth), or out of view
    frozen_mask = cf.frozen_ids == cf.subject_id
    assert not np.array_equal(frozen_mask, subject)


def test_counterfactuals_written_and_read_back_only_for_benchmark_splits(tmp_path):
    config = WorldConfig(**{**SMALL.to_dict(), "scenes": (), "subjects": ()})
    gen.generate(config, tmp_path / "w", num_clips=1, split="val", workers=1, progress=False)
    gen.generate(config, tmp_path / "w", num_clips=1, split="train", workers=1, progress=False)
    val = load_clip(tmp_path / "w" / "val" / "000000")
    assert val.counterfactuals is not None and val.counterfactuals_note == ""
    assert val.metadata["counterfactuals"]["subject_id"] == val.counterfactuals.subject_id
    train = load_clip(tmp_path / "w" / "train" / "000000")
    assert train.counterfactuals is None and "train clips" in train.counterfactuals_note
    # deterministic: the same seed renders the same counterfactuals
    gen.generate(config, tmp_path / "again", num_clips=1, split="val", workers=1, progress=False)
    again = load_clip(tmp_path / "again" / "val" / "000000")
    np.testing.assert_array_equal(again.counterfactuals.frozen_frames, val.counterfactuals.frozen_frames)
    np.testing.assert_array_equal(again.counterfactuals.erased_ids, val.counterfactuals.erased_ids)
    # a malformed archive is named; a listed but missing one too
    path = tmp_path / "w" / "val" / "000000" / COUNTERFACTUALS_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=COUNTERFACTUALS_FILE):
        load_clip(path.parent)
    path.unlink()
    with pytest.raises(DataError, match="lists counterfactuals"):
        load_clip(path.parent)


def test_counterfactual_archive_shapes_are_checked(tmp_path):
    frames, ids = np.zeros((3, 4, 5, 3), np.uint8), np.zeros((3, 4, 5), np.uint8)
    cf = Counterfactuals(2, 1, 6, frames, ids, frames, ids)
    (tmp_path / "cf.npz").write_bytes(cf.to_bytes())
    back = load_counterfactuals(tmp_path / "cf.npz", 3, 4, 5)
    assert (back.subject_id, back.last_seen_frame, back.entry_frame) == (2, 1, 6)
    with pytest.raises(DataError, match="erased_frames"):
        load_counterfactuals(tmp_path / "cf.npz", 4, 4, 5)
    shown = ids.copy()
    shown[0, 0, 0] = 2
    (tmp_path / "bad.npz").write_bytes(Counterfactuals(2, 1, 6, frames, shown, frames, ids).to_bytes())
    with pytest.raises(DataError, match="still shows subject 2"):
        load_counterfactuals(tmp_path / "bad.npz", 3, 4, 5)
