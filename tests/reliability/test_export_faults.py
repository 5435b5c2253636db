"""`hybridmem recipe export RUN --to DIR` deletes or replaces nothing it did not write (issue 19): it used to
delete whatever DIR held and exit 0, `--to RUN` wiped the run, and `--to` a file or `.` ended in a traceback.

The run here is a recipe record with placeholder models (the recipe tests' fake runner); the check that the
exported models load and run (verify_export) is replaced by a stand-in except where a test says otherwise."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from hybridmem.errors import CheckpointError
from hybridmem.recipe import export
from hybridmem.recipe.budgets import get_budget
from hybridmem.recipe.recipe import run_recipe
from recipe.test_recipe import _fake_runner, _passing_gate  # tests/ is on sys.path (rootdir packages)

from .helpers import run_cli, snapshot

MODELS = export.exported_models()  # the VAE and a world model per memory kind


def _weights(folder, value: float) -> None:
    save_file({"w": torch.full((4,), value)}, folder / "model.safetensors")


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A finished run (recipe.json and every model's final/) and verify_export stood in for."""
    run_dir = tmp_path / "run"
    run_recipe(get_budget("smoke"), run_dir, "cpu", gate=_passing_gate, runner=_fake_runner([]))
    for name in MODELS:
        _weights(run_dir / ("vae" if name == "vae" else f"world/{name}") / "final", 1.0)
    monkeypatch.setattr(export, "verify_export", lambda folder: {})
    return run_dir


def _export(run_dir, to, *extra):
    return run_cli(["recipe", "export", run_dir, "--to", to, *extra])


def _published(folder):
    return sorted(p.name for p in folder.iterdir())


def test_folder_holding_other_files_is_refused_and_kept(run, tmp_path):
    """Issue 19: `mkdir -p runs/mine && echo keep > runs/mine/notes.txt && hybridmem recipe export runs/smoke
    --to runs/mine` deleted notes.txt and exited 0."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for extra in ([], ["--overwrite"]):
        code, err = _export(run, mine, *extra)
        assert code == 2 and "holds files that are not an export (notes.txt)" in err, err
        assert _published(mine) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"


def test_the_run_itself_or_a_folder_inside_it_is_refused(run):
    """Issue 19: `--to RUN` wiped the run's data, VAE, caches and eval, exit 0."""
    before = snapshot(run)
    for to in (run, run / "exported", run / "world" / "hydra"):
        for extra in ([], ["--overwrite"]):
            code, err = _export(run, to, *extra)
            assert code == 2 and "Traceback" not in err and "--to" in err, err
    assert snapshot(run) == before and not (run / "exported").exists()


def test_a_file_or_the_current_folder_is_refused(run, tmp_path, monkeypatch):
    """Issue 19: `recipe export --to` a file or `.` ended in a traceback."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    code, err = _export(run, a_file)
    assert code == 2 and "is a file" in err and a_file.read_text() == "keep", err
    code, err = _export(run, a_file / "sub")
    assert code == 2 and "is a file" in err and "Traceback" not in err, err
    monkeypatch.chdir(tmp_path)  # `.` holds the run
    code, err = _export(run, ".", "--overwrite")
    assert code == 2 and "holds the run" in err, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.py").write_text("print()")
    monkeypatch.chdir(elsewhere)  # `.` is some other non-empty folder
    code, err = _export(run, ".", "--overwrite")
    assert code == 2 and "not an export" in err and _published(elsewhere) == ["a.py"], err


def test_new_and_empty_folders_receive_the_export(run, tmp_path):
    expected = sorted([*MODELS, "manifest.json"])
    assert _export(run, tmp_path / "new" / "checkpoints")[0] == 0
    assert _published(tmp_path / "new" / "checkpoints") == expected
    assert _published(tmp_path / "new") == ["checkpoints"]  # no temp folder beside it
    (tmp_path / "empty").mkdir()
    assert _export(run, tmp_path / "empty")[0] == 0
    assert _published(tmp_path / "empty") == expected


def test_an_earlier_export_is_replaced_only_with_overwrite_and_other_files_stay(run, tmp_path):
    to = tmp_path / "checkpoints"
    assert _export(run, to)[0] == 0
    (to / "README.md").write_text("my notes")
    first = snapshot(to)
    code, err = _export(run, to)
    assert code == 2 and "holds an earlier export" in err and "--overwrite" in err, err
    assert snapshot(to) == first
    _weights(run / "world" / "hydra" / "final", 2.0)  # the run moved on
    assert _export(run, to, "--overwrite")[0] == 0
    assert (to / "README.md").read_text() == "my notes"
    assert (to / "hydra" / "model.safetensors").read_bytes() == (
        run / "world" / "hydra" / "final" / "model.safetensors"
    ).read_bytes()
    assert _published(to) == sorted([*MODELS, "README.md", "manifest.json"])  # no temp or set-aside folder


def test_a_folder_the_earlier_export_did_not_write_is_not_replaced(run, tmp_path):
    to = tmp_path / "checkpoints"
    assert _export(run, to)[0] == 0
    manifest = json.loads((to / "manifest.json").read_text())
    del manifest["models"]["full"]  # as if `full` were the user's own folder, not the export's
    (to / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(to)
    code, err = _export(run, to, "--overwrite")
    assert code == 2 and "full exist(s) there but are not part of the earlier export" in err, err
    assert snapshot(to) == before


def test_an_export_that_fails_its_check_publishes_nothing(run, tmp_path, monkeypatch):
    def broken(folder):
        raise CheckpointError(f"{folder / 'hydra'}: the world model produced non-finite latents")

    monkeypatch.setattr(export, "verify_export", broken)
    code, err = _export(run, tmp_path / "new")
    assert code == 2 and "non-finite" in err, err
    assert _published(tmp_path) == ["run"]  # neither the folder nor a temp folder
    monkeypatch.setattr(export, "verify_export", lambda folder: {})
    assert _export(run, tmp_path / "new")[0] == 0
    before = snapshot(tmp_path / "new")
    monkeypatch.setattr(export, "verify_export", broken)
    assert _export(run, tmp_path / "new", "--overwrite")[0] == 2
    assert snapshot(tmp_path / "new") == before and _published(tmp_path / "new") == sorted(
        [*MODELS, "manifest.json"]
    )
