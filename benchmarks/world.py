"""Benchmark of HM-World generation: rendered frames/s and accepted clips/s, per worker count and size.

    .venv/bin/python benchmarks/world.py --json runs/bench_world.json
    .venv/bin/python benchmarks/world.py --num-clips 4 --resolutions 128 --workers 1 2

Each row runs the full pipeline (plan, render every candidate, judge, encode and write the accepted clips)
into a fresh temporary folder and times it end to end, worker start-up included, so use enough clips for
the start-up to wash out. Rows: {resolution, workers, frames_per_s, frames_per_s_per_worker, clips_per_s,
clips_per_s_per_worker, rejection_rate, speedup_vs_1_worker, ...}. Goals (issue 2): >= 60 rendered frames/s
per worker at 128x128, and 2 workers >= 1.6x one worker. Timings on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path


def run_row(resolution: int, workers: int, num_clips: int, seed: int) -> dict:
    from hybridmem.world.config import WorldConfig
    from hybridmem.world.generate import generate

    config = WorldConfig(width=resolution, height=resolution, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench_world_") as out:
        summary = generate(
            config, Path(out), num_clips=num_clips, split="train", workers=workers, progress=False
        )
    seconds = max(summary.seconds, 1e-9)
    return {
        "resolution": f"{resolution}x{resolution}",
        "workers": workers,
        "clips": summary.accepted,
        "candidates": summary.candidates,
        "frames_rendered": summary.frames_rendered,
        "seconds": round(seconds, 3),
        "frames_per_s": summary.frames_rendered / seconds,
        "frames_per_s_per_worker": summary.frames_rendered / seconds / workers,
        "clips_per_s": summary.accepted / seconds,
        "clips_per_s_per_worker": summary.accepted / seconds / workers,
        "rejection_rate": summary.rejection_rate,
        "rejections": dict(summary.rejections),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--num-clips", type=int, default=6, help="accepted clips per row")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rows = []
    for resolution in args.resolutions:
        base = None
        for workers in args.workers:
            row = run_row(resolution, workers, args.num_clips, args.seed)
            if workers == 1:
                base = row["frames_per_s"]
            row["speedup_vs_1_worker"] = row["frames_per_s"] / base if base else None
            rows.append(row)
            print(
                f"{row['resolution']:>9}  workers={workers}  {row['frames_per_s']:7.1f} frames/s "
                f"({row['frames_per_s_per_worker']:6.1f}/worker)  {row['clips_per_s']:.3f} clips/s  "
                f"rejected {row['rejection_rate']:.0%}",
                file=sys.stderr,
            )
    report = {
        "benchmark": "world",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "rows": rows,
    }
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(report, indent=1) + "\n")
        os.replace(temp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
