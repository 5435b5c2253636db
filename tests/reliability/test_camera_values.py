"""Cameras outside any real camera are refused with the range (issue 26): cx = 5000 on a 64 px video,
fx = 1e-6 or 1e12 and 1e30 m translations were accepted without a word; a camera value "1.0" or null was
blamed on the pose ("must be a rotation", "contains NaN") instead of being named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybridmem.data.hmworld import load_clip
from hybridmem.errors import DataError
from hybridmem.geometry import check_poses, normalised_intrinsics

from .helpers import run_cli, tiny_dataset, tiny_vae


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("cameras") / "data", num_clips=1)


@pytest.fixture
def clip(dataset, tmp_path):
    import shutil

    shutil.copytree(dataset / "train" / "000000", tmp_path / "clip")
    return tmp_path / "clip"


def _edit_camera(clip, edit):
    record = json.loads((clip / "camera.json").read_text())
    edit(record)
    (clip / "camera.json").write_text(json.dumps(record))


@pytest.mark.parametrize(
    "intrinsics, field",
    [((32.0, 32.0, 5000.0, 16.0), "cx"), ((1e-6, 32.0, 16.0, 16.0), "fx"), ((32.0, 1e12, 16.0, 16.0), "fy"),
     ((32.0, 32.0, 16.0, -100.0), "cy")],
)  # fmt: skip
def test_intrinsics_outside_any_camera_are_refused_with_the_range(clip, intrinsics, field):
    with pytest.raises(DataError, match=rf"{field} = .* outside any real camera .* px\)"):
        normalised_intrinsics(intrinsics, 32, 32)
    _edit_camera(clip, lambda record: record.update(intrinsics=list(intrinsics)))
    with pytest.raises(DataError, match=rf"camera.json field 'intrinsics': {field} = "):
        load_clip(clip)


def test_translations_beyond_any_scene_are_refused(clip):
    far = np.eye(4)[None].repeat(2, 0)
    far[1, 0, 3] = 1e30
    with pytest.raises(DataError, match=r"1e\+30 m from the origin .* \(at most 100000 m\)"):
        check_poses(far, "cameras")

    def move(record):
        record["tgt_cam"]["0"][0][3] = 1e30

    _edit_camera(clip, move)
    with pytest.raises(DataError, match="camera.json .*1e\\+30 m from the origin"):
        load_clip(clip)


@pytest.mark.parametrize("value, named", [("1.0", "str '1.0'"), (None, "null"), (True, "bool True")])
def test_a_camera_value_that_is_not_a_number_is_named(clip, value, named):
    def spoil(record):
        record["cond_cam"]["1"][2][0] = value

    _edit_camera(clip, spoil)
    with pytest.raises(DataError, match=rf"field 'cond_cam'\[1\]\[2\]\[0\] is {named}, expected a number"):
        load_clip(clip)


def test_encode_refuses_a_clip_with_implausible_intrinsics_in_one_line(dataset, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    _edit_camera(
        data / "train" / "000000", lambda record: record.update(intrinsics=[32.0, 32.0, 5000.0, 16.0])
    )
    code, err = run_cli(
        ["encode", "--data", data, "--vae", tiny_vae(tmp_path / "vae"), "--out", tmp_path / "c"]
    )
    assert code == 2 and "cx = 5000" in err and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("hybridmem")] == [err.splitlines()[-1]]
