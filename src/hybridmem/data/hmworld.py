"""Reading HM-World clip folders into `hybridmem.data.clip.Clip`: our layout and the released (UE5) layout.

    clip = load_clip("runs/world/train/000000")                       # ours: detected by metadata.json
    clip = load_clip("HM-World/0001", horizontal_fov_deg=90.0)        # released: cond/tgt video + camera.json

Every convention is converted here, once: downstream code sees OpenCV camera axes (x right, y down,
z forward), metres, world z up.

Released layout conversion (also in docs/DATASET.md). camera.json holds `cond_cam` and `tgt_cam`, each a dict
from frame index to a 4x4 Unreal camera-to-world matrix in centimetres. Unreal is left-handed: x forward,
y right, z up, for the world and for a camera's own axes. Unreal's FMatrix multiplies row vectors, so the
translation sits in the last row; such matrices are transposed first (a matrix whose last column holds the
translation and whose last row is [0 0 0 1] is taken as already column-vector). With R_u, t_u the rotation
and translation of the column-vector Unreal matrix:
    R_cv = D @ R_u @ A,    t_cv = D @ t_u / 100
    D = diag(1, -1, 1)                      Unreal world (x, y, z) -> ours (x, -y, z): right-handed, z up
    A = [[0, 0, 1], [1, 0, 0], [0, -1, 0]]  OpenCV camera axes in Unreal camera axes: x_cv = y_u (right),
                                            y_cv = -z_u (down), z_cv = x_u (forward)
det(D) = det(A) = -1, so R_cv is a proper rotation. The released layout has no intrinsics: they come from
the `horizontal_fov_deg` argument (default 90, the Unreal camera default), recorded in Clip.metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hybridmem.data.clip import Clip, Event, SubjectTrack
from hybridmem.errors import DataError
from hybridmem.geometry import check_poses, intrinsics_from_fov

OUR_LAYOUT = "hybridmem"
RELEASED_LAYOUT = "hmworld_released"
DEFAULT_RELEASED_FOV_DEG = 90.0
UNREAL_TO_OURS_WORLD = np.diag([1.0, -1.0, 1.0])  # D
OPENCV_IN_UNREAL_CAMERA = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # A
CENTIMETRES_PER_METRE = 100.0


# 1. small readers that name the file and field on failure


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    return record


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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DataError(f"{path}: field '{key}' must be a positive number, got {value!r}")
    return float(value)


def _array(values, path: Path, key: str, shape_tail: tuple = (), dtype=np.float64) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: field '{key}' is not a numeric array ({error})") from error
    if shape_tail and array.shape[-len(shape_tail) :] != shape_tail:
        raise DataError(f"{path}: field '{key}' has shape {array.shape}, expected (..., {shape_tail})")
    return array


def read_video(path: Path) -> "T H W 3":
    """All frames of an mp4 as uint8 RGB."""
    import imageio.v2 as imageio

    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
        try:
            frames = [np.asarray(frame)[..., :3] for frame in reader]
        finally:
            reader.close()
    except (OSError, RuntimeError, ValueError) as error:
        raise DataError(f"{path}: cannot decode video ({error})") from error
    if not frames:
        raise DataError(f"{path}: video has no frames")
    return np.stack(frames).astype(np.uint8)


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


def unreal_to_opencv(matrices: "T 4 4", name: str = "unreal matrices") -> "T 4 4":
    """Unreal camera-to-world matrices (cm, left-handed x fwd / y right / z up) -> OpenCV c2w in metres.

    Row-vector matrices (last column [0 0 0 1], translation in the last row) are transposed first; when
    both the last row and column are [0 0 0 1] (camera at the origin) Unreal's row-vector form is assumed.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    if np.allclose(matrices[:, :, 3], [0, 0, 0, 1], atol=1e-6):
        matrices = np.swapaxes(matrices, -1, -2)  # Unreal's native row-vector FMatrix
    elif not np.allclose(matrices[:, 3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(f"{name}: neither the last row nor the last column of every matrix is [0, 0, 0, 1]")
    rotation, translation = matrices[:, :3, :3], matrices[:, :3, 3]
    poses = np.zeros_like(matrices)
    poses[:, :3, :3] = UNREAL_TO_OURS_WORLD @ rotation @ OPENCV_IN_UNREAL_CAMERA
    poses[:, :3, 3] = translation @ UNREAL_TO_OURS_WORLD.T / CENTIMETRES_PER_METRE
    poses[:, 3, 3] = 1.0
    return poses


def opencv_to_unreal(poses: "T 4 4") -> "T 4 4":
    """Inverse of `unreal_to_opencv`, writing Unreal's row-vector (translation in the last row) matrices."""
    poses = np.asarray(poses, dtype=np.float64)
    matrices = np.zeros_like(poses)
    matrices[:, :3, :3] = UNREAL_TO_OURS_WORLD @ poses[:, :3, :3] @ OPENCV_IN_UNREAL_CAMERA.T
    matrices[:, :3, 3] = poses[:, :3, 3] @ UNREAL_TO_OURS_WORLD.T * CENTIMETRES_PER_METRE
    matrices[:, 3, 3] = 1.0
    return np.swapaxes(matrices, -1, -2)


def _mask_ids(path: Path, num_frames: int, size: tuple[int, int]) -> np.ndarray | None:
    """Released masks draw every subject red: foreground -> id 1 (subjects are not told apart)."""
    if not path.is_file():
        return None
    masks = read_video(path)[:, : size[0], : size[1]]
    if masks.shape[0] != num_frames:
        raise DataError(f"{path}: {masks.shape[0]} mask frames, but the video has {num_frames}")
    red, green = masks[..., 0].astype(np.int16), masks[..., 1].astype(np.int16)
    return ((red > 127) & (red - green > 64)).astype(np.uint8)


def _load_released(folder: Path, horizontal_fov_deg: float | None) -> Clip:
    fov = DEFAULT_RELEASED_FOV_DEG if horizontal_fov_deg is None else float(horizontal_fov_deg)
    if not 0 < fov < 180:
        raise DataError(f"horizontal_fov_deg={fov}: must be in (0, 180) degrees")
    camera_path = folder / "camera.json"
    record = _read_json(camera_path)
    segments = {}
    for segment in ("cond", "tgt"):
        video = read_video(folder / f"{segment}.mp4")
        matrices = _frame_dict_to_poses(
            _field(record, f"{segment}_cam", camera_path), camera_path, f"{segment}_cam"
        )
        if not np.all(np.isfinite(matrices)):
            raise DataError(f"{camera_path}: field '{segment}_cam' contains NaN or infinity")
        name = f"{camera_path} field '{segment}_cam'"
        poses = check_poses(unreal_to_opencv(matrices, name), name, len(video))
        segments[segment] = (video, poses)
    (cond_video, cond_poses), (tgt_video, tgt_poses) = segments["cond"], segments["tgt"]
    if cond_video.shape[1:] != tgt_video.shape[1:]:
        raise DataError(
            f"{folder}: cond.mp4 is {cond_video.shape[1:3]} but tgt.mp4 is {tgt_video.shape[1:3]}"
        )
    frames = np.concatenate([cond_video, tgt_video])
    height, width = frames.shape[1:3]
    cond_ids = _mask_ids(folder / "cond_mask.mp4", len(cond_video), (height, width))
    tgt_ids = _mask_ids(folder / "tgt_mask.mp4", len(tgt_video), (height, width))
    instance_ids = None if cond_ids is None or tgt_ids is None else np.concatenate([cond_ids, tgt_ids])
    metadata = {
        "layout": RELEASED_LAYOUT,
        "horizontal_fov_deg": fov,
        "intrinsics_source": "horizontal_fov_deg argument (the released layout stores none)",
        "instance_ids": "foreground only: every subject is id 1" if instance_ids is not None else "absent",
    }
    # character.json / check.json formats are kept verbatim: the subjects' tracks are not parsed from them.
    for name in ("character", "check"):
        path = folder / f"{name}.json"
        if path.is_file():
            metadata[f"released_{name}"] = _read_json(path)
    caption_path = folder / "caption.txt"
    return Clip(
        frames=frames,
        cameras=np.concatenate([cond_poses, tgt_poses]),
        intrinsics=intrinsics_from_fov(width, height, fov),
        context_frames=len(cond_video),
        fps=_video_fps(folder / "cond.mp4"),
        instance_ids=instance_ids,
        caption=caption_path.read_text().strip() if caption_path.is_file() else "",
        metadata=metadata,
        source=str(folder),
    )


def _video_fps(path: Path) -> float:
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        fps = float(reader.get_meta_data().get("fps") or 0.0)
    finally:
        reader.close()
    if not fps > 0:
        raise DataError(f"{path}: the video does not state a frame rate")
    return fps


# 3. our layout


def _load_ours(folder: Path, load_frames: bool) -> Clip:
    metadata_path = folder / "metadata.json"
    metadata = _read_json(metadata_path)
    width, height, context, target = (
        _positive_int(metadata, key, metadata_path)
        for key in ("width", "height", "context_frames", "target_frames")
    )
    total = context + target
    fps = _positive_number(metadata, "fps", metadata_path)
    # 1. cameras
    camera_path = folder / "camera.json"
    camera = _read_json(camera_path)
    convention = _field(camera, "convention", camera_path)
    if convention != "opencv_c2w_metres_world_z_up":
        raise DataError(
            f"{camera_path}: field 'convention' is {convention!r}, expected 'opencv_c2w_metres_world_z_up'"
        )
    cond = _frame_dict_to_poses(_field(camera, "cond_cam", camera_path), camera_path, "cond_cam")
    tgt = _frame_dict_to_poses(_field(camera, "tgt_cam", camera_path), camera_path, "tgt_cam")
    cameras = check_poses(np.concatenate([cond, tgt]), f"{camera_path} fields 'cond_cam'/'tgt_cam'", total)
    intrinsics = _array(_field(camera, "intrinsics", camera_path), camera_path, "intrinsics")
    if intrinsics.shape != (4,) or not np.all(np.isfinite(intrinsics)) or np.any(intrinsics[:2] <= 0):
        raise DataError(f"{camera_path}: field 'intrinsics' must be 4 finite numbers fx, fy > 0, cx, cy")
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
        try:
            with np.load(ids_path) as archive:
                instance_ids = archive["ids"]
        except (OSError, KeyError, ValueError) as error:
            raise DataError(f"{ids_path}: cannot read array 'ids' ({error})") from error
        if instance_ids.shape != (total, height, width) or instance_ids.dtype != np.uint8:
            raise DataError(
                f"{ids_path}: field 'ids' is {instance_ids.dtype} {instance_ids.shape}, expected uint8 "
                f"{(total, height, width)}"
            )
    # 3. subjects and events
    character_path = folder / "character.json"
    character = _read_json(character_path)
    subjects = []
    for index, entry in enumerate(_field(character, "subjects", character_path)):
        key = f"subjects[{index}]"
        positions = _array(
            _field(entry, "positions", character_path), character_path, f"{key}.positions", (3,)
        )
        headings = _array(_field(entry, "headings", character_path), character_path, f"{key}.headings")
        if positions.shape != (total, 3) or headings.shape != (total,):
            raise DataError(f"{character_path}: {key} needs {total} positions and headings (one per frame)")
        boxes = None
        if "boxes" in entry:
            boxes = np.array(
                [[np.nan] * 4 if box is None else box for box in entry["boxes"]], dtype=np.float64
            )
            if boxes.shape != (total, 4):
                raise DataError(
                    f"{character_path}: field '{key}.boxes' must be {total} boxes of 4 numbers or null"
                )
        visible = entry.get("visible_fraction")
        if visible is not None:
            visible = _array(visible, character_path, f"{key}.visible_fraction")
            if visible.shape != (total,):
                raise DataError(f"{character_path}: field '{key}.visible_fraction' needs {total} values")
        subjects.append(
            SubjectTrack(
                subject_id=int(_field(entry, "id", character_path)),
                name=str(entry.get("name", "unknown")),
                positions=positions,
                headings=headings,
                boxes=boxes,
                visible_fraction=visible,
            )
        )
    check_path = folder / "check.json"
    check = _read_json(check_path)
    events = []
    for index, entry in enumerate(_field(check, "events", check_path)):
        try:
            event = Event(
                subject_id=int(entry["subject_id"]), kind=str(entry["kind"]), frame=int(entry["frame"])
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(
                f"{check_path}: field 'events[{index}]' needs subject_id, kind, frame ({error})"
            ) from error
        if event.kind not in ("exit", "entry") or not 0 < event.frame < total:
            raise DataError(
                f"{check_path}: field 'events[{index}]' has kind {event.kind!r} frame {event.frame}"
            )
        events.append(event)
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
        caption=caption_path.read_text().strip() if caption_path.is_file() else "",
        metadata=metadata,
        source=str(folder),
    )


def detect_layout(folder: str | Path) -> str:
    """OUR_LAYOUT when metadata.json marks the folder as ours, RELEASED_LAYOUT for cond.mp4 + camera.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected one clip folder of HM-World)")
    metadata_path = folder / "metadata.json"
    if metadata_path.is_file() and _read_json(metadata_path).get("layout") == OUR_LAYOUT:
        return OUR_LAYOUT
    if (folder / "camera.json").is_file() and (folder / "cond.mp4").is_file():
        return RELEASED_LAYOUT
    raise DataError(
        f"{folder}: neither layout found: ours needs metadata.json with layout 'hybridmem', the released one "
        "needs cond.mp4, tgt.mp4 and camera.json"
    )


def load_clip(
    folder: str | Path, *, horizontal_fov_deg: float | None = None, load_frames: bool = True
) -> Clip:
    """Read one clip folder of either layout (detected) into a Clip in OpenCV metres, world z up.

    horizontal_fov_deg: only for the released layout, which has no intrinsics (default 90 degrees);
        passing it for our layout is an error because ours records its own intrinsics.
    load_frames: False skips decoding the RGB videos of our layout (frames are zeros): annotations only.
    """
    folder = Path(folder)
    layout = detect_layout(folder)
    if layout == OUR_LAYOUT:
        if horizontal_fov_deg is not None:
            raise DataError(
                f"{folder}: horizontal_fov_deg applies to the released layout only; ours stores intrinsics"
            )
        return _load_ours(folder, load_frames)
    return _load_released(folder, horizontal_fov_deg)
