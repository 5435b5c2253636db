"""Writing one clip folder in the HM-World layout plus our extras (the reader is hybridmem.data.hmworld).

One folder per sample (every field, shape, dtype and unit is listed in docs/DATASET.md):
    cond.mp4, tgt.mp4            context / target RGB video (H.264, yuv420p)
    cond_mask.mp4, tgt_mask.mp4  foreground masks, subjects drawn red on black (released-layout compatibility)
    ids.npz                      `ids`: lossless instance ids "T H W" uint8 (0 background, k = subject k)
    camera.json                  per-frame 4x4 camera-to-world (OpenCV axes, metres) + intrinsics
    character.json               per-subject, per-frame position, heading, box, visible fraction, identity
    check.json                   exit / entry events of each subject
    caption.txt                  template caption
    metadata.json                generator version, seed, every parameter, sizes, layout marker

yuv420p stores colour at half resolution, so H.264 needs even width and height. Odd sizes are padded by
repeating the last row/column before encoding; metadata.json keeps the true size and the reader crops the
padding off. ids.npz is never padded.

The folder is written under a temporary name in the same parent (`.tmp-<name>`) and renamed into place, so
a folder with the final name is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from hybridmem.data.clip import Clip
from hybridmem.data.counterfactual import COUNTERFACTUALS_FILE, save_counterfactuals

LAYOUT_NAME = "hybridmem"
LAYOUT_VERSION = 1
CAMERA_CONVENTION = "opencv_c2w_metres_world_z_up"
TEMP_PREFIX = ".tmp-"
MASK_COLOR = (255, 0, 0)


def temp_folder_for(folder: Path) -> Path:
    """The temporary name a clip folder is written under before the rename."""
    folder = Path(folder)
    return folder.parent / f"{TEMP_PREFIX}{folder.name}"


def pad_to_even(frames: "T H W C") -> "T H2 W2 C":
    """Repeat the last row/column so height and width are even (yuv420p); a no-op for even sizes."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def write_video(path: Path, frames: "T H W 3", fps: float, crf: int) -> None:
    """H.264 mp4 (yuv420p) of uint8 RGB frames; odd sizes are padded (see module docstring).

    Through hybridmem.publish: ffmpeg reads raw RGB through a pipe into a temp name, its exit status and the
    frame count in the written file are checked, then it is renamed to `path`. One encoder thread: the
    workers already fill the cores, and it keeps the output independent of the machine.
    """
    from hybridmem import publish

    publish.write_video(path, pad_to_even(frames), fps, crf=crf, threads=1)


def mask_frames(instance_ids: "T H W") -> "T H W 3":
    """Foreground masks as the released layout draws them: any subject red, background black."""
    frames = np.zeros(instance_ids.shape + (3,), dtype=np.uint8)
    frames[instance_ids > 0] = MASK_COLOR
    return frames


def _rows_nan_to_none(rows: np.ndarray) -> list:
    return [None if np.isnan(row).any() else [float(v) for v in row] for row in np.asarray(rows)]


def camera_record(clip: Clip) -> dict:
    """camera.json: per-frame poses keyed by the frame index within each segment, like the released files."""
    cameras = np.asarray(clip.cameras, dtype=np.float64)
    context = clip.context_frames
    return {
        "convention": CAMERA_CONVENTION,
        "width": int(clip.frames.shape[2]),
        "height": int(clip.frames.shape[1]),
        "intrinsics": [float(v) for v in clip.intrinsics],  # fx, fy, cx, cy in pixels
        "cond_cam": {str(t): cameras[t].tolist() for t in range(context)},
        "tgt_cam": {str(t - context): cameras[t].tolist() for t in range(context, clip.num_frames)},
    }


def character_record(clip: Clip) -> dict:
    """character.json: every subject's per-frame state over the whole clip (context then target)."""
    extras = {entry["id"]: entry for entry in clip.metadata.get("subjects", [])}
    subjects = []
    for track in clip.subjects:
        extra = extras.get(track.subject_id, {})
        entry = {
            "id": track.subject_id,
            "name": track.name,
            "family": extra.get("family", "unknown"),
            "path": extra.get("path", "unknown"),
            "positions": np.asarray(track.positions, dtype=np.float64).tolist(),
            "headings": np.asarray(track.headings, dtype=np.float64).tolist(),
        }
        if track.boxes is not None:
            entry["boxes"] = _rows_nan_to_none(track.boxes)
        if track.visible_fraction is not None:
            entry["visible_fraction"] = np.asarray(track.visible_fraction, dtype=np.float64).tolist()
        subjects.append(entry)
    return {"num_frames": clip.num_frames, "context_frames": clip.context_frames, "subjects": subjects}


def check_record(clip: Clip) -> dict:
    """check.json: when each subject leaves / enters the view, on the clip axis and within its segment."""
    context = clip.context_frames
    events = []
    for event in clip.events:
        in_context = event.frame < context
        events.append(
            {
                "subject_id": event.subject_id,
                "kind": event.kind,
                "frame": event.frame,
                "segment": "cond" if in_context else "tgt",
                "segment_frame": event.frame if in_context else event.frame - context,
            }
        )
    per_subject = {
        str(track.subject_id): {
            kind: [e.frame for e in clip.events if e.subject_id == track.subject_id and e.kind == kind]
            for kind in ("exit", "entry")
        }
        for track in clip.subjects
    }
    return {"events": events, "subjects": per_subject}


def _write_json(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def write_clip(clip: Clip, folder: str | os.PathLike, *, crf: int = 18) -> Path:
    """Write `clip` as one sample folder (atomically: temp folder, then rename); return the folder.

    `clip.metadata` is stored in metadata.json; its optional "subjects" list of {"id", "family", "path"}
    adds those fields to character.json. `folder` must not exist yet.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder}: a clip folder already exists there; delete it to rewrite it")
    temp = temp_folder_for(folder)
    if temp.exists():  # left by a killed writer of this very clip
        shutil.rmtree(temp)
    temp.mkdir(parents=True)
    try:
        context, total = clip.context_frames, clip.num_frames
        frames = np.asarray(clip.frames, dtype=np.uint8)
        # 1. videos
        write_video(temp / "cond.mp4", frames[:context], clip.fps, crf)
        write_video(temp / "tgt.mp4", frames[context:], clip.fps, crf)
        if clip.instance_ids is not None:
            ids = np.asarray(clip.instance_ids, dtype=np.uint8)
            masks = mask_frames(ids)
            write_video(temp / "cond_mask.mp4", masks[:context], clip.fps, crf)
            write_video(temp / "tgt_mask.mp4", masks[context:], clip.fps, crf)
            np.savez_compressed(temp / "ids.npz", ids=ids)
        if clip.counterfactuals is not None:
            clip.counterfactuals.check(total - context, frames.shape[1], frames.shape[2])
            save_counterfactuals(temp / COUNTERFACTUALS_FILE, clip.counterfactuals)
        # 2. annotations
        _write_json(temp / "camera.json", camera_record(clip))
        _write_json(temp / "character.json", character_record(clip))
        _write_json(temp / "check.json", check_record(clip))
        (temp / "caption.txt").write_text(clip.caption.strip() + "\n")
        metadata = dict(clip.metadata)
        metadata.update(
            layout=LAYOUT_NAME,
            layout_version=LAYOUT_VERSION,
            width=int(frames.shape[2]),
            height=int(frames.shape[1]),
            context_frames=int(context),
            target_frames=int(total - context),
            fps=float(clip.fps),
            num_subjects=len(clip.subjects),
        )
        # 3. metadata last: the reader treats a folder without it as incomplete
        _write_json(temp / "metadata.json", metadata)
        os.rename(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return folder
