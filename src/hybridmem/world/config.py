"""`WorldConfig`: every parameter of HM-World generation, validated before anything is written.

Defaults suit CPU training with HM-World's camera: 160x96 pixels (the released 832:480 aspect, 20x12
latent cells of an f8 VAE), a 36.3 degree horizontal field of view (the released examples' focal length),
33 context + 33 target frames at 8 fps. Frame counts are of the form 4k+1 because the causal VAE
compresses time by 4 and keeps the first frame on its own. Every size scales up to the paper's geometry
(832x480, 77 + 77 frames, 15 fps). CAMERA_PRESETS names the cameras: `hmworld` (the default) and `wide`
(70 degrees on a square 128x128 frame, this generator's camera before 2026-12; subjects come out 3-5x
smaller in frame).

    config = WorldConfig(width=256, height=256, seed=3)
    config.validate()          # raises ConfigError naming the field, before any file is written
    config.to_dict()           # JSON-ready, stored in every clip's metadata.json
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hybridmem.errors import ConfigError
from hybridmem.validation import check_fields, rule_for

GENERATOR_VERSION = "hmworld-proc-1"

# The bounds of each numeric field are the `world generate` flags' (hybridmem.validation.RULES): the paper's
# resolution, clip length, frame rate and subject count. Read here for what is built from them.
MAX_PIXELS = 832 * 480
MAX_SEGMENT_FRAMES = int(rule_for("context_frames", "world generate").high)
# below 1 fps a clip spans minutes of world time and the motion planner walks every second of it (at 0.001
# fps, 154 frames are 43 hours: `world generate` hung)
MIN_FPS = rule_for("fps", "world generate").low
VAE_TEMPORAL_STRIDE = 4


# Named cameras (`world generate --camera NAME`); explicit --width/--height/--horizontal-fov-deg win.
# hmworld: the official HyDRA examples are 832x480 with a focal length of a 36-37 degree horizontal FOV, and
# their subjects fill 50-100% of the frame height; at this FOV our camera distances give a visible subject a
# median box height of about half the frame (docs/DATASET.md has the measured distribution).
CAMERA_PRESETS = {
    "hmworld": {"width": 160, "height": 96, "horizontal_fov_deg": 36.3},
    "wide": {"width": 128, "height": 128, "horizontal_fov_deg": 70.0},
}
DEFAULT_CAMERA = "hmworld"


def taxonomy_names() -> tuple[list[str], list[str]]:
    """Registered scene names and subject names, from `hybridmem.world.taxonomy`."""
    from hybridmem.world import taxonomy

    return list(taxonomy.SCENES), list(taxonomy.SUBJECTS)


@dataclass
class WorldConfig:
    """Parameters of one HM-World generation run (one split of one dataset folder)."""

    # 1. image and time
    width: int = CAMERA_PRESETS[DEFAULT_CAMERA]["width"]
    height: int = CAMERA_PRESETS[DEFAULT_CAMERA]["height"]
    context_frames: int = 33
    target_frames: int = 33
    fps: float = 8.0
    horizontal_fov_deg: float = CAMERA_PRESETS[DEFAULT_CAMERA]["horizontal_fov_deg"]
    supersample: int = 2  # renderer draws at supersample x size and box-filters down (anti-aliasing)
    # 2. content
    min_subjects: int = 1
    max_subjects: int = 3
    scenes: tuple[str, ...] = ()  # allowed scenes; empty = every registered scene
    subjects: tuple[str, ...] = ()  # allowed subjects; empty = every registered subject
    # allowed path families (world.taxonomy.PATH_FAMILIES); empty = every family. A straight `line` at a
    # constant speed is the one a subject's context motion predicts after it leaves the view
    paths: tuple[str, ...] = ()
    # 3. events and acceptance (fractions of the pixels a subject would cover unoccluded, in frame)
    visible_threshold: float = 0.3  # hidden -> visible when the visible fraction reaches this
    hidden_threshold: float = 0.05  # visible -> hidden when it falls below this (hysteresis band between)
    min_hidden_frames: int = 6  # a re-entry counts only after at least this many hidden frames
    require_reentry: bool = True  # else an exit that stays hidden long enough is accepted too
    max_attempts: int = 64  # candidate seeds tried per clip before giving up
    # 4. seeds and splits
    seed: int = 0
    split_seed: int = 0  # picks the held-out scenes/subjects; kept apart from `seed` so datasets agree
    held_out_scenes: int = 2  # scenes that appear in the test split only
    held_out_subjects: int = 6  # subjects that appear in the test split only
    val_fraction: float = 0.05  # used when no split is forced: clip k's split is drawn from these
    test_fraction: float = 0.05
    # 5. encoding
    video_crf: int = 18  # libx264 constant rate factor of the mp4 files (0 lossless .. 51 worst)

    def segment_frames(self) -> int:
        return self.context_frames + self.target_frames

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["scenes"], values["subjects"] = list(self.scenes), list(self.subjects)
        values["paths"] = list(self.paths)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> WorldConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"WorldConfig: unknown field(s) {unknown}; valid fields: {sorted(known)}")
        values = dict(values)
        for name in ("scenes", "subjects", "paths"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def allowed_scenes(self) -> list[str]:
        return list(self.scenes) if self.scenes else taxonomy_names()[0]

    def allowed_subjects(self) -> list[str]:
        return list(self.subjects) if self.subjects else taxonomy_names()[1]

    def allowed_paths(self) -> list[str]:
        from hybridmem.world.taxonomy import PATH_FAMILIES

        return list(self.paths) if self.paths else list(PATH_FAMILIES)

    def validate(self) -> WorldConfig:
        """Raise ConfigError naming the first bad field and what is allowed; return self when valid."""
        # 1. types: argparse and JSON give the right ones, hand-built configs may not
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{f.name}: expected an integer, got {value!r}")
            if f.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{f.name}: expected a number, got {value!r}")
        # 2. each numeric field within its bounds: the flags' rules, with the flag named
        check_fields(self, "world generate")
        # 3. what one field's bounds cannot say: image area, 4k+1 frames, subjects and splits that fit
        if self.width * self.height > MAX_PIXELS:
            raise ConfigError(
                f"width x height = {self.width}x{self.height}: at most {MAX_PIXELS} pixels (832x480)"
            )
        for name in ("context_frames", "target_frames"):
            value = getattr(self, name)
            if (value - 1) % VAE_TEMPORAL_STRIDE:
                raise ConfigError(
                    f"{name}={value}: must be of the form 4k+1 (5, 9, ..., 33, ..., 77) and at most "
                    f"{MAX_SEGMENT_FRAMES}, so the causal VAE's 4x time compression tiles it"
                )
        if self.min_subjects > self.max_subjects:
            raise ConfigError(
                f"min_subjects={self.min_subjects}: must be between 1 and max_subjects={self.max_subjects}"
            )
        valid_scenes, valid_subjects = taxonomy_names()
        for name, chosen, valid in (
            ("scenes", self.scenes, valid_scenes),
            ("subjects", self.subjects, valid_subjects),
        ):
            unknown = [item for item in chosen if item not in valid]
            if unknown:
                raise ConfigError(f"{name}: unknown name(s) {unknown}; valid names: {', '.join(valid)}")
            if len(set(chosen)) != len(chosen):
                raise ConfigError(f"{name}: names repeat in {list(chosen)}")
        from hybridmem.world.taxonomy import PATH_FAMILIES as valid_paths

        unknown = [item for item in self.paths if item not in valid_paths]
        if unknown:
            raise ConfigError(f"paths: unknown path famil(ies) {unknown}; valid: {', '.join(valid_paths)}")
        if len(set(self.paths)) != len(self.paths):
            raise ConfigError(f"paths: names repeat in {list(self.paths)}")
        if len(self.allowed_subjects()) < self.max_subjects:
            raise ConfigError(
                f"max_subjects={self.max_subjects}: only {len(self.allowed_subjects())} subject(s) allowed "
                "by `subjects`; allow more subjects or lower max_subjects"
            )
        if self.hidden_threshold > self.visible_threshold:
            raise ConfigError(
                f"hidden_threshold={self.hidden_threshold}, visible_threshold={self.visible_threshold}: need "
                "0 < hidden_threshold <= visible_threshold <= 1"
            )
        if self.min_hidden_frames >= self.segment_frames():
            raise ConfigError(
                f"min_hidden_frames={self.min_hidden_frames}: must be in [1, {self.segment_frames() - 1}]"
            )
        if self.held_out_scenes >= len(self.allowed_scenes()):
            raise ConfigError(
                f"held_out_scenes={self.held_out_scenes}: must leave at least one of the "
                f"{len(self.allowed_scenes())} allowed scenes for training"
            )
        if self.held_out_subjects > len(self.allowed_subjects()) - self.max_subjects:
            raise ConfigError(
                f"held_out_subjects={self.held_out_subjects}: must leave at least max_subjects="
                f"{self.max_subjects} of the {len(self.allowed_subjects())} allowed subjects for training"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction + test_fraction: must be below 1 so the train split is not empty")
        return self


def with_overrides(config: WorldConfig, **overrides) -> WorldConfig:
    """A copy of `config` with the fields in `overrides` replaced (None values ignored)."""
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
