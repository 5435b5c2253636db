"""Copy a finished reference run's models into a small, self-describing checkpoint folder.

    hybridmem recipe export runs/ref_cpu --to src/hybridmem/assets/checkpoints

The folder holds, for the VAE and each memory variant, exactly the two files `models.checkpoint.load_model`
reads (model.safetensors, config.json; the world models' EMA weights from RUN/world/<kind>/final), and a
manifest.json with the budget, the generator settings of the data, each model's steps, wall time, rate,
machine and exact command. It is written into a temp folder and renamed over the old one.
"""

from __future__ import annotations

import datetime
import json
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
    verify_export(to)  # the exported files load into this code and run
    return to


def verify_export(folder: str | os.PathLike, device: str = "cpu") -> dict:
    """Load every model of an exported folder into the current code and run it once on a synthetic clip.

    Returns {model name: shape of what it produced}: the VAE's reconstruction "1 T 3 H W", each world model's
    one-step target latents "1 Ft C h w". Raises CheckpointError when a model does not load or produces
    non-finite numbers.
    """
    import numpy as np
    import torch

    from hybridmem.data.encode import normalised_intrinsics
    from hybridmem.models.checkpoint import load_model
    from hybridmem.sample.pipeline import WorldPipeline, segment_latent_cameras

    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{manifest_path}: missing; export a finished run with `hybridmem recipe export`"
        )
    data = json.loads(manifest_path.read_text())["data"]
    width, height = data["width"], data["height"]
    context_count, target_count = data["context_frames"], data["target_frames"]
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
    for name in MEMORY_VARIANTS:
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
