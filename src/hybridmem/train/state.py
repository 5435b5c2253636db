"""Training checkpoints: one folder per saved step, written atomically, the last N kept.

    RUN/checkpoints/step_00001000/
        model/          models.checkpoint.save_model of the live weights (loadable on its own)
        ema/            the same for the EMA weights (what sampling uses), when there is an EMA
        optimizer.pt    optimizer (and grad scaler) state
        rng.pt          torch / CUDA / numpy / python RNG states and every rank's training generator
        state.json      step, the training config, and the format version; written last

A checkpoint is built in a hidden temp folder next to its final place and renamed into place only when
every file is written and checked (hybridmem.publish), so a crash mid-save leaves the previous checkpoints
untouched and no half-written `step_*` folder; stale temp folders are removed by the next save (the run is
locked: no other writer's temp folder can be there). The run folder's layout (checkpoint names, the newest
complete checkpoint, which model folder a path names) is hybridmem.runfolder's.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hybridmem import jsonio, runlock
from hybridmem.errors import CheckpointError
from hybridmem.models.memory.config import SAVED_BEFORE_FLAG, renamed
from hybridmem.runfolder import (
    CHECKPOINTS_DIR,
    PREFIX,
    checkpoint_name,
    latest_checkpoint,  # noqa: F401 (re-exported: callers name it from here)
    list_checkpoints,
)
from hybridmem.train.config import FREE_ON_RESUME

FORMAT_VERSION = 1
TEMP_PREFIX = ".tmp-"

SaveModelFn = Callable[[nn.Module, Path], None]
LoadModelFn = Callable[[Path], nn.Module]


def _default_save_model(model: nn.Module, folder: Path) -> None:
    from hybridmem.models.checkpoint import save_model

    save_model(model, folder)


def _default_load_model(folder: Path) -> nn.Module:
    from hybridmem.models.checkpoint import load_model

    return load_model(folder)


def capture_rng_state() -> dict:
    """This process's global RNG states (what dropout and any library-level randomness draw from)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global state is what we restore)
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    config: dict,
    ema_model: nn.Module | None = None,
    rank_rng_states: list | None = None,
    extra_state: dict | None = None,
    keep: int = 3,
    save_model_fn: SaveModelFn = _default_save_model,
) -> Path:
    """Write RUN/checkpoints/step_N atomically and keep the newest `keep` checkpoints. Call on rank 0.

    rank_rng_states: one entry per rank (gathered by the caller), restored rank by rank on resume.
    extra_state: small picklable things such as the grad scaler's state.
    """
    from hybridmem import publish

    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    # 1. clear leftovers of an earlier crashed save (hidden folders: temp names of either form)
    for stale in root.iterdir():
        if stale.name.startswith(".") and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    with publish.staged_folder(final) as temp:
        # 2. weights, optimizer, RNG; state.json last, so a folder with state.json is complete
        save_model_fn(model, temp / "model")
        if ema_model is not None:
            save_model_fn(ema_model, temp / "ema")
        optimizer_state = {"optimizer": optimizer.state_dict() if optimizer is not None else None}
        publish.torch_save(temp / "optimizer.pt", {**optimizer_state, **(extra_state or {})})
        publish.torch_save(temp / "rng.pt", {"global": capture_rng_state(), "ranks": rank_rng_states or []})
        publish.write_json(
            temp / "state.json", {"format_version": FORMAT_VERSION, "step": step, "config": config}
        )
        # 3. publish: a checkpoint of the same step (a rerun) is moved aside first
        publish.publish_folder(temp, final)
    # 4. keep the newest `keep`
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint_state(folder: str | Path) -> dict:
    """state.json of a checkpoint folder, with a clear error when it is missing or corrupt."""
    path = Path(folder) / "state.json"
    if not path.exists():
        raise CheckpointError(
            f"{folder}: not a training checkpoint (no state.json); "
            "pass a RUN folder or RUN/checkpoints/step_N"
        )
    fix = "a corrupt checkpoint state; delete the folder or resume from an older checkpoint"
    state = jsonio.read_json(path, error=CheckpointError, fix=fix)
    try:
        int(state["step"])
        state["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{path}: corrupt checkpoint state ({error}); delete the folder or resume from an "
            "older checkpoint"
        ) from error
    return state


def load_checkpoint(
    folder: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema_model: nn.Module | None = None,
    load_model_fn: LoadModelFn = _default_load_model,
    restore_global_rng: bool = True,
) -> dict:
    """Load weights (in place), optimizer and global RNG; return {"step", "config", "ranks", "extra"}."""
    folder = Path(folder)
    state = read_checkpoint_state(folder)

    def load_into(target: nn.Module, subfolder: str) -> None:
        source = load_model_fn(folder / subfolder)
        try:
            target.load_state_dict(source.state_dict())
        except RuntimeError as error:
            raise CheckpointError(
                f"{folder / subfolder}: weights do not match the model built from the current flags "
                f"({str(error).splitlines()[0]}); resume with the flags the run was started with"
            ) from error

    load_into(model, "model")
    if ema_model is not None:
        load_into(ema_model, "ema" if (folder / "ema").exists() else "model")
    try:
        optimizer_state = torch.load(folder / "optimizer.pt", weights_only=False)
        rng = torch.load(folder / "rng.pt", weights_only=False)
    except Exception as error:  # noqa: BLE001 (a corrupt pickle raises any of several types)
        raise CheckpointError(f"{folder}: optimizer.pt or rng.pt is missing or corrupt ({error})") from error
    if optimizer is not None and optimizer_state.get("optimizer") is not None:
        optimizer.load_state_dict(optimizer_state["optimizer"])
    if restore_global_rng:
        restore_rng_state(rng["global"])
    extra = {key: value for key, value in optimizer_state.items() if key != "optimizer"}
    return {"step": int(state["step"]), "config": state["config"], "ranks": rng["ranks"], "extra": extra}


def run_identity(config) -> dict:
    """The fields of a training config that define its run (all but FREE_ON_RESUME), in their JSON form."""
    return runlock.normalised(
        {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in FREE_ON_RESUME}
    )


def checkpoint_folders(run_dir: str | Path) -> list[Path]:
    """Every RUN/checkpoints/step_N folder, newest first, complete or not (named by its step)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and folder.name.startswith(PREFIX) and folder.name[len(PREFIX) :].isdigit():
            found.append((int(folder.name[len(PREFIX) :]), folder))
    return [folder for _, folder in sorted(found, reverse=True)]


def refuse_changes(run_dir: Path, config, record: dict, state_config: dict | None, inputs: dict) -> list:
    """CheckpointError naming every field of the run that differs from what it was started with, except
    those `config.change` names; returns those changes ({"field", "from", "to"}) for the run's history.

    record: the run's run.json inputs ({"config", "steps", "history" and the trainer's inputs});
    state_config: the newest readable checkpoint's config, the baseline of a run started before run.json
    held its config. A field the run predates held its default then, or for a memory knob the value models
    were trained with before it existed (SAVED_BEFORE_FLAG); an input the record lacks is recorded
    from now on. An input named by --change (`cache`) lets every input of that name (`cache_*`) differ.
    """
    allowed = {name.lstrip("-").replace("-", "_") for name in config.change}
    baseline = renamed(state_config or {})  # a flag renamed since the run started keeps its value
    baseline.update(renamed(record.get("config") or {}))
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    defaults.update({key: value for key, value in SAVED_BEFORE_FLAG.items() if key in defaults})
    changed, accepted = [], []
    for key, now in run_identity(config).items():
        then = baseline[key] if key in baseline else runlock.normalised(defaults.get(key))
        if then == now:
            continue
        if key in allowed:
            accepted.append({"field": key, "from": then, "to": now})
        else:
            changed.append(f"--{key.replace('_', '-')} {then!r} (now {now!r})")
    now_inputs = runlock.normalised(inputs)
    for key, then in record.items():
        if key in ("config", "steps", "history") or then == now_inputs.get(key):
            continue
        if any(key == name or key.startswith(f"{name}_") for name in allowed):
            accepted.append({"field": key, "from": then, "to": now_inputs.get(key)})
        else:
            changed += runlock.differences({key: then}, {key: now_inputs.get(key)})
    if changed:
        raise CheckpointError(
            f"{run_dir}: --resume with other settings or inputs than the run was started with: "
            f"{'; '.join(changed)}; resume with the run's own flags and inputs, pass --change SETTING to "
            "change one on purpose (recorded in run.json), or start a new run with another --out"
        )
    steps = record.get("steps", (state_config or {}).get("steps"))
    if isinstance(steps, int) and config.steps < steps:
        raise CheckpointError(
            f"{run_dir}: --steps {config.steps} is below the {steps} steps the run was started for; --steps "
            f"can only grow: pass --steps {steps} or more, or start a new run with another --out"
        )
    return accepted


def resume_or_refuse(
    run_dir: str | Path,
    config,
    command: str,
    inputs: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler,
    generator: torch.Generator,
    rank: int,
    world_size: int,
    reseed: Callable[[int], torch.Generator],
    ema_model: nn.Module | None = None,
) -> tuple[int, torch.Generator]:
    """Step 3 of every trainer: refuse to overwrite a run, or resume it; returns (start_step, generator).

    A run's identity (every config field but FREE_ON_RESUME, the steps it was asked for and the trainer's
    `inputs`, such as its cache's contents) is recorded in RUN/run.json when it starts (rank 0).

    - Without `config.resume`, a run folder holding checkpoints or a finished model (final/) is refused.
    - With it: a run whose identity differs is refused naming each field (unless `config.change` names it:
      then the change is kept in run.json's history with its step), as is --steps below the run's;
      a finished model without checkpoints is refused (nothing to resume; it would be replaced). The
      newest checkpoint that loads is resumed; a newer one that does not (corrupt, cut) is named in a
      warning, and when none loads the run is refused, never restarted. Weights, EMA, optimizer, grad
      scaler and this rank's RNG states are restored. A different number of ranks reads a different data
      order anyway, so then the generator is `reseed(start_step)` instead.
    """
    run_dir = Path(run_dir)
    folders = checkpoint_folders(run_dir)
    final = run_dir / "final"
    if folders and not config.resume:
        raise CheckpointError(
            f"{run_dir}: already holds checkpoints (newest {folders[0].name}); pass --resume to continue it "
            "or choose another --out"
        )
    if not folders and (final.exists() or final.is_symlink()):
        raise CheckpointError(
            f"{run_dir}: holds a finished model ({final}) and no checkpoint to resume from; choose another "
            f"--out (nothing finished is replaced), or delete {final} to train it again"
        )
    identity = {"config": run_identity(config), "steps": config.steps, **runlock.normalised(inputs)}
    if not folders:
        if rank == 0:
            runlock.write_record(run_dir, command, identity)
        return 0, generator

    # 1. the run's identity: run.json, or (a run started before it held one) the newest readable state
    failures: list[str] = []
    readable: list[tuple[Path, dict]] = []
    for folder in folders:
        try:
            readable.append((folder, read_checkpoint_state(folder)))
        except CheckpointError as error:
            failures.append(f"{folder.name}: {error}")
    record = runlock.read_record(run_dir)
    recorded = record["inputs"] if record is not None and record.get("command") == command else {}
    accepted = refuse_changes(
        run_dir, config, recorded, readable[0][1]["config"] if readable else None, inputs
    )

    # 2. the newest checkpoint that loads
    loaded = None
    for folder, _ in readable:
        try:
            loaded = load_checkpoint(folder, model, optimizer, ema_model=ema_model, restore_global_rng=False)
        except CheckpointError as error:
            failures.append(f"{folder.name}: {error}")
            continue
        break
    if loaded is None:
        raise CheckpointError(
            f"{run_dir}: no checkpoint can be resumed ({'; '.join(failures)}); move the broken "
            f"{CHECKPOINTS_DIR}/ aside to train from step 0, or choose another --out"
        )
    if failures and rank == 0:
        print(
            f"hybridmem: warning: {run_dir}: skipped {'; '.join(failures)}; resuming from "
            f"{folder.name} (step {loaded['step']})",
            file=sys.stderr,
            flush=True,
        )
    if rank == 0:  # the identity from now on; a --change is kept in the run's history with its step
        history = list(recorded.get("history") or [])
        history += [{"step": loaded["step"], **change} for change in accepted]
        runlock.write_record(run_dir, command, {**identity, **({"history": history} if history else {})})
    start_step, ranks = loaded["step"], loaded["ranks"]
    if len(ranks) == world_size:
        generator.set_state(ranks[rank]["generator"])
        restore_rng_state(ranks[rank]["global"])
    else:
        generator = reseed(start_step)
    if "scaler" in loaded["extra"]:
        scaler.load_state_dict(loaded["extra"]["scaler"])
    return start_step, generator


def save_final_model(
    model: nn.Module, folder: str | Path, save_model_fn: SaveModelFn = _default_save_model
) -> Path:
    """Write a model folder atomically: into a temp folder next to it, then renamed over the old one."""
    from hybridmem import publish

    folder = Path(folder)
    shutil.rmtree(folder.parent / f"{TEMP_PREFIX}{folder.name}", ignore_errors=True)  # an older save's temp
    with publish.staged_folder(folder) as temp:
        save_model_fn(model, temp / folder.name)  # a folder the writer creates, as it would the final one
        publish.publish_folder(temp / folder.name, folder)
    return folder


def write_json_atomically(path: str | Path, document: dict) -> None:
    """hybridmem.publish.write_json (kept for the trainers that call it by this name)."""
    from hybridmem import publish

    publish.write_json(path, document)
