import numpy as np
import pytest
import torch

from hybridmem.data.clip import Event
from hybridmem.errors import DataError
from hybridmem.eval import metrics


def _video(seed, frames=4, height=24, width=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)


def test_identical_frames_psnr_capped_and_ssim_one():
    video = _video(0)
    psnr = metrics.psnr_per_frame(video, video)
    np.testing.assert_array_equal(psnr, metrics.PSNR_CAP_DB)
    np.testing.assert_allclose(metrics.ssim_per_frame(video, video), 1.0, atol=1e-12)


def test_psnr_known_value():
    target = np.full((1, 8, 8, 3), 100, dtype=np.uint8)
    pred = target + np.uint8(10)
    expected = 10 * np.log10(1.0 / (10 / 255) ** 2)
    np.testing.assert_allclose(metrics.psnr_per_frame(pred, target), expected)


def test_ssim_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.image")
    pred, target = _video(1), _video(2)
    pred = ((pred.astype(int) + target.astype(int) * 3) // 4).astype(np.uint8)  # correlated, not identical
    ours = metrics.ssim_per_frame(pred, target)
    for index in range(pred.shape[0]):
        reference = tm.structural_similarity_index_measure(
            metrics.to_unit(pred[index : index + 1]),
            metrics.to_unit(target[index : index + 1]),
            gaussian_kernel=True,
            sigma=1.5,
            kernel_size=11,
            data_range=1.0,
            k1=0.01,
            k2=0.03,
        )
        np.testing.assert_allclose(ours[index], float(reference), rtol=1e-6)


def test_ssim_map_matches_direct_window_at_one_pixel():
    pred, target = _video(3, frames=1), _video(4, frames=1)
    y0, x0 = 9, 13
    taps = metrics.gaussian_window()
    window = np.outer(taps, taps)
    values = []
    for channel in range(3):
        a = pred[0, y0 - 5 : y0 + 6, x0 - 5 : x0 + 6, channel] / 255.0
        b = target[0, y0 - 5 : y0 + 6, x0 - 5 : x0 + 6, channel] / 255.0
        mu_a, mu_b = (window * a).sum(), (window * b).sum()
        var_a = (window * a * a).sum() - mu_a**2
        var_b = (window * b * b).sum() - mu_b**2
        cov = (window * a * b).sum() - mu_a * mu_b
        c1, c2 = 0.01**2, 0.03**2
        values.append(
            (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        )
    np.testing.assert_allclose(metrics.ssim_map(pred, target)[0, y0, x0], np.mean(values), rtol=1e-10)


def test_masked_psnr_ignores_outside_pixels_and_empty_mask_is_nan():
    target = _video(5, frames=2)
    pred = target.copy()
    pred[:, :, :10] = 0
    mask = np.zeros(target.shape[:3], dtype=bool)
    mask[0, :, 12:] = True
    psnr = metrics.psnr_per_frame(pred, target, mask)
    assert psnr[0] == metrics.PSNR_CAP_DB
    assert np.isnan(psnr[1])


def test_shape_mismatch_raises():
    with pytest.raises(DataError, match="target shape"):
        metrics.psnr_per_frame(_video(0, frames=3), _video(0, frames=4))


def test_boxes_masks_roundtrip():
    masks = np.zeros((2, 10, 12), dtype=bool)
    masks[0, 2:5, 3:9] = True
    boxes = metrics.boxes_from_masks(masks)
    np.testing.assert_array_equal(boxes[0], [3, 2, 9, 5])
    assert np.isnan(boxes[1]).all()
    np.testing.assert_array_equal(metrics.masks_from_boxes(boxes, 10, 12), masks)


def test_reentry_events_need_an_earlier_exit():
    events = [Event(1, "exit", 3), Event(1, "entry", 9), Event(2, "entry", 10), Event(1, "entry", 2)]
    assert metrics.reentry_events(events, context_frames=5) == [(1, 4)]


def _scene(frames=6, height=48, width=56):
    """Textured background with a bright textured square subject (id 1) that moves right."""
    rng = np.random.default_rng(7)
    background = rng.integers(0, 120, size=(height, width, 3), dtype=np.uint8)
    patch = rng.integers(150, 256, size=(10, 10, 3), dtype=np.uint8)
    video = np.repeat(background[None], frames, axis=0)
    ids = np.zeros((frames, height, width), dtype=np.uint8)
    for t in range(frames):
        x = 8 + 3 * t
        video[t, 15:25, x : x + 10] = patch
        ids[t, 15:25, x : x + 10] = 1
    return video, ids, background


def test_blanked_or_shifted_subject_lowers_subject_metrics_not_background():
    target, ids, background = _scene()
    reentries = [(1, 2)]
    same = metrics.pixel_metrics(target, target, ids, reentries)
    blanked = np.repeat(background[None], target.shape[0], axis=0)
    shifted = target.copy()
    for t in range(target.shape[0]):  # move the subject 3 px down: within the 5 px background margin
        x = 8 + 3 * t
        shifted[t, 15:25, x : x + 10] = background[15:25, x : x + 10]
        shifted[t, 18:28, x : x + 10] = target[t, 15:25, x : x + 10]
    assert same["reentry_box_psnr"] == metrics.PSNR_CAP_DB
    assert same["reentry_box_ssim"] == pytest.approx(1.0)
    for changed in (blanked, shifted):
        result = metrics.pixel_metrics(changed, target, ids, reentries)
        assert result["reentry_box_psnr"] < 40
        assert result["reentry_box_ssim"] < 0.9
        assert result["psnr"] < metrics.PSNR_CAP_DB
        assert result["background_psnr"] == same["background_psnr"] == metrics.PSNR_CAP_DB
        assert result["background_ssim"] == pytest.approx(1.0, abs=1e-12)


def test_region_psnr_pools_squared_error_instead_of_averaging_capped_frames():
    """Three subjects re-enter; two are drawn perfectly, one is blanked: the pooled box PSNR reads the
    error of the wrong one (an average of per-frame capped values would read about 70 dB)."""
    rng = np.random.default_rng(11)
    frames, height, width = 4, 40, 90
    target = rng.integers(0, 120, size=(frames, height, width, 3), dtype=np.uint8)
    ids = np.zeros((frames, height, width), dtype=np.uint8)
    pred = target.copy()
    for subject, (x, start) in enumerate([(5, 0), (35, 1), (65, 2)], start=1):
        target[start:, 10:20, x : x + 10] = rng.integers(150, 256, size=(10, 10, 3), dtype=np.uint8)
        ids[start:, 10:20, x : x + 10] = subject
    pred[:] = target
    pred[2:, 10:20, 65:75] = 0  # subject 3 is missing from its re-entry on
    result = metrics.pixel_metrics(pred, target, ids, [(1, 0), (2, 1), (3, 2)])
    box = np.zeros(ids.shape, dtype=bool)
    box[0:, 10:20, 5:15] = box[1:, 10:20, 35:45] = box[2:, 10:20, 65:75] = True
    error = (((pred.astype(float) - target.astype(float)) / 255) ** 2).mean(-1)
    expected = 10 * np.log10(1 / error[box].mean())
    assert result["reentry_box_psnr"] == pytest.approx(expected, rel=1e-12)
    assert result["reentry_box_psnr"] < 20.0
    # the window: whole frames from the first re-entry (frame 0) on, pooled
    assert result["reentry_psnr"] == pytest.approx(10 * np.log10(1 / error.mean()), rel=1e-12)
    # whole-frame PSNR keeps the mean of per-frame values (frames 0-1 identical: 100 dB each)
    per_frame = metrics.psnr_per_frame(pred, target)
    assert per_frame[0] == per_frame[1] == metrics.PSNR_CAP_DB
    assert result["psnr"] == pytest.approx(per_frame.mean())
    ssim = metrics.ssim_map(pred, target)
    assert result["reentry_box_ssim"] == pytest.approx(ssim[box].mean())


def test_pooled_psnr_empty_mask_is_nan_and_identical_is_capped():
    video = _video(0)
    assert metrics.pooled_psnr(video, video) == metrics.PSNR_CAP_DB
    assert np.isnan(metrics.pooled_psnr(video, video, np.zeros(video.shape[:3], dtype=bool)))


def test_no_masks_or_reentries_give_nan_region_metrics():
    video = _video(0)
    result = metrics.pixel_metrics(video, video)
    assert np.isnan(result["background_psnr"]) and np.isnan(result["reentry_psnr"])
    assert result["num_reentries"] == 0
    assert len(result["psnr_per_frame"]) == video.shape[0]


def test_to_unit_layout():
    video = _video(0, frames=1)
    unit = metrics.to_unit(video)
    assert unit.shape == (1, 3, 24, 32)
    assert torch.isclose(unit[0, 2, 5, 7], torch.tensor(video[0, 5, 7, 2] / 255.0, dtype=torch.float64))
