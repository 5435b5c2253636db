"""Builders of inputs in each official format, for tests (written here; no official file is copied).

- the official HyDRA example pair: DIR/N.mp4 (context only, 15 fps) + DIR/camN.json {"cond_cam": {"0".."T-1":
  4x4}, "tgt_cam": {...}} (Unreal camera-to-world, centimetres, column-vector: translation in the last
  column) + DIR/caption.txt (one caption a line, line N for N.mp4);
- a released HM-World sample: ROOT/sampleK/{cond.mp4, [tgt.mp4, cond_mask.mp4, tgt_mask.mp4,] camera.json,
  character.json, check.json} and ONE ROOT/caption.txt.

The trajectory is what the released data look like: a camera at head height (165 cm) in a scene about 25 m
from the Unreal origin, walking ~1.2 m/s (8 cm a frame at 15 fps) while panning back and forth +-35 degrees
of yaw and looking slightly down.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FPS = 15.0


def unreal_trajectory(count: int, start: int = 0) -> "T 4 4":
    """Column-vector Unreal camera-to-world matrices (cm): columns forward, right, up, position."""
    t = np.arange(start, start + count, dtype=np.float64)
    yaw = np.deg2rad(35.0 * np.sin(2 * np.pi * t / 60.0))
    pitch = np.deg2rad(-8.0 + 2.0 * np.sin(2 * np.pi * t / 45.0))  # negative: looking down
    matrices = np.zeros((count, 4, 4))
    for i, (a, b) in enumerate(zip(yaw, pitch, strict=True)):
        yaw_matrix = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        # rotation about the right axis; forward tilts to z = sin(pitch) < 0
        pitch_matrix = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
        matrices[i, :3, :3] = yaw_matrix @ pitch_matrix
    matrices[:, :3, 3] = np.stack([2400.0 + 8.0 * t, -1300.0 + 3.0 * t, np.full_like(t, 165.0)], axis=-1)
    matrices[:, 3, 3] = 1.0
    return matrices


def frames(count: int, width: int, height: int, seed: int = 0) -> "T H W 3":
    """Blocky frames (codec-safe) that drift a little each frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 220, size=(height // 8 + 2, width // 8 + 2, 3))
    tiles = np.repeat(np.repeat(base, 8, 0), 8, 1).astype(np.uint8)
    return np.stack([np.roll(tiles, i, axis=1)[:height, :width] for i in range(count)])


def write_mp4(path: Path, video: "T H W 3", fps: float = FPS) -> None:
    import imageio.v2 as imageio

    imageio.mimwrite(path, list(video), fps=fps, macro_block_size=1)


def camera_record(context: "Tc 4 4", target: "Tt 4 4") -> dict:
    return {
        "cond_cam": {str(i): m.tolist() for i, m in enumerate(context)},
        "tgt_cam": {str(i): m.tolist() for i, m in enumerate(target)},
    }


def write_official_pair(
    folder: Path, number: int = 1, frames_count: int = 77, width: int = 64, height: int = 48, captions=None
) -> tuple[Path, Path, np.ndarray]:
    """DIR/N.mp4 + DIR/camN.json (+ caption.txt); returns (video, cameras, the Unreal matrices "2T 4 4")."""
    folder.mkdir(parents=True, exist_ok=True)
    matrices = unreal_trajectory(2 * frames_count)
    video = folder / f"{number}.mp4"
    write_mp4(video, frames(frames_count, width, height, seed=number))
    cameras = folder / f"cam{number}.json"
    cameras.write_text(json.dumps(camera_record(matrices[:frames_count], matrices[frames_count:])))
    if captions is not None:
        (folder / "caption.txt").write_text("".join(f"{line}\n" for line in captions))
    return video, cameras, matrices


def write_released_sample(
    folder: Path,
    context: int = 9,
    target: int = 9,
    width: int = 32,
    height: int = 32,
    with_target: bool = True,
) -> np.ndarray:
    """ROOT/sampleK in the released layout; returns the Unreal matrices "Tc+Tt 4 4"."""
    folder.mkdir(parents=True)
    matrices = unreal_trajectory(context + target)
    video = frames(context + target, width, height)
    write_mp4(folder / "cond.mp4", video[:context])
    masks = np.zeros_like(video)
    masks[:, 8:24, 4:12, 0] = 255
    write_mp4(folder / "cond_mask.mp4", masks[:context])
    if with_target:
        write_mp4(folder / "tgt.mp4", video[context:])
        write_mp4(folder / "tgt_mask.mp4", masks[context:])
    (folder / "camera.json").write_text(json.dumps(camera_record(matrices[:context], matrices[context:])))
    (folder / "character.json").write_text(json.dumps({"character": ["human_01"]}))
    (folder / "check.json").write_text(json.dumps({"check": True}))
    return matrices
