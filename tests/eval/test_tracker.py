import numpy as np

from hybridmem.eval.tracker import colour_histogram, integral_histogram, track_boxes


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_integral_histogram_matches_direct_histogram():
    frame = np.random.default_rng(0).integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    integral = integral_histogram(frame)
    box = (2, 3, 7, 8)
    counts = integral[8, 7] - integral[3, 7] - integral[8, 2] + integral[3, 2]
    np.testing.assert_allclose(counts / counts.sum(), colour_histogram(frame, np.array(box, dtype=float)))


def test_tracks_a_moving_coloured_square_and_skips_invisible_frames():
    rng = np.random.default_rng(1)
    height, width, frames = 48, 64, 5
    background = rng.integers(60, 140, size=(height, width, 3), dtype=np.uint8)
    video = np.repeat(background[None], frames, axis=0)
    truth = []
    for t in range(frames):
        x, y = 4 + 10 * t, 10 + 4 * t
        video[t, y : y + 12, x : x + 10] = (230, 30, 30)
        truth.append((x, y, x + 10, y + 12))
    template_frame = background.copy()
    template_frame[5:17, 30:40] = (230, 30, 30)
    visible = np.array([True, True, False, True, True])
    boxes = track_boxes(video, template_frame, np.array([30.0, 5.0, 40.0, 17.0]), visible)
    assert np.isnan(boxes[2]).all()
    for t in (0, 1, 3, 4):
        assert _iou(boxes[t], truth[t]) > 0.7
    np.testing.assert_array_equal(
        boxes, track_boxes(video, template_frame, np.array([30.0, 5.0, 40.0, 17.0]), visible)
    )
