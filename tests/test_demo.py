"""`hybridmem demo` without checkpoints, and the checkpoints shipped with the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridmem.cli import main
from hybridmem.models.memory.config import MEMORY_KINDS
from hybridmem.recipe.export import MANIFEST_FILE, verify_export
from hybridmem.runfolder import default_assets_dir


def test_demo_without_assets_says_how_to_make_them(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--assets", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err
    assert "no shipped checkpoints" in error
    assert "hybridmem recipe --budget cpu" in error and "hybridmem recipe export" in error
    assert "--assets" in error
    assert not (tmp_path / "demo").exists()


def test_shipped_assets_live_inside_the_package():
    import hybridmem

    folder = default_assets_dir()
    assert folder.parent.parent == Path(hybridmem.__file__).resolve().parent


@pytest.mark.skipif(
    not (default_assets_dir() / MANIFEST_FILE).is_file(),
    reason="no shipped checkpoints yet: run `hybridmem recipe --budget cpu` then `hybridmem recipe export`",
)
def test_shipped_checkpoints_load_and_run():
    folder = default_assets_dir()
    data = json.loads((folder / MANIFEST_FILE).read_text())["data"]
    shapes = verify_export(folder)  # raises CheckpointError on non-finite outputs or a config mismatch
    assert shapes["vae"] == (1, data["context_frames"], 3, data["height"], data["width"])
    stride = json.loads((folder / "vae" / "config.json").read_text())["config"]["temporal_factor"]
    for kind in MEMORY_KINDS:
        assert shapes[kind][:2] == (1, (data["target_frames"] - 1) // stride + 1)
        assert shapes[kind] == shapes["full"]
    total = sum(path.stat().st_size for path in folder.rglob("*.safetensors"))
    assert total <= 40 * 1024 * 1024  # the cap for the shipped models together
