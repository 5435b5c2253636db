"""Reading HM-World clip folders into `hybridmem.data.clip.Clip`: our layout and the released (UE5) layout.

    clip = load_clip("runs/world/train/000000")                       # ours: detected by metadata.json
    clip = load_clip("HM-World/sample12")                             # released: cond/tgt video + camera.json
    clip = load_clip("HM-World/sample12", horizontal_fov_deg=40.0)    # ... with another field of view

Every convention is converted here, once: downstream code sees OpenCV camera axes (x right, y down,
z forward), metres, world z up.

Released layout conversion (also in docs/DATASET.md). camera.json holds `cond_cam` and `tgt_cam`, each a dict
from frame index to a 4x4 Unreal camera-to-world matrix in centimetres. Unreal is left-handed: x forward,
y right, z up, for the world and for a camera's own axes. The released files (and the official HyDRA
examples) are column-vector matrices: translation in the last column, last row [0 0 0 1]. The form is
detected per file (`detect_matrix_form`): a matrix with a non-zero translation says which form it is; a file
whose every camera sits at the origin cannot say, and is an error naming the field and `matrix_form`
(`--matrix-form` on the command line), never a silent guess. With R_u, t_u the rotation and translation
of the column-vector Unreal matrix:
    R_cv = D @ R_u @ A,    t_cv = D @ t_u / 100
    D = diag(1, -1, 1)                      Unreal world (x, y, z) -> ours (x, -y, z): right-handed, z up
    A = [[0, 0, 1], [1, 0, 0], [0, -1, 0]]  OpenCV camera axes in Unreal camera axes: x_cv = y_u (right),
                                            y_cv = -z_u (down), z_cv = x_u (forward)
det(D) = det(A) = -1, so R_cv is a proper rotation. The released layout has no intrinsics: they come from
`horizontal_fov_deg` (default DEFAULT_RELEASED_FOV_DEG, measured on the official examples) or `intrinsics`,
and Clip.metadata["intrinsics_source"] says which. The dataset's captions are one root-level caption.txt:
sample folder `sampleK` reads line K (see `released_caption`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridmem import jsonio, npyio, validation
from hybridmem.data.clip import Clip, Event, SubjectTrack
from hybridmem.data.counterfactual import COUNTERFACTUAL_SPLITS, COUNTERFACTUALS_FILE, load_counterfactuals
from hybridmem.errors import DataError
from hybridmem.geometry import check_intrinsics, check_poses, intrinsics_from_fov
from hybridmem.publish import ffmpeg_exe

OUR_LAYOUT = "hybridmem"
RELEASED_LAYOUT = "hmworld_released"
# Measured on the four official HyDRA examples (832x480) by two methods (phase-correlation shift against yaw
# during pans; rotation-only homography warp error over 20-100 degrees): 36-37 degrees, f about 1270 px at
# 832 wide, close to Unreal's default cinematic camera (35 mm lens). 90 degrees gives 2.5-3.1x the warp error.
DEFAULT_RELEASED_FOV_DEG = 36.3
MATRIX_FORMS = ("column", "row")
OUR_CAMERA_CONVENTION = "opencv_c2w_metres_world_z_up"
UNREAL_TO_OURS_WORLD = np.diag([1.0, -1.0, 1.0])  # D
OPENCV_IN_UNREAL_CAMERA = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # A
CENTIMETRES_PER_METRE = 100.0


# 1. small readers that name the file and field on failure


def read_text(path: Path) -> str:
    """A UTF-8 text file; DataError naming the file when it is missing or not UTF-8."""
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error}); re-save it as UTF-8") from error


def read_json(path: Path) -> dict:
    """A JSON object from a UTF-8 file; DataError naming the file and field otherwise (hybridmem.jsonio)."""
    return jsonio.read_json(path)


def _field(record: dict, key: str, path: Path):
    if key not in record:
        raise DataError(f"{path}: missing field '{key}'")
    return record[key]


def _positive_int(record: dict, key: str, path: Path) -> int:
    value = _field(record, key, path)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{path}: field '{key}' must be a positive integer, got {value!r}")
    return value


def _positive_number(record: dict, key: str, path: Path) -> float:
    value = _field(record, key, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise DataError(f"{path}: field '{key}' must be a positive finite number, got {value!r}")
    return float(value)


def _first_non_number(values, index: str = "") -> tuple[str, object] | None:
    """("[i][j]", value) of the first leaf of nested lists that is not a number (bool, str, null ...)."""
    if isinstance(values, (list, tuple)):
        for i, item in enumerate(values):
            found = _first_non_number(item, f"{index}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(values, bool) or not isinstance(values, (int, float, np.integer, np.floating)):
        return index, values
    return None


def _array(values, path: Path, key: str, shape_tail: tuple = (), dtype=np.float64) -> np.ndarray:
    """A finite numeric array (ragged lists, strings, NaN and infinity are errors naming the field)."""
    if isinstance(values, (str, bytes, dict)) or values is None:
        raise DataError(f"{path}: field '{key}' must be a list of numbers, got {type(values).__name__}")
    where = _first_non_number(values)
    if where is not None:  # numpy would read "1.0" as 1.0 and null as NaN, and the error would blame the pose
        index, value = where
        kind = "null" if value is None else f"{type(value).__name__} {value!r}"
        raise DataError(
            f"{path}: field '{key}'{index} is {kind}, expected a number (JSON numbers, not strings)"
        )
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise DataError(
            f"{path}: field '{key}' is not a numeric array of one shape ({str(error).splitlines()[0]})"
        ) from error
    if shape_tail and array.shape[-len(shape_tail) :] != shape_tail:
        raise DataError(f"{path}: field '{key}' has shape {array.shape}, expected (..., {shape_tail})")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: field '{key}' contains NaN or infinity")
    return array


@dataclass(frozen=True)
class VideoHeader:
    """What a video's header says, before any frame is decoded; `frames` is its duration times its frame
    rate (None when it states neither), which container durations round to within a frame."""

    frames: int | None
    height: int
    width: int
    fps: float

    def decoded_bytes(self) -> int:
        """Peak bytes of `read_video`: every frame as uint8 RGB, twice while the frames are stacked."""
        return 2 * (self.frames or 1) * self.height * self.width * 3


def _unreadable_video(error: BaseException) -> str:
    """One line for a video ffmpeg cannot open: no video stream (an audio-only file), or the first line of
    ffmpeg's report (not its 30-line dump of build options)."""
    text = str(error)
    streams = [
        line.split(":", 2)[-1].strip() for line in text.splitlines() if line.strip().startswith("Stream #")
    ]
    if streams and not any(stream.startswith("Video") for stream in streams):
        kinds = sorted({stream.split(":")[0] for stream in streams})
        return f"holds no video stream (only {', '.join(kinds).lower()}); pass a video file"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"cannot read the video's header ({first})"


def video_header(path: Path) -> VideoHeader:
    """Size, frame count and rate from a video's header (ffmpeg's), decoding nothing; DataError otherwise."""
    import imageio.v2 as imageio

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {'a folder, not a video' if path.is_dir() else 'missing file'}")
    ffmpeg_exe()  # its absence is the machine's fault, not the video's
    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
        try:
            meta = reader.get_meta_data()
        finally:
            reader.close()
        width, height = (int(v) for v in meta["size"])
        fps, duration = float(meta.get("fps") or 0.0), float(meta.get("duration") or 0.0)
        counted = meta.get("nframes")
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as error:
        raise DataError(f"{path}: {_unreadable_video(error)}") from error
    if not (0 < width and 0 < height):
        raise DataError(f"{path}: the video's header states a frame size of {width}x{height}")
    if isinstance(counted, int) and counted > 0:
        frames = counted
    elif 0 < fps < math.inf and 0 < duration < math.inf:
        frames = max(1, round(duration * fps))
    else:
        frames = None
    return VideoHeader(frames=frames, height=height, width=width, fps=fps)


def _decode_video(path: Path, header: VideoHeader) -> list:
    """Every frame of the video as "H W 3" uint8 arrays; stops with DataError once the frames decoded need
    more memory than is available (a header that understated them)."""
    import imageio.v2 as imageio

    from hybridmem.device import available_memory

    limit = available_memory()
    frames, decoded = [], 0
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        for frame in reader:
            frames.append(np.asarray(frame)[..., :3])
            decoded += 2 * frames[-1].nbytes  # stacking copies them once more
            if limit is not None and decoded > limit:
                raise DataError(
                    f"{path}: decoding it needs more than the {limit / 2**30:.1f} GiB of memory available "
                    f"({len(frames)} frames of {header.width}x{header.height} so far, the header said "
                    f"{header.frames}); pass a shorter or smaller video"
                )
    finally:
        reader.close()
    return frames


def read_video(path: Path) -> "T H W 3":
    """All frames of an mp4 as uint8 RGB. Its header is read first: a video whose frames cannot fit in the
    memory available is refused before one is decoded (DataError naming its frame count and size)."""
    from hybridmem.device import check_memory

    path = Path(path)
    header = video_header(path)
    check_memory(
        header.decoded_bytes(),
        f"{path}: decoding {header.frames or 'its'} frames of {header.width}x{header.height}",
        "pass a shorter or smaller video (fewer frames, or resized with ffmpeg -vf scale=W:H)",
    )
    try:
        frames = _decode_video(path, header)
    except (OSError, RuntimeError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: cannot decode video ({error})") from error
    if not frames:
        raise DataError(f"{path}: video has no frames")
    return np.stack(frames).astype(np.uint8, copy=False)


def _frame_dict_to_poses(cameras, path: Path, key: str) -> np.ndarray:
    """A dict {frame index: 4x4} (or a list of 4x4) -> "T 4 4", ordered by frame index."""
    if isinstance(cameras, dict):
        try:
            order = sorted(cameras, key=int)
        except ValueError as error:
            raise DataError(f"{path}: field '{key}' has a key that is not a frame index ({error})") from error
        expected = [str(i) for i in range(len(order))]
        if [str(int(k)) for k in order] != expected:
            raise DataError(f"{path}: field '{key}' must have frame indices 0..{len(order) - 1}, got {order}")
        cameras = [cameras[k] for k in order]
    if not isinstance(cameras, list) or not cameras:
        raise DataError(f"{path}: field '{key}' must be a non-empty dict of frame index -> 4x4 matrix")
    poses = _array(cameras, path, key)
    if poses.ndim == 2 and poses.shape[1] == 16:  # flattened row-major matrices
        poses = poses.reshape(-1, 4, 4)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise DataError(f"{path}: field '{key}' must hold 4x4 matrices, got shape {poses.shape}")
    return poses


# 2. released layout


def detect_matrix_form(matrices: "T 4 4", name: str, matrix_form: str | None = None) -> str:
    """Matrix form: "column" (translation in the last column) or "row" (in the last row, Unreal FMatrix).

    Decided once for a whole file: each matrix with a non-zero translation shows its form, and all must
    agree. A file whose every matrix has both last row and last column [0 0 0 1] (every camera at the
    origin) cannot show it: that is an error naming `name` and the setting that decides, unless
    `matrix_form` is given. A given `matrix_form` must agree with the matrices that do show theirs.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrix_form is not None and matrix_form not in MATRIX_FORMS:
        raise DataError(f"matrix_form={matrix_form!r}: must be one of {', '.join(MATRIX_FORMS)}")
    unit = np.array([0.0, 0.0, 0.0, 1.0])
    last_row_ok = np.all(np.abs(matrices[:, 3] - unit) <= 1e-6, axis=-1)
    last_col_ok = np.all(np.abs(matrices[:, :, 3] - unit) <= 1e-6, axis=-1)
    bad = np.flatnonzero(~last_row_ok & ~last_col_ok)
    if len(bad):
        raise DataError(
            f"{name}: matrix {int(bad[0])} has neither its last row nor its last column equal to "
            "[0, 0, 0, 1]; expected 4x4 homogeneous camera-to-world matrices"
        )
    column = np.flatnonzero(last_row_ok & ~last_col_ok)
    row = np.flatnonzero(last_col_ok & ~last_row_ok)
    if len(column) and len(row):
        raise DataError(
            f"{name}: mixes column-vector matrices (translation in the last column, e.g. matrix "
            f"{int(column[0])}) and row-vector ones (translation in the last row, e.g. matrix "
            f"{int(row[0])}); write every matrix in one form"
        )
    shown = "column" if len(column) else "row" if len(row) else None
    if matrix_form is not None:
        if shown is not None and shown != matrix_form:
            raise DataError(
                f"{name}: matrix_form '{matrix_form}' was given, but the matrices are {shown}-vector "
                f"(translation in the last {shown}); drop the setting or fix the file"
            )
        return matrix_form
    if shown is None:
        raise DataError(
            f"{name}: every camera is at the origin, so the matrix form (translation in the last column or "
            "the last row) cannot be told from the file, and the two forms give inverse rotations; pass "
            "--matrix-form column (the released HM-World and the official HyDRA examples) or "
            "--matrix-form row (matrix_form= in Python)"
        )
    return shown


def unreal_to_opencv(
    matrices: "T 4 4", name: str = "unreal matrices", matrix_form: str | None = None
) -> "T 4 4":
    """Unreal camera-to-world matrices (cm, left-handed x fwd / y right / z up) -> OpenCV c2w in metres.

    The matrix form is detected (`detect_matrix_form`) or given; row-vector matrices are transposed first.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    if detect_matrix_form(matrices, name, matrix_form) == "row":
        matrices = np.swapaxes(matrices, -1, -2)  # Unreal's native row-vector FMatrix
    rotation, translation = matrices[:, :3, :3], matrices[:, :3, 3]
    poses = np.zeros_like(matrices)
    poses[:, :3, :3] = UNREAL_TO_OURS_WORLD @ rotation @ OPENCV_IN_UNREAL_CAMERA
    poses[:, :3, 3] = translation @ UNREAL_TO_OURS_WORLD.T / CENTIMETRES_PER_METRE
    poses[:, 3, 3] = 1.0
    return poses


def opencv_to_unreal(poses: "T 4 4", matrix_form: str = "column") -> "T 4 4":
    """Inverse of `unreal_to_opencv`: Unreal cm matrices, column-vector (as released) or row-vector."""
    if matrix_form not in MATRIX_FORMS:
        raise ValueError(f"matrix_form must be one of {MATRIX_FORMS}, got {matrix_form!r}")
    poses = np.asarray(poses, dtype=np.float64)
    matrices = np.zeros_like(poses)
    matrices[:, :3, :3] = UNREAL_TO_OURS_WORLD @ poses[:, :3, :3] @ OPENCV_IN_UNREAL_CAMERA.T
    matrices[:, :3, 3] = poses[:, :3, 3] @ UNREAL_TO_OURS_WORLD.T * CENTIMETRES_PER_METRE
    matrices[:, 3, 3] = 1.0
    return matrices if matrix_form == "column" else np.swapaxes(matrices, -1, -2)


def read_unreal_cameras(
    path: Path, record: dict, context_frames: int, target_frames: int | None, matrix_form: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(context "Tc 4 4", target "Tt 4 4" OpenCV metres, matrix form) from `cond_cam`/`tgt_cam` of `record`.

    One form is detected for both fields together; target_frames None accepts any number of target cameras.
    """
    cond = _frame_dict_to_poses(_field(record, "cond_cam", path), path, "cond_cam")
    tgt = _frame_dict_to_poses(_field(record, "tgt_cam", path), path, "tgt_cam")
    form = detect_matrix_form(np.concatenate([cond, tgt]), f"{path} fields 'cond_cam'/'tgt_cam'", matrix_form)
    poses = {}
    for key, matrices, count in (("cond_cam", cond, context_frames), ("tgt_cam", tgt, target_frames)):
        name = f"{path} field '{key}'"
        if count is not None and len(matrices) != count:
            video = "the context video" if key == "cond_cam" else "tgt.mp4"
            raise DataError(
                f"{name}: {len(matrices)} cameras, but {video} has {count} frames (one per frame)"
            )
        poses[key] = check_poses(unreal_to_opencv(matrices, name, form), name)
    return poses["cond_cam"], poses["tgt_cam"], form


def released_intrinsics(
    width: int, height: int, horizontal_fov_deg: float | None = None, intrinsics=None
) -> tuple[np.ndarray, str]:
    """(fx, fy, cx, cy) for released/official data, which store none, and where they came from."""
    if horizontal_fov_deg is not None and intrinsics is not None:
        raise DataError(
            "pass either a horizontal field of view (--hfov) or intrinsics (--intrinsics), not both"
        )
    if intrinsics is not None:
        values = np.asarray(intrinsics, dtype=np.float64)
        check_intrinsics(values, width, height, "--intrinsics")
        return values, f"given: fx={values[0]:g} fy={values[1]:g} cx={values[2]:g} cy={values[3]:g} px"
    if horizontal_fov_deg is None:
        fov = DEFAULT_RELEASED_FOV_DEG
        source = (
            f"default horizontal FOV {fov} deg (measured on the official HyDRA examples: 36-37 deg, "
            "f ~1270 px at 832 wide); override with --hfov or --intrinsics"
        )
    else:
        fov = float(horizontal_fov_deg)
        source = f"given horizontal FOV {fov:g} deg"
    validation.check_value("hfov", fov)  # --hfov's rule
    return intrinsics_from_fov(width, height, fov), source


SAMPLE_FOLDER = re.compile(r"^sample_?(\d+)$")


def released_caption(folder: Path) -> tuple[str, str]:
    """(caption, where it came from) of a released sample folder.

    The released dataset has ONE caption.txt at its root, one caption a line, for all samples. Sample folder
    `sampleK` reads line K counted from 1 when the dataset numbers its samples from 1 (no `sample0`
    beside it), from 0 otherwise: the line of the sample's own index, not of its position in a listing, so a
    partial download still gets the right captions. A caption.txt inside the sample folder wins.
    """
    own = folder / "caption.txt"
    if own.is_file():
        return read_text(own).strip(), f"{own}"
    root = folder.parent / "caption.txt"
    match = SAMPLE_FOLDER.match(folder.name)
    if not root.is_file():
        return "", f"none ({root} not found)"
    if match is None:
        return "", f"none (folder name '{folder.name}' is not sampleK, so no line of {root} is its own)"
    index = int(match.group(1))
    first = 0 if any((folder.parent / f"sample{sep}0").is_dir() for sep in ("", "_")) else 1
    lines = read_text(root).splitlines()
    line = index - first
    if not 0 <= line < len(lines):
        raise DataError(
            f"{root}: has {len(lines)} lines, but sample folder '{folder.name}' needs line {line + 1} "
            f"(samples are numbered from {first}); the caption file and the samples do not match"
        )
    return lines[line].strip(), f"{root} line {line + 1} (sample index {index}, numbered from {first})"


def _mask_ids(path: Path, num_frames: int, size: tuple[int, int]) -> np.ndarray | None:
    """Released masks draw every subject red: foreground -> id 1 (subjects are not told apart)."""
    if not path.is_file():
        return None
    masks = read_video(path)[:, : size[0], : size[1]]
    if masks.shape[0] != num_frames:
        raise DataError(f"{path}: {masks.shape[0]} mask frames, but the video has {num_frames}")
    red, green = masks[..., 0].astype(np.int16), masks[..., 1].astype(np.int16)
    return ((red > 127) & (red - green > 64)).astype(np.uint8)


def _load_released(
    folder: Path, horizontal_fov_deg: float | None, intrinsics=None, matrix_form: str | None = None
) -> Clip:
    if not (folder / "tgt.mp4").is_file():
        raise DataError(
            f"{folder}: tgt.mp4 missing: this sample has no ground truth, which load_clip needs (training, "
            "evaluation); to generate its future run `hybridmem sample --clip FOLDER` (reads context-only "
            "samples) or use hybridmem.data.inputs.read_clip_input"
        )
    camera_path = folder / "camera.json"
    record = read_json(camera_path)
    cond_video, tgt_video = read_video(folder / "cond.mp4"), read_video(folder / "tgt.mp4")
    cond_poses, tgt_poses, form = read_unreal_cameras(
        camera_path, record, len(cond_video), len(tgt_video), matrix_form
    )
    if cond_video.shape[1:] != tgt_video.shape[1:]:
        raise DataError(
            f"{folder}: cond.mp4 is {cond_video.shape[1:3]} but tgt.mp4 is {tgt_video.shape[1:3]}"
        )
    frames = np.concatenate([cond_video, tgt_video])
    height, width = frames.shape[1:3]
    camera_intrinsics, intrinsics_source = released_intrinsics(width, height, horizontal_fov_deg, intrinsics)
    cond_ids = _mask_ids(folder / "cond_mask.mp4", len(cond_video), (height, width))
    tgt_ids = _mask_ids(folder / "tgt_mask.mp4", len(tgt_video), (height, width))
    instance_ids = None if cond_ids is None or tgt_ids is None else np.concatenate([cond_ids, tgt_ids])
    caption, caption_source = released_caption(folder)
    fx = camera_intrinsics[0]
    metadata = {
        "layout": RELEASED_LAYOUT,
        "horizontal_fov_deg": round(float(np.rad2deg(2 * np.arctan(0.5 * width / fx))), 6),
        "intrinsics_source": intrinsics_source,
        "camera_convention": f"Unreal cm, {form}-vector matrices -> OpenCV metres",
        "caption_source": caption_source,
        "instance_ids": "foreground only: every subject is id 1" if instance_ids is not None else "absent",
    }
    # character.json / check.json formats are kept verbatim: the subjects' tracks are not parsed from them.
    for name in ("character", "check"):
        path = folder / f"{name}.json"
        if path.is_file():
            metadata[f"released_{name}"] = read_json(path)
    return Clip(
        frames=frames,
        cameras=np.concatenate([cond_poses, tgt_poses]),
        intrinsics=camera_intrinsics,
        context_frames=len(cond_video),
        fps=video_fps(folder / "cond.mp4"),
        instance_ids=instance_ids,
        caption=caption,
        metadata=metadata,
        source=str(folder),
        counterfactuals_note="the released HM-World layout has no counterfactual renders",
    )


def video_fps(path: Path) -> float:
    """The frame rate an mp4 states; DataError when it states none or a non-finite one."""
    import imageio.v2 as imageio

    ffmpeg_exe()
    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
        try:
            fps = float(reader.get_meta_data().get("fps") or 0.0)
        finally:
            reader.close()
    except (OSError, RuntimeError, ValueError, TypeError) as error:
        raise DataError(f"{path}: {_unreadable_video(error)}") from error
    if not 0 < fps < math.inf:
        raise DataError(f"{path}: the video does not state a frame rate; pass --fps")
    return fps


_video_fps = video_fps


# 3. our layout


def _load_ours(folder: Path, load_frames: bool) -> Clip:
    metadata_path = folder / "metadata.json"
    metadata = read_json(metadata_path)
    width, height, context, target = (
        _positive_int(metadata, key, metadata_path)
        for key in ("width", "height", "context_frames", "target_frames")
    )
    total = context + target
    fps = _positive_number(metadata, "fps", metadata_path)
    # 1. cameras
    camera_path = folder / "camera.json"
    camera = read_json(camera_path)
    convention = _field(camera, "convention", camera_path)
    if convention != "opencv_c2w_metres_world_z_up":
        raise DataError(
            f"{camera_path}: field 'convention' is {convention!r}, expected 'opencv_c2w_metres_world_z_up'"
        )
    cond = _frame_dict_to_poses(_field(camera, "cond_cam", camera_path), camera_path, "cond_cam")
    tgt = _frame_dict_to_poses(_field(camera, "tgt_cam", camera_path), camera_path, "tgt_cam")
    cameras = check_poses(np.concatenate([cond, tgt]), f"{camera_path} fields 'cond_cam'/'tgt_cam'", total)
    intrinsics = _array(_field(camera, "intrinsics", camera_path), camera_path, "intrinsics")
    check_intrinsics(intrinsics, width, height, f"{camera_path} field 'intrinsics'")
    # 2. frames and ids
    if load_frames:
        frames = np.concatenate([read_video(folder / "cond.mp4"), read_video(folder / "tgt.mp4")])
        frames = frames[:, :height, :width]  # drop the even-size padding (see hybridmem.world.layout)
        if frames.shape != (total, height, width, 3):
            raise DataError(
                f"{folder}: videos decode to {frames.shape}, metadata.json says {(total, height, width, 3)}"
            )
    else:
        frames = np.zeros((total, height, width, 3), dtype=np.uint8)
    instance_ids = None
    ids_path = folder / "ids.npz"
    if ids_path.is_file():
        fix = "regenerate the clip or delete ids.npz"
        shape = (total, height, width)  # checked from the header, before the archive is expanded
        instance_ids = npyio.read_npz(ids_path, ["ids"], fix=fix, expected={"ids": (shape, "uint8")})["ids"]
        if instance_ids.shape != (total, height, width) or instance_ids.dtype != np.uint8:
            raise DataError(
                f"{ids_path}: field 'ids' is {instance_ids.dtype} {instance_ids.shape}, expected uint8 "
                f"{(total, height, width)}"
            )
    # 3. subjects and events
    character_path = folder / "character.json"
    character = read_json(character_path)
    entries = _field(character, "subjects", character_path)
    if not isinstance(entries, list):
        raise DataError(f"{character_path}: field 'subjects' must be a list, got {type(entries).__name__}")
    subjects = []
    for index, entry in enumerate(entries):
        key = f"subjects[{index}]"
        if not isinstance(entry, dict):
            raise DataError(f"{character_path}: field '{key}' must be an object, got {type(entry).__name__}")
        subject_id = _field(entry, "id", character_path)
        if isinstance(subject_id, bool) or not isinstance(subject_id, int) or not 1 <= subject_id <= 255:
            raise DataError(
                f"{character_path}: field '{key}.id' must be an integer instance id in 1..255, "
                f"got {subject_id!r}"
            )
        if any(subject.subject_id == subject_id for subject in subjects):
            raise DataError(f"{character_path}: field '{key}.id' repeats id {subject_id}; ids must be unique")
        positions = _array(
            _field(entry, "positions", character_path), character_path, f"{key}.positions", (3,)
        )
        headings = _array(_field(entry, "headings", character_path), character_path, f"{key}.headings")
        if positions.shape != (total, 3) or headings.shape != (total,):
            raise DataError(f"{character_path}: {key} needs {total} positions and headings (one per frame)")
        boxes = None
        if "boxes" in entry:
            rows = entry["boxes"]
            if not isinstance(rows, list) or len(rows) != total:
                raise DataError(
                    f"{character_path}: field '{key}.boxes' must be {total} boxes of 4 numbers or null"
                )
            boxes = _boxes_with_gaps(rows, character_path, key)
        visible = entry.get("visible_fraction")
        if visible is not None:
            visible = _array(visible, character_path, f"{key}.visible_fraction")
            if visible.shape != (total,) or np.any((visible < 0) | (visible > 1)):
                raise DataError(
                    f"{character_path}: field '{key}.visible_fraction' needs {total} values in [0, 1]"
                )
        subjects.append(
            SubjectTrack(
                subject_id=subject_id,
                name=str(entry.get("name", "unknown")),
                positions=positions,
                headings=headings,
                boxes=boxes,
                visible_fraction=visible,
            )
        )
    check_path = folder / "check.json"
    check = read_json(check_path)
    entries = _field(check, "events", check_path)
    if not isinstance(entries, list):
        raise DataError(f"{check_path}: field 'events' must be a list of events, got {entries!r}"[:300])
    subject_ids = {subject.subject_id for subject in subjects}
    events = []
    for index, entry in enumerate(entries):
        try:
            subject_id, kind, frame = entry["subject_id"], entry["kind"], entry["frame"]
        except (KeyError, TypeError) as error:
            raise DataError(
                f"{check_path}: field 'events[{index}]' needs subject_id, kind, frame ({error!r})"
            ) from error
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (subject_id, frame)):
            raise DataError(f"{check_path}: field 'events[{index}]' subject_id and frame must be integers")
        if kind not in ("exit", "entry") or not 0 < frame < total:
            raise DataError(
                f"{check_path}: field 'events[{index}]' has kind {kind!r} frame {frame} (kind exit or entry, "
                f"frame in 1..{total - 1})"
            )
        if subject_id not in subject_ids:
            raise DataError(
                f"{check_path}: field 'events[{index}].subject_id' is {subject_id}, but character.json has "
                f"subjects {sorted(subject_ids)}"
            )
        events.append(Event(subject_id=subject_id, kind=kind, frame=frame))
    caption_path = folder / "caption.txt"
    return Clip(
        frames=frames,
        cameras=cameras,
        intrinsics=intrinsics,
        context_frames=context,
        fps=fps,
        subjects=subjects,
        events=events,
        instance_ids=instance_ids,
        caption=read_text(caption_path).strip() if caption_path.is_file() else "",
        metadata=metadata,
        source=str(folder),
        **_counterfactuals_of(folder, metadata, target, height, width),
    )


def _counterfactuals_of(folder: Path, metadata: dict, target: int, height: int, width: int) -> dict:
    """Clip fields `counterfactuals` and `counterfactuals_note` of one of our clip folders."""
    path = folder / COUNTERFACTUALS_FILE
    if path.is_file():
        return {
            "counterfactuals": load_counterfactuals(path, target, height, width),
            "counterfactuals_note": "",
        }
    recorded = metadata.get("counterfactuals")
    if isinstance(recorded, dict) and isinstance(recorded.get("absent"), str):
        return {"counterfactuals": None, "counterfactuals_note": recorded["absent"]}
    if recorded is not None:
        raise DataError(
            f"{folder}: metadata.json lists counterfactuals but {COUNTERFACTUALS_FILE} is missing"
        )
    split = metadata.get("split")
    if split is not None and split not in COUNTERFACTUAL_SPLITS:
        note = f"{split} clips get no counterfactual renders"
    else:
        note = f"no {COUNTERFACTUALS_FILE} (rendered before counterfactuals existed, or not by our generator)"
    return {"counterfactuals": None, "counterfactuals_note": note}


def _boxes_with_gaps(rows: list, path: Path, key: str) -> np.ndarray:
    """Boxes where null (not visible) entries become NaN rows; other entries must be 4 finite numbers."""
    boxes = np.full((len(rows), 4), np.nan)
    for frame, box in enumerate(rows):
        if box is not None:
            values = _array(box, path, f"{key}.boxes[{frame}]")
            if values.shape != (4,):
                raise DataError(f"{path}: field '{key}.boxes[{frame}]' must be [x0, y0, x1, y1] or null")
            boxes[frame] = values
    return boxes


def detect_layout(folder: str | Path) -> str:
    """OUR_LAYOUT when metadata.json marks the folder as ours, RELEASED_LAYOUT for cond.mp4 + camera.json.

    The released layout has no metadata.json, ids.npz or camera 'convention' field: a folder with any of
    them is ours, and an incomplete one of ours is an error, never read as the released layout (whose
    Unreal-centimetre conversion would move its cameras by metres and drop its events).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected one clip folder of HM-World)")
    metadata_path = folder / "metadata.json"
    if metadata_path.is_file():
        layout = read_json(metadata_path).get("layout")
        if layout != OUR_LAYOUT:
            raise DataError(
                f"{metadata_path}: field 'layout' is {layout!r}, expected {OUR_LAYOUT!r}; the released "
                "HM-World layout has no metadata.json, so this folder is neither (regenerate the clip)"
            )
        return OUR_LAYOUT
    camera_path = folder / "camera.json"
    if camera_path.is_file() and (folder / "cond.mp4").is_file():
        if (folder / "ids.npz").is_file() or "convention" in read_json(camera_path):
            raise DataError(
                f"{folder}: a clip of our layout (camera.json has 'convention' / ids.npz present) without "
                f"metadata.json; it is incomplete (a killed or partial copy): regenerate it with "
                "`hybridmem world generate` (same arguments) or restore metadata.json"
            )
        return RELEASED_LAYOUT
    raise DataError(
        f"{folder}: neither layout found: ours needs metadata.json with layout 'hybridmem', the released one "
        "needs cond.mp4, tgt.mp4 and camera.json"
    )


def load_clip(
    folder: str | Path,
    *,
    horizontal_fov_deg: float | None = None,
    intrinsics=None,
    matrix_form: str | None = None,
    load_frames: bool = True,
) -> Clip:
    """Read one clip folder of either layout (detected) into a Clip in OpenCV metres, world z up.

    horizontal_fov_deg / intrinsics: only for the released layout, which stores no intrinsics (default
        DEFAULT_RELEASED_FOV_DEG); passing either for our layout is an error because ours records its own.
    matrix_form: only for the released layout: "column" or "row", needed only when every camera of the
        file is at the origin (otherwise the form is detected, and a given one must agree).
    load_frames: False skips decoding the RGB videos of our layout (frames are zeros): annotations only.
    A released sample without tgt.mp4 is an error here (no ground truth); hybridmem.data.inputs reads it
    for generation.
    """
    folder = Path(folder)
    layout = detect_layout(folder)
    if layout == OUR_LAYOUT:
        for name, value in (
            ("horizontal_fov_deg (--hfov)", horizontal_fov_deg),
            ("intrinsics", intrinsics),
            ("matrix_form", matrix_form),
        ):
            if value is not None:
                raise DataError(
                    f"{folder}: {name} applies to the released layout only; ours stores its own cameras and "
                    "intrinsics in camera.json"
                )
        return _load_ours(folder, load_frames)
    return _load_released(folder, horizontal_fov_deg, intrinsics, matrix_form)
