import numpy as np
import pytest
from PIL import Image

from hybridmem.data.clip import Clip, Event, SubjectTrack
from hybridmem.errors import ConfigError
from hybridmem.geometry import intrinsics_from_fov, look_at
from hybridmem.world import layout, preview


def _clip(total=10, context=5, size=32) -> Clip:
    ids = np.zeros((total, size, size), dtype=np.uint8)
    ids[:3, 4:12, 4:10] = 1
    ids[7:, 4:12, 20:26] = 1
    frames = np.full((total, size, size, 3), 90, dtype=np.uint8)
    frames[ids > 0] = 220
    boxes = np.full((total, 4), np.nan)
    boxes[:3] = [4, 4, 10, 12]
    boxes[7:] = [20, 4, 26, 12]
    track = SubjectTrack(1, "human_00", np.zeros((total, 3)), np.zeros(total), boxes=boxes)
    return Clip(
        frames=frames, cameras=np.stack([look_at([0, -5, 1], [0, 0, 1])] * total),
        intrinsics=intrinsics_from_fov(size, size, 70.0), context_frames=context, fps=8.0, subjects=[track],
        events=[Event(1, "exit", 3), Event(1, "entry", 7)], instance_ids=ids,
    )  # fmt: skip


def test_sheet_frames_include_every_event():
    assert preview.sheet_frames(_clip(), every=4) == [0, 3, 4, 7, 8, 9]


def test_contact_sheet_draws_marks(tmp_path):
    folder = layout.write_clip(_clip(), tmp_path / "clip")
    out = preview.write_preview(folder, tmp_path / "sheet.png", columns=3, every=4, scale=2)
    image = np.asarray(Image.open(out).convert("RGB"))
    tile_w, tile_h, gap = 64, 64 + preview.STRIP, 2
    assert image.shape == (2 * tile_h + gap, 3 * tile_w + 2 * gap, 3)  # 6 tiles in 2 rows of 3
    colors = {tuple(c) for c in image.reshape(-1, 3)}
    for color in (preview.EXIT_COLOR, preview.ENTRY_COLOR, preview.CONTEXT_COLOR, preview.TARGET_COLOR):
        assert color in colors
    assert preview.SUBJECT_COLORS[0] in colors  # the box outline
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_gif_has_one_frame_per_video_frame(tmp_path):
    folder = layout.write_clip(_clip(), tmp_path / "clip")
    out = preview.write_preview(folder, tmp_path / "clip.gif")
    with Image.open(out) as gif:
        assert gif.n_frames == 10


def test_bad_output_suffix_writes_nothing(tmp_path):
    folder = layout.write_clip(_clip(), tmp_path / "clip")
    with pytest.raises(ConfigError, match=".png"):
        preview.write_preview(folder, tmp_path / "sheet.jpg")
    assert not (tmp_path / "sheet.jpg").exists()
