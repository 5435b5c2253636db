"""`hybridmem eval --official DIR`: the paper's model on generated test clips with their counterfactual
renders: presence gain and motion score beside the reference rows, at tiny size on CPU."""

import json

import pytest

from hybridmem.cli import main

from .tiny_release import write_tiny_release


@pytest.fixture(scope="module")
def test_clips(tmp_path_factory):
    """Two held-out clips with a re-entry and counterfactual renders (the recipe's smoke geometry)."""
    from hybridmem.world.config import WorldConfig
    from hybridmem.world.generate import generate

    data = tmp_path_factory.mktemp("data")
    config = WorldConfig(
        width=64, height=48, context_frames=9, target_frames=9, min_hidden_frames=3, supersample=1
    )
    summary = generate(config, data, num_clips=2, split="test", workers=1, progress=False)
    assert summary.accepted == 2
    return data


def test_eval_of_the_official_model_scores_presence_and_motion(tmp_path, test_clips, capsys):
    release = write_tiny_release(tmp_path / "ckpts")
    out = tmp_path / "eval"
    args = [
        "eval",
        "--official",
        str(release),
        "--precision",
        "fp32",
        "--baseline",
        "erased",
        "--baseline",
        "frozen",
        "--baseline",
        "copy-last",
        "--data",
        str(test_clips),
        "--out",
        str(out),
        "--steps",
        "1",
        "--weights-dir",
        str(tmp_path / "none"),
        "--side-by-side-clips",
        "0",
    ]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "hydra-official" in printed
    summary = json.loads((out / "aggregate.json").read_text())
    row = summary["methods"]["hydra-official"]
    assert summary["official"] == str(release) and summary["precision"] == "fp32"
    # presence gain and motion score computed on both clips (against their erased and frozen renders)
    assert row["counts"]["presence_gain"] == 2 and row["counts"]["motion_score"] == 2
    assert isinstance(row["metrics"]["presence_gain"], float)
    # rerunning reuses the cached generations (the release's identity is recorded and unchanged)
    assert main(args) == 0
    assert "hydra-official" in capsys.readouterr().out


def test_precision_needs_official(tmp_path, test_clips, capsys):
    code = main(
        [
            "eval",
            "--baseline",
            "copy-last",
            "--precision",
            "bf16",
            "--data",
            str(test_clips),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "--precision goes with --official" in capsys.readouterr().err
