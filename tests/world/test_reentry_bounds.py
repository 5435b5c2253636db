"""benchmarks/reentry_bounds.py on rendered straight-line clips: the oracle extrapolation is the truth, the
probe copies training clips with counterfactuals the loader reads."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hybridmem.data.hmworld import load_clip
from hybridmem.world.config import WorldConfig
from hybridmem.world.generate import generate

pytest.importorskip("moderngl")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reentry_bounds.py"
LINE = WorldConfig(
    width=64, height=40, context_frames=9, target_frames=9, min_hidden_frames=3, paths=("line",), seed=5
)


@pytest.fixture(scope="module")
def bounds():
    spec = importlib.util.spec_from_file_location("reentry_bounds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("line")
    generate(LINE, out, num_clips=2, split="test", workers=1, progress=False)
    generate(LINE, out, num_clips=1, split="train", workers=1, progress=False)
    return out


def test_straight_line_subjects_are_extrapolated_exactly(bounds, data, tmp_path):
    assert bounds.main(["extrapolate", "--data", str(data), "--split", "test", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bounds.json").read_text())
    assert len(result["rows"]) == 2
    for row in result["rows"]:
        metadata = json.loads((data / "test" / row["clip"] / "metadata.json").read_text())
        assert metadata["config"]["paths"] == ["line"]
        # a straight line at constant speed continues where the truth goes: same pixels, the metrics' cap
        assert row["iou_extrapolated"] == pytest.approx(1.0)
        assert row["extrapolated_presence"] > row["frozen_presence"] + 10
        assert row["erased_presence"] <= 0 and row["erased_motion"] == 0


def test_probe_gives_training_clips_their_counterfactuals(bounds, data, tmp_path):
    argv = ["probe", "--data", str(data), "--split", "train", "--out", str(tmp_path)]
    assert bounds.main(argv) == 0
    (name,) = json.loads((tmp_path / "bounds.json").read_text())["written"]
    source, probe = load_clip(data / "train" / name), load_clip(tmp_path / "test" / name)
    assert source.counterfactuals is None and probe.counterfactuals is not None
    np.testing.assert_array_equal(probe.frames, source.frames)  # the same clip, now scored
    cf = probe.counterfactuals
    subject = probe.instance_ids[probe.target] == cf.subject_id
    assert subject.any()
    # the erased render is the clip's own target (mp4-decoded here) but for the subject, which is gone
    difference = np.abs(cf.erased_frames.astype(int) - probe.frames[probe.target].astype(int))
    assert difference[subject].mean() > 5 and difference[~subject].mean() < 3
    assert bounds.main(argv) == 0  # rerun: the probe clip is kept, nothing rewritten
    assert json.loads((tmp_path / "bounds.json").read_text())["written"] == [name]
