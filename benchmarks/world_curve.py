"""Learning curves of the world model: held-out sample PSNR against training steps, copy-last beside it.

    .venv/bin/python benchmarks/world_curve.py --cache runs/ref_cpu/cache/train --vae runs/ref_cpu/vae \
        --data runs/ref_cpu/data --split val --memory full --shifts 1,2,3,5,10 --at 300 \
        --out runs/shift_sweep
    .venv/bin/python benchmarks/world_curve.py --cache runs/ref_cpu/cache/train --vae runs/ref_cpu/vae \
        --data runs/ref_cpu/data --split val --memory hydra --shifts 2 --at 250,500,1000,2000 \
        --out runs/curve_hydra

    .venv/bin/python benchmarks/world_curve.py --runs runs/ref_cpu/world/full,runs/ref_cpu/world/hydra \
        --vae runs/ref_cpu/vae --data runs/ref_cpu/data --split test --clips 8 --out runs/curve_ref_cpu

With --runs, nothing is trained: the EMA weights of each run's saved checkpoints (RUN/checkpoints/step_N,
those of --at, or all when --at is not given) are scored, each sampled with the shift it was trained with.

Otherwise, for each timestep shift, one world model is trained with `hybridmem train world` (the same
trainer, resumed from one checkpoint step to the next), and at every step of `--at` its EMA weights generate
the targets of `--clips` held-out clips (`--sample-steps` Euler steps, sampled with the shift it was
trained with).
Each generated target is scored by whole-target PSNR (the mean over target frames of per-frame PSNR, as
`hybridmem eval`) against the ground truth, paired per clip with copy-last (every target frame = the last
context frame), and with the VAE's own reconstruction of the target (the ceiling any sample decoded through
it can reach). Writes OUT/curve.json (every row) and OUT/curve.png, and prints a table.

On clips with counterfactual renders (val/test clips of the generator) every row also has the re-entry
metrics (hybridmem.eval.reentry): presence gain and motion score of the model, of copy-last, of the rotation
warp (hybridmem.warp) and of the VAE's reconstruction (the ceiling), averaged over the clips that can be
scored; the warp's whole-target PSNR is reported beside copy-last's.

Read the curve to see where more steps stop helping, and whether the model beats copy-last, the warp and the
erased render (presence 0) at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hybridmem.data.encode import list_clip_folders
from hybridmem.data.hmworld import load_clip
from hybridmem.eval.metrics import psnr_per_frame
from hybridmem.eval.reentry import reentry_metrics
from hybridmem.sample.pipeline import WorldPipeline
from hybridmem.train.config import WorldTrainConfig
from hybridmem.train.world import train_world
from hybridmem.warp import rotation_warp

REFERENCES = ("model", "copy_last", "warp", "vae")  # rows scored on the re-entry metrics


def whole_target_psnr(predicted: "T H W 3", target: "T H W 3") -> float:
    """Mean over frames of per-frame PSNR on [0, 1] (uint8 inputs)."""
    return float(np.mean(psnr_per_frame(predicted, target)))


def score_checkpoint(run: Path, args, clips, shift: float | None) -> dict:
    """Generate every clip's target with the run's EMA weights; per-clip PSNR of model, copy-last, VAE."""
    pipeline = WorldPipeline.from_checkpoint(
        run, args.vae, device=args.device, steps=args.sample_steps, shift=shift
    )
    model, copy_last, ceiling, warp = [], [], [], []
    reentry = {name: {"presence_gain": [], "motion_score": []} for name in REFERENCES}
    for clip in clips:
        context, target = clip.context, clip.target
        generated = pipeline.generate(
            clip.frames[context],
            clip.cameras[context],
            clip.cameras[target],
            clip.intrinsics,
            seed=args.seed,
            progress=False,
        )
        truth = clip.frames[target]
        outputs = {
            "model": generated,
            "copy_last": np.repeat(clip.frames[clip.context_frames - 1][None], len(truth), 0),
            "warp": rotation_warp(
                clip.frames[context], clip.cameras[context], clip.cameras[target], clip.intrinsics
            )[0],
            "vae": pipeline.decode(pipeline.encode(truth)),
        }
        model.append(whole_target_psnr(outputs["model"], truth))
        copy_last.append(whole_target_psnr(outputs["copy_last"], truth))
        warp.append(whole_target_psnr(outputs["warp"], truth))
        ceiling.append(whole_target_psnr(outputs["vae"], truth))
        for name in REFERENCES:
            record = reentry_metrics(clip, outputs[name])
            for metric in ("presence_gain", "motion_score"):
                value = record[metric]
                reentry[name][metric].append(value if isinstance(value, float) else None)
    return {"model": model, "copy_last": copy_last, "warp": warp, "vae": ceiling, "reentry": reentry}


def summarise(scores: dict, memory: str, shift: float | None, step: int, train_seconds: float | None) -> dict:
    """One row of the curve: means, paired difference to copy-last with its standard error, wins."""
    model, copy_last = np.array(scores["model"]), np.array(scores["copy_last"])
    difference = model - copy_last
    count = len(model)

    def standard_error(values: np.ndarray) -> float:
        return float(values.std(ddof=1) / np.sqrt(count)) if count > 1 else 0.0

    return {
        "memory": memory,
        "shift": shift,
        "step": step,
        "psnr": float(model.mean()),
        "psnr_se": standard_error(model),
        "copy_last_psnr": float(copy_last.mean()),
        "vs_copy_last": float(difference.mean()),
        "vs_copy_last_se": standard_error(difference),
        "wins_vs_copy_last": int((difference > 0).sum()),
        "vae_psnr": float(np.mean(scores["vae"])),
        "warp_psnr": float(np.mean(scores["warp"])),
        **{
            f"{name}_{metric}": _mean_scored(scores["reentry"][name][metric])
            for name in REFERENCES
            for metric in ("presence_gain", "motion_score")
        },
        "clips": count,
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "per_clip": scores,
    }


def _mean_scored(values: list) -> float | None:
    """Mean over the clips that could be scored (None where a clip has no counterfactual renders)."""
    scored = [value for value in values if value is not None]
    return float(np.mean(scored)) if scored else None


def report(row: dict, out: Path, args, rows: list[dict]) -> None:
    shift = "" if row["shift"] is None else f" shift {row['shift']:g}"
    print(
        f"{row['memory']}{shift} step {row['step']}: {row['psnr']:.2f} ± {row['psnr_se']:.2f} dB, copy-last "
        f"{row['copy_last_psnr']:.2f} dB (model - copy-last {row['vs_copy_last']:+.2f} ± "
        f"{row['vs_copy_last_se']:.2f}, wins {row['wins_vs_copy_last']}/{row['clips']}), VAE ceiling "
        f"{row['vae_psnr']:.2f} dB, warp {row['warp_psnr']:.2f} dB",
        flush=True,
    )
    if row["model_presence_gain"] is not None:
        print(
            "  presence gain / motion score (dB): "
            + ", ".join(
                f"{name} {row[name + '_presence_gain']:+.2f} / {row[name + '_motion_score']:+.2f}"
                for name in REFERENCES
            ),
            flush=True,
        )
    (out / "curve.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    curves = sorted({(row["memory"], row["shift"] or 0.0) for row in rows})
    for memory, shift in curves:
        mine = [row for row in rows if (row["memory"], row["shift"] or 0.0) == (memory, shift)]
        axis.errorbar(
            [row["step"] for row in mine],
            [row["psnr"] for row in mine],
            yerr=[row["psnr_se"] for row in mine],
            marker="o",
            capsize=3,
            label=memory if not shift else f"{memory}, shift {shift:g}",
        )
    axis.axhline(rows[0]["copy_last_psnr"], color="gray", linestyle="--", label="copy-last")
    axis.axhline(rows[0]["vae_psnr"], color="black", linestyle=":", label="VAE reconstruction")
    axis.set_xlabel("training steps")
    axis.set_ylabel("whole-target PSNR (dB), held-out clips")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", help="training latent cache (hybridmem encode), to train")
    parser.add_argument("--runs", help="comma-separated trained world-model runs to score instead")
    parser.add_argument("--vae", required=True, help="the VAE run the cache was encoded with")
    parser.add_argument("--data", required=True, help="dataset folder of the held-out clips")
    parser.add_argument("--split", default="val", help="held-out split under --data")
    parser.add_argument("--clips", type=int, default=8, help="held-out clips scored at each point")
    parser.add_argument("--memory", default="full", help="full | window | fov | hydra")
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--shifts", default="2", help="comma-separated training (and sampling) shifts")
    parser.add_argument("--at", help="comma-separated training steps to score at (training: default 250,500)")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--memory-window", type=int, default=3)
    parser.add_argument("--memory-top-k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, help="folder for the runs, curve.json and curve.png")
    args = parser.parse_args(argv)
    if (args.cache is None) == (args.runs is None):
        parser.error("pass --cache (train, then score) or --runs (score trained runs' checkpoints)")
    try:
        shifts = [float(value) for value in args.shifts.split(",")]
        points = sorted(
            int(value) for value in (args.at or ("" if args.runs else "250,500")).split(",") if value
        )
    except ValueError:
        parser.error("--shifts and --at take comma-separated numbers, e.g. --shifts 1,2,3,5 --at 250,500")
    if min(shifts) <= 0 or (points and min(points) < 1):
        parser.error("--shifts must be > 0 and --at steps >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folders = list_clip_folders(args.data, args.split)[: args.clips]
    if not folders:
        parser.error(f"--data {args.data}: no clips in split '{args.split}'")
    clips = [load_clip(folder) for folder in folders]

    rows = []
    if args.runs:
        for run in args.runs.split(","):
            saved = {int(path.name.split("_")[-1]): path for path in Path(run).glob("checkpoints/step_*")}
            for step in sorted(step for step in saved if not points or step in points):
                scores = score_checkpoint(saved[step], args, clips, None)
                row = summarise(scores, Path(run).name, None, step, None)
                rows.append(row)
                report(row, out, args, rows)
        plot(rows, out / "curve.png")
        print(f"wrote {out / 'curve.json'} and {out / 'curve.png'}")
        return 0
    for shift in shifts:
        run = out / f"{args.memory}_shift{shift:g}"
        for step in points:
            config = WorldTrainConfig(
                cache=args.cache, out=str(run), memory=args.memory, preset=args.preset,
                memory_window=args.memory_window, memory_top_k=args.memory_top_k, steps=step,
                batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, shift=shift,
                save_every=max(points), keep=1, seed=args.seed, device=args.device, resume=True,
                progress=False, tensorboard=False,
            )  # fmt: skip
            started = time.perf_counter()
            train_world(config)
            train_seconds = time.perf_counter() - started
            scores = score_checkpoint(run, args, clips, shift)
            row = summarise(scores, args.memory, shift, step, train_seconds)
            rows.append(row)
            report(row, out, args, rows)
    plot(rows, out / "curve.png")
    print(f"wrote {out / 'curve.json'} and {out / 'curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
