"""eval and demo never report stale results: generations cached from another dataset or from a checkpoint
retrained in place are refused (or recomputed with --overwrite), and earlier results in --out are never
replaced without --overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybridmem.errors import ConfigError
from hybridmem.eval.protocol import EvalConfig, run_evaluation
from hybridmem.recipe.export import MANIFEST_FILE
from hybridmem.runfolder import default_assets_dir

from .helpers import run_cli, snapshot, tiny_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return tiny_dataset(root / "dsA", num_clips=2, seed=0), tiny_dataset(root / "dsB", num_clips=2, seed=5)


def _eval(data, out, *flags):
    return ["eval", "--baseline", "copy-last", "--data", data, "--split", "train", "--out", out,
            "--weights-dir", out.parent / "no_weights", "--side-by-side-clips", 0, *flags]  # fmt: skip


def _frames(out):
    return {
        path.name: np.load(path)["frames"] for path in sorted((out / "generations" / "copy-last").glob("*"))
    }


def test_generations_of_another_dataset_are_refused_or_recomputed(datasets, tmp_path):
    """Issue 12 case 2: --data dsB into dsA's --out scored dsA's generations under 'Data: dsB'."""
    first, second = datasets
    out = tmp_path / "eval"
    assert run_cli(_eval(first, out))[0] == 0
    before = snapshot(out)
    code, err = run_cli(_eval(second, out))
    assert code == 2 and "data: " in err and "--overwrite" in err and "Traceback" not in err, err
    assert snapshot(out) == before
    assert run_cli(_eval(second, out, "--overwrite"))[0] == 0
    fresh = tmp_path / "fresh"
    assert run_cli(_eval(second, fresh))[0] == 0
    assert _frames(out).keys() == _frames(fresh).keys()
    for name, frames in _frames(fresh).items():
        np.testing.assert_array_equal(_frames(out)[name], frames)
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert aggregate["methods"] == json.loads((fresh / "aggregate.json").read_text())["methods"]


def test_rerun_with_the_same_inputs_resumes(datasets, tmp_path):
    out = tmp_path / "eval"
    assert run_cli(_eval(datasets[0], out))[0] == 0
    generations = snapshot(out / "generations")
    assert run_cli(_eval(datasets[0], out))[0] == 0
    assert snapshot(out / "generations") == generations


class Counting:
    def __init__(self):
        self.calls = 0

    def generate(self, clip, seed):
        self.calls += 1
        return clip.frames[clip.target].copy()


def test_checkpoint_retrained_in_place_is_refused_or_recomputed(datasets, tmp_path):
    """Issue 12 case 2: the generation cache recorded only the checkpoint's path."""
    checkpoint = tmp_path / "world_run" / "final"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"weights v1")
    (tmp_path / "vae").mkdir()
    config = EvalConfig(data=str(datasets[0]), out=str(tmp_path / "eval"), split="train",
                        checkpoints=[str(checkpoint)], vae=str(tmp_path / "vae"),
                        weights_dir=str(tmp_path / "none"), side_by_side_clips=0)  # fmt: skip
    model = Counting()
    run_evaluation(config, generators={"final": model}, progress=False)
    assert model.calls == 2
    run_evaluation(config, generators={"final": model}, progress=False)
    assert model.calls == 2  # resumed from the cache
    (checkpoint / "model.safetensors").write_bytes(b"weights v2")  # retrained in place
    with pytest.raises(ConfigError, match="holds results made from other inputs"):
        run_evaluation(config, generators={"final": model}, progress=False)
    config.overwrite = True
    run_evaluation(config, generators={"final": model}, progress=False)
    assert model.calls == 4  # generated again with the new weights


def test_cached_generation_from_other_contents_is_refused_per_file(datasets, tmp_path):
    """The per-file check (seed, steps, checkpoint, VAE, clip contents), for a record written elsewhere."""
    out = tmp_path / "eval"
    assert run_cli(_eval(datasets[0], out))[0] == 0
    (out / "run.json").unlink()  # no run-level record: each generation file still says what made it
    (out / "aggregate.json").unlink()
    (out / "report.md").unlink()
    clip = datasets[0] / "train" / "000000" / "caption.txt"
    original = clip.read_text()
    try:
        clip.write_text("another caption\n")  # the clip's contents changed
        code, err = run_cli(_eval(datasets[0], out))
    finally:
        clip.write_text(original)
    assert code == 2 and "clip contents" in err, err


def test_eval_out_with_earlier_results_needs_overwrite(datasets, tmp_path):
    """Issue 12 case 10: eval --out DIR replaced the results already there."""
    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.md").write_text("an earlier report")
    (out / "aggregate.json").write_text('{"methods": {}}')
    before = snapshot(out)
    code, err = run_cli(_eval(datasets[0], out))
    assert code == 2 and "no record of what made them" in err and "--overwrite" in err, err
    assert snapshot(out) == before
    # another set of methods than the earlier run's: its results would be replaced
    assert run_cli(_eval(datasets[0], tmp_path / "two"))[0] == 0
    code, err = run_cli(_eval(datasets[0], tmp_path / "two", "--boxes", "tracker"))
    assert code == 2 and "boxes" in err, err
    assert run_cli(_eval(datasets[0], out, "--overwrite"))[0] == 0


@pytest.mark.skipif(not (default_assets_dir() / MANIFEST_FILE).is_file(), reason="no shipped checkpoints")
def test_demo_out_with_earlier_results_needs_overwrite(tmp_path):
    """Issue 12 case 10: demo --out DIR replaced the results already there."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("an earlier report")
    before = snapshot(out)
    code, err = run_cli(["demo", "--out", out, "--device", "cpu"])
    assert code == 2 and "--overwrite" in err and "Traceback" not in err, err
    assert snapshot(out) == before
