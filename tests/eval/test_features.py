import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hybridmem.eval import consistency, dsc
from hybridmem.eval.features import ClipEncoder, DinoEncoder, WeightsNotFound, resolve_weights_dir


def _vbench_reference(features):
    """VBench's loop, frame by frame."""
    total, first, previous = 0.0, None, None
    for index, feature in enumerate(features.double()):
        feature = F.normalize(feature[None], dim=-1)
        if index == 0:
            first = feature
        else:
            to_previous = max(0.0, F.cosine_similarity(previous, feature).item())
            to_first = max(0.0, F.cosine_similarity(first, feature).item())
            total += (to_previous + to_first) / 2
        previous = feature
    return total / (features.shape[0] - 1)


def test_vbench_consistency_matches_loop_with_negative_cosines():
    features = torch.randn(9, 4, generator=torch.Generator().manual_seed(0))
    assert consistency.vbench_consistency(features) == pytest.approx(_vbench_reference(features), abs=1e-12)
    assert consistency.vbench_consistency(features[:1].repeat(5, 1)) == pytest.approx(1.0)
    assert math.isnan(consistency.vbench_consistency(features[:1]))


def test_mean_pairwise_cosine_matches_loop():
    a, b = torch.randn(3, 5), torch.randn(4, 5)
    expected = np.mean([F.cosine_similarity(x, y, dim=0).item() for x in a for y in b])
    assert dsc.mean_pairwise_cosine(a, b) == pytest.approx(expected, abs=1e-6)
    assert math.isnan(dsc.mean_pairwise_cosine(a, torch.zeros(0, 5)))


def test_roi_embeddings_skip_invisible_frames_and_pool_inside_box():
    tokens = torch.zeros(3, 4, 4, 2)
    tokens[..., 0] = 1.0
    tokens[:, 1:3, 1:3] = torch.tensor([0.0, 5.0])  # a different vector inside cells 1..2
    boxes = np.array([[1.5, 1.5, 2.5, 2.5], [np.nan] * 4, [1.5, 1.5, 2.5, 2.5]])
    embeddings = dsc.roi_embeddings(tokens, boxes, sampling_ratio=2)
    assert embeddings.shape == (2, 2)
    torch.testing.assert_close(embeddings, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_boxes_to_grid_scales_each_axis():
    grid = dsc.boxes_to_grid(np.array([[10.0, 20.0, 30.0, 40.0]]), (40, 80), (4, 8))
    np.testing.assert_allclose(grid, [[1.0, 2.0, 3.0, 4.0]])


def test_missing_weights_name_the_path(tmp_path):
    with pytest.raises(WeightsNotFound, match=str(tmp_path / "clip-vit-base-patch16")):
        ClipEncoder.from_weights_dir(tmp_path)
    with pytest.raises(WeightsNotFound, match="dino-vitb16"):
        DinoEncoder.from_weights_dir(tmp_path)


def test_weights_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRIDMEM_WEIGHTS", str(tmp_path))
    assert resolve_weights_dir(None) == tmp_path
    assert resolve_weights_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("HYBRIDMEM_WEIGHTS")
    assert resolve_weights_dir(None).name == "weights"


def _static_scene(frames=4, height=48, width=64, subject_x=20, seed=0):
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 100, size=(height, width, 3), dtype=np.uint8)
    patch = rng.integers(150, 256, size=(16, 16, 3), dtype=np.uint8)
    frame = background.copy()
    frame[16:32, subject_x : subject_x + 16] = patch
    box = np.array([subject_x, 16, subject_x + 16, 32], dtype=np.float64)
    return np.repeat(frame[None], frames, axis=0), np.repeat(box[None], frames, axis=0), background


def test_encoders_run_on_tiny_models(tiny_weights):
    clip_encoder = ClipEncoder.from_weights_dir(tiny_weights)
    dino = DinoEncoder.from_weights_dir(tiny_weights)
    video, _, _ = _static_scene()
    assert clip_encoder.image_embeddings(video).shape == (4, 16)
    assert clip_encoder.patch_tokens_squashed(video).shape == (4, 4, 4, 32)
    assert clip_encoder.patch_tokens_cropped(video).shape == (4, 4, 4, 32)
    assert dino.class_features(video).shape == (4, 32)
    assert consistency.subject_consistency(dino, video) == pytest.approx(1.0, abs=1e-6)
    assert consistency.background_consistency(clip_encoder, video) == pytest.approx(1.0, abs=1e-6)
    noise = np.random.default_rng(3).integers(0, 256, size=video.shape, dtype=np.uint8)
    assert consistency.subject_consistency(dino, noise) < 1.0 - 1e-4


@pytest.mark.parametrize("definition", ["official", "per-subject"])
def test_dsc_identical_static_video_is_one_and_changes_lower_it(tiny_weights, definition):
    clip_encoder = ClipEncoder.from_weights_dir(tiny_weights)
    video, boxes, background = _static_scene()
    shifted, _, _ = _static_scene(subject_x=40)
    blanked = np.repeat(background[None], video.shape[0], axis=0)
    boxes_by_subject = {1: boxes}
    same = dsc.dsc_scores(
        clip_encoder, video, video, video, boxes_by_subject, boxes_by_subject, boxes_by_subject, definition
    )
    assert same["dsc_gt"] == pytest.approx(1.0, abs=1e-6)
    assert same["dsc_ctx"] == pytest.approx(1.0, abs=1e-6)
    for changed in (shifted, blanked):
        scores = dsc.dsc_scores(
            clip_encoder,
            changed,
            video,
            video,
            boxes_by_subject,
            boxes_by_subject,
            boxes_by_subject,
            definition,
        )
        assert scores["dsc_gt"] < 1.0 - 1e-4
        assert scores["dsc_ctx"] < 1.0 - 1e-4
