"""Copy a finished reference run's models into a small, self-describing checkpoint folder.

    hybridmem recipe export runs/ref_cpu --to src/hybridmem/assets/checkpoints

The folder holds, for the VAE and each memory variant, exactly the two files `models.checkpoint.load_model`
reads (model.safetensors, config.json; the world models' EMA weights from RUN/world/<kind>/final), and a
manifest.json with the budget, the generator settings of the data, each model's steps, wall time, rate,
machine and exact command. It is written into a temp folder and renamed over the old one.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

from hybridmem.errors import CheckpointError
from hybridmem.recipe.budgets import MEMORY_VARIANTS
from hybridmem.recipe.recipe import read_record, write_json_atomic

MANIFEST_FILE = "manifest.json"
MODEL_FILES = ("model.safetensors", "config.json")
EXPORTED_MODELS = ("vae", *MEMORY_VARIANTS)
MANIFEST_FORMAT = 1


def default_assets_dir() -> Path:
    """The package's shipped checkpoints (an editable install reads them from src/)."""
    import hybridmem

    return Path(hybridmem.__file__).resolve().parent / "assets" / "checkpoints"


def _final_folder(run_dir: Path, name: str) -> Path:
    return run_dir / "vae" / "final" if name == "vae" else run_dir / "world" / name / "final"


def _stage_name(name: str) -> str:
    return "vae" if name == "vae" else f"world-{name}"


def data_settings(budget: dict) -> dict:
    """Generator settings of the run's clips (what `hybridmem demo` renders its test clip with)."""
    keys = ("width", "height", "context_frames", "target_frames", "min_hidden_frames", "seed")
    return {key: budget[key] for key in keys}


def export_run(run_dir: str | os.PathLike, to: str | os.PathLike) -> Path:
    """Write the exported folder `to` (replacing an older export); returns its path."""
    run_dir, to = Path(run_dir), Path(to)
    record = read_record(run_dir)
    # 1. every model must be finished
    missing = []
    for name in EXPORTED_MODELS:
        folder = _final_folder(run_dir, name)
        if not all((folder / file).is_file() for file in MODEL_FILES):
            missing.append(str(folder))
    if missing:
        raise CheckpointError(
            f"{run_dir}: unfinished models ({', '.join(missing)}); rerun the same `hybridmem recipe` "
            "command until it completes, then export"
        )
    # 2. copy into a temp folder next to the target
    to.parent.mkdir(parents=True, exist_ok=True)
    temp = to.parent / f".{to.name}.export-tmp"
    shutil.rmtree(temp, ignore_errors=True)
    models = {}
    for name in EXPORTED_MODELS:
        source = _final_folder(run_dir, name)
        (temp / name).mkdir(parents=True)
        for file in MODEL_FILES:
            shutil.copyfile(source / file, temp / name / file)
        stage = record["stages"].get(_stage_name(name), {})
        attempts = stage.get("attempts", [])
        models[name] = {
            "folder": name,
            "steps": stage.get("amount"),
            "wall_s": stage.get("wall_s"),
            "steps_per_s": stage.get("steps_per_s"),
            "command": stage.get("command"),
            "machine": attempts[-1].get("machine") if attempts else None,
            "bytes": (temp / name / "model.safetensors").stat().st_size,
        }
    # 3. manifest
    from hybridmem import __version__

    manifest = {
        "format": MANIFEST_FORMAT,
        "hybridmem_version": __version__,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "budget": record["budget"],
        "data": data_settings(record["budget"]),
        "models": models,
        "commands": {name: stage.get("command") for name, stage in record["stages"].items()},
        "stage_wall_s": {name: stage.get("wall_s") for name, stage in record["stages"].items()},
    }
    write_json_atomic(temp / MANIFEST_FILE, manifest)
    # 4. swap it in: the old export is moved aside first, so a crash leaves one complete folder
    if to.exists():
        aside = to.parent / f".{to.name}.export-old"
        shutil.rmtree(aside, ignore_errors=True)
        to.rename(aside)
        temp.rename(to)
        shutil.rmtree(aside)
    else:
        temp.rename(to)
    return to
