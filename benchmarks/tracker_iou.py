"""How well the weight-free tracker (`hybridmem eval --boxes tracker`) finds subjects: IoU with ground truth.

    python benchmarks/tracker_iou.py --render 16 --out /tmp/tracker_world      # render held-out clips first
    python benchmarks/tracker_iou.py --data runs/world/test --clips 16            # clips already rendered

Each subject is tracked exactly as the benchmark does for `--boxes tracker`
(hybridmem.eval.protocol.predicted_subject_boxes: colour-histogram template from its last visible context
box, searched over every target frame where the ground truth shows it), but on the ground-truth target
frames, i.e. a perfect generation: whatever IoU it loses here it also loses on generated video. IoU is
computed per (subject, frame) against the ground-truth box from the instance masks. Printed: mean and median
IoU over all (subject, frame) pairs, the fraction with IoU >= 0.5, the same over frames at or after a
re-entry, and the mean of per-clip means. Subjects never visible in the context have no template and are
counted as skipped.

Measured 2026-11 on the 2-core CPU (`--render 16`, 128x128, seed 13: 16 held-out clips, 649 subject-frames,
none skipped): mean IoU 0.250, median 0.216, IoU >= 0.5 in 19.0% of frames; from a re-entry on (415): mean
0.184, median 0.128, 10.1%; per-clip means 0.011-0.435. The tracker keeps the template's box size while the
subject's apparent size changes with the camera, and it matches colours only: it is a rough stand-in for the
official YOLOv11 tracking, not a measurement to quote as the paper's protocol.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def box_iou(predicted: "N 4", truth: "N 4") -> np.ndarray:
    """IoU "N" of matching pixel-edge boxes (x0, y0, x1, y1)."""
    x0 = np.maximum(predicted[:, 0], truth[:, 0])
    y0 = np.maximum(predicted[:, 1], truth[:, 1])
    x1 = np.minimum(predicted[:, 2], truth[:, 2])
    y1 = np.minimum(predicted[:, 3], truth[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    return inter / (area(predicted) + area(truth) - inter)


def clip_ious(clip) -> tuple[list[float], list[float], int]:
    """(IoU of every tracked (subject, frame), IoU of those at or after the subject's re-entry, skipped)."""
    from hybridmem.eval.metrics import reentry_events
    from hybridmem.eval.protocol import predicted_subject_boxes, subject_boxes

    target_boxes = subject_boxes(clip, clip.target)
    context_boxes = subject_boxes(clip, clip.context)
    tracked = predicted_subject_boxes(clip, clip.frames[clip.target], target_boxes, context_boxes, "tracker")
    reentry_start = dict(reentry_events(clip.events, clip.context_frames))
    all_ious, after_reentry = [], []
    for subject_id, truth in target_boxes.items():
        if subject_id not in tracked:
            continue
        visible = ~np.isnan(truth).any(axis=1)
        ious = box_iou(tracked[subject_id][visible], truth[visible])
        all_ious += ious.tolist()
        if subject_id in reentry_start:
            frames = np.flatnonzero(visible)
            after_reentry += ious[frames >= reentry_start[subject_id]].tolist()
    skipped = sum(1 for subject_id in target_boxes if subject_id not in tracked)
    return all_ious, after_reentry, skipped


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="a split folder of rendered clips")
    parser.add_argument("--clips", type=int, help="first N clips of --data (default: all)")
    parser.add_argument("--render", type=int, help="render this many held-out test clips into --out first")
    parser.add_argument("--out", type=Path, help="dataset folder for --render")
    parser.add_argument(
        "--width", type=int, default=128, help="rendered width (default 128, the cpu budget's)"
    )
    parser.add_argument("--height", type=int, default=128, help="rendered height (default 128)")
    parser.add_argument("--seed", type=int, default=13, help="render seed (default 13; the demo uses 2026)")
    args = parser.parse_args()
    if args.render:
        from hybridmem.world.config import WorldConfig
        from hybridmem.world.generate import generate

        if args.out is None:
            parser.error("--render needs --out")
        world = WorldConfig(width=args.width, height=args.height, seed=args.seed)
        generate(world, args.out, num_clips=args.render, split="test", workers=1)
        args.data = args.out / "test"
    if args.data is None:
        parser.error("give --data or --render")
    from hybridmem.data.hmworld import load_clip

    folders = sorted(path for path in args.data.iterdir() if path.is_dir())[: args.clips]
    every, after, per_clip, skipped = [], [], [], 0
    started = time.perf_counter()
    for folder in folders:
        ious, reentered, missing = clip_ious(load_clip(folder))
        every += ious
        after += reentered
        skipped += missing
        if ious:
            per_clip.append(float(np.mean(ious)))
    seconds = time.perf_counter() - started
    every, after = np.array(every), np.array(after)
    print(
        f"{len(folders)} clips from {args.data}, {every.size} (subject, frame) pairs, {skipped} subject(s) "
        f"skipped (not visible in the context), tracked in {seconds:.1f} s"
    )
    print(
        f"all visible frames: mean IoU {every.mean():.3f}, median {np.median(every):.3f}, "
        f"IoU >= 0.5 in {np.mean(every >= 0.5):.1%}"
    )
    if after.size:
        print(
            f"frames from a re-entry on ({after.size}): mean IoU {after.mean():.3f}, median "
            f"{np.median(after):.3f}, IoU >= 0.5 in {np.mean(after >= 0.5):.1%}"
        )
    print(
        f"mean of per-clip mean IoU: {np.mean(per_clip):.3f} (min {np.min(per_clip):.3f}, "
        f"max {np.max(per_clip):.3f})"
    )


if __name__ == "__main__":
    main()
