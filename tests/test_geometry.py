import numpy as np
import pytest

from hybridmem import geometry
from hybridmem.errors import DataError


def random_pose(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, rng.normal(size=3) * 5
    return pose


def test_invert_pose_matches_linalg_inverse():
    rng = np.random.default_rng(0)
    poses = np.stack([random_pose(rng) for _ in range(5)])
    np.testing.assert_allclose(geometry.invert_pose(poses), np.linalg.inv(poses), atol=1e-10)


def test_look_at_axes_follow_opencv_convention():
    pose = geometry.look_at(eye=[0, 0, 2], target=[5, 0, 2])
    right, down, forward = pose[:3, 0], pose[:3, 1], pose[:3, 2]
    np.testing.assert_allclose(forward, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(down, [0, 0, -1], atol=1e-12)  # world z is up, so image y points down
    np.testing.assert_allclose(right, [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(pose[:3, :3]), 1.0)


def test_project_points_centre_and_offsets():
    pose = geometry.look_at(eye=[0, 0, 0], target=[0, 10, 0])
    intrinsics = geometry.intrinsics_from_fov(64, 48, 90.0)  # fx = 32
    uv, depth = geometry.project_points(np.array([[0, 10, 0], [0, 10, 1], [1, 10, 0]]), pose, intrinsics)
    np.testing.assert_allclose(depth, [10, 10, 10])
    np.testing.assert_allclose(uv[0], [32, 24])
    assert uv[1, 1] < 24  # a point above the axis lands higher in the image (smaller v)
    np.testing.assert_allclose(uv[2], [32 + 3.2, 24])  # facing +y with z up, world +x is to the right
    np.testing.assert_allclose(uv[1], [32, 24 - 3.2])


def test_relative_poses_and_pose_to_12():
    rng = np.random.default_rng(1)
    poses = np.stack([random_pose(rng) for _ in range(4)])
    relative = geometry.relative_poses(poses, poses[2])
    np.testing.assert_allclose(relative[2], np.eye(4), atol=1e-10)
    np.testing.assert_allclose(poses[2] @ relative, poses, atol=1e-10)
    flat = geometry.pose_to_12(relative)
    assert flat.shape == (4, 12)
    np.testing.assert_allclose(flat[1], relative[1, :3, :4].reshape(-1))


def test_latent_frame_indices():
    np.testing.assert_array_equal(geometry.latent_frame_indices(33), np.arange(0, 33, 4))
    with pytest.raises(ValueError, match="4k\\+1"):
        geometry.latent_frame_indices(32)


def test_check_poses_names_the_problem():
    good = np.stack([np.eye(4)] * 3)
    assert geometry.check_poses(good, "camera.json:cond_cam", 3).shape == (3, 4, 4)
    with pytest.raises(DataError, match="camera.json:cond_cam.*shape"):
        geometry.check_poses(np.zeros((3, 3, 4)), "camera.json:cond_cam")
    with pytest.raises(DataError, match="expected 4 camera poses"):
        geometry.check_poses(good, "cams", 4)
    bad = good.copy()
    bad[1, :3, :3] *= 2
    with pytest.raises(DataError, match="rotation"):
        geometry.check_poses(bad, "cams")
    nan = good.copy()
    nan[0, 0, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        geometry.check_poses(nan, "cams")
