"""One input layer for generation: whatever a user brings -> context frames, cameras, intrinsics, fps.

    from hybridmem.data import inputs
    given = inputs.read_clip_input("HM-World/sample12")                      # (a) ours, (b) released
    given = inputs.read_video_input("examples/1.mp4", "examples/cam1.json")   # (c) official pair, (d) ours
    given = inputs.fit_length(given, temporal_stride=4, mode="pad-last")      # 4k+1 frames per segment
    given = inputs.fit_size(given, 128, 128)                                  # resize + centre-crop
    print("\n".join(given.report()))

Accepted inputs, detected from the files, never guessed silently:
(a) a clip folder of our layout (metadata.json): OpenCV metres cameras and intrinsics of its own;
(b) a sample folder of the released HM-World layout (cond.mp4 + camera.json, Unreal centimetres), with or
    without tgt.mp4 and masks; captions from the dataset's root caption.txt (hmworld.released_caption);
(c) the official HyDRA example pair N.mp4 + camN.json ({"cond_cam": {"0".."76": 4x4}, "tgt_cam": {...}},
    Unreal cm, column-vector), with line N of caption.txt beside the video when there is one;
(d) any mp4 + a cameras JSON in our schema: {"intrinsics": [fx, fy, cx, cy] (pixels of the video),
    "context": [4x4 per video frame], "target": [4x4 per frame to generate]}, camera-to-world, OpenCV axes
    (x right, y down, z forward), metres; an optional "convention": "opencv_c2w_metres_world_z_up".
    A camera.json of our layout (convention + cond_cam/tgt_cam + intrinsics) is read the same way.

Released and official data store no intrinsics: the default is the horizontal field of view measured on the
official examples (hmworld.DEFAULT_RELEASED_FOV_DEG), overridden by `hfov` or `intrinsics`. Every decision
(format, matrix form, units, intrinsics, fps, caption, size, length) is recorded in
`GenerationInput.conventions` and printed by `hybridmem sample`. Ambiguous input is a DataError naming the
field and the flag that settles it: a file whose every camera sits at the origin (`--matrix-form`),
translations that look like centimetres under the metres schema (`--camera-units`).

Shape letters: Tc/Tt context/target video frames, H/W pixels.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybridmem.data import hmworld
from hybridmem.errors import ConfigError, DataError
from hybridmem.geometry import check_intrinsics, check_poses

CAMERA_UNITS = ("m", "cm")
LENGTH_MODES = ("pad-last", "trim")
# A metres schema whose camera moves more than this in one frame, or sits further than this from the
# origin, is far more likely centimetres (Unreal's unit): 2 m a frame is 30 m/s at 15 fps.
MAX_PLAUSIBLE_STEP_M = 2.0
MAX_PLAUSIBLE_DISTANCE_M = 500.0


@dataclass
class GenerationInput:
    """What generation needs, in OpenCV metres and pixels of `context_frames`; `truth` only if it exists."""

    context_frames: np.ndarray  # "Tc H W 3" uint8
    context_cameras: np.ndarray  # "Tc 4 4" camera-to-world, OpenCV, metres
    target_cameras: np.ndarray  # "Tt 4 4"
    intrinsics: np.ndarray  # "4" fx, fy, cx, cy in pixels of context_frames
    fps: float
    truth: np.ndarray | None = None  # "Tt H W 3" uint8 ground truth of the target, when the input has it
    caption: str = ""
    output_frames: int | None = None  # frames to keep of the generated target (after --pad-last); None = all
    conventions: dict[str, str] = field(default_factory=dict)  # decision -> how it was settled
    source: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.context_frames.shape[2]), int(self.context_frames.shape[1])

    def report(self) -> list[str]:
        return [f"{key}: {value}" for key, value in self.conventions.items()]


# 1. readers, one per kind of input


def _reject_flags(where: str, **flags) -> None:
    for name, value in flags.items():
        if value is not None:
            raise ConfigError(f"{name} does not apply to {where}")


def read_clip_input(
    folder: str | Path,
    *,
    hfov: float | None = None,
    intrinsics=None,
    matrix_form: str | None = None,
    camera_units: str | None = None,
) -> GenerationInput:
    """(a) a clip folder of our layout or (b) a released HM-World sample folder (tgt.mp4 optional)."""
    folder = Path(folder)
    layout = hmworld.detect_layout(folder)
    _reject_flags(f"{folder} (clip folders have a fixed camera unit)", **{"--camera-units": camera_units})
    if layout == hmworld.OUR_LAYOUT:
        _reject_flags(
            f"{folder}: a clip of our layout stores its own cameras and intrinsics",
            **{"--hfov": hfov, "--intrinsics": intrinsics, "--matrix-form": matrix_form},
        )
        clip = hmworld.load_clip(folder)
        conventions = {
            "format": f"clip folder of our layout ({folder})",
            "cameras": f"OpenCV camera-to-world, metres (camera.json {hmworld.OUR_CAMERA_CONVENTION})",
            "intrinsics": "the clip's camera.json",
            "fps": f"{clip.fps:g} (metadata.json)",
        }
    elif (folder / "tgt.mp4").is_file():
        clip = hmworld.load_clip(
            folder, horizontal_fov_deg=hfov, intrinsics=intrinsics, matrix_form=matrix_form
        )
        conventions = {
            "format": f"released HM-World sample with ground truth ({folder})",
            "cameras": clip.metadata["camera_convention"],
            "intrinsics": clip.metadata["intrinsics_source"],
            "fps": f"{clip.fps:g} (cond.mp4)",
            "caption": clip.metadata["caption_source"],
        }
    else:
        return _read_released_context_only(folder, hfov, intrinsics, matrix_form)
    return GenerationInput(
        context_frames=clip.frames[clip.context],
        context_cameras=clip.cameras[clip.context],
        target_cameras=clip.cameras[clip.target],
        intrinsics=clip.intrinsics,
        fps=clip.fps,
        truth=clip.frames[clip.target],
        caption=clip.caption,
        conventions=conventions,
        source=str(folder),
    )


def _read_released_context_only(folder: Path, hfov, intrinsics, matrix_form) -> GenerationInput:
    camera_path = folder / "camera.json"
    record = hmworld.read_json(camera_path)
    frames = hmworld.read_video(folder / "cond.mp4")
    context_cameras, target_cameras, form = hmworld.read_unreal_cameras(
        camera_path, record, len(frames), None, matrix_form
    )
    height, width = frames.shape[1:3]
    camera_intrinsics, intrinsics_source = hmworld.released_intrinsics(width, height, hfov, intrinsics)
    caption, caption_source = hmworld.released_caption(folder)
    fps = hmworld.video_fps(folder / "cond.mp4")
    return GenerationInput(
        context_frames=frames,
        context_cameras=context_cameras,
        target_cameras=target_cameras,
        intrinsics=camera_intrinsics,
        fps=fps,
        caption=caption,
        conventions={
            "format": f"released HM-World sample, context only: no tgt.mp4, so no ground truth ({folder})",
            "cameras": _unreal_note(form, matrix_form),
            "intrinsics": intrinsics_source,
            "fps": f"{fps:g} (cond.mp4)",
            "caption": caption_source,
        },
        source=str(folder),
    )


def read_video_input(
    video: str | Path,
    cameras: str | Path,
    *,
    hfov: float | None = None,
    intrinsics=None,
    matrix_form: str | None = None,
    camera_units: str | None = None,
) -> GenerationInput:
    """(c) the official HyDRA example pair N.mp4 + camN.json, or (d) an mp4 + a cameras JSON of our schema."""
    video, cameras = Path(video), Path(cameras)
    record = hmworld.read_json(cameras)
    frames = hmworld.read_video(video)
    fps = hmworld.video_fps(video)
    height, width = frames.shape[1:3]
    keys = set(record)
    if {"cond_cam", "tgt_cam"} <= keys and "convention" not in keys:
        # (c) Unreal centimetres: the official examples and the released camera.json
        _reject_flags(
            f"{cameras} (Unreal matrices are centimetres by format)", **{"--camera-units": camera_units}
        )
        context_cameras, target_cameras, form = hmworld.read_unreal_cameras(
            cameras, record, len(frames), None, matrix_form
        )
        camera_intrinsics, intrinsics_source = hmworld.released_intrinsics(width, height, hfov, intrinsics)
        caption, caption_source = _example_caption(video)
        conventions = {
            "format": f"official HyDRA example pair ({video.name} + {cameras.name}: cond_cam/tgt_cam)",
            "cameras": _unreal_note(form, matrix_form),
            "intrinsics": intrinsics_source,
        }
    elif {"cond_cam", "tgt_cam"} <= keys or {"context", "target"} <= keys:
        # (d) our schema, or our layout's camera.json
        _reject_flags(f"{cameras} (OpenCV matrices have one form)", **{"--matrix-form": matrix_form})
        convention = record.get("convention", hmworld.OUR_CAMERA_CONVENTION)
        if convention != hmworld.OUR_CAMERA_CONVENTION:
            raise DataError(
                f"{cameras}: field 'convention' is {convention!r}; this schema is "
                f"{hmworld.OUR_CAMERA_CONVENTION!r} (OpenCV camera-to-world, metres)"
            )
        context_key, target_key = ("cond_cam", "tgt_cam") if "cond_cam" in keys else ("context", "target")
        poses = {}
        for key in (context_key, target_key):
            matrices = hmworld._frame_dict_to_poses(record[key], cameras, key)
            poses[key] = check_poses(matrices, f"{cameras} field '{key}'")
        if len(poses[context_key]) != len(frames):
            raise DataError(
                f"{cameras}: field '{context_key}' has {len(poses[context_key])} cameras, but {video} has "
                f"{len(frames)} frames (one per frame)"
            )
        context_cameras, target_cameras, units = _metres(
            poses[context_key], poses[target_key], cameras, camera_units
        )
        camera_intrinsics, intrinsics_source = _schema_intrinsics(
            record, cameras, width, height, hfov, intrinsics
        )
        caption, caption_source = "", "none (the cameras JSON schema has no caption)"
        conventions = {
            "format": f"video + cameras JSON in our schema ({video.name} + {cameras.name}: "
            f"{context_key}/{target_key})",
            "cameras": f"OpenCV camera-to-world, {units}",
            "intrinsics": intrinsics_source,
        }
    else:
        raise DataError(
            f"{cameras}: unknown cameras schema (keys {sorted(keys)}); expected 'cond_cam' and 'tgt_cam' "
            "(released HM-World / official HyDRA: Unreal camera-to-world, cm) or 'intrinsics', 'context' and "
            "'target' (ours: OpenCV camera-to-world, metres; see docs/DATASET.md)"
        )
    conventions["fps"] = f"{fps:g} ({video.name})"
    conventions["caption"] = caption_source
    return GenerationInput(
        context_frames=frames,
        context_cameras=context_cameras,
        target_cameras=target_cameras,
        intrinsics=camera_intrinsics,
        fps=fps,
        caption=caption,
        conventions=conventions,
        source=str(video),
    )


def _unreal_note(form: str, matrix_form: str | None) -> str:
    how = "--matrix-form" if matrix_form else "detected"
    return f"Unreal cm, {form}-vector matrices ({how}) -> OpenCV metres"


def _example_caption(video: Path) -> tuple[str, str]:
    """Line N of caption.txt beside N.mp4 (the official examples: 1.mp4..4.mp4, one caption a line)."""
    path = video.parent / "caption.txt"
    match = re.fullmatch(r"\d+", video.stem)
    if not path.is_file():
        return "", f"none ({path} not found)"
    if match is None:
        return "", f"none (video name '{video.stem}' is not a number N, so no line of {path} is its own)"
    lines = hmworld.read_text(path).splitlines()
    number = int(video.stem)
    if not 1 <= number <= len(lines):
        raise DataError(
            f"{path}: has {len(lines)} lines, but {video.name} reads line {number} (line N for N.mp4); the "
            "caption file and the videos do not match"
        )
    return lines[number - 1].strip(), f"{path} line {number} ({video.name})"


def _metres(context: "Tc 4 4", target: "Tt 4 4", path: Path, camera_units: str | None):
    """Cameras of our schema in metres; centimetre-looking translations need --camera-units to settle."""
    if camera_units is not None and camera_units not in CAMERA_UNITS:
        raise ConfigError(f"--camera-units {camera_units!r}: must be one of {', '.join(CAMERA_UNITS)}")
    if camera_units == "cm":
        context, target = context.copy(), target.copy()
        context[:, :3, 3] /= 100.0
        target[:, :3, 3] /= 100.0
        return context, target, "centimetres (--camera-units cm) -> metres"
    if camera_units == "m":
        return context, target, "metres (--camera-units m)"
    positions = np.concatenate([context, target])[:, :3, 3]
    step = float(np.max(np.linalg.norm(np.diff(positions, axis=0), axis=-1), initial=0.0))
    distance = float(np.max(np.linalg.norm(positions, axis=-1)))
    if step > MAX_PLAUSIBLE_STEP_M or distance > MAX_PLAUSIBLE_DISTANCE_M:
        raise DataError(
            f"{path}: translations look like centimetres under a metres schema (largest move between frames "
            f"{step:.3g}, farthest camera {distance:.3g} from the origin); pass --camera-units cm to convert "
            "them, or --camera-units m if they really are metres"
        )
    return context, target, f"metres (schema; largest move between frames {step:.3g} m)"


def _schema_intrinsics(record: dict, path: Path, width: int, height: int, hfov, intrinsics):
    if "intrinsics" not in record:
        if hfov is None and intrinsics is None:
            raise DataError(
                f"{path}: missing field 'intrinsics' ([fx, fy, cx, cy] in pixels of the video); add it or "
                "pass --intrinsics FX,FY,CX,CY or --hfov DEGREES"
            )
        return hmworld.released_intrinsics(width, height, hfov, intrinsics)
    values = hmworld._array(record["intrinsics"], path, "intrinsics")
    check_intrinsics(values, width, height, f"{path} field 'intrinsics'")
    if hfov is not None or intrinsics is not None:
        given, source = hmworld.released_intrinsics(width, height, hfov, intrinsics)
        return given, f"{source} (overrides the file's {values.tolist()})"
    return values, f"{path.name} field 'intrinsics'"


# 2. fitting to the model: 4k+1 frames a segment, the model's size


def _length_fix(count: int, stride: int) -> tuple[int, int]:
    """(shorter, longer) counts of the form stride*k + 1 around `count`."""
    shorter = (count - 1) // stride * stride + 1
    return shorter, shorter if shorter == count else shorter + stride


def fit_length(
    given: GenerationInput, temporal_stride: int, mode: str | None, segment_frames: int | None = None
) -> GenerationInput:
    """Context and target of temporal_stride*k + 1 frames (the causal VAE), or an error naming the flags.

    mode "pad-last" repeats the last frame and camera (as the official code pads short videos); the
    generated padding is dropped again, so the output has as many frames as target cameras were given.
    mode "trim" keeps the context's last frames (those next to the target) and the target's first ones.
    With segment_frames (long rollouts) the target may have any length: the rollout pads its last segment.
    """
    if mode is not None and mode not in LENGTH_MODES:
        raise ConfigError(f"length mode {mode!r}: must be one of {', '.join(LENGTH_MODES)}")
    context_frames, context_cameras = given.context_frames, given.context_cameras
    target_cameras, truth = given.target_cameras, given.truth
    conventions, output_frames = dict(given.conventions), None
    notes = []
    segments = [("context", len(context_frames))]
    if segment_frames is None:
        segments.append(("target", len(target_cameras)))
    for name, count in segments:
        shorter, longer = _length_fix(count, temporal_stride)
        if shorter == count:
            continue
        if mode is None:
            options = f"--pad-last (to {longer})" + (f" or --trim (to {shorter})" if shorter >= 1 else "")
            raise DataError(
                f"{name}: {count} frames; the VAE needs {temporal_stride}k+1 frames per segment: "
                f"pass {options}"
            )
        if mode == "trim" and shorter < 1:
            raise DataError(
                f"{name}: {count} frames cannot be trimmed to {temporal_stride}k+1; pass --pad-last"
            )
        if name == "context":
            if mode == "pad-last":
                extra = longer - count
                context_frames = np.concatenate([context_frames, np.repeat(context_frames[-1:], extra, 0)])
                context_cameras = np.concatenate([context_cameras, np.repeat(context_cameras[-1:], extra, 0)])
                notes.append(f"context {count} -> {longer} frames (last frame repeated)")
            else:
                context_frames, context_cameras = context_frames[-shorter:], context_cameras[-shorter:]
                notes.append(f"context {count} -> {shorter} frames (first {count - shorter} dropped)")
        elif mode == "pad-last":
            target_cameras = np.concatenate(
                [target_cameras, np.repeat(target_cameras[-1:], longer - count, 0)]
            )
            output_frames = count
            notes.append(f"target {count} -> {longer} cameras (last repeated; output keeps {count} frames)")
        else:
            target_cameras = target_cameras[:shorter]
            truth = None if truth is None else truth[:shorter]
            notes.append(f"target {count} -> {shorter} frames (last {count - shorter} dropped)")
    if not notes:
        notes.append(f"context {len(context_frames)} frames, target {len(target_cameras)}")
        if segment_frames is not None:
            notes.append(f"target in segments of {segment_frames} frames")
    conventions["length"] = "; ".join(notes)
    return dataclasses.replace(
        given,
        context_frames=context_frames,
        context_cameras=context_cameras,
        target_cameras=target_cameras,
        truth=truth,
        output_frames=output_frames,
        conventions=conventions,
    )


def crop_box(width: int, height: int, out_width: int, out_height: int) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top): scale to cover the output, then centre-crop.

    The official rule: scale = max(W_out / W, H_out / H), resize, crop the centre W_out x H_out.
    """
    scale = max(out_width / width, out_height / height)
    resized_width = max(out_width, round(width * scale))
    resized_height = max(out_height, round(height * scale))
    return resized_width, resized_height, (resized_width - out_width) // 2, (resized_height - out_height) // 2


# float32 working memory of one resize step: frames are resized in chunks this size bounds (one frame at
# least), so a long high-resolution input costs its uint8 frames plus this, not a float copy of 8 frames
# (2.4 GB at 5000x5000)
RESIZE_WORKING_BYTES = 256 * 2**20


def _resize_frame_bytes(height: int, width: int, out_width: int, out_height: int) -> int:
    """float32 bytes one frame takes while resized: the input, the separable filter's intermediate, the
    resized frame and its rounded copy."""
    resized_width, resized_height, _, _ = crop_box(width, height, out_width, out_height)
    intermediate = max(height * resized_width, resized_height * width)
    return 4 * 3 * (height * width + intermediate + 2 * resized_height * resized_width)


def resize_working_bytes(
    height: int, width: int, out_width: int = 1, out_height: int = 1, frames: int | None = None
) -> int:
    """Peak float32 bytes `resize_crop_frames` works with beside its uint8 input and output (`frames`: how
    many it resizes, when known)."""
    frame = _resize_frame_bytes(height, width, out_width, out_height)
    chunk = max(1, RESIZE_WORKING_BYTES // frame)
    return min(chunk, frames or chunk) * frame


def resize_crop_frames(frames: "T H W 3", out_width: int, out_height: int) -> "T h w 3":
    """Antialiased bilinear resize to cover (out_width, out_height), then centre-crop; uint8 in and out."""
    import torch
    import torch.nn.functional as F

    height, width = frames.shape[1:3]
    resized_width, resized_height, left, top = crop_box(width, height, out_width, out_height)
    chunk = max(1, RESIZE_WORKING_BYTES // _resize_frame_bytes(height, width, out_width, out_height))
    out = np.empty((len(frames), out_height, out_width, 3), dtype=np.uint8)
    for start in range(0, len(frames), chunk):  # chunks bound the float copy of long, large videos
        batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + chunk])).permute(0, 3, 1, 2)
        if (resized_width, resized_height) != (width, height):
            batch = F.interpolate(
                batch.float(),
                size=(resized_height, resized_width),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        batch = batch[:, :, top : top + out_height, left : left + out_width]
        out[start : start + chunk] = batch.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def crop_intrinsics(intrinsics: "4", width: int, height: int, out_width: int, out_height: int) -> "4":
    """The same camera's (fx, fy, cx, cy) after `resize_crop_frames` (pixel centres at integer + 0.5)."""
    resized_width, resized_height, left, top = crop_box(width, height, out_width, out_height)
    sx, sy = resized_width / width, resized_height / height
    fx, fy, cx, cy = np.asarray(intrinsics, dtype=np.float64)
    return np.array([fx * sx, fy * sy, cx * sx - left, cy * sy - top])


def fit_size(given: GenerationInput, out_width: int, out_height: int, why: str = "") -> GenerationInput:
    """Frames resized and centre-cropped to (out_width, out_height), intrinsics adjusted to match."""
    width, height = given.size
    conventions = dict(given.conventions)
    if (width, height) == (out_width, out_height):
        conventions["size"] = f"{width}x{height} (the input's{'; ' + why if why else ''})"
        return dataclasses.replace(given, conventions=conventions)
    resized_width, resized_height, left, top = crop_box(width, height, out_width, out_height)
    conventions["size"] = (
        f"{width}x{height} -> {out_width}x{out_height}{' (' + why + ')' if why else ''}: resized to "
        f"{resized_width}x{resized_height}, centre-cropped at x={left}, y={top}; intrinsics adjusted"
    )
    truth = None if given.truth is None else resize_crop_frames(given.truth, out_width, out_height)
    return dataclasses.replace(
        given,
        context_frames=resize_crop_frames(given.context_frames, out_width, out_height),
        truth=truth,
        intrinsics=crop_intrinsics(given.intrinsics, width, height, out_width, out_height),
        conventions=conventions,
    )


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), positive integers."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if match is None or not all(0 < int(v) <= 8192 for v in match.groups()):
        raise ConfigError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 128x128 (each 1..8192)")
    return int(match.group(1)), int(match.group(2))


def parse_intrinsics(text: str) -> np.ndarray:
    """'fx,fy,cx,cy' -> array, finite with fx, fy > 0."""
    try:
        values = np.array([float(v) for v in str(text).split(",")])
    except ValueError as error:
        raise ConfigError(f"--intrinsics {text!r}: expected FX,FY,CX,CY in pixels ({error})") from error
    if values.shape != (4,) or not np.all(np.isfinite(values)) or np.any(values[:2] <= 0):
        raise ConfigError(f"--intrinsics {text!r}: expected 4 finite numbers FX,FY,CX,CY with FX, FY > 0")
    return values


def horizontal_fov_deg(intrinsics: "4", width: int) -> float:
    return math.degrees(2 * math.atan(0.5 * width / float(intrinsics[0])))
