"""Copy a finished reference run's models into a small, self-describing checkpoint folder.

    hybridmem recipe export runs/ref_cpu --to src/hybridmem/assets/checkpoints

The folder holds, for the VAE and each memory variant, exactly the two files `models.checkpoint.load_model`
reads (model.safetensors, config.json; the world models' EMA weights from RUN/world/<kind>/final), and a
manifest.json with the budget, the generator settings of the data, each model's steps, wall time, rate,
machine and exact command.

Where it writes (`--to DIR`). Export deletes or replaces nothing it did not write:
- DIR new: the export is built in a temp folder beside it, checked (every model loads and runs), then
  renamed to DIR.
- DIR an empty folder: the same, its entries then moved into DIR.
- DIR holding an earlier export (its manifest.json): refused without `--overwrite`; with it, the earlier
  export's entries (manifest.json and the model folders that manifest lists) are replaced, and every other
  file in DIR is kept. An entry the new export writes that the earlier one did not list is refused.
- DIR anything else (a file, a non-empty folder without an export), the run itself, a folder inside the run
  or one that holds it: refused, with --overwrite too.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

from hybridmem import jsonio, runlock
from hybridmem.errors import CheckpointError, ConfigError, HybridmemError
from hybridmem.models.memory.config import MEMORY_KINDS
from hybridmem.publish import TEMP_PREFIX
from hybridmem.recipe.recipe import read_record

MANIFEST_FILE = "manifest.json"
MODEL_FILES = ("model.safetensors", "config.json")


def exported_models() -> tuple[str, ...]:
    """The VAE and one world model per memory kind."""
    return ("vae", *MEMORY_KINDS)


MANIFEST_FORMAT = 1


def _final_folder(run_dir: Path, name: str) -> Path:
    return run_dir / "vae" / "final" if name == "vae" else run_dir / "world" / name / "final"


def _stage_name(name: str) -> str:
    return "vae" if name == "vae" else f"world-{name}"


# manifests written before the budget recorded its camera were all rendered at the generator's then
# default, 70 degrees (the `wide` camera)
LEGACY_FOV_DEG = 70.0


def data_settings(budget: dict) -> dict:
    """Generator settings of the run's clips (what `hybridmem demo` renders its test clips with), and
    `generate_args`: the `hybridmem world generate` flags that render more clips of that distribution."""
    from hybridmem.recipe.budgets import Budget

    keys = ("width", "height", "context_frames", "target_frames", "min_hidden_frames", "seed")
    settings = {key: budget[key] for key in keys}
    settings["horizontal_fov_deg"] = budget.get("horizontal_fov_deg", LEGACY_FOV_DEG)
    settings["paths"] = list(budget.get("paths", []))  # the subjects' path families; empty: all
    settings["generate_args"] = Budget.from_dict(
        {**budget, "horizontal_fov_deg": settings["horizontal_fov_deg"]}
    ).generate_args()
    return settings


def export_run(run_dir: str | os.PathLike, to: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the exported folder `to` (see the module docstring for what may be there); returns its path."""
    from hybridmem import publish

    run_dir, to = Path(run_dir), Path(to)
    record = read_record(run_dir)
    # 1. every model must be finished, and `to` a place an export may go
    missing = []
    for name in exported_models():
        folder = _final_folder(run_dir, name)
        if not all((folder / file).is_file() for file in MODEL_FILES):
            missing.append(str(folder))
    if missing:
        raise CheckpointError(
            f"{run_dir}: unfinished models ({', '.join(missing)}); rerun the same `hybridmem recipe` "
            "command until it completes, then export"
        )
    replaced = check_destination(run_dir, to, overwrite)
    # 2. copy into a temp folder: beside a new `to`, inside an existing one (same file system either way)
    staging = to / "export" if to.is_dir() else to
    with publish.staged_folder(staging) as temp:
        models = {}
        for name in exported_models():
            source = _final_folder(run_dir, name)
            for file in MODEL_FILES:
                publish.copy_file(source / file, temp / name / file)
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
        publish.write_json(temp / MANIFEST_FILE, manifest)
        verify_export(temp)  # the exported files load into this code and run, before anything is published
        # 4. publish
        if not to.exists():
            publish.publish_folder(temp, to)
        else:
            _replace_entries(temp, to, replaced)
    return to


def check_destination(run_dir: Path, to: Path, overwrite: bool) -> list[str]:
    """ConfigError unless `to` may receive an export (module docstring); returns the entries of an earlier
    export there that this one replaces (empty for a new or empty folder)."""
    run, target = run_dir.resolve(), to.resolve()
    if target == run or run in target.parents:
        raise ConfigError(f"--to {to}: is inside the run {run_dir} it exports; choose a folder outside it")
    if target in run.parents:
        raise ConfigError(f"--to {to}: holds the run {run_dir} it exports; choose a new or empty folder")
    runlock.check_out_folder(to, "--to")  # not a file, nor under one
    if not to.exists():
        return []
    present = sorted(p.name for p in to.iterdir() if not p.name.startswith(TEMP_PREFIX))  # not a crash's
    if not present:
        return []
    earlier = _earlier_export(to)
    if earlier is None:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise ConfigError(
            f"--to {to}: holds files that are not an export ({shown}); export into a new or empty folder "
            "(nothing there is replaced, --overwrite included)"
        )
    if not overwrite:
        raise ConfigError(
            f"--to {to}: holds an earlier export ({earlier['exported']}); pass --overwrite to replace it "
            "(its manifest.json and model folders; other files there are kept), or choose a new folder"
        )
    ours = [MANIFEST_FILE, *earlier["folders"]]
    foreign = [name for name in exported_models() if (to / name).exists() and name not in ours]
    if foreign:
        raise ConfigError(
            f"--to {to}: {', '.join(foreign)} exist(s) there but are not part of the earlier export; move "
            "them away first (export replaces only what an export wrote)"
        )
    return [name for name in ours if (to / name).exists()]


def _earlier_export(folder: Path) -> dict | None:
    """{"exported", "folders"} of the export manifest in `folder`, None when there is none to read."""
    try:
        manifest = jsonio.read_json(folder / MANIFEST_FILE, expect=None)
    except HybridmemError:
        return None
    models = manifest.get("models") if isinstance(manifest, dict) else None
    if not isinstance(models, dict) or "format" not in manifest:
        return None
    folders = [
        entry["folder"]
        for entry in models.values()
        if isinstance(entry, dict) and _plain(entry.get("folder"))
    ]
    return {"exported": manifest.get("exported", "date unknown"), "folders": folders}


def _plain(name) -> bool:
    """A plain entry name (no path separators, not . or ..): a manifest cannot point export elsewhere."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _replace_entries(temp: Path, to: Path, replaced: list[str]) -> None:
    """Move the staged export's entries into the existing folder `to`: the earlier export's entries are
    set aside first (and removed at the end), the manifest goes last, files export did not write stay."""
    aside = temp / ".replaced"
    aside.mkdir()
    for name in replaced:
        if name != MANIFEST_FILE:
            (to / name).rename(aside / name)
    for name in exported_models():
        (temp / name).rename(to / name)
    os.replace(temp / MANIFEST_FILE, to / MANIFEST_FILE)
    shutil.rmtree(aside)


def verify_export(folder: str | os.PathLike, device: str = "cpu") -> dict:
    """Load every model of an exported folder into the current code and run it once on a synthetic clip.

    Returns {model name: shape of what it produced}: the VAE's reconstruction "1 T 3 H W", each world model's
    one-step target latents "1 Ft C h w". Raises CheckpointError when a model does not load or produces
    non-finite numbers.
    """
    import numpy as np
    import torch

    from hybridmem.data.encode import segment_latent_cameras
    from hybridmem.geometry import normalised_intrinsics
    from hybridmem.models.checkpoint import load_model
    from hybridmem.sample.pipeline import WorldPipeline

    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{manifest_path}: missing; export a finished run with `hybridmem recipe export`"
        )
    manifest = jsonio.read_json(manifest_path, error=CheckpointError, fix="export the run again")
    try:
        data = manifest["data"]
        width, height = data["width"], data["height"]
        context_count, target_count = data["context_frames"], data["target_frames"]
    except (KeyError, TypeError) as error:
        raise CheckpointError(
            f"{manifest_path}: field 'data' lacks {error} (or is not an object); export the run again"
        ) from None
    # 1. a synthetic clip: random frames, a camera sliding sideways
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(context_count, height, width, 3), dtype=np.uint8)
    cameras = np.repeat(np.eye(4)[None], context_count + target_count, axis=0)
    cameras[:, 0, 3] = np.linspace(0.0, 1.0, context_count + target_count)
    intrinsics = np.array([width * 0.7, height * 0.7, width / 2, height / 2])
    # 2. the VAE: encode/decode round trip
    vae = load_model(folder / "vae", map_location=device)
    shapes = {}
    with torch.no_grad():
        video = torch.from_numpy(frames).float().permute(0, 3, 1, 2)[None].to(device) / 127.5 - 1  # 1 T 3 H W
        reconstruction = vae.decode(vae.encode(video).mode())  # 1 T 3 H W
    if not torch.isfinite(reconstruction).all():
        raise CheckpointError(f"{folder / 'vae'}: the VAE produced non-finite frames")
    shapes["vae"] = tuple(reconstruction.shape)
    # 3. each world model: one denoising step of the target segment
    for name in MEMORY_KINDS:
        world = load_model(folder / name, map_location=device)
        pipeline = WorldPipeline(world, vae, device)
        context_latents = pipeline.encode(frames)  # 1 Fc C h w
        latent_cameras = segment_latent_cameras(
            cameras[:context_count], cameras[context_count:], pipeline.temporal_stride
        )
        target_latent_frames = (target_count - 1) // pipeline.temporal_stride + 1
        with torch.no_grad():
            latents = pipeline.denoise(
                context_latents,
                latent_cameras,
                normalised_intrinsics(intrinsics, width, height),
                target_latent_frames,
                seed=0,
                steps=1,
            )  # 1 Ft C h w
        if not torch.isfinite(latents).all():
            raise CheckpointError(f"{folder / name}: the world model produced non-finite latents")
        shapes[name] = tuple(latents.shape)
    return shapes
