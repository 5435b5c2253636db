"""`hybridmem demo`: the shipped HyDRA and full-attention models on fresh test clips with a re-entry.

    hybridmem demo                                  # shipped checkpoints, 4 clips, writes runs/demo
    hybridmem demo --clips 16 --out runs/demo16     # tighter confidence intervals
    hybridmem demo --out runs/demo --assets runs/exported_checkpoints

Steps: render `--clips` clips of the test split (held-out scenes and subjects; each must have a subject
that leaves the view and re-enters) at the shipped models' resolution and frame counts, with a fixed seed;
generate their target segments with the `hydra` and `full` world models; score both with the benchmark's
weight-free metrics and write the side-by-side video of the first clip (ground truth | hydra | full,
re-entry frames outlined in red) and the table (the benchmark's report.md). It leads with presence gain and
motion score: whether each model draws the returning subject where it truly is, against the clip's
counterfactual renders with the subject erased and frozen where it was last seen (hybridmem.eval.reentry);
it ends with hydra minus full per metric, paired over the clips, with a 95% bootstrap confidence interval
and the clips each model wins (one clip gives no interval, hence the default of DEMO_CLIPS). Reruns reuse
the rendered clips and the cached generations. The checkpoints come from `hybridmem recipe --budget cpu`
then `hybridmem recipe export` (docs/REFERENCE_RUN.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hybridmem import npyio
from hybridmem.errors import CheckpointError

DEMO_SEED = 2026  # the clip's generator seed; the split plan (held-out content) depends on split_seed only
DEMO_MODELS = ("hydra", "full", "window")  # left to right after the ground truth
# reference rows of the table: the trivial answer, what the camera poses alone predict, the two failures
# rendered, and the VAE's ceiling
DEMO_BASELINES = ("copy-last", "warp", "erased", "frozen", "vae")
GRID_STRIP_OFFSET = 4  # the still strip shows each clip this many frames after its subject re-enters
DEMO_CLIPS = 4  # enough clips for a paired bootstrap interval, few enough to stay a quick demo


class AssetsMissingError(CheckpointError):
    """No exported checkpoints where the demo looked."""


def check_assets(folder: str | Path) -> dict:
    """The manifest of an exported checkpoint folder holding the VAE and the demo's models, or an error."""
    from hybridmem.recipe.export import MANIFEST_FILE, MODEL_FILES

    folder = Path(folder)
    needed = [folder / MANIFEST_FILE] + [
        folder / name / file for name in ("vae", *DEMO_MODELS) for file in MODEL_FILES
    ]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise AssetsMissingError(
            f"no shipped checkpoints in {folder} (missing {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            + "). Produce them with `hybridmem recipe --budget cpu --out runs/ref_cpu` (2.4 h on a "
            "2-core CPU) then `hybridmem recipe export runs/ref_cpu --to src/hybridmem/assets/checkpoints`, "
            "or pass --assets DIR pointing at an exported folder"
        )
    from hybridmem import jsonio

    return jsonio.read_json(folder / MANIFEST_FILE, error=CheckpointError, fix="export the run again")


def run_demo(
    out: str | Path,
    assets: str | Path | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    clips: int = DEMO_CLIPS,
) -> dict:
    """Render `clips` test clips, generate, score, write; returns {"video", "gif", "table", "clip",
    "summary"}.

    Results already in `out` from other checkpoints (or not made by the demo) are refused unless
    `overwrite` (hybridmem.runlock via the benchmark's run_evaluation)."""
    from hybridmem.eval.protocol import EvalConfig, PipelineGenerator, run_evaluation
    from hybridmem.recipe.export import LEGACY_FOV_DEG
    from hybridmem.runfolder import default_assets_dir
    from hybridmem.runlock import refuse_foreign
    from hybridmem.validation import check_value

    check_value("clips", clips)  # the range table's rule, as the flag's
    from hybridmem.world.config import WorldConfig
    from hybridmem.world.generate import generate

    # 1. the checkpoints and the clip settings they were trained on
    assets = Path(assets) if assets is not None else default_assets_dir()
    manifest = check_assets(assets)
    data = manifest["data"]
    out = Path(out)
    # 2. held-out test clips; generate() only accepts clips where a subject leaves and re-enters
    world = WorldConfig(
        width=data["width"],
        height=data["height"],
        context_frames=data["context_frames"],
        target_frames=data["target_frames"],
        min_hidden_frames=data["min_hidden_frames"],
        horizontal_fov_deg=data.get("horizontal_fov_deg", LEGACY_FOV_DEG),
        paths=tuple(data.get("paths", ())),  # older manifests: every path family
        seed=DEMO_SEED,
    )
    print(
        f"hybridmem demo: rendering {clips} test clip(s) ({world.width}x{world.height}, seed {DEMO_SEED})",
        flush=True,
    )
    refuse_foreign(out, ("aggregate.json", "report.md"), overwrite)  # before rendering anything
    generate(world, out / "world", num_clips=clips, split="test", workers=1)
    # 3. generate with hydra and full, score, write the side-by-side video and the table
    print(f"hybridmem demo: generating with {' and '.join(DEMO_MODELS)} from {assets}", flush=True)
    config = EvalConfig(
        data=str(out / "world"),
        out=str(out),
        split="test",
        num_clips=clips,
        checkpoints=[str(assets / name) for name in DEMO_MODELS],
        vae=str(assets / "vae"),
        steps=manifest["budget"]["eval_steps"],
        seed=DEMO_SEED,
        device=device,
        side_by_side_clips=1,
        baselines=list(DEMO_BASELINES),
        overwrite=overwrite,
    )
    generators = {  # with each clip's denoising progress bar: the demo's few clips take a while each
        name: PipelineGenerator(str(assets / name), config.vae, device, config.steps, name, progress=True)
        for name in DEMO_MODELS
    }
    summary = run_evaluation(config, generators=generators)
    # 4. every clip in one grid: a row per clip (ground truth | hydra | full | window)
    grid = write_grid(out, summary["clips"], fps=world.fps)
    clip_id = summary["clips"][0]
    return {
        "video": grid["mp4"],
        "gif": grid["gif"],
        "strip": grid["png"],
        "table": out / "report.md",
        "clip": out / "world" / "test" / clip_id,
        "summary": summary,
    }


def grid_frames(rows: list) -> "T H' W' 3":
    """Stack side-by-side rows ("T H W' 3" each, same T and W') vertically, 2 px of black between."""
    gap = np.zeros((rows[0].shape[0], 2, rows[0].shape[2], 3), np.uint8)
    parts = [part for row in rows for part in (row, gap)][:-1]
    return np.concatenate(parts, axis=1)


def reentry_target_frame(clip) -> int | None:
    """The target frame (0-based) where the clip's re-entering subject comes back, if it has one."""
    from hybridmem.eval.metrics import reentry_events

    if clip.counterfactuals is not None:
        return clip.counterfactuals.entry_frame - clip.context_frames
    reentries = reentry_events(clip.events, clip.context_frames)
    return reentries[0][1] if reentries else None


def write_grid(out: Path, clip_ids: list[str], fps: float) -> dict:
    """grid.mp4 and grid.gif (every target frame of every clip) and grid.png (a still: each clip
    GRID_STRIP_OFFSET frames after its re-entry), from the evaluation's cached generations."""
    from hybridmem import publish
    from hybridmem.data.hmworld import load_clip
    from hybridmem.eval.report import side_by_side_frames

    rows, stills = [], []
    for clip_id in clip_ids:
        clip = load_clip(out / "world" / "test" / clip_id)
        predictions = {}
        for name in DEMO_MODELS:
            path = out / "generations" / name / f"{clip_id}.npz"
            predictions[name] = npyio.read_npz(path, ["frames"])["frames"]  # headers checked first
        reentry = reentry_target_frame(clip)
        row = side_by_side_frames(clip.frames[clip.target], predictions, reentry)  # Tt H W' 3
        rows.append(row)
        still = min((reentry or 0) + GRID_STRIP_OFFSET, row.shape[0] - 1)
        stills.append(row[still])
    frames = grid_frames(rows)  # Tt H' W' 3
    still = grid_frames([frame[None] for frame in stills])[0]
    paths = {"mp4": out / "grid.mp4", "gif": out / "grid.gif", "png": out / "grid.png"}
    from PIL import Image

    staged = [publish.stage_video(paths["mp4"], frames, fps, crf=0)]
    try:
        staged.append(publish.stage_gif(paths["gif"], frames, fps))
        staged.append(
            publish.stage(
                paths["png"], lambda temp: Image.fromarray(still).save(temp, format="PNG"), publish.check_png
            )
        )
    except BaseException:
        for staged_file in staged:
            staged_file.discard()
        raise
    publish.publish_together(staged)
    return paths


def run(args: argparse.Namespace) -> int:
    from hybridmem.device import resolve_device

    result = run_demo(
        args.out, args.assets, str(resolve_device(args.device)), overwrite=args.overwrite, clips=args.clips
    )
    print(result["table"].read_text())
    print(
        f"hybridmem demo: grid of every clip {result['video']} (and {result['gif'].name}; still "
        f"{result['strip'].name}), table {result['table']}"
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="shipped hydra vs full models on a fresh test clip: side-by-side video and metrics table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument(
        "--assets",
        help="exported checkpoint folder (`hybridmem recipe export`); default: the package's shipped ones",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--clips",
        type=int,
        default=DEMO_CLIPS,
        help=f"test clips to render and score (default {DEMO_CLIPS}); the paired confidence intervals "
        "need at least 2",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results already in --out made from other checkpoints or by another command "
        "(default: refuse; a rerun with the same checkpoints reuses its clip and generations)",
    )
    parser.set_defaults(func=run)
