"""A clip plan: every random choice and every per-frame quantity of one clip, as validated pure data.

`plan_clip` draws only from the numpy Generator it is given, so (seed, arguments) -> plan is a function; the
renderer turns a plan into pixels, and the pipeline turns it into events and metadata. `to_dict` /
`from_dict` round-trip a plan through JSON.

Shape letters: T frames, S subjects, P body points.
Conventions: cameras are camera-to-world, OpenCV axes (x right, y down, z forward), metres, world z up;
intrinsics (fx, fy, cx, cy) in pixels of the output size; headings are yaw about world z, 0 = facing +x,
wrapped to [-pi, pi); gait phase is in radians, 2 pi per stride walked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridmem.errors import ConfigError, DataError
from hybridmem.geometry import intrinsics_from_fov
from hybridmem.world import motion
from hybridmem.world.scene import SceneLayout, build_scene
from hybridmem.world.subjects import body_height, body_points, body_radius
from hybridmem.world.taxonomy import (
    CAMERA_TRAJECTORIES,
    PATH_FAMILIES,
    SUBJECTS,
    check_path_family,
    get_camera_trajectory,
    get_scene,
    get_subject,
)

MAX_SUBJECTS = 254  # instance ids are uint8 and 0 is the background
CAMERA_MARGIN = 0.5  # cameras may stand this far outside the walk area (scenery starts further out)
CLUSTER_SPREAD = 2.5  # subjects start within +-this many metres of a common point the camera starts on


@dataclass
class ClipPlan:
    scene: str
    layout: SceneLayout
    subject_names: list[str]  # "S"
    subject_families: list[str]  # "S" "human" | "animal"
    path_families: list[str]  # "S"
    camera_trajectory: str
    camera_phase0: float  # where in its swing the camera starts (0 = looking at the subjects)
    num_frames: int
    fps: float
    width: int
    height: int
    horizontal_fov_deg: float
    cameras: np.ndarray  # "T 4 4" float64
    intrinsics: np.ndarray  # "4" float64
    positions: np.ndarray  # "S T 3" float64 ground-contact point
    headings: np.ndarray  # "S T" float64
    gait_phase: np.ndarray  # "S T" float64
    speeds: np.ndarray  # "S T" float64 m/s

    def __post_init__(self):
        S, T = len(self.subject_names), int(self.num_frames)
        if isinstance(self.layout, dict):
            self.layout = SceneLayout.from_dict(self.layout)
        expected = {
            "cameras": (T, 4, 4),
            "intrinsics": (4,),
            "positions": (S, T, 3),
            "headings": (S, T),
            "gait_phase": (S, T),
            "speeds": (S, T),
        }
        for name, shape in expected.items():
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise DataError(f"clip plan: '{name}' should have shape {shape}, got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise DataError(f"clip plan: '{name}' contains NaN or infinity")
            setattr(self, name, value)
        for field, names in (
            ("subject_families", self.subject_families),
            ("path_families", self.path_families),
        ):
            if len(names) != S:
                raise DataError(f"clip plan: '{field}' has {len(names)} entries for {S} subjects")
        for name in self.subject_names:
            get_subject(name)
        get_camera_trajectory(self.camera_trajectory)

    @property
    def num_subjects(self) -> int:
        return len(self.subject_names)

    def to_dict(self) -> dict:
        """JSON-able dict (numpy arrays become nested lists)."""
        out = {}
        for key, value in self.__dict__.items():
            if isinstance(value, SceneLayout):
                out[key] = value.to_dict()
            elif isinstance(value, np.ndarray):
                out[key] = value.tolist()
            else:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, values: dict) -> ClipPlan:
        return cls(**values)


def _check_args(scene, subject_names, num_frames, fps, width, height, horizontal_fov_deg):
    get_scene(scene)
    if not 1 <= len(subject_names) <= MAX_SUBJECTS:
        raise ConfigError(f"subject_names: need 1 to {MAX_SUBJECTS} subjects, got {len(subject_names)}")
    for name in subject_names:
        get_subject(name)
    if num_frames < 1:
        raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    if width < 1 or height < 1:
        raise ConfigError(f"width and height must be >= 1 pixel, got {width}x{height}")
    if not 1.0 <= horizontal_fov_deg <= 170.0:
        raise ConfigError(f"horizontal_fov_deg must be in [1, 170], got {horizontal_fov_deg}")


def _place_path(rng, relative: "T 2", desired_start: "2", half: float) -> tuple["T 2", float, float]:
    """Rotate and (if needed) shrink a path that starts at the origin so it fits in [-half, half]^2.

    Tries 8 rotations and keeps the first that fits unshrunk (else the one that needs the least
    shrinking); then moves its start as close to `desired_start` as the bounds allow.
    Returns absolute positions, the rotation and the shrink factor.
    """
    base = rng.uniform(0, 2 * np.pi)
    best = None
    for k in range(8):
        angle = base + k * np.pi / 4
        cos, sin = np.cos(angle), np.sin(angle)
        rotated = relative @ np.array([[cos, sin], [-sin, cos]])  # "T 2", rotation by +angle
        extent = rotated.max(0) - rotated.min(0)
        shrink = float(min(1.0, *(2 * half / np.maximum(extent, 1e-9))))
        if best is None or shrink > best[2] + 1e-12:
            best = (rotated, angle, shrink)
        if shrink >= 1.0:
            break
    rotated, angle, shrink = best
    rotated = rotated * shrink
    lowest, highest = -half - rotated.min(0), half - rotated.max(0)  # feasible start range per axis
    start = np.clip(desired_start, lowest, np.maximum(lowest, highest))
    return rotated + start, angle, shrink


def plan_clip(
    rng: np.random.Generator,
    *,
    scene: str,
    subject_names: list[str],
    num_frames: int,
    fps: float,
    width: int,
    height: int,
    horizontal_fov_deg: float = 70.0,
    path_families: tuple[str, ...] | list[str] = PATH_FAMILIES,
) -> ClipPlan:
    """Draw one clip: scene layout, subject paths, camera trajectory; compute every per-frame quantity.

    path_families: the families a subject's path is drawn from (uniformly; the default, all of them)."""
    _check_args(scene, subject_names, num_frames, fps, width, height, horizontal_fov_deg)
    if not path_families:
        raise ConfigError("path_families: need at least one path family")
    path_families = [check_path_family(name) for name in path_families]
    subject_names = list(subject_names)

    # 1. the static world
    layout = build_scene(rng, scene)
    half = layout.walk_half_size

    # 2. subjects: path family, speed profile, path shape, placement near a common starting area
    cluster = rng.uniform(-half / 2, half / 2, 2)
    families, positions, headings, phases, speeds = [], [], [], [], []
    for name in subject_names:
        spec = SUBJECTS[name]
        family = path_families[rng.integers(len(path_families))]
        speed = rng.uniform(*spec.speed)
        speed_t = motion.speed_profile(rng, family, speed, num_frames, fps)  # "T"
        distance = motion.distance_walked(speed_t, fps)  # "T"
        points, theta = motion.path_polyline(rng, family, distance[-1])
        relative, heading_t = motion.sample_path(points, theta, distance)  # "T 2", "T"
        desired_start = cluster + rng.uniform(-CLUSTER_SPREAD, CLUSTER_SPREAD, 2)
        margin = min(body_radius(name), half / 2)
        placed, angle, shrink = _place_path(rng, relative, desired_start, half - margin)
        families.append(family)
        positions.append(np.concatenate([placed, np.zeros((num_frames, 1))], axis=1))
        headings.append(motion.wrap_angle(heading_t + angle))
        # a shrunk path is walked more slowly; the gait follows the distance actually covered
        phases.append(motion.gait_phase(distance * shrink, spec.stride))
        speeds.append(speed_t * shrink)
    positions = np.stack(positions)  # "S T 3"

    # 3. camera: start position and trajectory; keep the eye inside the walk area (plus a margin) and
    #    out of every subject's body
    trajectory = CAMERA_TRAJECTORIES[list(CAMERA_TRAJECTORIES)[rng.integers(len(CAMERA_TRAJECTORIES))]]
    phase0 = float(rng.uniform(0.0, 0.15))
    starts = positions[:, 0, :2]
    look_height = 0.5 * float(np.mean([body_height(name) for name in subject_names]))
    target = np.array([*starts.mean(0), look_height])
    radii = np.array([body_radius(name) for name in subject_names])
    best = None
    for _ in range(24):
        distance = rng.uniform(4.0, 7.5) + 0.5 * look_height
        azimuth = rng.uniform(0, 2 * np.pi)
        eye = np.array(
            [
                target[0] + distance * np.cos(azimuth),
                target[1] + distance * np.sin(azimuth),
                rng.uniform(1.3, 2.3) + 0.3 * look_height,
            ]
        )
        cameras, eyes = motion.camera_path(trajectory, eye, target, num_frames, phase0)
        outside = np.max(np.abs(eyes[:, :2])) - (half + CAMERA_MARGIN)
        gaps = np.linalg.norm(positions[:, None, :, :2] - eyes[None, :, None, :2], axis=-1)  # "S T T"
        clearance = np.min(gaps.min(axis=(1, 2)) - radii - 0.5)
        violation = max(outside, 0.0) + max(-clearance, 0.0)
        if best is None or violation < best[0]:
            best = (violation, cameras)
        if violation <= 0.0:
            break
    cameras = best[1]

    return ClipPlan(
        scene=scene,
        layout=layout,
        subject_names=subject_names,
        subject_families=[SUBJECTS[name].family for name in subject_names],
        path_families=families,
        camera_trajectory=trajectory.name,
        camera_phase0=phase0,
        num_frames=int(num_frames),
        fps=float(fps),
        width=int(width),
        height=int(height),
        horizontal_fov_deg=float(horizontal_fov_deg),
        cameras=cameras,
        intrinsics=intrinsics_from_fov(width, height, horizontal_fov_deg),
        positions=positions,
        headings=np.stack(headings),
        gait_phase=np.stack(phases),
        speeds=np.stack(speeds),
    )


def subject_points(plan: ClipPlan, s: int, t: int) -> "P 3":
    """World points inside subject s's body at frame t (the centre of every body part)."""
    if not 0 <= s < plan.num_subjects or not 0 <= t < plan.num_frames:
        raise ConfigError(
            f"subject_points: (s={s}, t={t}) outside {plan.num_subjects} subjects x {plan.num_frames} frames"
        )
    name = plan.subject_names[s]
    window = slice(t, t + 1)
    return body_points(name, plan.positions[s, window], plan.headings[s, window], plan.gait_phase[s, window])[
        0
    ]
