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


def make_released_fixture(folder, poses, row_vector=False, target=True):
    """A folder in the released HM-World layout: cond/tgt video + masks, Unreal cm matrices."""
    folder.mkdir()
    total = len(poses)
    frames = _frames(total)
    layout.write_video(folder / "cond.mp4", frames[:CONTEXT], 8.0, 18)
    if target:
        layout.write_video(folder / "tgt.mp4", frames[CONTEXT:], 8.0, 18)
    ids = np.zeros((total, SIZE, SIZE), dtype=np.uint8)
    ids[:, 8:24, 4:12] = 1
    masks = layout.mask_frames(ids)
    layout.write_video(folder / "cond_mask.mp4", masks[:CONTEXT], 8.0, 18)
    layout.write_video(folder / "tgt_mask.mp4", masks[CONTEXT:], 8.0, 18)
    matrices = hmworld.opencv_to_unreal(poses, "row" if row_vector else "column")
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
    np.testing.assert_allclose(
        clip.intrinsics, intrinsics_from_fov(SIZE, SIZE, hmworld.DEFAULT_RELEASED_FOV_DEG)
    )
    assert "default horizontal FOV 36.3" in clip.metadata["intrinsics_source"]
    form = "row" if row_vector else "column"
    assert clip.metadata["camera_convention"].startswith(f"Unreal cm, {form}-vector")
    assert clip.metadata["horizontal_fov_deg"] == 36.3 and clip.metadata["released_character"] == {
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


def test_default_fov_matches_the_measured_focal_length():
    # issue 11: measured f about 1270 px at 832 wide (36-37 degrees)
    fx = intrinsics_from_fov(832, 480, hmworld.DEFAULT_RELEASED_FOV_DEG)[0]
    assert 1250 < fx < 1290


def test_released_intrinsics_override_and_source(tmp_path):
    make_released_fixture(tmp_path / "sample", _poses(CONTEXT + TARGET))
    clip = hmworld.load_clip(tmp_path / "sample", intrinsics=[30.0, 31.0, 15.0, 17.0])
    np.testing.assert_allclose(clip.intrinsics, [30.0, 31.0, 15.0, 17.0])
    assert clip.metadata["intrinsics_source"].startswith("given: fx=30")
    with pytest.raises(DataError, match="not both"):
        hmworld.load_clip(tmp_path / "sample", intrinsics=[30.0, 31.0, 15.0, 17.0], horizontal_fov_deg=50)


def test_matrix_form_is_detected_per_file_and_never_guessed_at_the_origin():
    poses = _poses(6)
    column = hmworld.opencv_to_unreal(poses, "column")
    assert hmworld.detect_matrix_form(column, "f") == "column"
    assert hmworld.detect_matrix_form(np.swapaxes(column, -1, -2), "f") == "row"
    # a trajectory starting at the origin takes the form its other cameras show
    at_origin = column.copy()
    at_origin[0, :3, 3] = 0.0
    np.testing.assert_allclose(
        hmworld.unreal_to_opencv(at_origin, "f")[0, :3, :3], hmworld.unreal_to_opencv(column, "f")[0, :3, :3]
    )
    # every camera at the origin: the form is undecidable -> error naming the field and the flag
    all_origin = column.copy()
    all_origin[:, :3, 3] = 0.0
    with pytest.raises(DataError, match="camera.json fields 'cond_cam'.*--matrix-form"):
        hmworld.detect_matrix_form(all_origin, "camera.json fields 'cond_cam'/'tgt_cam'")
    assert hmworld.detect_matrix_form(all_origin, "f", "row") == "row"
    with pytest.raises(DataError, match="mixes column-vector"):
        hmworld.detect_matrix_form(np.concatenate([column, np.swapaxes(column, -1, -2)]), "f")
    with pytest.raises(DataError, match="matrix_form 'row' was given, but the matrices are column"):
        hmworld.detect_matrix_form(column, "f", "row")


def test_released_sample_at_the_origin_needs_matrix_form(tmp_path):
    folder = tmp_path / "sample"
    make_released_fixture(folder, _poses(CONTEXT + TARGET))

    def to_origin(record):
        for key in ("cond_cam", "tgt_cam"):
            for matrix in record[key].values():
                for row in matrix[:3]:
                    row[3] = 0.0

    _edit_camera(folder, to_origin)
    with pytest.raises(DataError, match="--matrix-form"):
        hmworld.load_clip(folder)
    assert (
        hmworld.load_clip(folder, matrix_form="column")
        .metadata["camera_convention"]
        .startswith("Unreal cm, column")
    )


def test_released_without_target_is_refused_by_load_clip_with_the_way_out(tmp_path):
    make_released_fixture(tmp_path / "sample", _poses(CONTEXT + TARGET), target=False)
    with pytest.raises(DataError, match="tgt.mp4 missing.*hybridmem sample"):
        hmworld.load_clip(tmp_path / "sample")


@pytest.mark.parametrize("first", [0, 1])
def test_root_caption_by_sample_index(tmp_path, first):
    root = tmp_path / "HM-World"
    root.mkdir()
    for index in (first, first + 1, first + 2):
        (root / f"sample{index}").mkdir()
    (root / "caption.txt").write_text("a dog walks\na man runs\ntwo cats play\n")
    caption, source = hmworld.released_caption(root / f"sample{first + 1}")
    assert caption == "a man runs" and "line 2" in source and f"numbered from {first}" in source
    # the index, not the listing position: a partial copy still gets its own caption
    (root / f"sample{first}").rmdir()
    if first == 0:
        # without sample0 beside it, the numbering is read as 1-based (documented in docs/DATASET.md)
        assert hmworld.released_caption(root / "sample1")[0] == "a dog walks"
    else:
        assert hmworld.released_caption(root / "sample3")[0] == "two cats play"
    (root / "sample9").mkdir()
    with pytest.raises(DataError, match="caption.txt: has 3 lines"):
        hmworld.released_caption(root / "sample9")


def test_released_clip_reads_the_root_caption(tmp_path):
    root = tmp_path / "HM-World"
    root.mkdir()
    make_released_fixture(root / "sample1", _poses(CONTEXT + TARGET))
    (root / "caption.txt").write_text("first caption\nsecond caption\n")
    clip = hmworld.load_clip(root / "sample1")
    assert clip.caption == "first caption" and "line 1" in clip.metadata["caption_source"]
    (root / "caption.txt").write_bytes(b"\xff\xfe caption")
    with pytest.raises(DataError, match="caption.txt: not UTF-8"):
        hmworld.load_clip(root / "sample1")


# issue 12: malformed files of our layout exit cleanly, naming the file and field


def _our_clip(tmp_path, subjects=1):
    total = CONTEXT + TARGET
    tracks = [
        SubjectTrack(k + 1, f"human_0{k}", np.zeros((total, 3)), np.zeros(total)) for k in range(subjects)
    ]
    clip = Clip(
        _frames(total), _poses(total), intrinsics_from_fov(SIZE, SIZE, 70.0), CONTEXT, 8.0, subjects=tracks
    )
    clip.instance_ids = np.zeros((total, SIZE, SIZE), dtype=np.uint8)
    return layout.write_clip(clip, tmp_path / "ours")


def _edit_json(path, edit):
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    "file, edit, message",
    [
        ("character.json", lambda r: r["subjects"][0].__setitem__("id", "one"), r"subjects\[0\]\.id"),
        ("character.json", lambda r: r["subjects"][0].__setitem__("id", 0), r"subjects\[0\]\.id"),
        ("character.json", lambda r: r["subjects"].append(dict(r["subjects"][0])), "repeats id 1"),
        ("character.json", lambda r: r.__setitem__("subjects", {"a": 1}), "'subjects' must be a list"),
        (
            "character.json",
            lambda r: r["subjects"][0].__setitem__("boxes", [[0, 0, 1, 1], [0, 0, 1]] + [None] * 8),
            r"boxes\[1\]",
        ),
        ("character.json", lambda r: r["subjects"][0].__setitem__("boxes", [[1, 2]]), "boxes"),
        (
            "character.json",
            lambda r: r["subjects"][0]["positions"][3].__setitem__(0, float("nan")),
            r"subjects\[0\]\.positions\[3\]\[0\]' holds NaN",
        ),
        ("check.json", lambda r: r.__setitem__("events", 5), "'events' must be a list"),
        ("check.json", lambda r: r.__setitem__("events", [7]), r"events\[0\]"),
        (
            "check.json",
            lambda r: r.__setitem__("events", [{"subject_id": 4, "kind": "exit", "frame": 3}]),
            r"events\[0\]\.subject_id' is 4",
        ),
        (
            "check.json",
            lambda r: r.__setitem__("events", [{"subject_id": 1, "kind": "exit", "frame": "3"}]),
            "must be integers",
        ),
        (
            "metadata.json",
            lambda r: r.__setitem__("fps", float("inf")),
            "field 'fps' holds Infinity",
        ),
    ],
)
def test_malformed_our_layout_files_name_file_and_field(tmp_path, file, edit, message):
    folder = _our_clip(tmp_path)
    _edit_json(folder / file, edit)
    with pytest.raises(DataError, match=message) as error:
        hmworld.load_clip(folder, load_frames=False)
    assert file in str(error.value)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", None])
def test_broken_ids_npz_is_a_data_error(tmp_path, content):
    folder = _our_clip(tmp_path)
    data = (folder / "ids.npz").read_bytes()
    (folder / "ids.npz").write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(DataError, match=r"ids\.npz.*; regenerate the clip or delete ids\.npz"):
        hmworld.load_clip(folder, load_frames=False)


@pytest.mark.parametrize("name", ["caption.txt", "camera.json", "metadata.json"])
def test_non_utf8_files_are_data_errors(tmp_path, name):
    folder = _our_clip(tmp_path)
    (folder / name).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=f"{name}: not UTF-8"):
        hmworld.load_clip(folder, load_frames=False)


def test_our_clip_without_metadata_is_not_read_as_released(tmp_path):
    folder = _our_clip(tmp_path)
    (folder / "metadata.json").unlink()
    with pytest.raises(DataError, match="without metadata.json"):
        hmworld.load_clip(folder)
    (folder / "ids.npz").unlink()  # the camera 'convention' field alone still marks it as ours
    with pytest.raises(DataError, match="without metadata.json"):
        hmworld.load_clip(folder)
