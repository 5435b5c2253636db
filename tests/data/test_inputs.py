import json

import numpy as np
import pytest
from official_formats import (
    FPS,
    camera_record,
    unreal_trajectory,
    write_mp4,
    write_official_pair,
    write_released_sample,
)

from hybridmem.data import hmworld, inputs
from hybridmem.data.encode import segment_latent_cameras
from hybridmem.errors import ConfigError, DataError
from hybridmem.geometry import intrinsics_from_fov, look_at, project_points

# 1. the official camera encoding, re-implemented independently from the description


def official_relative_encoding(cond_cam: dict, tgt_cam: dict, stride: int = 4) -> "F 12":
    """Unreal cm column-vector c2w -> OpenCV metres -> every stride-th frame relative to tgt_cam[0] -> 3x4.

    Written from the description, not from hybridmem: a camera's Unreal local axes are the matrix columns
    (x forward, y right, z up); OpenCV wants x right, y down, z forward; Unreal's left-handed world becomes
    right-handed by negating y; centimetres become metres.
    """

    def to_opencv(matrix):
        m = np.asarray(matrix, dtype=np.float64)
        flip = np.array([1.0, -1.0, 1.0])
        forward, right, up, position = (m[:3, i] * flip for i in range(4))
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, -up, forward
        pose[:3, 3] = position / 100.0
        return pose

    cond = [to_opencv(cond_cam[str(i)]) for i in range(0, len(cond_cam), stride)]
    tgt = [to_opencv(tgt_cam[str(i)]) for i in range(0, len(tgt_cam), stride)]
    reference = np.linalg.inv(tgt[0])
    return np.stack([(reference @ pose)[:3, :4].reshape(12) for pose in cond + tgt])


def test_official_json_round_trips_to_the_official_20x12_encoding(tmp_path):
    video, cameras, _ = write_official_pair(tmp_path, frames_count=77, width=32, height=32)
    record = json.loads(cameras.read_text())
    given = inputs.read_video_input(video, cameras)
    relative = segment_latent_cameras(given.context_cameras, given.target_cameras, 4)  # 40 4 4
    ours = relative[:, :3, :4].reshape(-1, 12)
    theirs = official_relative_encoding(record["cond_cam"], record["tgt_cam"])
    assert ours.shape == theirs.shape == (40, 12)  # 20 context + 20 target latent frames
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(ours[20], np.eye(4)[:3].reshape(12), atol=1e-6)  # tgt_cam[0] itself
    # the encoding moves: the fixture pans and walks
    assert np.abs(theirs[-1] - theirs[20]).max() > 0.1


def test_recovered_motion_matches_the_unreal_trajectory():
    # a point 10 m ahead of the first camera (Unreal +x of its forward axis) projects to the image centre
    matrices = unreal_trajectory(5)
    poses = hmworld.unreal_to_opencv(matrices, "f")
    forward_cm = matrices[0, :3, 3] + 1000.0 * matrices[0, :3, 0]
    point = np.array([forward_cm[0], -forward_cm[1], forward_cm[2]]) / 100.0
    pixels, depth = project_points(point[None], poses[0], intrinsics_from_fov(64, 48, 40.0))
    np.testing.assert_allclose(pixels[0], [32.0, 24.0], atol=1e-6)
    assert depth[0] == pytest.approx(10.0)
    # looking down (negative pitch): camera y (down) has a negative world z component... points below
    assert poses[0][2, 2] < 0  # forward axis points below the horizon


# 2. each input format


def test_official_pair_is_detected_and_reported(tmp_path):
    video, cameras, matrices = write_official_pair(
        tmp_path / "examples", number=2, frames_count=9, captions=["a dog runs", "a man walks away"]
    )
    given = inputs.read_video_input(video, cameras)
    assert given.context_frames.shape == (9, 48, 64, 3) and given.truth is None
    assert given.fps == pytest.approx(FPS)
    np.testing.assert_allclose(given.target_cameras, hmworld.unreal_to_opencv(matrices[9:], "f"), atol=1e-9)
    assert given.caption == "a man walks away"
    report = "\n".join(given.report())
    assert "official HyDRA example pair" in report and "column-vector matrices (detected)" in report
    assert "default horizontal FOV 36.3" in report and "fps: 15" in report and "line 2" in report
    np.testing.assert_allclose(given.intrinsics, intrinsics_from_fov(64, 48, 36.3))
    with_hfov = inputs.read_video_input(video, cameras, hfov=50.0)
    np.testing.assert_allclose(with_hfov.intrinsics, intrinsics_from_fov(64, 48, 50.0))
    with pytest.raises(ConfigError, match="--camera-units"):
        inputs.read_video_input(video, cameras, camera_units="m")


def test_official_pair_with_every_camera_at_the_origin_needs_matrix_form(tmp_path):
    video, cameras, matrices = write_official_pair(tmp_path, frames_count=5)
    matrices[:, :3, 3] = 0.0
    cameras.write_text(json.dumps(camera_record(matrices[:5], matrices[5:])))
    with pytest.raises(DataError, match="cam1.json fields 'cond_cam'/'tgt_cam'.*--matrix-form column"):
        inputs.read_video_input(video, cameras)
    given = inputs.read_video_input(video, cameras, matrix_form="column")
    assert "column-vector" in given.conventions["cameras"]


def test_official_pair_camera_count_must_match_the_video(tmp_path):
    video, cameras, matrices = write_official_pair(tmp_path, frames_count=5)
    cameras.write_text(json.dumps(camera_record(matrices[:4], matrices[5:])))
    with pytest.raises(DataError, match="field 'cond_cam': 4 cameras, but the context video has 5 frames"):
        inputs.read_video_input(video, cameras)


@pytest.mark.parametrize("with_target", [True, False])
def test_released_sample_with_or_without_target(tmp_path, with_target):
    root = tmp_path / "HM-World"
    matrices = write_released_sample(root / "sample1", with_target=with_target)
    (root / "caption.txt").write_text("a zebra crosses\n")
    given = inputs.read_clip_input(root / "sample1")
    assert (given.truth is not None) == with_target
    assert given.context_frames.shape == (9, 32, 32, 3) and len(given.target_cameras) == 9
    np.testing.assert_allclose(given.context_cameras, hmworld.unreal_to_opencv(matrices[:9], "f"), atol=1e-9)
    assert given.caption == "a zebra crosses"
    assert ("context only" in given.conventions["format"]) != with_target


def test_our_schema_json_and_centimetre_ambiguity(tmp_path):
    video = tmp_path / "ctx.mp4"
    write_mp4(video, np.zeros((5, 32, 32, 3), dtype=np.uint8))
    poses = np.stack([look_at((0.1 * i, 0, 1.5), (0.1 * i, 5, 1.5)) for i in range(10)])
    cams = tmp_path / "cams.json"
    document = {"intrinsics": [20, 20, 16, 16], "context": poses[:5].tolist(), "target": poses[5:].tolist()}
    cams.write_text(json.dumps(document))
    given = inputs.read_video_input(video, cams)
    np.testing.assert_allclose(given.target_cameras, poses[5:])
    assert "our schema" in given.conventions["format"] and "metres" in given.conventions["cameras"]
    # the same trajectory in centimetres under the metres schema: refused, naming the flag
    in_cm = poses.copy()
    in_cm[:, :3, 3] *= 100.0
    document.update(context=in_cm[:5].tolist(), target=in_cm[5:].tolist())
    cams.write_text(json.dumps(document))
    with pytest.raises(DataError, match="look like centimetres.*--camera-units cm"):
        inputs.read_video_input(video, cams)
    converted = inputs.read_video_input(video, cams, camera_units="cm")
    np.testing.assert_allclose(converted.target_cameras, poses[5:], atol=1e-12)
    assert (
        inputs.read_video_input(video, cams, camera_units="m")
        .conventions["cameras"]
        .endswith("(--camera-units m)")
    )
    # no intrinsics: a flag must say them
    del document["intrinsics"]
    cams.write_text(json.dumps(document))
    with pytest.raises(DataError, match="missing field 'intrinsics'.*--intrinsics"):
        inputs.read_video_input(video, cams, camera_units="cm")
    # an unknown schema names both known ones
    cams.write_text(json.dumps({"poses": []}))
    with pytest.raises(DataError, match="unknown cameras schema.*cond_cam.*context"):
        inputs.read_video_input(video, cams)
    cams.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DataError, match="cams.json: not UTF-8"):
        inputs.read_video_input(video, cams)


def test_intrinsics_of_the_wrong_length_or_no_focal_length_are_refused_naming_where(tmp_path):
    video = tmp_path / "ctx.mp4"
    write_mp4(video, np.zeros((5, 32, 32, 3), dtype=np.uint8))
    poses = np.stack([look_at((0.1 * i, 0, 1.5), (0.1 * i, 5, 1.5)) for i in range(10)])
    cams = tmp_path / "cams.json"
    for intrinsics, why in (([20, 20, 16], "expected 4 finite numbers"), ([0, 20, 16, 16], "fx = 0 px")):
        document = {"intrinsics": intrinsics, "context": poses[:5].tolist(), "target": poses[5:].tolist()}
        cams.write_text(json.dumps(document))
        with pytest.raises(DataError, match=f"cams.json field 'intrinsics': {why}"):
            inputs.read_video_input(video, cams)
        with pytest.raises(DataError, match=f"--intrinsics: {why}"):
            hmworld.released_intrinsics(32, 32, intrinsics=intrinsics)


# 3. fitting length and size


def _given(context=10, target=7, width=64, height=48):
    poses = np.stack([look_at((0.1 * i, 0, 1.5), (0.1 * i, 5, 1.5)) for i in range(context + target)])
    video = np.arange(context, dtype=np.uint8)[:, None, None, None] * np.ones((1, height, width, 3), np.uint8)
    return inputs.GenerationInput(
        context_frames=video,
        context_cameras=poses[:context],
        target_cameras=poses[context:],
        intrinsics=intrinsics_from_fov(width, height, 60.0),
        fps=15.0,
        truth=np.zeros((target, height, width, 3), np.uint8),
    )


def test_fit_length_pad_trim_and_the_error_naming_both_flags():
    with pytest.raises(DataError, match="context: 10 frames.*--pad-last \\(to 13\\) or --trim \\(to 9\\)"):
        inputs.fit_length(_given(), 4, None)
    padded = inputs.fit_length(_given(), 4, "pad-last")
    assert len(padded.context_frames) == 13 and (padded.context_frames[10:] == 9).all()
    assert len(padded.target_cameras) == 9 and padded.output_frames == 7 and len(padded.truth) == 7
    trimmed = inputs.fit_length(_given(), 4, "trim")
    assert len(trimmed.context_frames) == 9 and trimmed.context_frames[0, 0, 0, 0] == 1  # the last 9 kept
    assert len(trimmed.target_cameras) == 5 and len(trimmed.truth) == 5 and trimmed.output_frames is None
    rollout = inputs.fit_length(_given(9, 7), 4, None, segment_frames=5)  # the rollout pads the target itself
    assert len(rollout.target_cameras) == 7


def test_fit_size_resizes_centre_crops_and_moves_the_intrinsics():
    # 64x48 -> 32x32: cover scale 2/3 -> 43x32, crop 5 px off the left
    assert inputs.crop_box(64, 48, 32, 32) == (43, 32, 5, 0)
    given = _given(context=5, target=5)
    fitted = inputs.fit_size(given, 32, 32, "--size")
    assert fitted.context_frames.shape == (5, 32, 32, 3) and fitted.truth.shape == (5, 32, 32, 3)
    # the intrinsics follow the pixels: a world point lands at the same place before and after
    point = np.array([[0.4, 4.0, 1.2]])
    before, _ = project_points(point, given.context_cameras[0], given.intrinsics)
    after, _ = project_points(point, given.context_cameras[0], fitted.intrinsics)
    np.testing.assert_allclose(after[0], [(before[0, 0] * 43 / 64) - 5, before[0, 1] * 32 / 48], atol=1e-9)
    assert "64x48 -> 32x32" in fitted.conventions["size"]
    assert inputs.fit_size(given, 64, 48).context_frames is given.context_frames


def test_parse_flags():
    assert inputs.parse_size("832x480") == (832, 480)
    for bad in ("832", "0x10", "ax3", "-4x4"):
        with pytest.raises(ConfigError, match="--size"):
            inputs.parse_size(bad)
    np.testing.assert_allclose(inputs.parse_intrinsics("1270,1270,416,240"), [1270, 1270, 416, 240])
    for bad in ("1,2,3", "nan,1,1,1", "0,1,1,1", "a,b,c,d"):
        with pytest.raises(ConfigError, match="--intrinsics"):
            inputs.parse_intrinsics(bad)
