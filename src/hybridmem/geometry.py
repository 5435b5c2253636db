"""Camera geometry shared by the generator, the data pipeline and the models.

Conventions (fixed project-wide, see docs/DATASET.md):
- A camera pose is a 4x4 camera-to-world matrix, OpenCV axes: x right, y down, z forward; metres.
- World frame: z up (gravity is -z), x/y span the ground plane.
- Intrinsics are (fx, fy, cx, cy) in pixels of the image they describe; pixel centres sit at integer + 0.5,
  so a point on the optical axis lands at (cx, cy) and the image spans [0, W] x [0, H].
- The model sees each latent frame's pose relative to the first target frame, flattened row-major as the
  12 numbers of [R | t].
- Latent frame j of a causal VAE with temporal stride s covers video frames max(0, s*(j-1)+1) .. s*j; its
  camera is that of video frame s*j, the last frame it covers (frame 0 for j = 0).

Functions work on numpy arrays with any leading batch axes ("... 4 4").
"""

from __future__ import annotations

import numpy as np

from hybridmem.errors import DataError

# Which context frames the rotation warp (hybridmem.warp) reads: "context", all of them (the most recent
# that sees a ray wins); "last", the last context frame only. A world model conditioned on the warp sees,
# through it, every frame the warp reads: "context" hands a `window` memory the whole past, "last" gives
# every memory the same prior from a frame all of them attend to. Here, below the models, the cache and the
# warp, which all name it.
WARP_SOURCES = ("context", "last")

# What any real camera can be, declared once for every reader of cameras (issue 26: cx = 5000 on a 64 px
# video, fx = 1e-6 or 1e12 and translations of 1e30 m were taken without a word, and the model computed on
# numbers it never saw). Focal length over the image size: 1e-3 is a field of view of 179.9 degrees, 1e3 one
# of 0.06 degrees. The principal point lies within an image's size of the image (cx/W in [-1, 2]): shifted
# lenses move it, never further. Translations: 100 km from the world origin, far beyond any scene (HM-World
# scenes span tens of metres), where float32 still resolves centimetres.
FOCAL_RANGE = (1e-3, 1e3)  # fx/W, fy/H
PRINCIPAL_RANGE = (-1.0, 2.0)  # cx/W, cy/H
MAX_TRANSLATION_M = 1e5


def look_at(eye: "3", target: "3", up: "3" = (0.0, 0.0, 1.0)) -> "4 4":
    """Camera-to-world pose of a camera at `eye` looking at `target`, OpenCV axes, world z up."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to `up`")
    right /= norm
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def intrinsics_matrix(intrinsics: "... 4") -> "... 3 3":
    """(fx, fy, cx, cy) -> 3x3 K."""
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    fx, fy, cx, cy = np.moveaxis(intrinsics, -1, 0)
    K = np.zeros(intrinsics.shape[:-1] + (3, 3))
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = fx, fy, cx, cy, 1.0
    return K


def intrinsics_from_fov(width: int, height: int, horizontal_fov_deg: float) -> "4":
    """Square-pixel pinhole intrinsics with the principal point at the image centre."""
    fx = 0.5 * width / np.tan(np.deg2rad(horizontal_fov_deg) / 2)
    return np.array([fx, fx, width / 2, height / 2])


def scale_intrinsics(intrinsics: "... 4", sx: float, sy: float) -> "... 4":
    """Intrinsics of the same camera after resizing the image by (sx, sy)."""
    return np.asarray(intrinsics, dtype=np.float64) * np.array([sx, sy, sx, sy])


def normalised_intrinsics(intrinsics: "4", width: int, height: int, name: str = "intrinsics") -> "4":
    """(fx, fy, cx, cy) in pixels -> (fx/W, fy/H, cx/W, cy/H), float32: what the world model is given, so
    one model serves any image size (the cache, the samplers and the export all normalise here). Intrinsics
    outside any real camera (FOCAL_RANGE, PRINCIPAL_RANGE) are a DataError naming `name` and the range."""
    return check_intrinsics(intrinsics, width, height, name).astype(np.float32)


def check_intrinsics(intrinsics: "4", width: int, height: int, name: str = "intrinsics") -> "4":
    """(fx/W, fy/H, cx/W, cy/H) of 4 finite pixel intrinsics of a WxH image; DataError naming `name`, the
    value and the range when they are not those of a real camera."""
    values = np.asarray(intrinsics, dtype=np.float64)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise DataError(
            f"{name}: expected 4 finite numbers (fx, fy, cx, cy) in pixels, got {values.tolist()}"
        )
    normalised = values / np.array([width, height, width, height])
    for index, label, size, (low, high) in (
        (0, "fx", width, FOCAL_RANGE), (1, "fy", height, FOCAL_RANGE),
        (2, "cx", width, PRINCIPAL_RANGE), (3, "cy", height, PRINCIPAL_RANGE),
    ):  # fmt: skip
        if not low <= normalised[index] <= high:
            raise DataError(
                f"{name}: {label} = {values[index]:g} px on a {width}x{height} image is outside any real "
                f"camera ({label} must be {low:g} to {high:g} times the image size {size}, "
                f"{low * size:g} to {high * size:g} px); check the camera file's units and image size"
            )
    return normalised


def invert_pose(pose: "... 4 4") -> "... 4 4":
    """Inverse of a rigid transform, exact for rotation + translation."""
    pose = np.asarray(pose, dtype=np.float64)
    rotation, translation = pose[..., :3, :3], pose[..., :3, 3]
    inverse = np.zeros_like(pose)
    inverse[..., :3, :3] = np.swapaxes(rotation, -1, -2)
    inverse[..., :3, 3] = -np.einsum("...ji,...j->...i", rotation, translation)
    inverse[..., 3, 3] = 1.0
    return inverse


def relative_poses(poses: "F 4 4", reference: "4 4") -> "F 4 4":
    """Poses expressed in the frame of `reference`: reference^-1 @ pose."""
    return invert_pose(reference) @ np.asarray(poses, dtype=np.float64)


def pose_to_12(poses: "... 4 4") -> "... 12":
    """Row-major [R | t] of each pose: the camera signal the model reads."""
    poses = np.asarray(poses)
    return poses[..., :3, :4].reshape(poses.shape[:-2] + (12,))


def latent_frame_indices(num_frames: int, temporal_stride: int = 4) -> np.ndarray:
    """Video frame whose camera stands for each latent frame (0, s, 2s, ...), for num_frames = s*k + 1."""
    if (num_frames - 1) % temporal_stride:
        raise ValueError(f"num_frames={num_frames} is not of the form {temporal_stride}k+1")
    return np.arange(0, num_frames, temporal_stride)


def project_points(points: "... N 3", pose: "... 4 4", intrinsics: "... 4") -> tuple["... N 2", "... N"]:
    """World points -> pixel coordinates (u right, v down) and depth along the camera's z axis.

    Points behind the camera get depth <= 0; their pixel coordinates are meaningless.
    """
    world_to_camera = invert_pose(pose)
    points = np.asarray(points, dtype=np.float64)
    camera_points = np.einsum("...ij,...nj->...ni", world_to_camera[..., :3, :3], points)
    camera_points += world_to_camera[..., None, :3, 3]
    depth = camera_points[..., 2]
    safe_depth = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    fx, fy, cx, cy = (intrinsics[..., i, None] for i in range(4))
    u = fx * camera_points[..., 0] / safe_depth + cx
    v = fy * camera_points[..., 1] / safe_depth + cy
    return np.stack([u, v], axis=-1), depth


def check_poses(poses: np.ndarray, name: str, num_frames: int | None = None) -> np.ndarray:
    """Validate an array of camera-to-world poses; raise DataError naming `name` when malformed."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise DataError(f"{name}: expected camera poses of shape (F, 4, 4), got {tuple(poses.shape)}")
    if num_frames is not None and poses.shape[0] != num_frames:
        raise DataError(f"{name}: expected {num_frames} camera poses (one per frame), got {poses.shape[0]}")
    if not np.all(np.isfinite(poses)):
        raise DataError(f"{name}: camera poses contain NaN or infinity")
    farthest = float(np.abs(poses[:, :3, 3]).max(initial=0.0))
    if farthest > MAX_TRANSLATION_M:
        raise DataError(
            f"{name}: a camera position {farthest:g} m from the origin is outside any scene (at most "
            f"{MAX_TRANSLATION_M:g} m); check the units (metres) of the camera file"
        )
    if not np.allclose(poses[:, 3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(f"{name}: the last row of every pose must be [0, 0, 0, 1]")
    rotations = poses[:, :3, :3]
    gram = np.einsum("fji,fjk->fik", rotations, rotations)
    if not np.allclose(gram, np.eye(3), atol=1e-3) or np.any(np.linalg.det(rotations) < 0):
        raise DataError(f"{name}: the 3x3 block of every pose must be a rotation (orthonormal, det +1)")
    return poses
