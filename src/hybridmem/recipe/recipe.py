"""The reference run: data -> VAE -> latent caches -> four world models -> benchmark, one resumable command.

    hybridmem recipe --budget smoke --out runs/ref_smoke          # minutes on one core
    hybridmem recipe --budget cpu --out runs/ref_cpu              # ~2 h on 2 cores; kill and rerun
    hybridmem recipe --budget gpu --out runs/ref_gpu --device cuda

RUN_DIR layout:
    data/{train,val,test}/NNNNNN   generated clips (test: held-out scenes and subjects, world/splits.py)
    vae/                           VAE run (final/ is the VAE with its latent normalisation; gate.json its
                                   whole-segment validation against copy-last, checked before encoding)
    cache/{train,val}/             latent caches
    world/{full,window,fov,hydra}/ world-model runs (final/ holds the EMA weights)
    eval/                          report.md, aggregate.json, reentry_psnr.png, side_by_side/
    recipe.json                    budget; per stage: command, status, wall time, rate, machine

Each stage is one `hybridmem` command, run in this process through the same parser the shell uses, so the
recorded command is exactly what ran. A stage whose outputs are complete is skipped; the others are run
again with their own resume logic (generation and encoding skip finished clips, training passes --resume,
the benchmark reuses cached generations). So killing the recipe and rerunning the same command loses at
most the work since each stage's last checkpoint.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hybridmem import jsonio, runlock
from hybridmem.errors import ConfigError, DataError
from hybridmem.models.memory.config import MEMORY_KINDS, memory_flag_args, renamed
from hybridmem.recipe.budgets import Budget

RECIPE_FILE = "recipe.json"
RECIPE_FORMAT = 1


# --- stages: pure descriptions of what to run and how to tell it is done ------------------------------

# reference rows of the benchmark (hybridmem.eval.protocol.BASELINES): the trivial answer, what the camera
# poses alone predict, the two failures of a returning subject rendered, and the VAE's ceiling
EVAL_BASELINES = ("copy-last", "warp", "erased", "frozen", "vae")


@dataclass
class Stage:
    """One `hybridmem` command of the recipe."""

    name: str
    argv: list[str]  # arguments after `hybridmem`
    unit: str  # what `amount` counts: "clips" or "steps"
    amount: int
    outputs: list[str] = field(default_factory=list)  # files that exist only once the stage is complete
    inputs: tuple[str, ...] = ()  # stages whose outputs this one reads
    folder: str = ""  # what to delete to redo the stage from scratch

    @property
    def command(self) -> str:
        return shlex.join(["hybridmem", *self.argv])


def _clip_outputs(run_dir: Path, split: str, count: int) -> list[str]:
    # generate() renames each finished clip folder into place with its metadata.json
    return [str(run_dir / "data" / split / f"{index:06d}" / "metadata.json") for index in range(count)]


def _cache_outputs(run_dir: Path, split: str, count: int) -> list[str]:
    # encode writes one file per clip, named by the clip folder, atomically
    cache = run_dir / "cache" / split
    return [str(cache / "cache.json")] + [
        str(cache / "clips" / f"{index:06d}.safetensors") for index in range(count)
    ]


def lever_flags(budget: Budget) -> list[str]:
    """The `train world` flags of the budget's levers (issue 17); none for a budget that pulls none."""
    flags = ["--objective", budget.world_objective] if budget.world_objective != "flow" else []
    flags += ["--warp-condition"] if budget.warp_condition else []
    return flags + (["--warp-residual"] if budget.warp_residual else [])


def plan_stages(
    budget: Budget, run_dir: str | os.PathLike, device: str, weights_dir: str | None = None
) -> list[Stage]:
    """The recipe's stages in order. `device` is a resolved torch device name ("cpu", "cuda", "cuda:1")."""
    run_dir = Path(run_dir)
    data = run_dir / "data"
    stages = []
    # 1. data: three generator runs into one dataset folder, one forced split each
    world_flags = budget.generate_args() + ["--seed", str(budget.seed), "--workers", str(budget.workers)]
    for split, count in (
        ("train", budget.train_clips),
        ("val", budget.val_clips),
        ("test", budget.test_clips),
    ):
        argv = ["world", "generate", "--num-clips", str(count), "--out", str(data), "--split", split]
        stages.append(
            Stage(
                f"data-{split}",
                argv + world_flags,
                "clips",
                count,
                _clip_outputs(run_dir, split, count),
                folder=str(data / split),
            )
        )
    # 2. VAE
    vae = run_dir / "vae"
    argv = [
        "train", "vae", "--data", str(data), "--out", str(vae), "--preset", budget.vae_preset,
        "--split", "train", "--val-split", "val", "--val-clips", str(budget.val_clips),
        "--frames", str(budget.vae_frames), "--steps", str(budget.vae_steps),
        "--batch-size", str(budget.vae_batch_size), "--lr", str(budget.vae_lr),
        "--warmup", str(budget.vae_warmup), "--norm-windows", str(budget.vae_norm_windows),
        "--recon", budget.vae_recon,
        "--precision", budget.precision, "--save-every", str(budget.save_every),
        "--val-every", str(budget.val_every), "--seed", str(budget.seed),
        "--device", device, "--resume",
    ]  # fmt: skip
    outputs = [str(vae / "final" / "config.json"), str(vae / "final" / "model.safetensors")]
    inputs = ("data-train", "data-val")
    stages.append(Stage("vae", argv, "steps", budget.vae_steps, outputs, inputs, str(vae)))
    # 3. latent caches
    for split, count in (("train", budget.train_clips), ("val", budget.val_clips)):
        argv = ["encode", "--data", str(data), "--vae", str(vae), "--out", str(run_dir / "cache" / split)]
        argv += ["--split", split, "--device", device]
        if budget.warp_condition:
            argv += ["--store-warp"]
        outputs = _cache_outputs(run_dir, split, count)
        inputs = ("vae", f"data-{split}")
        folder = str(run_dir / "cache" / split)
        stages.append(Stage(f"encode-{split}", argv, "clips", count, outputs, inputs, folder))
    # 4. one world model per memory kind: same budget, seed, data and memory flags (each kind reads the
    # knobs it needs; passing all of them to all keeps the commands identical but for --memory)
    memory_flags = memory_flag_args(budget)
    # every checkpoint is kept, so benchmarks/world_curve.py --checkpoints can draw the learning curve
    from hybridmem.runfolder import checkpoint_name

    world_keep = max(3, budget.world_steps // budget.save_every + 1) if budget.save_every else 3
    for kind in MEMORY_KINDS:
        out = run_dir / "world" / kind
        argv = [
            "train", "world", "--cache", str(run_dir / "cache" / "train"), "--out", str(out),
            "--memory", kind, *memory_flags, "--preset", budget.world_preset,
            "--steps", str(budget.world_steps),
            "--batch-size", str(budget.world_batch_size), "--lr", str(budget.world_lr),
            "--warmup", str(budget.world_warmup), "--shift", str(budget.world_shift),
            "--precision", budget.precision,
            "--save-every", str(budget.save_every), "--keep", str(world_keep),
            "--val-every", str(budget.val_every), "--val-cache", str(run_dir / "cache" / "val"),
            "--val-clips", str(budget.val_clips),
            "--seed", str(budget.seed), "--device", device, "--resume",
        ]  # fmt: skip
        argv += lever_flags(budget)
        # the trainer always checkpoints its last step: a run trained to fewer steps (before the budget's
        # world_steps grew) is not complete, and --resume continues it from its newest checkpoint
        last = out / "checkpoints" / checkpoint_name(budget.world_steps) / "state.json"
        outputs = [str(out / "final" / "config.json"), str(out / "final" / "model.safetensors"), str(last)]
        inputs = ("encode-train", "encode-val")
        stages.append(Stage(f"world-{kind}", argv, "steps", budget.world_steps, outputs, inputs, str(out)))
    # 5. benchmark on the held-out test split, with the reference rows
    evaldir = run_dir / "eval"
    argv = ["eval"]
    for kind in MEMORY_KINDS:
        argv += ["--checkpoint", str(run_dir / "world" / kind)]
    argv += [
        "--vae", str(vae), *[flag for name in EVAL_BASELINES for flag in ("--baseline", name)],
        "--data", str(data), "--split", "test",
        "--num-clips", str(budget.eval_clips), "--out", str(evaldir), "--steps", str(budget.eval_steps),
        "--seed", str(budget.seed), "--device", device,
        "--side-by-side-clips", str(budget.side_by_side_clips),
    ]  # fmt: skip
    if weights_dir:
        argv += ["--weights-dir", str(weights_dir)]
    eval_outputs = [str(evaldir / name) for name in ("aggregate.json", "report.md", "reentry_psnr.png")]
    inputs = ("data-test", "vae", *(f"world-{kind}" for kind in MEMORY_KINDS))
    stages.append(Stage("eval", argv, "clips", budget.eval_clips, eval_outputs, inputs, str(evaldir)))
    return stages


def stage_complete(stage: Stage) -> bool:
    """True when every output of the stage exists (the eval also needs its aggregate to cover all clips)."""
    if not all(Path(path).is_file() for path in stage.outputs):
        return False
    if stage.name == "eval":
        try:
            aggregate = jsonio.read_json(stage.outputs[0])
        except DataError:  # unreadable: not complete, so the eval stage runs again and rewrites it
            return False
        argv = stage.argv
        wanted = [Path(argv[i + 1]).name for i, flag in enumerate(argv) if flag == "--checkpoint"]
        # eval's aggregate is rewritten on every run; complete = all methods over all requested clips
        return aggregate.get("num_clips") == stage.amount and set(wanted + list(EVAL_BASELINES)) <= set(
            aggregate.get("methods", {})
        )
    return True


def stale_inputs(stage: Stage, record: dict) -> list[str]:
    """Input stages that finished after `stage` last finished (per the record): its outputs are stale."""
    finished = record["stages"].get(stage.name, {}).get("finished")
    if finished is None:  # outputs made outside the recipe: nothing to compare
        return []
    return [
        name
        for name in stage.inputs
        if record["stages"].get(name, {}).get("finished", "") > finished  # ISO-8601 UTC sorts as text
    ]


# --- the record: RUN_DIR/recipe.json -----------------------------------------------------------------


def machine_info(device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def code_info() -> dict:
    """The hybridmem version and, from a git checkout, the commit and whether the package's own files differ
    from it (`dirty`; edits to docs or tests elsewhere in the checkout do not count)."""
    import hybridmem

    info = {"version": hybridmem.__version__}
    source = Path(hybridmem.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:  # an installed wheel is not in a checkout: version only
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],  # the package only
                cwd=source, capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            info.update(commit=commit.stdout.strip(), dirty=bool(status.stdout.strip()))
    except (OSError, subprocess.SubprocessError):  # no git on the machine: version only
        pass
    return info


def write_json_atomic(path: Path, record: dict) -> None:
    """hybridmem.publish.write_json (temp file, checked, renamed; the mode a new file gets)."""
    from hybridmem import publish

    publish.write_json(path, record)


def read_record(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / RECIPE_FILE
    if not path.exists():
        raise ConfigError(f"{path}: missing; RUN_DIR must be a folder written by `hybridmem recipe --out`")
    fix = "rerun `hybridmem recipe` into a new --out"
    record = jsonio.read_json(path, error=ConfigError, fix=fix)
    for key, kind in (("budget", dict), ("stages", dict), ("invocations", list)):
        if not isinstance(record.get(key, kind()), kind):
            expected = "an object" if kind is dict else "a list"
            raise ConfigError(f"{path}: field '{key}' must be {expected}; {fix}")
    for name, stage in record.get("stages", {}).items():
        if not isinstance(stage, dict) or not isinstance(stage.get("attempts", []), list):
            expected = "an object with a list 'attempts'"
            raise ConfigError(f"{path}: field 'stages.{name}' must be {expected}; {fix}")
    return record


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _open_record(run_dir: Path, budget: Budget) -> dict:
    path = run_dir / RECIPE_FILE
    if not path.is_file():
        return {"format": RECIPE_FORMAT, "budget": budget.to_dict(), "stages": {}, "invocations": []}
    record = read_record(run_dir)
    old, new = renamed(record.get("budget", {})), budget.to_dict()
    # a field the record predates held its default then (a memory knob that gained a flag)
    defaults = Budget.defaults()
    old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
    # the description is prose (it carries the measured time), not a setting: rewording it must not
    # strand a run folder
    changed = sorted(k for k in set(old) | set(new) if k != "description" and old.get(k) != new.get(k))
    extended = changed == ["world_steps"] and new["world_steps"] > old.get("world_steps", 0)
    if changed and not extended:
        raise ConfigError(
            f"{path}: this run was started with budget '{old.get('name')}' and other settings "
            f"({', '.join(changed)}); rerun with --budget {old.get('name')} to resume, or use a new --out"
        )
    if extended:
        # The world trainers' learning rate is constant after warm-up and their data order and noise are
        # saved with each checkpoint, so resuming to more steps trains exactly as a longer run would.
        record.setdefault("extensions", []).append(
            {"field": "world_steps", "from": old["world_steps"], "to": new["world_steps"], "at": _now()}
        )
        record["budget"] = new
    return record


# --- the VAE gate: no world model can beat copy-last on top of a VAE that cannot ----------------------

GATE_FILE = "gate.json"


def vae_gate(budget: Budget, run_dir: Path, device: str) -> dict:
    """Reconstruct the whole context and target segments of the validation clips with the trained VAE and
    compare with copy-last (every target frame = the last context frame) on the same clips. Writes
    RUN_DIR/vae/gate.json and raises ConfigError, with both numbers, when the VAE does not beat copy-last:
    a world model decodes through this VAE, so its samples cannot beat copy-last either."""
    from hybridmem.data.encode import list_clip_folders
    from hybridmem.device import resolve_device
    from hybridmem.models.checkpoint import load_model
    from hybridmem.train.vae import ClipWindows, validate_segments

    torch_device = resolve_device(device)
    vae = load_model(run_dir / "vae" / "final", map_location=torch_device)
    folders = list_clip_folders(run_dir / "data", "val")
    result = validate_segments(vae, ClipWindows(folders, 1), budget.val_clips, torch_device)
    result["passed"] = result["psnr"] > result["copy_last_psnr"]
    write_json_atomic(run_dir / "vae" / GATE_FILE, result)
    lengths = ", ".join(result["psnr_by_frame"])
    message = (
        f"VAE gate: whole-segment reconstruction {result['psnr']:.2f} dB (worst frame index "
        f"{result['worst_frame_psnr']:.2f} dB; segments of {lengths} frames, {result['segments']} segments) "
        f"against copy-last {result['copy_last_psnr']:.2f} dB on the validation clips"
    )
    if not result["passed"]:
        raise ConfigError(
            f"{message}: the VAE does not beat copy-last, so no world model decoded through it can. Train "
            f"the VAE longer or with a larger preset (delete {run_dir / 'vae'} and rerun); per-frame "
            f"numbers are in {run_dir / 'vae' / GATE_FILE}"
        )
    print(f"[recipe {budget.name}] {message}: passed", flush=True)
    return result


# --- running -----------------------------------------------------------------------------------------


def run_stage(stage: Stage) -> None:
    """Run one stage's command through the `hybridmem` parser; its errors propagate (CLI exits 2)."""
    from hybridmem.recipe.commands import build_parser

    args = build_parser().parse_args(stage.argv)
    args.func(args)


@runlock.locked("recipe", "run_dir")  # one recipe at a time in a run folder
def run_recipe(
    budget: Budget,
    run_dir: str | os.PathLike,
    device: str = "auto",
    weights_dir: str | None = None,
    runner=run_stage,
    gate=vae_gate,
    until: str | None = None,
) -> dict:
    """Run (or resume) every stage; returns the record also written to RUN_DIR/recipe.json.

    runner: stage -> None; gate: (budget, run_dir, device) -> dict, raising to stop before the caches and
    world models (vae_gate); tests may pass stand-ins. Stages run in order and each is skipped when
    `stage_complete` says its outputs exist. until: the name of the last stage to run (None: all).
    """
    from hybridmem.device import resolve_device

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir}: exists and is not a folder")
    torch_device = str(resolve_device(device))
    stages = plan_stages(budget, run_dir, torch_device, weights_dir)
    names = [stage.name for stage in stages]
    if until is not None and until not in names:
        raise ConfigError(f"--until '{until}' is not a stage of the recipe; valid stages: {', '.join(names)}")
    if until is not None:
        stages = stages[: names.index(until) + 1]
    run_dir.mkdir(parents=True, exist_ok=True)
    record = _open_record(run_dir, budget)
    invocation = {"started": _now(), "device": torch_device, "ran": [], "skipped": []}
    record["invocations"].append(invocation)
    machine = machine_info(torch_device)
    code = code_info()
    for number, stage in enumerate(stages, start=1):
        prefix = f"[recipe {budget.name}] stage {number}/{len(names)} {stage.name}"
        if stage.name == "encode-train":  # the VAE is complete here: check it before any world model
            record["vae_gate"] = gate(budget, run_dir, torch_device)
            write_json_atomic(run_dir / RECIPE_FILE, record)
        redo = False  # the stage's earlier work is thrown away (its folder deleted, or overwritten)
        if stage_complete(stage):
            stale = stale_inputs(stage, record)
            if stale and stage.name == "eval":
                # its world models trained on (world_steps grew): the benchmark is redone from scratch
                # (eval refuses to mix results of other checkpoints into an existing folder otherwise)
                print(f"{prefix}: {', '.join(stale)} ran again since; evaluating again", flush=True)
                stage, redo = replace(stage, argv=[*stage.argv, "--overwrite"]), True
            elif stale:
                # resuming would keep the old outputs (caches skip existing clips, trainers see final/)
                raise ConfigError(
                    f"stage {stage.name}: its outputs are older than those of {', '.join(stale)}, which ran "
                    f"again since; delete {stage.folder} and rerun to redo it, or use a new --out"
                )
            if not stale:
                print(f"{prefix}: complete, skipped", flush=True)
                invocation["skipped"].append(stage.name)
                continue
        print(f"{prefix}: {stage.command}", flush=True)
        entry = record["stages"].setdefault(stage.name, {"attempts": []})
        if entry["attempts"] and (redo or not Path(stage.folder).exists()):
            # the stage starts from scratch, so the earlier attempts did none of the work this one will
            # finish; kept aside, not counted in its wall time and rate
            entry.setdefault("discarded_attempts", []).extend(entry["attempts"])
            entry["attempts"] = []
        attempt = {"started": _now(), "machine": machine, "code": code, "status": "running"}
        entry.update(command=stage.command, unit=stage.unit, amount=stage.amount, status="running")
        entry["attempts"].append(attempt)
        write_json_atomic(run_dir / RECIPE_FILE, record)
        started = time.perf_counter()
        try:
            runner(stage)
        except BaseException:
            attempt.update(status="failed", wall_s=round(time.perf_counter() - started, 3), finished=_now())
            entry["status"] = "failed"
            write_json_atomic(run_dir / RECIPE_FILE, record)
            raise
        wall = time.perf_counter() - started
        attempt.update(status="done", wall_s=round(wall, 3), finished=_now())
        # the rate counts every attempt's time: a resumed stage did its amount over all of them
        total = sum(item.get("wall_s", 0.0) for item in entry["attempts"])
        entry.update(status="done", finished=attempt["finished"], wall_s=round(total, 3))
        entry[f"{stage.unit}_per_s"] = round(stage.amount / total, 4) if total > 0 else None
        invocation["ran"].append(stage.name)
        write_json_atomic(run_dir / RECIPE_FILE, record)
    invocation["finished"] = _now()
    write_json_atomic(run_dir / RECIPE_FILE, record)
    return record
