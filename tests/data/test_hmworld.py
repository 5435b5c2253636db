import json

import numpy as np
import pytest

from hybridmem.data import hmworld
from hybridmem.data.clip import Clip, SubjectTrack
from hybridmem.errors import DataError
from hybridmem.geometry import intrinsics_from_fov, look_at
from hybridmem.world import layout

CONTEXT, TARGET, SIZE = 5, 5, 32


def _frames(total, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(1, SIZE // 8, SIZE // 8, 3))
    return np.repeat(np.repeat(np.repeat(base, total, 0), 8, 1), 8, 2).astype(np.uint8)  # blocky: codec-safe


def _poses(total):
    return np.stack([look_at([0.3 * t, -5.0, 1.6], [0.0, 2.0, 1.0]) for t in range(total)])


def make_released_fixture(folder, poses, row_vector=True):
    """A folder in the released HM-World layout: cond/tgt video + masks, Unreal cm matrices."""
    folder.mkdir()
    total = len(poses)
    frames = _frames(total)
    layout.write_video(folder / "cond.mp4", frames[:CONTEXT], 8.0, 18)
    layout.write_video(folder / "tgt.mp4", frames[CONTEXT:], 8.0, 18)
    ids = np.zeros((total, SIZE, SIZE), dtype=np.uint8)
    ids[:, 8:24, 4:12] = 1
    masks = layout.mask_frames(ids)
    layout.write_video(folder / "cond_mask.mp4", masks[:CONTEXT], 8.0, 18)
    layout.write_video(folder / "tgt_mask.mp4", masks[CONTEXT:], 8.0, 18)
    matrices = hmworld.opencv_to_unreal(poses)
    if not row_vector:
        matrices = np.swapaxes(matrices, -1, -2)
    record = {
        "cond_cam": {str(t): matrices[t].tolist() for t in range(CONTEXT)},
        "tgt_cam": {str(t): matrices[CONTEXT + t].tolist() for t in range(TARGET)},
    }
    (folder / "camera.json").write_text(json.dumps(record))
    (folder / "character.json").write_text(json.dumps({"anything": [1, 2]}))
    return ids


@pytest.mark.parametrize("row_vector", [True, False])
def test_released_layout_round_trip(tmp_path, row_vector):
    poses = _poses(CONTEXT + TARGET)
    ids = make_released_fixture(tmp_path / "sample", poses, row_vector)
    clip = hmworld.load_clip(tmp_path / "sample")
    assert hmworld.detect_layout(tmp_path / "sample") == hmworld.RELEASED_LAYOUT
    np.testing.assert_allclose(clip.cameras, poses, atol=1e-9)
    assert clip.frames.shape == (CONTEXT + TARGET, SIZE, SIZE, 3) and clip.context_frames == CONTEXT
    np.testing.assert_allclose(clip.intrinsics, intrinsics_from_fov(SIZE, SIZE, 90.0))
    assert clip.metadata["horizontal_fov_deg"] == 90.0 and clip.metadata["released_character"] == {
        "anything": [1, 2]
    }
    assert abs(clip.fps - 8.0) < 1e-6
    # masks are lossy: compare away from the subject's edges
    assert (clip.instance_ids[:, 10:22, 6:10] == 1).all() and (clip.instance_ids[:, :, 16:] == 0).all()
    assert (ids[:, 10:22, 6:10] == 1).all()


def test_released_fov_is_explicit_and_recorded(tmp_path):
    make_released_fixture(tmp_path / "sample", _poses(CONTEXT + TARGET))
    clip = hmworld.load_clip(tmp_path / "sample", horizontal_fov_deg=60.0)
    np.testing.assert_allclose(clip.intrinsics, intrinsics_from_fov(SIZE, SIZE, 60.0))
    assert clip.metadata["horizontal_fov_deg"] == 60.0


def test_unreal_conversion_axes_independent_facts():
    # An Unreal camera at (100, 200, 300) cm with identity rotation looks along Unreal +x = our +x; its
    # right (Unreal +y) is our -y, its down (Unreal -z) is our -z, and it sits at (1, -2, 3) m.
    unreal = np.eye(4)
    unreal[3, :3] = [100, 200, 300]  # row-vector form: translation in the last row
    pose = hmworld.unreal_to_opencv(unreal[None])[0]
    np.testing.assert_allclose(pose[:3, 2], [1, 0, 0])
    np.testing.assert_allclose(pose[:3, 0], [0, -1, 0])
    np.testing.assert_allclose(pose[:3, 1], [0, 0, -1])
    np.testing.assert_allclose(pose[:3, 3], [1, -2, 3])
    # Yaw +90 degrees in Unreal turns the view from +x to Unreal +y (to the right), which is our -y.
    yaw = np.eye(4)
    yaw[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # column-vector rotation about z
    yaw[:3, 3] = [0, 0, 50]
    pose = hmworld.unreal_to_opencv(yaw[None])[0]
    np.testing.assert_allclose(pose[:3, 2], [0, -1, 0], atol=1e-12)
    assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)


def test_our_layout_round_trip_and_fov_argument_rejected(tmp_path):
    total = CONTEXT + TARGET
    clip = Clip(
        frames=_frames(total),
        cameras=_poses(total),
        intrinsics=intrinsics_from_fov(SIZE, SIZE, 70.0),
        context_frames=CONTEXT,
        fps=8.0,
        subjects=[SubjectTrack(1, "human_00", np.zeros((total, 3)), np.zeros(total))],
        instance_ids=np.zeros((total, SIZE, SIZE), dtype=np.uint8),
        caption="c",
    )
    folder = layout.write_clip(clip, tmp_path / "ours")
    loaded = hmworld.load_clip(folder, load_frames=False)
    np.testing.assert_array_equal(loaded.cameras, clip.cameras)
    assert loaded.subjects[0].name == "human_00" and loaded.subjects[0].boxes is None
    with pytest.raises(DataError, match="horizontal_fov_deg"):
        hmworld.load_clip(folder, horizontal_fov_deg=60.0)


def _edit_camera(folder, edit):
    record = json.loads((folder / "camera.json").read_text())
    edit(record)
    (folder / "camera.json").write_text(json.dumps(record))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.pop("tgt_cam"), "tgt_cam"),
        (lambda r: r["cond_cam"].pop("3"), "cond_cam"),
        (lambda r: r["cond_cam"]["0"][0].__setitem__(0, float("nan")), "NaN"),
        (lambda r: r["cond_cam"]["1"][0].__setitem__(0, 5.0), "rotation"),
        (lambda r: r["tgt_cam"].__setitem__("5", r["tgt_cam"]["0"]), "5 camera poses|one per frame"),
    ],
)
def test_malformed_released_cameras_raise(tmp_path, edit, message):
    folder = tmp_path / "sample"
    make_released_fixture(folder, _poses(CONTEXT + TARGET))
    _edit_camera(folder, edit)
    with pytest.raises(DataError, match=message) as error:
        hmworld.load_clip(folder)
    assert "camera.json" in str(error.value)


def test_malformed_our_layout_raises(tmp_path):
    total = CONTEXT + TARGET
    clip = Clip(_frames(total), _poses(total), intrinsics_from_fov(SIZE, SIZE, 70.0), CONTEXT, 8.0)
    folder = layout.write_clip(clip, tmp_path / "ours")
    (folder / "character.json").write_text(json.dumps({"subjects": [{"id": 1, "positions": [[0, 0, 0]]}]}))
    with pytest.raises(DataError, match="character.json"):
        hmworld.load_clip(folder, load_frames=False)
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "fps": "fast"}))
    with pytest.raises(DataError, match="metadata.json: field 'fps'"):
        hmworld.load_clip(folder, load_frames=False)
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(DataError, match="neither layout|metadata.json"):
        hmworld.load_clip(folder)
    with pytest.raises(DataError, match="not a folder"):
        hmworld.load_clip(tmp_path / "missing")
