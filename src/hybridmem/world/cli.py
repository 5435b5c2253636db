"""`hybridmem world generate` and `hybridmem world preview`.

    hybridmem world generate --num-clips 100 --out runs/world --split train --workers 2
    hybridmem world generate --num-clips 100 --out runs/wide --camera wide  # 70 deg, 128x128 (old camera)
    hybridmem world generate --num-clips 10000 --out /data/hmw --shard 3/16 --seed 1   # one job of an array
    hybridmem world generate --num-clips 8 --out runs/tiny --width 64 --height 64 --context-frames 9 \\
        --target-frames 9 --min-hidden-frames 3
    hybridmem world preview runs/world/train/000000 --out preview.png      # contact sheet
    hybridmem world preview runs/world/train/000000 --out preview.gif      # animation
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from hybridmem.world.config import CAMERA_PRESETS, DEFAULT_CAMERA, WorldConfig

# WorldConfig fields exposed as flags (--context-frames for context_frames); the rest keep their defaults.
_CONFIG_FLAGS = (
    "width", "height", "context_frames", "target_frames", "fps", "horizontal_fov_deg", "supersample",
    "min_subjects", "max_subjects", "visible_threshold", "hidden_threshold", "min_hidden_frames",
    "max_attempts", "seed", "split_seed", "held_out_scenes", "held_out_subjects", "val_fraction",
    "test_fraction", "video_crf",
)  # fmt: skip


def register(subparsers) -> None:
    world = subparsers.add_parser("world", help="generate and inspect HM-World clips")
    commands = world.add_subparsers(dest="world_command", metavar="SUBCOMMAND", required=True)

    generate = commands.add_parser(
        "generate", help="render N accepted clips into a folder (resumable, shardable)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    generate.add_argument("--num-clips", type=int, required=True, help="clips 0..N-1 (over all shards)")
    generate.add_argument(
        "--out",
        required=True,
        help="dataset folder (created; rerun to resume: finished clips are kept, never replaced)",
    )
    generate.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="put every clip in this split (default: draw each clip's split)",
    )
    generate.add_argument("--workers", type=int, default=1, help="render processes (one renderer each)")
    generate.add_argument("--shard", default="0/1", help="i/N: render only clips with index %% N == i")
    generate.add_argument("--no-progress", action="store_true", help="no progress bar")
    generate.add_argument(
        "--camera",
        choices=sorted(CAMERA_PRESETS),
        default=None,
        help=f"named camera (default {DEFAULT_CAMERA}): "
        + "; ".join(
            f"{name}: {p['width']}x{p['height']}, {p['horizontal_fov_deg']} deg horizontal FOV"
            for name, p in CAMERA_PRESETS.items()
        )
        + ". --width, --height and --horizontal-fov-deg override it",
    )
    defaults = WorldConfig()
    types = {f.name: f.type for f in dataclasses.fields(WorldConfig)}
    for name in _CONFIG_FLAGS:
        kind = {"int": int, "float": float}[types[name]]
        generate.add_argument(
            f"--{name.replace('_', '-')}", type=kind, default=None, help=f"default {getattr(defaults, name)}"
        )
    generate.add_argument("--scenes", nargs="+", default=None, help="allowed scene names (default: all)")
    generate.add_argument("--subjects", nargs="+", default=None, help="allowed subject names (default: all)")
    generate.add_argument(
        "--paths",
        nargs="+",
        default=None,
        help="allowed subject path families (default: all): line, arc, circle, figure_eight, zigzag, "
        "stop_and_go, u_turn, waypoints, spiral, s_curve",
    )
    generate.add_argument(
        "--no-reentry",
        action="store_true",
        help="accept a subject that leaves and stays out (default: it must re-enter)",
    )
    generate.set_defaults(func=run_generate)

    preview = commands.add_parser("preview", help="contact sheet (.png) or animation (.gif) of one clip")
    preview.add_argument("clip", help="clip folder (our layout or the released one)")
    preview.add_argument("--out", required=True, help="FILE.png or FILE.gif")
    preview.add_argument("--columns", type=int, default=6, help="frames per row of the contact sheet")
    preview.add_argument("--every", type=int, default=None, help="contact sheet: every n-th frame")
    preview.add_argument("--scale", type=int, default=None, help="pixel upscaling (default: to ~256 px)")
    preview.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    preview.set_defaults(func=run_preview)


def config_from_args(args) -> WorldConfig:
    overrides = dict(CAMERA_PRESETS[args.camera]) if getattr(args, "camera", None) else {}
    overrides.update({name: getattr(args, name) for name in _CONFIG_FLAGS if getattr(args, name) is not None})
    if args.scenes is not None:
        overrides["scenes"] = tuple(args.scenes)
    if args.subjects is not None:
        overrides["subjects"] = tuple(args.subjects)
    if args.paths is not None:
        overrides["paths"] = tuple(args.paths)
    if args.no_reentry:
        overrides["require_reentry"] = False
    return dataclasses.replace(WorldConfig(), **overrides)


def run_generate(args) -> int:
    from hybridmem.runfolder import parse_shard
    from hybridmem.world.generate import generate

    config = config_from_args(args)
    summary = generate(
        config, args.out, num_clips=args.num_clips, split=args.split, workers=args.workers,
        shard=parse_shard(args.shard), progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"world generate: {summary.accepted} clip(s) written, {summary.skipped} already there, "
        f"{summary.candidates} candidate(s) rendered in {summary.seconds:.1f} s, "
        f"rejection rate {summary.rejection_rate:.0%}",
        file=sys.stderr,
    )
    for reason, count in sorted(summary.rejections.items(), key=lambda item: -item[1]):
        print(f"  rejected {count:6d}  {reason}", file=sys.stderr)
    return 0


def run_preview(args) -> int:
    from hybridmem.world.preview import write_preview

    path = write_preview(
        args.clip,
        args.out,
        columns=args.columns,
        every=args.every,
        scale=args.scale,
        overwrite=args.overwrite,
    )
    print(f"world preview: wrote {path}", file=sys.stderr)
    return 0
