"""Subject paths and camera trajectories.

A subject path is a heading profile over arc length: theta(s) sampled every `PATH_STEP` metres, integrated
into a ground polyline. A separate speed profile v(t) gives the distance walked d(t); position and heading
are the polyline and its tangent at d(t), and the gait phase is 2 pi d(t) / stride, so legs move exactly as
far as the body travels and a standing subject (v = 0) freezes mid-stride instead of sliding.

A camera trajectory swings away from a start view and back: w(tau) = sin^2(pi (cycles tau + phase0)) in
[0, 1] for tau in [0, 1] over the clip, 0 = the start view (looking at the subjects), 1 = the turning point.

Shape letters: T frames, N path samples.
"""

# ruff: noqa: F821 -- one-letter shape strings ("T", "N") in annotations read as undefined names

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hybridmem.geometry import look_at
from hybridmem.validation import check_choice
from hybridmem.world.taxonomy import PATH_FAMILIES, CameraTrajectory

PATH_STEP = 0.05  # metres between path samples


def _smooth_steps(s: "N", corners: "K", angles: "K", turn_length: float) -> "N":
    """Heading that turns by angles[k] around arc length corners[k], spread over `turn_length` metres."""
    theta = np.zeros_like(s)
    for corner, angle in zip(corners, angles, strict=True):
        theta += angle * np.clip((s - corner) / turn_length + 0.5, 0.0, 1.0)
    return theta


def _heading_line(rng, s):
    return np.zeros_like(s)


def _heading_arc(rng, s):
    radius = rng.uniform(4.0, 10.0) * rng.choice([-1.0, 1.0])
    return s / radius


def _heading_circle(rng, s):
    radius = rng.uniform(1.5, 3.0) * rng.choice([-1.0, 1.0])
    return s / radius


def _heading_figure_eight(rng, s):
    # two tangent circles: turn one way for a full loop, then the other way
    radius = rng.uniform(1.5, 2.5)
    loop = 2 * np.pi * radius
    lap = np.floor(s / loop)
    within = s - lap * loop
    # even laps turn left from 0 to 2 pi, odd laps turn right back to 0: continuous, no wrap jumps
    turned = np.where(lap % 2 == 0, within / radius, 2 * np.pi - within / radius)
    return turned * rng.choice([-1.0, 1.0])


def _heading_zigzag(rng, s):
    segment = rng.uniform(1.2, 2.5)
    swing = np.deg2rad(rng.uniform(50, 80))
    corners = np.arange(segment, s[-1] + segment, segment)
    angles = np.where(np.arange(len(corners)) % 2 == 0, -2 * swing, 2 * swing)
    return swing + _smooth_steps(s, corners, angles, 0.3)


def _heading_stop_and_go(rng, s):
    # the stops come from the speed profile; the route itself is a gentle curve
    return s / (rng.uniform(8.0, 20.0) * rng.choice([-1.0, 1.0]))


def _heading_u_turn(rng, s):
    radius = rng.uniform(0.8, 1.5)
    straight = max(0.5, s[-1] / 2 - np.pi * radius / 2)
    turn = np.clip((s - straight) / (np.pi * radius), 0.0, 1.0) * np.pi
    return turn * rng.choice([-1.0, 1.0])


def _heading_waypoints(rng, s):
    count = int(np.ceil(s[-1] / 1.5)) + 1
    corners = np.cumsum(rng.uniform(1.5, 3.5, count))
    angles = rng.uniform(np.deg2rad(30), np.deg2rad(120), count) * rng.choice([-1.0, 1.0], count)
    return _smooth_steps(s, corners, angles, 0.6)


def _heading_spiral(rng, s):
    # radius grows linearly with arc length: r(s) = r0 + b s, so theta(s) = ln(1 + b s / r0) / b
    r0, growth = rng.uniform(0.8, 1.5), rng.uniform(0.05, 0.15)
    return np.log1p(growth * s / r0) / growth * rng.choice([-1.0, 1.0])


def _heading_s_curve(rng, s):
    amplitude = np.deg2rad(rng.uniform(35, 70))
    wavelength = rng.uniform(4.0, 8.0)
    return amplitude * np.sin(2 * np.pi * s / wavelength)


PATH_GENERATORS: dict[str, Callable[[np.random.Generator, np.ndarray], np.ndarray]] = {
    "line": _heading_line,
    "arc": _heading_arc,
    "circle": _heading_circle,
    "figure_eight": _heading_figure_eight,
    "zigzag": _heading_zigzag,
    "stop_and_go": _heading_stop_and_go,
    "u_turn": _heading_u_turn,
    "waypoints": _heading_waypoints,
    "spiral": _heading_spiral,
    "s_curve": _heading_s_curve,
}
assert tuple(PATH_GENERATORS) == PATH_FAMILIES


def path_polyline(rng: np.random.Generator, family: str, length: float) -> tuple["N 2", "N"]:
    """Ground points from the origin, initial heading ~ +x, and the (unwrapped) heading at each sample."""
    check_choice(family, PATH_GENERATORS, "path family", "path families")
    s = np.arange(0.0, max(length, PATH_STEP) + 2 * PATH_STEP, PATH_STEP)  # "N"
    theta = PATH_GENERATORS[family](rng, s)  # "N"
    # midpoint rule: the step from sample k to k+1 follows the mean heading of the two
    mid = 0.5 * (theta[1:] + theta[:-1])
    steps = PATH_STEP * np.stack([np.cos(mid), np.sin(mid)], axis=-1)  # "N-1 2"
    points = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])  # "N 2"
    return points, theta


def speed_profile(rng: np.random.Generator, family: str, speed: float, num_frames: int, fps: float) -> "T":
    """Walking speed at each frame (m/s); stop_and_go alternates walking and standing still."""
    speeds = np.full(num_frames, float(speed))
    if family == "stop_and_go":
        time = np.arange(num_frames) / fps
        walking, boundary = bool(rng.integers(2)), 0.0
        start = 0.0
        while start < time[-1] + 1:
            duration = rng.uniform(0.8, 2.0) if walking else rng.uniform(0.6, 1.5)
            boundary = start + duration
            speeds[(time >= start) & (time < boundary)] = speed if walking else 0.0
            walking, start = not walking, boundary
    return speeds


def distance_walked(speeds: "T", fps: float) -> "T":
    """Distance along the path at each frame; frame 0 is at distance 0 (trapezoid rule over time)."""
    increments = 0.5 * (speeds[1:] + speeds[:-1]) / fps
    return np.concatenate([[0.0], np.cumsum(increments)])


def sample_path(points: "N 2", theta: "N", distances: "T") -> tuple["T 2", "T"]:
    """Positions and headings (unwrapped) at arc lengths `distances` along a path with PATH_STEP spacing."""
    s = np.arange(len(points)) * PATH_STEP
    if distances.max(initial=0.0) > s[-1] + 1e-9:
        raise ValueError("sample_path: distance beyond the end of the path")
    positions = np.stack([np.interp(distances, s, points[:, 0]), np.interp(distances, s, points[:, 1])], -1)
    return positions, np.interp(distances, s, theta)


def gait_phase(distances: "T", stride: float) -> "T":
    """Gait phase in radians: one full cycle (2 pi) per stride length walked."""
    return 2 * np.pi * np.asarray(distances) / stride


def wrap_angle(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


# ------------------------------------------------------------------------------------------- cameras


def swing(num_frames: int, cycles: float, phase0: float) -> "T":
    """w(t) in [0, 1]: 0 at the start view, 1 at the far end of the swing."""
    tau = np.arange(num_frames) / max(num_frames - 1, 1)
    return np.sin(np.pi * (cycles * tau + phase0)) ** 2


def _direction(yaw, pitch) -> np.ndarray:
    return np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=-1)


def camera_path(
    trajectory: CameraTrajectory, eye: "3", target: "3", num_frames: int, phase0: float
) -> tuple["T 4 4", "T 3"]:
    """Camera-to-world poses (OpenCV axes) of `trajectory` started at `eye` looking at `target`; and eyes."""
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    offset = target - eye
    yaw0 = np.arctan2(offset[1], offset[0])
    pitch0 = np.arctan2(offset[2], np.linalg.norm(offset[:2]))
    w = swing(num_frames, trajectory.cycles, phase0)  # "T"
    amplitude = np.deg2rad(trajectory.amplitude_deg) * trajectory.direction
    yaw, pitch = np.full(num_frames, yaw0), np.full(num_frames, pitch0)
    eyes = np.repeat(eye[None], num_frames, axis=0)  # "T 3"
    if trajectory.kind in ("pan", "dolly_pan", "pan_tilt"):
        yaw = yaw0 + amplitude * w
    if trajectory.kind == "tilt":
        pitch = pitch0 + amplitude * w
    if trajectory.kind == "pan_tilt":
        pitch = pitch0 + np.deg2rad(trajectory.tilt_deg) * w
    if trajectory.kind == "dolly_pan":
        forward = np.array([np.cos(yaw0), np.sin(yaw0), 0.0])
        eyes = eye + trajectory.travel * w[:, None] * forward
    looks = eyes + _direction(yaw, np.clip(pitch, -np.deg2rad(80), np.deg2rad(80)))  # "T 3"
    if trajectory.kind == "orbit":
        # circle a pivot 40% of the way to the subjects, looking at it: subjects behind it sweep sideways
        pivot = eye + 0.4 * offset
        angle = amplitude * w  # "T"
        arm = eye[:2] - pivot[:2]
        cos, sin = np.cos(angle), np.sin(angle)
        eyes = eyes.copy()
        eyes[:, 0] = pivot[0] + cos * arm[0] - sin * arm[1]
        eyes[:, 1] = pivot[1] + sin * arm[0] + cos * arm[1]
        looks = np.repeat(pivot[None], num_frames, axis=0)
    poses = np.stack([look_at(e, l) for e, l in zip(eyes, looks, strict=True)])  # "T 4 4"
    return poses, eyes
