import numpy as np
import pytest

from hybridmem.world import events


def _slow_fractions(ids, full):
    out = np.zeros(full.shape)
    for s in range(full.shape[0]):
        for t in range(full.shape[1]):
            if full[s, t] > 0:
                out[s, t] = min((ids[t] == s + 1).sum() / full[s, t], 1.0)
    return out


def test_visible_fractions_match_slow_reference():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=(7, 9, 11)).astype(np.uint8)
    full = rng.integers(0, 40, size=(3, 7)).astype(np.float64)
    full[1, 2] = 0
    fast = events.visible_fractions(ids, full)
    np.testing.assert_allclose(fast, _slow_fractions(ids, full))
    assert fast[1, 2] == 0


def test_hysteresis_keeps_state_inside_band():
    fractions = np.array([[0.0, 0.5, 0.2, 0.2, 0.04, 0.2, 0.3, 0.1]])
    visible = events.visibility_states(fractions, visible_threshold=0.3, hidden_threshold=0.05)
    assert visible[0].tolist() == [False, True, True, True, False, False, True, True]


def test_find_events_exit_and_entry():
    visible = np.array([[1, 1, 0, 0, 1], [0, 1, 1, 1, 0]], dtype=bool)
    found = [(e.subject_id, e.kind, e.frame) for e in events.find_events(visible)]
    assert found == [(2, "entry", 1), (1, "exit", 2), (1, "entry", 4), (2, "exit", 4)]


@pytest.mark.parametrize(
    "row, expected",
    [
        ([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], "no_subject_visible_in_context"),
        ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "no_exit_after_seen_in_context"),
        ([1, 1, 0, 1, 1, 1, 1, 1, 1, 1], "hidden_too_short"),
        ([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "no_reentry_in_target"),
        ([1, 0, 0, 0, 1, 1, 1, 1, 1, 1], "no_reentry_in_target"),  # came back inside the context
        ([1, 1, 0, 0, 0, 0, 1, 1, 1, 1], "accepted"),
        ([0, 1, 1, 1, 1, 0, 0, 0, 1, 0], "accepted"),  # exit and re-entry both in the target
    ],
)
def test_acceptance_reasons(row, expected):
    visible = np.array([row], dtype=bool)
    assert events.acceptance(visible, context_frames=5, min_hidden_frames=3, require_reentry=True) == expected


def test_acceptance_without_reentry_and_best_subject_wins():
    stays_out = np.array([[1, 1, 0, 0, 0, 0, 0, 0]], dtype=bool)
    assert (
        events.acceptance(stays_out, context_frames=4, min_hidden_frames=3, require_reentry=False)
        == "accepted"
    )
    two = np.array([[0] * 8, [1, 1, 0, 1, 1, 1, 1, 1]], dtype=bool)
    assert (
        events.acceptance(two, context_frames=4, min_hidden_frames=3, require_reentry=True)
        == "hidden_too_short"
    )


def test_boxes_from_ids():
    ids = np.zeros((2, 6, 8), dtype=np.uint8)
    ids[0, 1:3, 2:5] = 1
    ids[1, 5, 7] = 2
    boxes = events.boxes_from_ids(ids, 2)
    np.testing.assert_array_equal(boxes[0, 0], [2, 1, 5, 3])
    assert np.isnan(boxes[0, 1]).all() and np.isnan(boxes[1, 0]).all()
    np.testing.assert_array_equal(boxes[1, 1], [7, 5, 8, 6])
