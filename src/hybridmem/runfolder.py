"""Where things are on disk: a training run's checkpoints, the model folder a path names, the shipped
checkpoints, and which share of a folder one job of N fills.

    RUN/
        checkpoints/step_00001000/   one per saved step (train/state.py writes them; state.json last)
            model/  ema/             model folders: config.json + model.safetensors
        final/                       the trainer's final (EMA) weights, a model folder

Every layer that reads or names these (encode, the samplers, the run locks, the recipe) asks this module,
so the layout is written once, below them all.

    resolve_model_folder("runs/world_hydra")      # -> runs/world_hydra/final
    parse_shard("3/16")                            # -> (3, 16)
"""

from __future__ import annotations

from pathlib import Path

from hybridmem import jsonio
from hybridmem.errors import CheckpointError, ConfigError

CHECKPOINTS_DIR = "checkpoints"
PREFIX = "step_"  # of a checkpoint folder's name: step_00001000


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a folder counts when its state.json parses)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if not folder.is_dir() or not folder.name.startswith(PREFIX):
            continue
        try:
            step = int(jsonio.read_json(folder / "state.json", error=CheckpointError)["step"])
        except (CheckpointError, ValueError, KeyError, TypeError):
            continue
        found.append((step, folder))
    return [folder for _, folder in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_model_folder(path: str | Path, ema: bool = True) -> Path:
    """A folder `models.checkpoint.load_model` can read, from any of the paths a user may pass.

    - a model folder (config.json + model.safetensors): itself
    - a training checkpoint RUN/checkpoints/step_N: its ema/ (model/ with ema=False or without an EMA)
    - a training run RUN: RUN/final (the trainer's final EMA weights, or the VAE with its latent
      normalisation), or with ema=False the live weights of its newest checkpoint
    """
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    if (path / "state.json").is_file():
        if ema and (path / "ema" / "config.json").is_file():
            return path / "ema"
        return path / "model"
    latest = latest_checkpoint(path)
    if (path / "final" / "config.json").is_file() and (ema or latest is None):
        return path / "final"
    if latest is not None:
        return resolve_model_folder(latest, ema)
    raise CheckpointError(
        f"{path}: no model here; pass a model folder (config.json + model.safetensors), a training run "
        "folder (with final/ or checkpoints/), or one of its checkpoints/step_N folders"
    )


def default_assets_dir() -> Path:
    """The package's shipped checkpoints (an editable install reads them from src/)."""
    return Path(__file__).resolve().parent / "assets" / "checkpoints"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N: this job fills the i-th of N disjoint shares of an output folder
    (`world generate` and `encode --shard`), so any job array fills it once."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/N with integers, for example 0/4") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < N")
    return index, count
