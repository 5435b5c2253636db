"""Articulated subject bodies built from unit primitives, posed by position, heading and gait phase.

Body frame: x forward (the walking direction), y left, z up, origin on the ground between the feet. A body is
a list of parts; each part is a unit primitive (see `world.scene.PRIMITIVES`) with a transform that depends
on the gait phase only, so `Body.transforms` poses every part at every frame in one vectorised call.

Gait: legs swing as sin(phase) (humans: left/right in antiphase, arms opposite to their leg; quadrupeds:
diagonal pairs together, a trot), and the body drops by L (1 - cos swing) so the standing foot stays on the
ground. The phase comes from the distance walked (`world.motion.gait_phase`).

Shape letters: T frames, P body parts.
"""

# ruff: noqa: F821 -- one-letter shape strings ("T", "N") in annotations read as undefined names

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from hybridmem.world.scene import PATTERN_SOLID, PATTERN_SPOTS, PATTERN_STRIPES, PATTERN_TWO_TONE
from hybridmem.world.taxonomy import SubjectSpec, get_subject

# ------------------------------------------------------------------------------ vectorised transforms


def translate(offset) -> "... 4 4":
    offset = np.asarray(offset, dtype=np.float64)
    matrix = np.broadcast_to(np.eye(4), offset.shape[:-1] + (4, 4)).copy()
    matrix[..., :3, 3] = offset
    return matrix


def rotate_y(angle) -> "... 4 4":
    angle = np.asarray(angle, dtype=np.float64)
    matrix = np.broadcast_to(np.eye(4), angle.shape + (4, 4)).copy()
    cos, sin = np.cos(angle), np.sin(angle)
    matrix[..., 0, 0], matrix[..., 0, 2], matrix[..., 2, 0], matrix[..., 2, 2] = cos, sin, -sin, cos
    return matrix


def rotate_z(angle) -> "... 4 4":
    angle = np.asarray(angle, dtype=np.float64)
    matrix = np.broadcast_to(np.eye(4), angle.shape + (4, 4)).copy()
    cos, sin = np.cos(angle), np.sin(angle)
    matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 1, 0], matrix[..., 1, 1] = cos, -sin, sin, cos
    return matrix


def scale(size) -> "4 4":
    return np.diag([*np.asarray(size, dtype=np.float64), 1.0])


def _chain(*matrices) -> "T 4 4":
    out = matrices[0]
    for matrix in matrices[1:]:
        out = out @ matrix
    return out


# ---------------------------------------------------------------------------------------------- body


@dataclass
class Body:
    """The parts of one subject; `transforms` poses them."""

    name: str
    primitives: list[str]  # "P"
    colors: np.ndarray  # "P 3"
    colors2: np.ndarray  # "P 3"
    patterns: np.ndarray  # "P 4" (code, frequency, axis, unused), see world.scene
    parts: list[Callable[[np.ndarray], np.ndarray]]  # phase "T" -> body-frame transform "T 4 4"

    def local_transforms(self, phase: "T") -> "T P 4 4":
        phase = np.atleast_1d(np.asarray(phase, dtype=np.float64))
        return np.stack([part(phase) for part in self.parts], axis=1)

    def transforms(self, positions: "T 3", headings: "T", phase: "T") -> "T P 4 4":
        """Part-to-world transforms: translate(position) @ Rz(heading) @ body-frame transform."""
        placement = translate(positions) @ rotate_z(headings)  # "T 4 4"
        return placement[:, None] @ self.local_transforms(phase)  # "T P 4 4"


class _Builder:
    def __init__(self):
        self.primitives, self.colors, self.colors2, self.patterns, self.parts = [], [], [], [], []

    def add(self, primitive, color, part, color2=None, pattern=(PATTERN_SOLID, 0.0, 0.0, 0.0)):
        self.primitives.append(primitive)
        self.colors.append(np.asarray(color, dtype=np.float64))
        self.colors2.append(np.asarray(color if color2 is None else color2, dtype=np.float64))
        self.patterns.append(np.asarray(pattern, dtype=np.float64))
        self.parts.append(part)

    def build(self, name) -> Body:
        return Body(
            name,
            self.primitives,
            np.array(self.colors),
            np.array(self.colors2),
            np.array(self.patterns),
            self.parts,
        )


def _surface(spec: SubjectSpec, axis: int, frequency: float) -> tuple[np.ndarray, tuple]:
    """Second colour and pattern of a subject's main surface (torso or body)."""
    color = np.asarray(spec.color)
    if spec.pattern == "stripes":
        second = np.asarray(spec.color2) if spec.family == "animal" else 0.35 + 0.3 * (1 - color)
        return second, (PATTERN_STRIPES, frequency, axis, 0.0)
    if spec.pattern == "spots":
        second = np.asarray(spec.color2) if spec.family == "animal" else 1 - color
        return second, (PATTERN_SPOTS, frequency, axis, 0.0)
    if spec.pattern == "two_tone":
        second = np.asarray(spec.color2) if spec.family == "animal" else 0.5 * (1 - color) + 0.2
        return second, (PATTERN_TWO_TONE, 0.0, 2.0, 0.0)
    return color, (PATTERN_SOLID, 0.0, 0.0, 0.0)


def _human(spec: SubjectSpec) -> Body:
    H, build = spec.height, spec.proportion("build", 1.0)
    leg, hip_y, leg_width = 0.47 * H, 0.055 * H * build, 0.075 * H
    shoulder_y, arm, arm_width = 0.1 * H * build + 0.035 * H, 0.36 * H, 0.062 * H
    leg_amplitude, arm_amplitude = 0.45, 0.5
    body = _Builder()

    def swing(phase, side):  # side +1 left, -1 right
        return side * leg_amplitude * np.sin(phase)

    def drop(phase):  # keeps the standing foot on the ground
        return -leg * (1 - np.cos(leg_amplitude * np.sin(phase)))

    def at(x, y, z, phase):
        return translate(np.stack(np.broadcast_arrays(x, y, z + drop(phase)), -1))

    for side in (1.0, -1.0):

        def leg_part(phase, side=side):
            return _chain(
                at(0.0, side * hip_y, leg, phase),
                rotate_y(swing(phase, side)),
                translate([0, 0, -leg / 2]),
                scale([leg_width, leg_width, leg]),
            )

        def shoe_part(phase, side=side):
            return _chain(
                at(0.0, side * hip_y, leg, phase),
                rotate_y(swing(phase, side)),
                translate([0.025 * H, 0, -leg + 0.02 * H]),
                scale([0.14 * H, 0.065 * H, 0.04 * H]),
            )

        def arm_part(phase, side=side):
            return _chain(
                at(0.0, side * shoulder_y, leg + 0.28 * H, phase),
                rotate_y(-arm_amplitude / leg_amplitude * swing(phase, side)),
                translate([0, 0, -arm / 2]),
                scale([arm_width, arm_width, arm]),
            )

        def hand_part(phase, side=side):
            return _chain(
                at(0.0, side * shoulder_y, leg + 0.28 * H, phase),
                rotate_y(-arm_amplitude / leg_amplitude * swing(phase, side)),
                translate([0, 0, -arm - 0.02 * H]),
                scale([0.065 * H] * 3),
            )

        body.add("cylinder", spec.color2, leg_part)
        body.add("cube", (0.12, 0.1, 0.09), shoe_part)
        body.add("cylinder", spec.color, arm_part)
        body.add("sphere", spec.color3, hand_part)

    torso_color2, torso_pattern = _surface(spec, axis=2, frequency=5.0)
    body.add(
        "cube",
        spec.color,
        lambda p: at(0.0, 0.0, leg + 0.15 * H, p) @ scale([0.11 * H, 0.2 * H * build, 0.3 * H]),
        torso_color2,
        torso_pattern,
    )
    head_z = leg + 0.38 * H
    body.add("sphere", spec.color3, lambda p: at(0.0, 0.0, head_z, p) @ scale([0.12 * H, 0.11 * H, 0.13 * H]))
    body.add(
        "sphere",
        spec.hair,
        lambda p: at(-0.012 * H, 0.0, head_z + 0.03 * H, p) @ scale([0.125 * H, 0.118 * H, 0.09 * H]),
    )
    if spec.proportion("long_hair", 0.0):
        body.add(
            "cube",
            spec.hair,
            lambda p: at(-0.05 * H, 0.0, head_z - 0.04 * H, p) @ scale([0.04 * H, 0.11 * H, 0.14 * H]),
        )
    if spec.proportion("hat", 0.0):
        hat = 0.6 * np.asarray(spec.color2) + 0.2
        body.add(
            "cylinder",
            hat,
            lambda p: at(0.0, 0.0, head_z + 0.07 * H, p) @ scale([0.125 * H, 0.125 * H, 0.06 * H]),
        )
        body.add(
            "cylinder",
            hat,
            lambda p: at(0.0, 0.0, head_z + 0.045 * H, p) @ scale([0.2 * H, 0.2 * H, 0.01 * H]),
        )
    return body.build(spec.name)


_PATTERN_FREQUENCY = {
    "zebra": 9.0,
    "tiger": 7.0,
    "cat": 6.0,
    "cow": 3.0,
    "giraffe": 6.0,
    "dalmatian": 7.0,
    "leopard": 8.0,
}


def _animal(spec: SubjectSpec) -> Body:
    shoulder = spec.height
    leg = spec.proportion("leg", 0.55) * shoulder  # leg length, ground to the bottom of the body
    depth = (shoulder - leg) / 0.85  # body's vertical size; its top sits at shoulder height
    length = spec.proportion("length", 1.5) * shoulder
    width = spec.proportion("width", 0.75) * depth
    centre_z = leg + 0.35 * depth
    leg_width = spec.proportion("leg_thick", 0.2) * depth
    neck = max(spec.proportion("neck", 0.3) * shoulder, 0.35 * depth)
    head = spec.proportion("head", 0.33) * shoulder
    amplitude = 0.35
    frequency = _PATTERN_FREQUENCY.get(spec.kind, 6.0 if spec.pattern == "stripes" else 5.0)
    body = _Builder()

    def drop(phase):
        return -centre_z * (1 - np.cos(amplitude * np.sin(phase)))

    def at(x, y, z, phase):
        return translate(np.stack(np.broadcast_arrays(x, y, z + drop(phase)), -1))

    # 1. torso, with the species pattern along the body (stripes across it, spots all over)
    coat2, coat_pattern = _surface(spec, axis=0, frequency=frequency)
    body.add(
        "sphere",
        spec.color,
        lambda p: at(0.0, 0.0, centre_z, p) @ scale([length, width, depth]),
        coat2,
        coat_pattern,
    )

    # 2. legs: diagonal pairs swing together (trot)
    leg_color = spec.color3 if spec.pattern == "two_tone" else spec.color
    leg_pattern = coat_pattern if spec.pattern in ("stripes", "spots") else (PATTERN_SOLID, 0.0, 0.0, 0.0)
    for front in (1.0, -1.0):
        for side in (1.0, -1.0):

            def leg_part(phase, front=front, side=side):
                swing = front * side * amplitude * np.sin(phase)
                return _chain(
                    at(front * 0.33 * length, side * 0.28 * width, centre_z, phase),
                    rotate_y(swing),
                    translate([0, 0, -centre_z / 2]),
                    scale([leg_width, leg_width, centre_z]),
                )

            body.add("cylinder", leg_color, leg_part, coat2, leg_pattern)

    # 3. neck and head, nodding a little with the gait
    tilt = 0.25 if spec.kind == "giraffe" else 0.75
    neck_base = np.array([0.4 * length, 0.0, centre_z + 0.15 * depth])
    neck_width = 0.4 * depth if spec.kind != "giraffe" else 0.22 * depth

    def nod(phase):
        return 0.05 * np.sin(2 * phase)

    body.add(
        "cylinder",
        spec.color,
        lambda p: _chain(
            at(*neck_base, p),
            rotate_y(tilt + nod(p)),
            translate([0, 0, neck / 2]),
            scale([neck_width, neck_width, neck]),
        ),
        coat2,
        coat_pattern,
    )

    def head_frame(phase):
        lift = neck * np.array([np.sin(tilt), 0.0, np.cos(tilt)])
        return _chain(at(*neck_base, phase), rotate_y(nod(phase)), translate(lift), rotate_y(0.35))

    body.add(
        "sphere",
        spec.color,
        lambda p: (
            head_frame(p) @ translate([0.3 * head, 0, 0]) @ scale([1.5 * head, 0.8 * head, 0.75 * head])
        ),
    )
    body.add(
        "sphere",
        spec.color3,
        lambda p: head_frame(p) @ translate([0.95 * head, 0, -0.1 * head]) @ scale([0.4 * head] * 3),
    )
    ears = spec.proportion("ears", 0.12) * shoulder
    for side in (1.0, -1.0):
        body.add(
            "cone",
            spec.color3,
            lambda p, side=side: (
                head_frame(p)
                @ translate([0.05 * head, side * 0.28 * head, 0.4 * head])
                @ scale([0.5 * ears, 0.35 * ears, ears])
            ),
        )

    # 4. tail, wagging at twice the gait frequency
    tail = spec.proportion("tail", 0.4) * shoulder
    tail_base = [-0.48 * length, 0.0, centre_z + 0.15 * depth]
    body.add(
        "cylinder",
        spec.color3 if spec.pattern == "two_tone" else spec.color,
        lambda p: _chain(
            at(*tail_base, p),
            rotate_z(0.3 * np.sin(2 * p)),
            rotate_y(-2.2),
            translate([0, 0, tail / 2]),
            scale([0.12 * depth, 0.12 * depth, tail]),
        ),
    )

    # 5. species extras
    if spec.proportion("hump", 0.0):
        body.add(
            "sphere",
            spec.color,
            lambda p: (
                at(0.0, 0.0, centre_z + 0.5 * depth, p) @ scale([0.5 * length, 0.6 * width, 0.5 * depth])
            ),
        )
    if spec.proportion("mane", 0.0):
        body.add(
            "sphere",
            spec.color2,
            lambda p: (
                at(*(neck_base + [0.05 * length, 0, 0.2 * neck]), p)
                @ scale([0.9 * head, 1.1 * head, 1.2 * head])
            ),
        )
    if spec.proportion("horn", 0.0):
        body.add(
            "cone",
            (0.85, 0.82, 0.75),
            lambda p: (
                head_frame(p)
                @ translate([1.0 * head, 0, 0.3 * head])
                @ scale([0.2 * head, 0.2 * head, 0.5 * head])
            ),
        )
    if spec.kind == "elephant":
        body.add(
            "cylinder",
            spec.color,
            lambda p: _chain(
                head_frame(p),
                translate([1.0 * head, 0, -0.2 * head]),
                rotate_y(0.2 + 0.1 * np.sin(p)),
                translate([0, 0, -0.6 * head]),
                scale([0.22 * head, 0.22 * head, 1.2 * head]),
            ),
        )
    return body.build(spec.name)


@cache
def build_body(name: str) -> Body:
    """The body of subject `name` (cached: bodies depend on the taxonomy only)."""
    spec = get_subject(name)
    return _human(spec) if spec.family == "human" else _animal(spec)


def body_points(name: str, positions: "T 3", headings: "T", phase: "T") -> "T P 3":
    """World position of every part's centre (a point inside the body's silhouette)."""
    return build_body(name).transforms(positions, headings, phase)[..., :3, 3]


@cache
def body_radius(name: str) -> float:
    """Radius of a vertical cylinder around the body-frame origin that contains the whole body (metres)."""
    body = build_body(name)
    phases = np.linspace(0, 2 * np.pi, 9)
    local = body.local_transforms(phases)  # "T P 4 4"
    corners = np.array(
        [[x, y, z, 1.0] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
    )  # "8 4"
    points = np.einsum("tpij,cj->tpci", local, corners)[..., :3]
    return float(np.max(np.linalg.norm(points[..., :2], axis=-1)))


@cache
def body_height(name: str) -> float:
    """Highest point of the body over a gait cycle (metres)."""
    body = build_body(name)
    local = body.local_transforms(np.linspace(0, 2 * np.pi, 9))
    corners = np.array([[x, y, z, 1.0] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    return float(np.max(np.einsum("tpij,cj->tpci", local, corners)[..., 2]))
