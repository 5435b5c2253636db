"""The rotation warp: identity, a scene at infinity seen by a turning camera, and a per-pixel reference."""

import numpy as np

from hybridmem.geometry import intrinsics_from_fov, look_at
from hybridmem.warp import rotation_warp


def sky(cameras: "T 4 4", intrinsics: "4", height: int, width: int) -> "T H W 3":
    """Frames of a smooth texture painted on the sphere at infinity (colour = function of ray direction)."""
    v, u = np.mgrid[0:height, 0:width] + 0.5
    fx, fy, cx, cy = intrinsics
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)])  # 3 H W
    frames = []
    for camera in cameras:
        d = np.einsum("ij,jhw->ihw", camera[:3, :3], rays)
        d /= np.linalg.norm(d, axis=0)
        azimuth, elevation = np.arctan2(d[1], d[0]), np.arcsin(d[2])
        colour = np.stack(
            [
                128 + 100 * np.sin(3 * azimuth),
                128 + 100 * np.cos(4 * elevation),
                128 + 60 * np.sin(azimuth + elevation),
            ]
        )
        frames.append(np.moveaxis(colour, 0, -1))
    return np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)


def turning(angles_deg):
    return np.stack(
        [
            look_at((1.0, 2.0, 1.5), (1.0 + np.cos(np.deg2rad(a)), 2.0 + np.sin(np.deg2rad(a)), 1.6))
            for a in angles_deg
        ]
    )


def test_warp_into_the_last_context_view_is_that_frame():
    intrinsics = intrinsics_from_fov(40, 24, 36.3)
    cameras = turning([0, 5, 10])
    frames = sky(cameras, intrinsics, 24, 40)
    warped, seen = rotation_warp(frames, cameras, cameras[-1:], intrinsics)
    assert seen.all()
    np.testing.assert_array_equal(warped[0], frames[-1])


def test_a_turning_camera_is_predicted_where_the_context_saw():
    intrinsics = intrinsics_from_fov(80, 48, 36.3)
    context_cameras, target_cameras = turning([0, 10, 20]), turning([35, -15, 12])
    context = sky(context_cameras, intrinsics, 48, 80)
    truth = sky(target_cameras, intrinsics, 48, 80)
    warped, seen = rotation_warp(context, context_cameras, target_cameras, intrinsics)
    # pixels some context frame saw match the truth up to bilinear resampling; turned 15 degrees past the
    # context's last view, part of the frame was never seen
    error = np.abs(warped.astype(int) - truth.astype(int))
    assert seen[2].all() and 0.05 < seen[0].mean() < 0.95
    assert np.percentile(error[seen], 99) <= 6
    copy_last = np.abs(context[-1].astype(int) - truth.astype(int))
    assert error[seen].mean() < 0.25 * copy_last[seen].mean()
    np.testing.assert_array_equal(warped[~seen], np.broadcast_to(context[-1], warped.shape)[~seen])


def test_matches_a_per_pixel_reference():
    rng = np.random.default_rng(0)
    intrinsics = intrinsics_from_fov(12, 8, 50.0)
    context_cameras, target_cameras = turning([0, 20]), turning([30, 8])
    context = rng.integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    warped, seen = rotation_warp(context, context_cameras, target_cameras, intrinsics)
    fx, fy, cx, cy = intrinsics
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    for t, target in enumerate(target_cameras):
        for y in range(8):
            for x in range(12):
                ray = target[:3, :3] @ np.linalg.solve(K, [x + 0.5, y + 0.5, 1.0])
                expected, found = context[-1, y, x].astype(float), False
                for c in (1, 0):  # the most recent context frame first
                    p = K @ (context_cameras[c][:3, :3].T @ ray)
                    if p[2] <= 0:
                        continue
                    u, v = p[0] / p[2], p[1] / p[2]
                    if not (0 <= u <= 12 and 0 <= v <= 8):
                        continue
                    # bilinear on pixel centres, clamped at the edges
                    gx, gy = u - 0.5, v - 0.5
                    x0, y0 = int(np.floor(gx)), int(np.floor(gy))
                    value = np.zeros(3)
                    for dy, wy in ((0, 1 - (gy - y0)), (1, gy - y0)):
                        for dx, wx in ((0, 1 - (gx - x0)), (1, gx - x0)):
                            yy, xx = min(max(y0 + dy, 0), 7), min(max(x0 + dx, 0), 11)
                            value += wy * wx * context[c, yy, xx]
                    expected, found = value, True
                    break
                assert seen[t, y, x] == found
                assert np.all(np.abs(warped[t, y, x].astype(float) - expected) <= 0.5 + 1e-6)


def test_the_last_source_reads_only_the_last_context_frame():
    import pytest

    from hybridmem.errors import ConfigError

    intrinsics = intrinsics_from_fov(80, 48, 36.3)
    context_cameras, target_cameras = turning([0, 10, 20]), turning([35, -15, 12])
    context = sky(context_cameras, intrinsics, 48, 80)
    last, last_seen = rotation_warp(context, context_cameras, target_cameras, intrinsics, source="last")
    alone, alone_seen = rotation_warp(context[-1:], context_cameras[-1:], target_cameras, intrinsics)
    np.testing.assert_array_equal(last, alone)
    np.testing.assert_array_equal(last_seen, alone_seen)
    # the earlier frames change what the default source sees (the target at -15 degrees looks where
    # only the first context frame did), and not what "last" sees
    full, full_seen = rotation_warp(context, context_cameras, target_cameras, intrinsics)
    assert full_seen.sum() > last_seen.sum()
    scrambled = context.copy()
    scrambled[:-1] = 255 - scrambled[:-1]
    np.testing.assert_array_equal(
        rotation_warp(scrambled, context_cameras, target_cameras, intrinsics, source="last")[0], last
    )
    assert not np.array_equal(rotation_warp(scrambled, context_cameras, target_cameras, intrinsics)[0], full)
    with pytest.raises(ConfigError, match="warp source 'first'"):
        rotation_warp(context, context_cameras, target_cameras, intrinsics, source="first")
