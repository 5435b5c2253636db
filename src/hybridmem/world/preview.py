"""Looking at a clip: a contact sheet (PNG) or an animation (GIF) with boxes, ids and exit/entry marks.

    hybridmem world preview runs/world/train/000000 --out sheet.png
    hybridmem world preview runs/world/train/000000 --out clip.gif

Each frame shows each visible subject's box in its own colour with "id name"; a strip on top says the frame
index and whether it is context (blue) or target (orange); a frame where a subject exits gets a red "EXIT id"
mark, an entry a green "ENTRY id" mark. The contact sheet shows every n-th frame plus every event frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hybridmem.data.clip import Clip
from hybridmem.errors import ConfigError

SUBJECT_COLORS = [(255, 220, 0), (0, 230, 255), (255, 80, 255), (120, 255, 80), (255, 140, 0)]
CONTEXT_COLOR, TARGET_COLOR = (60, 120, 255), (255, 150, 40)
EXIT_COLOR, ENTRY_COLOR = (255, 40, 40), (40, 220, 60)
STRIP = 12  # pixel height of the label strip above each frame


def subject_boxes(clip: Clip) -> dict[int, "T 4"]:
    """Boxes per subject id: from the annotations, else from the instance ids (released layout)."""
    from hybridmem.world.events import boxes_from_ids

    if clip.subjects and all(track.boxes is not None for track in clip.subjects):
        return {track.subject_id: np.asarray(track.boxes) for track in clip.subjects}
    if clip.instance_ids is None:
        return {}
    num_ids = int(clip.instance_ids.max())
    boxes = boxes_from_ids(clip.instance_ids, num_ids)
    return {s + 1: boxes[s] for s in range(num_ids)}


def annotate_frame(clip: Clip, t: int, scale: int, boxes: dict, font) -> Image.Image:
    """Frame t upscaled by `scale` (nearest), with the label strip, boxes, ids and event marks."""
    frame = Image.fromarray(clip.frames[t]).resize(
        (clip.frames.shape[2] * scale, clip.frames.shape[1] * scale), Image.NEAREST
    )
    tile = Image.new("RGB", (frame.width, frame.height + STRIP), (0, 0, 0))
    tile.paste(frame, (0, STRIP))
    draw = ImageDraw.Draw(tile)
    # 1. strip: frame index, context / target
    in_context = t < clip.context_frames
    draw.rectangle([0, 0, tile.width - 1, STRIP - 1], fill=CONTEXT_COLOR if in_context else TARGET_COLOR)
    draw.text((2, 0), f"{t} {'ctx' if in_context else 'tgt'}", fill=(255, 255, 255), font=font)
    # 2. boxes with "id name"
    names = {track.subject_id: track.name for track in clip.subjects}
    for subject_id, track_boxes in boxes.items():
        box = track_boxes[t]
        if np.isnan(box).any():
            continue
        color = SUBJECT_COLORS[(subject_id - 1) % len(SUBJECT_COLORS)]
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0, y0 + STRIP, x1 - 1, y1 - 1 + STRIP], outline=color)
        draw.text(
            (x0 + 1, y0 + STRIP + 1),
            f"{subject_id} {names.get(subject_id, '')}".strip(),
            fill=color,
            font=font,
        )
    # 3. events of this frame, stacked from the bottom
    marks = [event for event in clip.events if event.frame == t]
    for row, event in enumerate(marks):
        color = EXIT_COLOR if event.kind == "exit" else ENTRY_COLOR
        y = tile.height - (row + 1) * STRIP
        draw.rectangle([0, y, tile.width - 1, y + STRIP - 1], fill=color)
        draw.text((2, y), f"{event.kind.upper()} {event.subject_id}", fill=(255, 255, 255), font=font)
    if marks:
        draw.rectangle(
            [0, 0, tile.width - 1, tile.height - 1],
            outline=EXIT_COLOR if marks[0].kind == "exit" else ENTRY_COLOR,
            width=2,
        )
    return tile


def sheet_frames(clip: Clip, every: int) -> list[int]:
    """Every `every`-th frame, the last frame, and every event frame, in order."""
    chosen = set(range(0, clip.num_frames, every)) | {clip.num_frames - 1} | {e.frame for e in clip.events}
    return sorted(chosen)


def contact_sheet(
    clip: Clip, *, columns: int = 6, every: int | None = None, scale: int | None = None
) -> Image.Image:
    if columns < 1:
        raise ConfigError(f"--columns {columns}: must be at least 1")
    scale = scale or max(1, 256 // clip.frames.shape[2])
    every = every or max(1, clip.num_frames // 12)
    if every < 1 or scale < 1:
        raise ConfigError(f"--every {every} / --scale {scale}: must be at least 1")
    font = ImageFont.load_default()
    boxes = subject_boxes(clip)
    tiles = [annotate_frame(clip, t, scale, boxes, font) for t in sheet_frames(clip, every)]
    rows = -(-len(tiles) // columns)
    width, height = tiles[0].size
    gap = 2
    sheet = Image.new("RGB", (columns * (width + gap) - gap, rows * (height + gap) - gap), (32, 32, 32))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * (width + gap), (index // columns) * (height + gap)))
    return sheet


def animation(clip: Clip, *, scale: int | None = None) -> list[Image.Image]:
    scale = scale or max(1, 256 // clip.frames.shape[2])
    font = ImageFont.load_default()
    boxes = subject_boxes(clip)
    return [annotate_frame(clip, t, scale, boxes, font) for t in range(clip.num_frames)]


def preview_bytes(clip: Clip, *, gif: bool, every: int | None, scale: int | None) -> int:
    """Memory the preview's images take (every tile, plus the sheet), computed before drawing any."""
    scale = scale or max(1, 256 // clip.frames.shape[2])
    tile = clip.frames.shape[2] * scale * (clip.frames.shape[1] * scale + STRIP) * 3
    count = clip.num_frames if gif else len(sheet_frames(clip, every or max(1, clip.num_frames // 12)))
    return 2 * count * tile


def write_preview(
    clip_folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    columns: int = 6,
    every: int | None = None,
    scale: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Contact sheet (.png) or animation (.gif) of one clip folder, written atomically; returns `out`.

    An existing `out` is refused unless `overwrite`; a preview too large for memory is refused before
    drawing (hybridmem.device.check_memory).
    """
    from hybridmem import validation
    from hybridmem.data.hmworld import load_clip
    from hybridmem.device import check_memory

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".gif"):
        raise ConfigError(f"--out {out}: the preview must be a .png (contact sheet) or a .gif (animation)")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the .png or .gif file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out}: exists; pass --overwrite to replace it, or choose another name")
    for name, value in (("columns", columns), ("every", every), ("scale", scale)):
        if value is not None:
            validation.check_value(name, value, "world preview")  # the flags' rules
    clip = load_clip(clip_folder)
    check_memory(
        preview_bytes(clip, gif=suffix == ".gif", every=every, scale=scale),
        f"world preview: {clip.num_frames} frames of {clip.frames.shape[2]}x{clip.frames.shape[1]} "
        f"at --scale {scale or 'auto'}",
        "lower --scale (or raise --every for a contact sheet)",
    )
    from hybridmem import publish

    if suffix == ".png":
        sheet = contact_sheet(clip, columns=columns, every=every, scale=scale)
        with publish.staged(out, check=publish.check_png, overwrite=overwrite) as temp:
            sheet.save(temp, format="PNG")
    else:
        frames = animation(clip, scale=scale)
        duration_ms = int(round(1000 / (clip.fps or 8.0)))
        with publish.staged(out, check=publish.gif_check(len(frames)), overwrite=overwrite) as temp:
            frames[0].save(
                temp, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0
            )
    return out
