"""HM-World's taxonomy: the named scenes, subjects, subject path families and camera trajectories.

The paper's HM-World (Chen et al., arXiv 2603.25716, Sec. 3) draws each clip from 17 scenes, 49 subjects
(humans and animals), 10 subject path families and 28 back-and-forth camera trajectories. We keep the same
counts; every name below is stable API (clip metadata stores names, splits hold names out), so add new
entries at the end and never rename one.

Everything here is pure data; the seeded variation of a scene lives in `world.scene`, the bodies in
`world.subjects`, the motion in `world.motion`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hybridmem.validation import check_choice

RGB = tuple[float, float, float]


def _hex(code: str) -> RGB:
    """'#RRGGBB' -> linear-ish RGB floats in [0, 1] (we shade in display space; no gamma pipeline)."""
    code = code.lstrip("#")
    return tuple(int(code[i : i + 2], 16) / 255.0 for i in (0, 2, 4))


def _lookup(registry: dict, name: str, what: str):
    check_choice(name, registry, what, f"{what}s")
    return registry[name]


# ----------------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SceneTemplate:
    """A scene style; `world.scene.build_scene` draws one seeded layout from it."""

    name: str
    ground: RGB  # main ground colour
    ground2: RGB  # second ground colour (noise patches, tiles, stripes)
    ground_pattern: str  # one of GROUND_PATTERNS
    sky_zenith: RGB
    sky_horizon: RGB
    sun_elevation_deg: float  # sun height above the horizon; low = long shadows
    sun_color: RGB
    ambient: float  # ambient light strength relative to the sun
    buildings: tuple[int, int]  # (min, max) count
    building_colors: tuple[RGB, ...]
    roof_color: RGB
    trees: tuple[int, int]
    tree_style: str  # one of TREE_STYLES
    foliage_colors: tuple[RGB, ...]
    rocks: tuple[int, int]
    rock_color: RGB
    fence: bool
    fence_color: RGB
    props: tuple[str, ...] = field(default=())  # kinds from PROP_KINDS
    prop_count: tuple[int, int] = (0, 0)
    walk_half_size: float = 8.0  # subjects walk (and cameras stand) inside [-h, h]^2, metres
    fog: float = 0.01  # exponential fog density per metre toward the horizon colour


GROUND_PATTERNS = ("noise", "checker", "tiles", "stripes", "plain")
TREE_STYLES = ("round", "conifer", "palm", "dead", "bush")
PROP_KINDS = ("crate", "barrel", "lamp", "bench", "cone", "pillar", "hay")

_SCENE_LIST = [
    SceneTemplate(
        "meadow", _hex("#5f9e3a"), _hex("#7bb449"), "noise", _hex("#4d84d1"), _hex("#bcd8f0"), 55,
        _hex("#fff4e0"), 0.35, (0, 1), (_hex("#c8b89a"),), _hex("#8a3b2a"), (6, 10), "round",
        (_hex("#2f6b2a"), _hex("#3f7f30")), (2, 5), _hex("#8c8a84"), True, _hex("#8b6a45"),
        ("hay",), (1, 3),
    ),
    SceneTemplate(
        "forest_clearing", _hex("#4a6b2c"), _hex("#6b5532"), "noise", _hex("#5a8fc8"), _hex("#c9dccb"), 65,
        _hex("#fff1d6"), 0.4, (0, 0), (_hex("#7a5a3a"),), _hex("#5a3a22"), (14, 20), "conifer",
        (_hex("#1f4d2a"), _hex("#2d5e34")), (3, 6), _hex("#6f6d66"), False, _hex("#000000"),
        (), (0, 0),
    ),
    SceneTemplate(
        "desert_village", _hex("#d9b77a"), _hex("#c9a064"), "noise", _hex("#3d7fd6"), _hex("#f2dcb0"), 70,
        _hex("#fff0cc"), 0.3, (3, 5), (_hex("#d8c19a"), _hex("#c7a77a"), _hex("#e6d3b0")), _hex("#b08a5a"),
        (1, 3), "palm", (_hex("#5a8a3a"),), (2, 4), _hex("#b9946a"), False, _hex("#000000"),
        ("barrel", "crate"), (2, 4),
    ),
    SceneTemplate(
        "snowy_town", _hex("#eef2f6"), _hex("#d5dde6"), "noise", _hex("#8aa4c0"), _hex("#e4e9ef"), 25,
        _hex("#ffe9d0"), 0.55, (3, 5), (_hex("#8b3a3a"), _hex("#3a5a8b"), _hex("#5a6b4a")), _hex("#f4f6f8"),
        (3, 6), "conifer", (_hex("#23463a"),), (0, 2), _hex("#7b7f86"), True, _hex("#5a4030"),
        ("lamp",), (2, 3),
    ),
    SceneTemplate(
        "city_plaza", _hex("#a9a6a0"), _hex("#8e8b85"), "tiles", _hex("#5b8fd0"), _hex("#d6e2ee"), 60,
        _hex("#fff6e8"), 0.4, (4, 6), (_hex("#b8b0a4"), _hex("#9aa4ae"), _hex("#c9b79c"), _hex("#7f8a96")),
        _hex("#55555a"), (2, 4), "round", (_hex("#3f7a34"),), (0, 0), _hex("#888888"), False,
        _hex("#000000"), ("bench", "lamp", "pillar"), (3, 5),
    ),
    SceneTemplate(
        "autumn_park", _hex("#8a7a3a"), _hex("#b0642a"), "noise", _hex("#6b9bd1"), _hex("#e8dcc8"), 35,
        _hex("#ffe2b8"), 0.4, (0, 1), (_hex("#9a8a7a"),), _hex("#6a3a2a"), (8, 12), "round",
        (_hex("#c8642a"), _hex("#d89a2a"), _hex("#a8402a")), (1, 3), _hex("#7d776f"), True,
        _hex("#2f2f2f"), ("bench", "lamp"), (2, 3),
    ),
    SceneTemplate(
        "beach", _hex("#e8d49a"), _hex("#d9c080"), "stripes", _hex("#2f86d9"), _hex("#bfe3f5"), 65,
        _hex("#fffaf0"), 0.35, (0, 1), (_hex("#f0e0c0"),), _hex("#2a7ab0"), (2, 4), "palm",
        (_hex("#4f8f3a"),), (2, 4), _hex("#a89c88"), False, _hex("#000000"), ("barrel",), (1, 2),
    ),
    SceneTemplate(
        "japanese_garden", _hex("#b5ad98"), _hex("#7f9a5a"), "stripes", _hex("#7aa6d4"), _hex("#e6e6dc"), 45,
        _hex("#fff3e6"), 0.45, (1, 2), (_hex("#6b2a20"),), _hex("#2a2a30"), (4, 7), "bush",
        (_hex("#d88aa8"), _hex("#3f6b34")), (4, 7), _hex("#6a6a66"), True, _hex("#7a2a1a"),
        ("pillar",), (1, 2),
    ),
    SceneTemplate(
        "farm", _hex("#7a9a3a"), _hex("#8a6a3a"), "stripes", _hex("#5a95d8"), _hex("#dfe8d8"), 50,
        _hex("#fff0d8"), 0.35, (1, 2), (_hex("#a83a2a"),), _hex("#4a4a4a"), (3, 6), "round",
        (_hex("#3a6a2a"),), (0, 2), _hex("#8a8680"), True, _hex("#d8d0c0"), ("hay", "barrel"), (2, 4),
    ),
    SceneTemplate(
        "industrial_yard", _hex("#6a6a66"), _hex("#55554f"), "checker", _hex("#7f8f9f"), _hex("#c8ccd0"), 40,
        _hex("#f4f0e8"), 0.45, (3, 5), (_hex("#7a7f86"), _hex("#9a6a3a"), _hex("#4a5a6a")), _hex("#3a3a3a"),
        (0, 1), "dead", (_hex("#4a4030"),), (0, 2), _hex("#5f5f5a"), True, _hex("#c8b040"),
        ("crate", "barrel", "cone"), (4, 6),
    ),
    SceneTemplate(
        "night_street", _hex("#2e3036"), _hex("#3a3c44"), "tiles", _hex("#0b1230"), _hex("#2a3560"), 30,
        _hex("#9fb4ff"), 0.65, (4, 6), (_hex("#5a5060"), _hex("#4a5a70"), _hex("#6a5a4a")), _hex("#222228"),
        (0, 2), "round", (_hex("#1f3a2a"),), (0, 0), _hex("#444444"), False, _hex("#000000"),
        ("lamp",), (3, 5), 8.0, 0.02,
    ),
    SceneTemplate(
        "savanna", _hex("#c8b060"), _hex("#a89048"), "noise", _hex("#4a8ad0"), _hex("#f0dca8"), 40,
        _hex("#ffe4b0"), 0.3, (0, 0), (_hex("#a08060"),), _hex("#806040"), (3, 6), "dead",
        (_hex("#6a8a3a"),), (2, 4), _hex("#9a7a5a"), False, _hex("#000000"), (), (0, 0), 9.0,
    ),
    SceneTemplate(
        "rocky_canyon", _hex("#b0684a"), _hex("#8a4a34"), "noise", _hex("#5a8ad0"), _hex("#f0c8a0"), 50,
        _hex("#fff0d8"), 0.35, (0, 0), (_hex("#a06040"),), _hex("#804030"), (0, 2), "dead",
        (_hex("#5a6a3a"),), (10, 16), _hex("#a0583a"), False, _hex("#000000"), (), (0, 0),
    ),
    SceneTemplate(
        "suburban_street", _hex("#4f8a3a"), _hex("#8a8a88"), "stripes", _hex("#5a9ae0"), _hex("#dce8f2"), 55,
        _hex("#fff6e8"), 0.4, (3, 5), (_hex("#e8e0d0"), _hex("#a8c0d8"), _hex("#e0c8a0"), _hex("#c8d8b8")),
        _hex("#5a3a30"), (2, 5), "round", (_hex("#3a7a34"),), (0, 1), _hex("#888888"), True,
        _hex("#f4f4f4"), ("lamp", "cone"), (1, 3),
    ),
    SceneTemplate(
        "medieval_market", _hex("#8a8070"), _hex("#6f665a"), "tiles", _hex("#6a9ad0"), _hex("#e8e0d0"), 45,
        _hex("#fff0d8"), 0.4, (4, 6), (_hex("#d8c8a8"), _hex("#b8a888"), _hex("#c8b090")), _hex("#8a3a2a"),
        (1, 2), "round", (_hex("#4a7a3a"),), (0, 1), _hex("#7a7470"), False, _hex("#000000"),
        ("crate", "barrel", "hay"), (4, 6),
    ),
    SceneTemplate(
        "tropical_jungle", _hex("#3a6a2a"), _hex("#2a4a1a"), "noise", _hex("#6aa0c8"), _hex("#d0e8d0"), 70,
        _hex("#f8ffe8"), 0.45, (0, 0), (_hex("#6a5a3a"),), _hex("#4a3a2a"), (12, 18), "palm",
        (_hex("#2a8a3a"), _hex("#3aa04a"), _hex("#1a6a2a")), (2, 4), _hex("#5a6a5a"), False, _hex("#000000"),
        (), (0, 0),
    ),
    SceneTemplate(
        "lunar_base", _hex("#9a9a9c"), _hex("#7a7a7e"), "noise", _hex("#050510"), _hex("#1a1a2a"), 20,
        _hex("#ffffff"), 0.25, (2, 4), (_hex("#d8d8e0"), _hex("#b0b8c8")), _hex("#c0c0c8"), (0, 0), "dead",
        (_hex("#555555"),), (6, 10), _hex("#8a8a8e"), False, _hex("#000000"), ("pillar", "crate"), (2, 3),
        8.0, 0.0,
    ),
]  # fmt: skip

SCENES: dict[str, SceneTemplate] = {scene.name: scene for scene in _SCENE_LIST}


def get_scene(name: str) -> SceneTemplate:
    return _lookup(SCENES, name, "scene")


# --------------------------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class SubjectSpec:
    """One named subject: a human or a quadruped with its look and how it moves.

    Sizes in metres. `proportions` holds family-specific shape knobs read by `world.subjects`.
    """

    name: str
    family: str  # "human" or "animal"
    kind: str  # "human" or the species
    height: float  # humans: standing height; animals: shoulder height
    color: RGB  # humans: shirt; animals: coat
    color2: RGB  # humans: trousers; animals: belly/pattern colour
    color3: RGB  # humans: skin; animals: legs/head accent
    pattern: str  # one of SUBJECT_PATTERNS, applied to the torso/body
    speed: tuple[float, float]  # walking speed range, m/s
    stride: float  # distance covered by one gait cycle, metres
    proportions: tuple[tuple[str, float], ...] = ()
    hair: RGB = (0.1, 0.07, 0.05)

    def proportion(self, key: str, default: float) -> float:
        return dict(self.proportions).get(key, default)


SUBJECT_FAMILIES = ("human", "animal")
SUBJECT_PATTERNS = ("solid", "stripes", "spots", "two_tone")
_PATTERN_CODE = {"solid": 0, "stripes": 1, "spots": 2, "two_tone": 0}

_SHIRTS = ["#c0392b", "#2e86c1", "#f1c40f", "#27ae60", "#8e44ad", "#e67e22", "#ecf0f1", "#1abc9c",
           "#34495e", "#d35400", "#ff77aa", "#7f8c8d", "#16a085"]  # fmt: skip
_TROUSERS = ["#2c3e50", "#1f3a60", "#5d4037", "#000000", "#7f8c8d", "#3e2723", "#556b2f", "#bdb76b",
             "#4a235a"]  # fmt: skip
_SKINS = ["#f1c27d", "#e0ac69", "#c68642", "#8d5524", "#ffdbac", "#a0522d"]
_HAIRS = ["#1a1a1a", "#4b2e1e", "#a0522d", "#e5c07b", "#7f7f7f", "#c0392b"]


def _humans() -> list[SubjectSpec]:
    """25 humans; a fixed table walk over palettes (no RNG) so the roster never changes."""
    humans = []
    for i in range(25):
        height = 1.52 + 0.43 * ((i * 7) % 25) / 24  # 1.52 .. 1.95 m, spread over the roster
        build = 0.8 + 0.45 * ((i * 11) % 25) / 24  # shoulder width multiplier, slim .. broad
        pattern = ("solid", "stripes", "two_tone", "solid", "spots")[i % 5]
        humans.append(
            SubjectSpec(
                name=f"human_{i:02d}",
                family="human",
                kind="human",
                height=height,
                color=_hex(_SHIRTS[i % len(_SHIRTS)]),
                color2=_hex(_TROUSERS[(i * 4) % len(_TROUSERS)]),
                color3=_hex(_SKINS[(i * 5) % len(_SKINS)]),
                pattern=pattern,
                speed=(0.9 + 0.02 * (i % 5), 1.5 + 0.03 * (i % 7)),
                stride=0.8 * height,
                proportions=(("build", build), ("hat", float(i % 4 == 1)), ("long_hair", float(i % 3 == 2))),
                hair=_hex(_HAIRS[(i * 3) % len(_HAIRS)]),
            )
        )
    return humans


def _animal(name, height, color, color2, color3, pattern, speed, stride, **proportions) -> SubjectSpec:
    return SubjectSpec(
        name=name, family="animal", kind=name.split("_")[0], height=height, color=_hex(color),
        color2=_hex(color2), color3=_hex(color3), pattern=pattern, speed=speed, stride=stride,
        proportions=tuple(sorted(proportions.items())),
    )  # fmt: skip


# Animal proportions: length (body length / shoulder height), neck (neck length / height), leg (leg
# length / height), head (head size / height), tail (tail length / height), ears (ear size / height).
_ANIMALS = [
    _animal("dog_brown", 0.55, "#8b5a2b", "#d2b48c", "#5a3a1a", "solid", (0.8, 1.6), 0.7, length=1.6,
            tail=0.6),
    _animal("dalmatian", 0.6, "#f5f5f5", "#111111", "#f5f5f5", "spots", (0.9, 1.7), 0.8, length=1.5,
            tail=0.6),
    _animal("cat_grey", 0.28, "#808080", "#c0c0c0", "#606060", "stripes", (0.5, 1.0), 0.4, length=1.7,
            tail=1.2, ears=0.25),
    _animal("horse", 1.55, "#7b4a26", "#3a2410", "#2a1a0a", "solid", (1.2, 2.2), 2.0, length=1.5, neck=0.55,
            leg=0.6, tail=0.5),
    _animal("zebra", 1.35, "#f2f2f2", "#111111", "#111111", "stripes", (1.0, 2.0), 1.8, length=1.5,
            neck=0.5, leg=0.6, tail=0.45),
    _animal("cow", 1.35, "#f0f0f0", "#222222", "#e8b0a0", "spots", (0.6, 1.1), 1.4, length=1.7, neck=0.25,
            leg=0.5, tail=0.55),
    _animal("deer", 1.0, "#a0652e", "#f0e0c8", "#603818", "solid", (0.9, 1.8), 1.2, length=1.4, neck=0.45,
            leg=0.62, ears=0.2),
    _animal("giraffe", 2.6, "#e0a040", "#6a3a10", "#6a3a10", "spots", (0.8, 1.5), 2.6, length=0.9, neck=1.0,
            leg=0.65, head=0.14, tail=0.35),
    _animal("bear_brown", 1.0, "#5a3a20", "#3a2410", "#2a1a0a", "solid", (0.6, 1.2), 1.0, length=1.6,
            leg=0.45, head=0.4, tail=0.1),
    _animal("polar_bear", 1.1, "#f4f0e4", "#e0dccc", "#202020", "solid", (0.6, 1.2), 1.1, length=1.7,
            leg=0.45, head=0.38, tail=0.1),
    _animal("pig", 0.6, "#f0a8a8", "#e08888", "#d07878", "solid", (0.5, 1.0), 0.6, length=1.7, leg=0.35,
            head=0.45, tail=0.25),
    _animal("sheep", 0.75, "#f0ece0", "#f8f4e8", "#202020", "solid", (0.5, 1.0), 0.7, length=1.4, leg=0.4,
            head=0.38, tail=0.15),
    _animal("fox", 0.4, "#d2691e", "#f8f0e0", "#202020", "two_tone", (0.8, 1.6), 0.6, length=1.8, tail=1.1,
            ears=0.3),
    _animal("wolf", 0.8, "#7f7a72", "#c8c0b0", "#4a4640", "two_tone", (0.9, 1.8), 1.0, length=1.6, tail=0.6,
            ears=0.22),
    _animal("tiger", 1.0, "#e07020", "#111111", "#f8f0e0", "stripes", (0.8, 1.6), 1.2, length=1.9, leg=0.5,
            tail=0.9),
    _animal("leopard", 0.7, "#e0b050", "#2a1a0a", "#f8f0d8", "spots", (0.8, 1.7), 1.0, length=1.9, tail=1.0),
    _animal("elephant", 2.8, "#8a8a88", "#7a7a78", "#6a6a68", "solid", (0.6, 1.2), 2.4, length=1.2, leg=0.5,
            head=0.35, tail=0.3, ears=0.35),
    _animal("goat", 0.7, "#e8e0d0", "#5a4a3a", "#5a4a3a", "two_tone", (0.6, 1.2), 0.7, length=1.4, neck=0.3,
            ears=0.18),
    _animal("camel", 1.9, "#c8a070", "#a88050", "#a88050", "solid", (0.8, 1.5), 2.0, length=1.1, neck=0.55,
            leg=0.65, hump=1.0),
    _animal("panda", 0.8, "#f4f4f4", "#111111", "#111111", "two_tone", (0.4, 0.9), 0.7, length=1.5,
            leg=0.45, head=0.42, tail=0.1),
    _animal("donkey", 1.2, "#8a8078", "#d8d0c8", "#3a3430", "solid", (0.8, 1.5), 1.4, length=1.4, neck=0.4,
            leg=0.55, ears=0.3),
    _animal("lion", 1.1, "#d8a850", "#8a5020", "#8a5020", "solid", (0.8, 1.6), 1.3, length=1.7, head=0.45,
            tail=0.8, mane=1.0),
    _animal("rabbit", 0.25, "#c8b8a0", "#f8f8f8", "#a89880", "solid", (0.6, 1.4), 0.35, length=1.5,
            leg=0.4, ears=0.6, tail=0.2),
    _animal("rhino", 1.6, "#70706a", "#60605a", "#60605a", "solid", (0.6, 1.1), 1.6, length=1.8, leg=0.45,
            head=0.4, tail=0.2, horn=1.0),
]  # fmt: skip

SUBJECTS: dict[str, SubjectSpec] = {spec.name: spec for spec in _humans() + _ANIMALS}


def get_subject(name: str) -> SubjectSpec:
    return _lookup(SUBJECTS, name, "subject")


def subjects_in_family(family: str) -> list[str]:
    check_choice(family, SUBJECT_FAMILIES, "subject family", "families")
    return [name for name, spec in SUBJECTS.items() if spec.family == family]


def pattern_code(pattern: str) -> int:
    """Shader code of a subject pattern (two-tone is drawn by colouring parts, not by the shader)."""
    return _PATTERN_CODE[pattern]


# ------------------------------------------------------------------------------------ path families

# Subject path families; the shape generators live in `world.motion.PATH_GENERATORS` (same keys).
PATH_FAMILIES: tuple[str, ...] = (
    "line", "arc", "circle", "figure_eight", "zigzag", "stop_and_go", "u_turn", "waypoints", "spiral",
    "s_curve",
)  # fmt: skip


def check_path_family(name: str) -> str:
    check_choice(name, PATH_FAMILIES, "path family", "path families")
    return name


# -------------------------------------------------------------------------------- camera trajectories


@dataclass(frozen=True)
class CameraTrajectory:
    """A back-and-forth camera motion: leave the start view, swing by `amplitude_deg`, come back.

    kind: "pan" (yaw about the eye), "tilt" (pitch about the eye), "pan_tilt" (both at once),
    "dolly_pan" (walk forward/back while panning), "orbit" (eye circles a pivot between camera and
    subjects, looking at the pivot, so the subjects behind it swing out of view).
    direction: +1 = left/up first, -1 = right/down first. cycles: out-and-back swings per clip.
    """

    name: str
    kind: str
    amplitude_deg: float
    direction: int
    cycles: float
    tilt_deg: float = 0.0  # pan_tilt: pitch amplitude alongside the yaw amplitude
    travel: float = 0.0  # dolly_pan: metres walked forward at the turning point


CAMERA_KINDS = ("pan", "tilt", "pan_tilt", "dolly_pan", "orbit")
_SPEEDS = {"slow": 1.0, "fast": 2.0}


def _camera_trajectories() -> list[CameraTrajectory]:
    trajectories = []
    # 12 pans: 3 amplitudes x 2 first directions x 2 speeds
    for amplitude in (55, 75, 95):
        for side, direction in (("left", 1), ("right", -1)):
            for speed, cycles in _SPEEDS.items():
                name = f"pan_{side}_{amplitude}_{speed}"
                trajectories.append(CameraTrajectory(name, "pan", amplitude, direction, cycles))
    # 4 tilts: up (to the sky) or down (to the ground near the camera) x 2 speeds
    for side, direction in (("up", 1), ("down", -1)):
        for speed, cycles in _SPEEDS.items():
            name = f"tilt_{side}_{speed}"
            trajectories.append(
                CameraTrajectory(name, "tilt", 60 if direction > 0 else 50, direction, cycles)
            )
    # 4 diagonal pan-tilts
    for side, direction in (("left_up", 1), ("right_up", -1)):
        for speed, cycles in _SPEEDS.items():
            name = f"pan_tilt_{side}_{speed}"
            trajectories.append(CameraTrajectory(name, "pan_tilt", 70, direction, cycles, tilt_deg=25))
    # 4 dolly-and-pans
    for side, direction in (("left", 1), ("right", -1)):
        for speed, cycles in _SPEEDS.items():
            name = f"dolly_pan_{side}_{speed}"
            trajectories.append(CameraTrajectory(name, "dolly_pan", 80, direction, cycles, travel=2.0))
    # 4 orbits
    for side, direction in (("left", 1), ("right", -1)):
        for speed, cycles in _SPEEDS.items():
            name = f"orbit_{side}_{speed}"
            trajectories.append(CameraTrajectory(name, "orbit", 70, direction, cycles))
    return trajectories


CAMERA_TRAJECTORIES: dict[str, CameraTrajectory] = {c.name: c for c in _camera_trajectories()}


def get_camera_trajectory(name: str) -> CameraTrajectory:
    return _lookup(CAMERA_TRAJECTORIES, name, "camera trajectory")
