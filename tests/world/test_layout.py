import json

import numpy as np
import pytest

from hybridmem.data.clip import Clip, Event, SubjectTrack
from hybridmem.data.hmworld import load_clip
from hybridmem.geometry import intrinsics_from_fov, look_at
from hybridmem.world import layout


def synthetic_clip(width=31, height=33, context=5, target=5, seed=0) -> Clip:
    """A clip with smooth frames (so H.264 keeps them close), two subjects, boxes with NaN, events."""
    rng = np.random.default_rng(seed)
    total = context + target
    yy, xx = np.mgrid[0:height, 0:width]
    frames = (
        np.stack(
            [np.stack([xx * 4 + t * 3, yy * 4, np.full_like(xx, 90 + t)], axis=-1) for t in range(total)]
        )
        .clip(0, 255)
        .astype(np.uint8)
    )
    ids = np.zeros((total, height, width), dtype=np.uint8)
    ids[:, 2:9, 3:8] = 1
    ids[3:6, 10:20, 12:25] = 2
    cameras = np.stack([look_at([0.1 * t, -4, 1.5], [0, 0, 1]) for t in range(total)])
    subjects = []
    for s in range(2):
        boxes = rng.uniform(0, 20, size=(total, 4))
        boxes[1] = np.nan
        subjects.append(
            SubjectTrack(
                subject_id=s + 1,
                name=f"subject_{s}",
                positions=rng.normal(size=(total, 3)),
                headings=rng.uniform(-3, 3, size=total),
                boxes=boxes,
                visible_fraction=rng.uniform(0, 1, size=total),
            )
        )
    return Clip(
        frames=frames,
        cameras=cameras,
        intrinsics=intrinsics_from_fov(width, height, 70.0),
        context_frames=context,
        fps=8.0,
        subjects=subjects,
        events=[Event(1, "exit", 2), Event(1, "entry", 7)],
        instance_ids=ids,
        caption="A test caption.",
        metadata={"seed": 7, "subjects": [{"id": 1, "family": "human", "path": "line"}]},
    )


def test_round_trip_our_layout_odd_size(tmp_path):
    clip = synthetic_clip()
    folder = layout.write_clip(clip, tmp_path / "000000")
    expected_files = {
        "cond.mp4", "tgt.mp4", "cond_mask.mp4", "tgt_mask.mp4", "ids.npz", "camera.json", "character.json",
        "check.json", "caption.txt", "metadata.json",
    }  # fmt: skip
    assert {p.name for p in folder.iterdir()} == expected_files
    assert not layout.temp_folder_for(folder).exists()
    loaded = load_clip(folder)
    assert loaded.frames.shape == clip.frames.shape
    assert np.abs(loaded.frames.astype(int) - clip.frames).mean() < 3
    np.testing.assert_array_equal(loaded.instance_ids, clip.instance_ids)
    np.testing.assert_array_equal(loaded.cameras, clip.cameras)
    np.testing.assert_array_equal(loaded.intrinsics, clip.intrinsics)
    assert loaded.context_frames == 5 and loaded.fps == 8.0 and loaded.caption == "A test caption."
    for ours, theirs in zip(loaded.subjects, clip.subjects, strict=True):
        assert ours.subject_id == theirs.subject_id and ours.name == theirs.name
        np.testing.assert_array_equal(ours.positions, theirs.positions)
        np.testing.assert_array_equal(ours.headings, theirs.headings)
        np.testing.assert_array_equal(ours.boxes, theirs.boxes)  # NaN rows survive as null
        np.testing.assert_array_equal(ours.visible_fraction, theirs.visible_fraction)
    assert [(e.subject_id, e.kind, e.frame) for e in loaded.events] == [(1, "exit", 2), (1, "entry", 7)]
    assert loaded.metadata["seed"] == 7 and loaded.metadata["layout"] == "hybridmem"
    character = json.loads((folder / "character.json").read_text())
    assert character["subjects"][0]["family"] == "human" and character["subjects"][1]["family"] == "unknown"
    check = json.loads((folder / "check.json").read_text())
    assert check["events"][1]["segment"] == "tgt" and check["events"][1]["segment_frame"] == 2


def test_mask_video_is_red_foreground(tmp_path):
    clip = synthetic_clip(width=32, height=32)
    folder = layout.write_clip(clip, tmp_path / "clip")
    from hybridmem.data.hmworld import read_video

    masks = read_video(folder / "cond_mask.mp4")
    foreground = clip.instance_ids[:5] > 0
    # H.264 blurs the edges; well inside and well outside the subjects the colour is exact enough.
    assert masks[..., 0][foreground].mean() > 200 and masks[..., 1][foreground].mean() < 40
    assert masks[..., 0][~foreground].mean() < 30


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_write_video(path, frames, fps, crf):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        path.write_bytes(b"x")

    monkeypatch.setattr(layout, "write_video", failing_write_video)
    with pytest.raises(RuntimeError):
        layout.write_clip(synthetic_clip(), tmp_path / "clip")
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "clip").mkdir()
    with pytest.raises(FileExistsError):
        layout.write_clip(synthetic_clip(), tmp_path / "clip")


def test_stale_temp_folder_is_replaced(tmp_path):
    stale = layout.temp_folder_for(tmp_path / "clip")
    stale.mkdir()
    (stale / "cond.mp4").write_bytes(b"half written")
    layout.write_clip(synthetic_clip(), tmp_path / "clip")
    assert not stale.exists() and (tmp_path / "clip" / "metadata.json").is_file()


def test_pad_to_even():
    frames = np.arange(2 * 3 * 5 * 3).reshape(2, 3, 5, 3).astype(np.uint8)
    padded = layout.pad_to_even(frames)
    assert padded.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(padded[:, :3, :5], frames)
    np.testing.assert_array_equal(padded[:, 3, :5], frames[:, 2])
