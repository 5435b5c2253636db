"""Retrieval policy as pure functions: windows, eligibility, top-k, affinities, frustum overlap, poses."""

import math

import numpy as np
import torch

from hybridmem.geometry import look_at
from hybridmem.models.memory.retrieval import (
    affinity_eq4,
    affinity_mean,
    frustum_overlap,
    frustum_samples,
    inside_window,
    mean_poses,
    patch_centres,
    select_top_k,
    slice_spans,
    window_indices,
)
from hydra_reference import loop_affinity


def test_window_is_centred_and_shifts_at_the_ends():
    rows = window_indices(10, 5).tolist()
    assert rows[0] == rows[1] == rows[2] == [0, 1, 2, 3, 4]
    assert rows[5] == [3, 4, 5, 6, 7]
    assert rows[8] == rows[9] == [5, 6, 7, 8, 9]
    # shorter sequence than the window: everyone sees everything
    assert window_indices(3, 5).tolist() == [[0, 1, 2]] * 3
    # even width: the extra frame lies after the query
    assert window_indices(10, 4)[5].tolist() == [4, 5, 6, 7]
    assert window_indices(1, 5).tolist() == [[0]]


def test_slices_inside_window_need_every_real_frame_inside():
    spans = slice_spans(7, 2)  # (0,1) (2,3) (4,5) (6,6): the last slice covers one real frame
    assert spans.tolist() == [[0, 1], [2, 3], [4, 5], [6, 6]]
    window_idx = window_indices(7, 3)  # frame 3 -> [2, 3, 4], frame 6 -> [4, 5, 6]
    inside = inside_window(window_idx, spans)
    assert inside[3].tolist() == [False, True, False, False]  # slice (4,5) straddles the window's end
    assert inside[6].tolist() == [False, False, True, True]
    assert patch_centres(5, 2).tolist() == [0.5, 2.5, 4.0]


def test_top_k_takes_best_eligible_and_marks_the_rest_invalid():
    scores = torch.tensor([[[0.1, 0.9, 0.5, 0.7, 0.3]]])  # B=1 Q=1 S=5
    eligible = torch.tensor([[True, False, True, True, False]])
    indices, valid = select_top_k(scores, eligible, 2)
    assert indices.tolist() == [[[2, 3]]] and valid.all()
    indices, valid = select_top_k(scores, eligible, 10)  # K > S and > eligible count
    assert indices.shape[-1] == 5
    assert valid.sum().item() == 3
    assert indices[valid].tolist() == [0, 2, 3]  # valid ones first, ascending
    assert not eligible[0, indices[~valid]].any()  # every invalid slot points at an ineligible slice
    indices, valid = select_top_k(scores, eligible, 0)
    assert indices.shape == (1, 1, 0)


def test_affinities_match_the_per_frame_formulas():
    generator = torch.Generator().manual_seed(0)
    grid = (3, 3, 5)
    q = torch.randn(2, 2, 3 * 15, 4, generator=generator)  # B a N d
    memory_keys = torch.randn(2, 2, 2, 2 * 3, 4, generator=generator)  # B a S P' d, P' = 2x3 patches
    mean_scores = affinity_mean(q, 3, memory_keys)
    eq4_scores = affinity_eq4(q, grid, memory_keys, (2, 2))
    for b in range(2):
        for i in range(3):
            q_frame = q[b, :, i * 15 : (i + 1) * 15]
            for j in range(2):
                expected_mean = loop_affinity(q_frame, memory_keys[b, :, j], "mean", (3, 5), (2, 2))
                expected_eq4 = loop_affinity(q_frame, memory_keys[b, :, j], "eq4", (3, 5), (2, 2))
                assert math.isclose(mean_scores[b, i, j].item(), expected_mean, rel_tol=1e-4, abs_tol=1e-5)
                assert math.isclose(eq4_scores[b, i, j].item(), expected_eq4, rel_tol=1e-4, abs_tol=1e-5)


def camera(eye, target):
    return torch.tensor(look_at(eye, target), dtype=torch.float32)


def test_frustum_overlap_on_hand_made_cameras():
    intrinsics = torch.tensor([[0.5, 0.5, 0.5, 0.5]])  # 90 degree field of view
    query = camera([0, 0, 1], [10, 0, 1])[None, None]  # looks along +x
    candidates = torch.stack(
        [
            camera([0, 0, 1], [10, 0, 1]),  # same camera
            camera([0.5, 0, 1], [10, 1, 1]),  # slightly moved and turned
            camera([0, 0, 1], [0, 10, 1]),  # turned 90 degrees: sees a thin sliver at most
            camera([0, 0, 1], [-10, 0, 1]),  # facing away
        ]
    )[None]
    samples = frustum_samples(512, 0.5, 20.0)
    overlap = frustum_overlap(query, candidates, intrinsics, samples)[0, 0]
    assert overlap[0] == 1.0
    assert 0.6 < overlap[1] < 1.0
    assert overlap[2] < 0.1
    assert overlap[3] == 0.0
    assert torch.equal(samples, frustum_samples(512, 0.5, 20.0))  # fixed pattern


def test_mean_pose_averages_translation_and_projects_rotation():
    def yaw(angle, x):
        pose = np.eye(4)
        pose[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        pose[0, 3] = x
        return pose

    poses = torch.tensor(np.stack([yaw(0.3, 0.0), yaw(-0.3, 2.0), yaw(1.0, 5.0)]))[None]  # B F 4 4
    spans = torch.tensor([[0, 1], [2, 2]])
    means = mean_poses(poses, spans)[0]
    assert torch.allclose(means[0], torch.tensor(yaw(0.0, 1.0)), atol=1e-6)
    assert torch.allclose(means[1], poses[0, 2], atol=1e-6)  # one frame: exact


def test_top_k_ties_go_to_the_earlier_candidate():
    scores = torch.tensor([[[1.0, 0.5, 1.0, 1.0, 1.0]]])
    indices, valid = select_top_k(scores, torch.ones(1, 5, dtype=torch.bool), 2)
    assert indices.tolist() == [[[0, 2]]] and valid.all()


def test_top_k_prefers_any_eligible_candidate_over_an_ineligible_one():
    # an eligible slice whose affinity overflowed (-inf) or broke (NaN) still beats an ineligible slice,
    # and a NaN never outranks a finite score
    scores = torch.tensor([[[0.0, float("-inf"), float("-inf"), 1.0, float("nan")]]])
    eligible = torch.tensor([[True, False, True, True, True]])
    indices, valid = select_top_k(scores, eligible, 4)
    assert valid.all()
    assert sorted(indices[0, 0].tolist()) == [0, 2, 3, 4]
    indices, valid = select_top_k(scores, eligible, 2)
    assert indices.tolist() == [[[0, 3]]] and valid.all()
