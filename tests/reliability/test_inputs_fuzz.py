"""Table-driven fuzz of the generation input readers (hybridmem.data.inputs): every malformed cameras JSON
or caption file is a HybridmemError naming the file, never another exception, and nothing is written."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hybridmem.data import inputs
from hybridmem.errors import HybridmemError

_spec = importlib.util.spec_from_file_location(
    "official_formats", Path(__file__).parents[1] / "data" / "official_formats.py"
)
official_formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official_formats)

COUNT = 5


MUTATIONS = {
    "not json": b"{not json",
    "not utf-8": b"\xff\xfe\x00{}",
    "a list": [],
    "empty object": {},
    "cond_cam a number": lambda r: {**r, "cond_cam": 5},
    "cond_cam a string": lambda r: {**r, "cond_cam": "0"},
    "cond_cam empty": lambda r: {**r, "cond_cam": {}},
    "tgt_cam null": lambda r: {**r, "tgt_cam": None},
    "frame key not a number": lambda r: {**r, "cond_cam": {**r["cond_cam"], "x": r["cond_cam"]["0"]}},
    "frame keys with a gap": lambda r: {
        **r,
        "cond_cam": {k: v for k, v in r["cond_cam"].items() if k != "2"},
    },
    "ragged matrix": lambda r: {**r, "cond_cam": {**r["cond_cam"], "1": [[1, 0, 0], [0, 1, 0, 0]]}},
    "3x3 matrices": lambda r: {
        **r,
        "tgt_cam": {k: [row[:3] for row in v[:3]] for k, v in r["tgt_cam"].items()},
    },
    "strings in a matrix": lambda r: {**r, "cond_cam": {**r["cond_cam"], "0": [["a"] * 4] * 4}},
    "nan": lambda r: {**r, "cond_cam": {**r["cond_cam"], "0": [[float("nan")] * 4] * 4}},
    "huge value": lambda r: {**r, "cond_cam": {**r["cond_cam"], "0": [[1e308] * 4] * 4}},
    "not a rotation": lambda r: {
        **r,
        "cond_cam": {**r["cond_cam"], "0": [[2, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]},
    },
    "no homogeneous row or column": lambda r: {**r, "cond_cam": {**r["cond_cam"], "0": [[1] * 4] * 4}},
    "mixed forms": lambda r: {
        **r,
        "cond_cam": {**r["cond_cam"], "0": np.array(r["cond_cam"]["0"]).T.tolist()},
    },
    "all at the origin": lambda r: {
        key: {k: [row[:3] + [0.0] for row in v[:3]] + [v[3]] for k, v in r[key].items()}
        for key in ("cond_cam", "tgt_cam")
    },
    "one camera too few": lambda r: {
        **r,
        "cond_cam": {k: v for k, v in r["cond_cam"].items() if k != str(COUNT - 1)},
    },
    "our schema without target": {"intrinsics": [1, 1, 0, 0], "context": []},
    "our schema in cm": "cm",
    "our schema bad intrinsics": "intrinsics",
    "our schema wrong convention": "convention",
}


def _our_schema(kind):
    poses = np.tile(np.eye(4), (2 * COUNT, 1, 1))
    poses[:, 0, 3] = np.arange(2 * COUNT) * 0.1
    document = {
        "intrinsics": [30, 30, 16, 16],
        "context": poses[:COUNT].tolist(),
        "target": poses[COUNT:].tolist(),
    }
    if kind == "cm":
        for key in ("context", "target"):
            document[key] = (np.array(document[key]) * np.array([1, 1, 1, 100.0])[None, None, :]).tolist()
            for matrix in document[key]:
                matrix[3][3] = 1.0
        document["target"][0][0][3] = 5000.0
    elif kind == "intrinsics":
        document["intrinsics"] = [0, 30, "a", 16]
    else:
        document["convention"] = "unreal_row_vector"
    return document


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_cameras_json_is_a_clean_error(tmp_path, name):
    video, cameras, _ = official_formats.write_official_pair(
        tmp_path, frames_count=COUNT, width=32, height=32
    )
    record = json.loads(cameras.read_text())
    mutation = MUTATIONS[name]
    if isinstance(mutation, bytes):
        cameras.write_bytes(mutation)
    elif isinstance(mutation, str):
        cameras.write_text(json.dumps(_our_schema(mutation)))
    else:
        cameras.write_text(json.dumps(mutation(record) if callable(mutation) else mutation))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(HybridmemError) as error:
        inputs.read_video_input(video, cameras)
    assert str(cameras) in str(error.value) or "--" in str(error.value), str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "setup",
    [
        "empty video",
        "not a video",
        "missing camera.json",
        "non-utf8 root caption",
        "caption index past the end",
    ],
)
def test_malformed_released_sample_is_a_clean_error(tmp_path, setup):
    root = tmp_path / "HM-World"
    official_formats.write_released_sample(root / "sample7", with_target=False)
    (root / "caption.txt").write_text("only one line\n")
    if setup == "empty video":
        (root / "sample7" / "cond.mp4").write_bytes(b"")
    elif setup == "not a video":
        (root / "sample7" / "cond.mp4").write_bytes(b"\x00" * 100)
    elif setup == "missing camera.json":
        (root / "sample7" / "camera.json").unlink()
    elif setup == "non-utf8 root caption":
        (root / "caption.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(HybridmemError):
        inputs.read_clip_input(root / "sample7")
