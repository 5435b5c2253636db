"""A scene layout: one seeded variation of a `SceneTemplate`, as pure data the renderer draws.

World frame: z up, ground plane z = 0, metres. Subjects walk and cameras stand inside the walk area
[-h, h]^2 (h = `walk_half_size`); all static scenery (fence, props, rocks, trees, buildings) stands in
rings outside it, so nothing walks through a wall and the camera never stands inside a tree. Panning away
from the subjects shows that scenery, which is what the background memory has to keep.

Shape letters: O static objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridmem.errors import DataError
from hybridmem.world.taxonomy import GROUND_PATTERNS, SceneTemplate, get_scene

# Unit primitives the renderer knows, each centred on the origin with extent 1 along every axis
# (cube side 1, sphere diameter 1, cylinder/cone/pyramid diameter 1 and height 1, axis along z).
PRIMITIVES = ("cube", "sphere", "cylinder", "cone", "pyramid")

# Surface pattern codes shared with the shader: (code, frequency, axis, unused) per object.
PATTERN_SOLID, PATTERN_STRIPES, PATTERN_SPOTS, PATTERN_WINDOWS, PATTERN_TWO_TONE = 0, 1, 2, 3, 4


def transform(position, size, yaw: float = 0.0, pitch: float = 0.0) -> "4 4":
    """Translate @ Rz(yaw) @ Ry(pitch) @ Scale(size) for one unit primitive."""
    cz, sz, cy, sy = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
    ry = np.array([[cy, 0, sy], [0, 1.0, 0], [-sy, 0, cy]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ np.diag(np.asarray(size, dtype=np.float64))
    matrix[:3, 3] = position
    return matrix


@dataclass
class SceneLayout:
    """Everything the renderer needs about the static world of one clip."""

    name: str  # template name
    walk_half_size: float
    ground: np.ndarray  # "3" RGB
    ground2: np.ndarray  # "3" RGB
    ground_pattern: int  # index into GROUND_PATTERNS
    sky_zenith: np.ndarray  # "3"
    sky_horizon: np.ndarray  # "3"
    sun_direction: np.ndarray  # "3" unit vector from the ground toward the sun
    sun_color: np.ndarray  # "3"
    ambient: float
    fog: float
    primitives: list[str]  # "O" names from PRIMITIVES
    transforms: np.ndarray  # "O 4 4" object-to-world
    colors: np.ndarray  # "O 3"
    colors2: np.ndarray  # "O 3"
    patterns: np.ndarray  # "O 4" (code, frequency, axis, unused)

    def __post_init__(self):
        num_objects = len(self.primitives)
        for name, shape in [
            ("transforms", (num_objects, 4, 4)),
            ("colors", (num_objects, 3)),
            ("colors2", (num_objects, 3)),
            ("patterns", (num_objects, 4)),
        ]:
            value = np.asarray(getattr(self, name), dtype=np.float64).reshape(shape)
            setattr(self, name, value)
        unknown = sorted(set(self.primitives) - set(PRIMITIVES))
        if unknown:
            raise DataError(f"scene layout: unknown primitives {unknown}; valid: {', '.join(PRIMITIVES)}")
        for name in ("ground", "ground2", "sky_zenith", "sky_horizon", "sun_direction", "sun_color"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(3))

    def to_dict(self) -> dict:
        out = {}
        for key, value in self.__dict__.items():
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, values: dict) -> SceneLayout:
        return cls(**values)


def _jitter(rng: np.random.Generator, color, amount: float = 0.08) -> np.ndarray:
    """A colour varied in brightness and a little in hue, so repeated objects do not look cloned."""
    color = np.asarray(color, dtype=np.float64)
    return np.clip(color * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount / 4, 3), 0, 1)


def _ring_point(rng: np.random.Generator, inner: float, outer: float) -> np.ndarray:
    """A point in the square annulus inner <= max(|x|, |y|) <= outer."""
    while True:
        point = rng.uniform(-outer, outer, 2)
        if np.max(np.abs(point)) >= inner:
            return point


def build_scene(rng: np.random.Generator, name: str) -> SceneLayout:
    """Draw one layout of the scene template `name` from `rng`."""
    template: SceneTemplate = get_scene(name)
    h = template.walk_half_size
    objects: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, tuple]] = []
    solid = (PATTERN_SOLID, 0.0, 0.0, 0.0)

    def add(primitive, matrix, color, color2=None, pattern=solid):
        color2 = color if color2 is None else color2
        objects.append((primitive, matrix, np.asarray(color), np.asarray(color2), pattern))

    # 1. fence on the walk area's border, with a gap now and then
    if template.fence:
        fence_half = h + 0.8
        for side in range(4):
            yaw = side * np.pi / 2
            direction, normal = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
            for along in np.arange(-fence_half, fence_half, 2.0):
                if rng.uniform() < 0.15:
                    continue
                base = normal * fence_half + direction * along
                color = _jitter(rng, template.fence_color, 0.05)
                add("cube", transform([*base, 0.5], [0.1, 0.1, 1.0], yaw), color)
                middle = base + direction * 1.0
                for height in (0.45, 0.85):
                    add("cube", transform([*middle, height], [2.0, 0.05, 0.1], yaw), color)

    # 2. props just outside the walk area
    for _ in range(rng.integers(template.prop_count[0], template.prop_count[1] + 1)):
        kind = template.props[rng.integers(len(template.props))]
        x, y = _ring_point(rng, h + 1.6, h + 5.0)
        yaw = rng.uniform(0, 2 * np.pi)
        if kind == "crate":
            size = rng.uniform(0.5, 1.0)
            add("cube", transform([x, y, size / 2], [size] * 3, yaw), _jitter(rng, (0.55, 0.4, 0.22)))
        elif kind == "barrel":
            add("cylinder", transform([x, y, 0.45], [0.6, 0.6, 0.9], yaw), _jitter(rng, (0.45, 0.25, 0.15)))
        elif kind == "lamp":
            add("cylinder", transform([x, y, 1.6], [0.12, 0.12, 3.2]), (0.15, 0.15, 0.17))
            add("sphere", transform([x, y, 3.3], [0.45] * 3), (1.0, 0.95, 0.7))
        elif kind == "bench":
            add("cube", transform([x, y, 0.45], [1.6, 0.5, 0.08], yaw), _jitter(rng, (0.5, 0.32, 0.18)))
            add("cube", transform([x, y, 0.22], [1.4, 0.4, 0.44], yaw), (0.2, 0.2, 0.2))
        elif kind == "cone":
            stripes = (PATTERN_STRIPES, 3.0, 2.0, 0.0)
            add("cone", transform([x, y, 0.35], [0.4, 0.4, 0.7]), (1.0, 0.45, 0.05), (1, 1, 1), stripes)
        elif kind == "pillar":
            height = rng.uniform(2.5, 4.0)
            add(
                "cylinder",
                transform([x, y, height / 2], [0.6, 0.6, height]),
                _jitter(rng, (0.85, 0.82, 0.75)),
            )
        elif kind == "hay":
            add(
                "cylinder",
                transform([x, y, 0.6], [1.2, 1.2, 1.2], yaw, np.pi / 2),
                _jitter(rng, (0.85, 0.7, 0.3)),
            )

    # 3. rocks
    for _ in range(rng.integers(template.rocks[0], template.rocks[1] + 1)):
        x, y = _ring_point(rng, h + 1.5, h + 12.0)
        size = rng.uniform(0.4, 1.6) * np.array(
            [rng.uniform(0.8, 1.4), rng.uniform(0.8, 1.4), rng.uniform(0.5, 0.9)]
        )
        add(
            "sphere",
            transform([x, y, size[2] * 0.3], size, rng.uniform(0, np.pi), rng.uniform(-0.2, 0.2)),
            _jitter(rng, template.rock_color, 0.12),
        )

    # 4. trees
    for _ in range(rng.integers(template.trees[0], template.trees[1] + 1)):
        x, y = _ring_point(rng, h + 3.0, h + 12.0)
        scale = rng.uniform(0.75, 1.35)
        foliage = _jitter(rng, template.foliage_colors[rng.integers(len(template.foliage_colors))], 0.1)
        trunk = _jitter(rng, (0.36, 0.24, 0.14), 0.1)
        style = template.tree_style
        if style == "conifer":
            add("cylinder", transform([x, y, 0.6 * scale], [0.3 * scale, 0.3 * scale, 1.2 * scale]), trunk)
            for level, width in enumerate((2.6, 2.0, 1.4)):
                z = (1.6 + 1.1 * level) * scale
                add("cone", transform([x, y, z], [width * scale, width * scale, 1.8 * scale]), foliage)
        elif style == "palm":
            height = 4.5 * scale
            lean = rng.uniform(-0.15, 0.15)
            add("cylinder", transform([x, y, height / 2], [0.28, 0.28, height], 0.0, lean), trunk)
            top = np.array([x + np.sin(lean) * height, y, height])
            for leaf in range(6):
                yaw = leaf * np.pi / 3 + rng.uniform(-0.2, 0.2)
                offset = 1.1 * np.array([np.cos(yaw), np.sin(yaw), 0.0])
                add("sphere", transform(top + offset - [0, 0, 0.3], [2.4, 0.6, 0.15], yaw, 0.3), foliage)
        elif style == "dead":
            height = 2.8 * scale
            add("cylinder", transform([x, y, height / 2], [0.25, 0.25, height]), trunk * 0.8)
            for branch in range(3):
                yaw = rng.uniform(0, 2 * np.pi)
                position = [x + 0.45 * np.cos(yaw), y + 0.45 * np.sin(yaw), height * (0.55 + 0.15 * branch)]
                add("cylinder", transform(position, [0.1, 0.1, 1.2], yaw, 0.9), trunk * 0.8)
        elif style == "bush":
            for _ in range(3):
                offset = rng.uniform(-0.6, 0.6, 2)
                size = rng.uniform(0.8, 1.6) * scale
                add(
                    "sphere",
                    transform([x + offset[0], y + offset[1], size * 0.4], [size, size, size * 0.8]),
                    foliage,
                )
        else:  # round
            add("cylinder", transform([x, y, 1.1 * scale], [0.35 * scale, 0.35 * scale, 2.2 * scale]), trunk)
            add("sphere", transform([x, y, 3.0 * scale], [2.6 * scale, 2.6 * scale, 2.3 * scale]), foliage)

    # 5. buildings, facing the walk area
    for _ in range(rng.integers(template.buildings[0], template.buildings[1] + 1)):
        x, y = _ring_point(rng, h + 7.0, h + 20.0)
        yaw = np.arctan2(-y, -x) + rng.uniform(-0.3, 0.3)
        width, depth, height = rng.uniform(4, 9), rng.uniform(4, 8), rng.uniform(3, 9)
        wall = _jitter(rng, template.building_colors[rng.integers(len(template.building_colors))], 0.06)
        windows = (PATTERN_WINDOWS, np.round(height / 3.0), 0.0, 0.0)
        add("cube", transform([x, y, height / 2], [depth, width, height], yaw), wall, wall * 0.35, windows)
        roof = _jitter(rng, template.roof_color, 0.06)
        add(
            "pyramid",
            transform([x, y, height + 1.0], [depth * 1.45, width * 1.45, 2.0], yaw + np.pi / 4),
            roof,
        )

    # 6. sun and sky
    elevation = np.deg2rad(template.sun_elevation_deg + rng.uniform(-5, 5))
    azimuth = rng.uniform(0, 2 * np.pi)
    sun = np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )
    primitives = [obj[0] for obj in objects]
    return SceneLayout(
        name=name,
        walk_half_size=h,
        ground=_jitter(rng, template.ground, 0.05),
        ground2=_jitter(rng, template.ground2, 0.05),
        ground_pattern=GROUND_PATTERNS.index(template.ground_pattern),
        sky_zenith=np.asarray(template.sky_zenith),
        sky_horizon=np.asarray(template.sky_horizon),
        sun_direction=sun,
        sun_color=np.asarray(template.sun_color),
        ambient=template.ambient,
        fog=template.fog,
        primitives=primitives,
        transforms=np.array([obj[1] for obj in objects]).reshape(-1, 4, 4),
        colors=np.array([obj[2] for obj in objects]).reshape(-1, 3),
        colors2=np.array([obj[3] for obj in objects]).reshape(-1, 3),
        patterns=np.array([obj[4] for obj in objects], dtype=np.float64).reshape(-1, 4),
    )
