"""`hybridmem eval`: run the benchmark, or re-print the report of a finished run.

    hybridmem eval --checkpoint runs/hydra/final --checkpoint runs/full/final --vae runs/vae/final \\
        --baseline copy-last --data runs/world --split test --num-clips 16 --out runs/eval \\
        --weights-dir ~/weights --steps 30 --seed 0 --boxes gt --dsc-definition official
    hybridmem eval --baseline copy-last --data runs/world --num-clips 4 --out runs/eval_copy
    hybridmem eval --checkpoint runs/hydra/final --vae runs/vae/final --baseline copy-last \\
        --baseline erased --baseline frozen --baseline vae --data runs/world --split test --out runs/eval_ref
    hybridmem eval report runs/eval --compare-paper --reference hydra

The report leads with presence gain and motion score (hybridmem.eval.reentry), scored against the clips'
counterfactual renders (val/test clips of `hybridmem world generate`; other clips get n/a with the reason).
The reference rows --baseline erased / frozen (those renders themselves; every clip must have them) and vae
(the VAE's reconstruction of the truth: the ceiling) put the failure modes and the ceiling in the same tables.

Rerunning the same command resumes: cached generations (EVALDIR/generations) are reused and only the metrics
are recomputed (so adding --weights-dir later fills in the "not computed" columns without generating again).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridmem.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from hybridmem.eval.protocol import EvalConfig, run_evaluation
    from hybridmem.eval.report import markdown_report

    if args.precision is not None and args.official is None:
        raise ConfigError("--precision goes with --official (the paper's model); drop it")

    config = EvalConfig(
        data=args.data,
        out=args.out,
        split=args.split,
        num_clips=args.num_clips,
        checkpoints=args.checkpoint or [],
        vae=args.vae,
        baselines=args.baseline or [],
        weights_dir=args.weights_dir,
        steps=args.steps,
        seed=args.seed,
        boxes=args.boxes,
        dsc_definition=args.dsc_definition,
        device=args.device,
        lpips_backbone=args.lpips_backbone,
        side_by_side_clips=args.side_by_side_clips,
        overwrite=args.overwrite,
        allow_other_vae=args.allow_other_vae,
        official=args.official,
        precision=args.precision or "bf16",
    )
    forget_failed_record(args.out)
    summary = run_evaluation(config)
    print(markdown_report(summary))
    print(f"hybridmem eval: wrote report.md, aggregate.json, reentry_psnr.png, side_by_side/ in {args.out}")
    return 0


# what an evaluation folder holds once a run has made anything (run.json alone: a run that failed before)
RESULTS = ("aggregate.json", "report.md", "generations", "clips", "side_by_side")


def forget_failed_record(out: str) -> None:
    """Remove an eval's run.json that no result stands beside: it records the inputs of a run that failed
    before making anything (a wrong --split, a missing checkpoint), and left in place it would refuse the
    corrected command as "results made from other inputs". Under the folder's lock; a record of another
    command, or one with results beside it, is left alone."""
    from hybridmem import runlock

    folder = Path(out)
    if not (folder / runlock.RECORD_FILE).is_file():
        return
    with runlock.hold(runlock.check_out_folder(folder), "eval"):
        record = runlock.read_record(folder)
        if record is not None and record.get("command") == "eval":
            if not any((folder / name).exists() for name in RESULTS):
                (folder / runlock.RECORD_FILE).unlink()


def report_command(args: argparse.Namespace) -> int:
    from hybridmem.errors import ConfigError
    from hybridmem.eval.protocol import write_outputs
    from hybridmem.eval.report import compare_paper_text, markdown_report, read_json, write_bytes_atomic

    folder = Path(args.evaldir)
    summary = read_json(folder / "aggregate.json")
    check_aggregate(summary, folder / "aggregate.json")
    methods = list(summary["methods"])
    if args.reference is not None and args.reference not in methods:
        valid = ", ".join(methods)
        raise ConfigError(f"--reference {args.reference!r}: not a method of this run; valid: {valid}")
    if args.reference is not None and len(methods) < 2:
        raise ConfigError(
            f"--reference {args.reference}: this run has one method ({methods[0]}), so there is no paired "
            "comparison to take against it; drop --reference, or evaluate more methods into this folder"
        )
    if "per_clip" not in summary:  # written before aggregate.json carried every clip's numbers
        from hybridmem.eval.report import load_per_clip

        summary["per_clip"] = load_per_clip(folder, summary["methods"])
    # re-renders report.md and the plot from aggregate.json
    write_outputs(folder, summary, reference=args.reference)
    print(markdown_report(summary, reference=args.reference))
    if args.compare_paper:
        comparison = compare_paper_text(summary)
        write_bytes_atomic(folder / "compare_paper.md", comparison.encode())
        print("## Next to the paper (different scale and data)\n")
        print(comparison)
    return 0


def check_aggregate(summary, path: Path) -> None:
    """DataError naming the field when aggregate.json lacks what the report reads (hand-edited, foreign)."""
    from hybridmem.errors import DataError

    if not isinstance(summary, dict):
        raise DataError(
            f"{path}: expected a JSON object, got {type(summary).__name__}; rerun `hybridmem eval`"
        )
    methods = summary.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise DataError(f"{path}: field 'methods' missing or empty; rerun `hybridmem eval` to rewrite it")
    for name, entry in methods.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
            raise DataError(
                f"{path}: methods.{name}.metrics missing or not an object; rerun `hybridmem eval`"
            )
    # 2. every other field the report reads, with the type it must have
    number, text = (int, float), (str,)
    scalar = (*number, *text, type(None))

    def wrong(field: str, expected: str):
        return DataError(f"{path}: field '{field}' must be {expected}; rerun `hybridmem eval` to rewrite it")

    def check_map(value, field: str, kinds: tuple, expected: str) -> None:
        if not isinstance(value, dict):
            raise wrong(field, f"an object of {expected}")
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, kinds):
                raise wrong(f"{field}.{key}", expected)

    for key in ("data", "split", "num_clips", "seed", "steps", "boxes", "box_source_text", "dsc_definition"):
        if isinstance(summary.get(key), bool) or not isinstance(summary.get(key), scalar):
            raise wrong(key, "a string, a number or null")
    for name, entry in methods.items():
        check_map(entry["metrics"], f"methods.{name}.metrics", scalar, "a number, a string or null")
        check_map(entry.get("counts", {}), f"methods.{name}.counts", number, "a number")
        if isinstance(entry.get("num_clips"), bool) or not isinstance(entry.get("num_clips"), scalar):
            raise wrong(f"methods.{name}.num_clips", "a number")
        skipped = entry.get("skipped", {})
        if not isinstance(skipped, dict):
            raise wrong(f"methods.{name}.skipped", "an object: metric -> reason -> clips")
        for metric, reasons in skipped.items():
            check_map(reasons, f"methods.{name}.skipped.{metric}", number, "a number of clips")
    if "per_clip" in summary:
        per_clip = summary["per_clip"]
        if not isinstance(per_clip, dict):
            raise wrong("per_clip", "an object: method -> clip -> metric -> number")
        for name in methods:
            if name not in per_clip:
                raise DataError(
                    f"{path}: field 'per_clip.{name}' missing: method {name} has no per-clip values, so the "
                    "paired comparisons would leave it out; rerun `hybridmem eval` to rewrite aggregate.json"
                )
        for name, clips in per_clip.items():
            if not isinstance(clips, dict):
                raise wrong(f"per_clip.{name}", "an object: clip -> metric -> number")
            for clip, values in clips.items():
                check_map(values, f"per_clip.{name}.{clip}", number, "a number")
    curves = summary.get("reentry_curves", {})
    if not isinstance(curves, dict):
        raise wrong("reentry_curves", "an object: method -> list of [per-frame PSNR list, re-entry frame]")
    for name, items in curves.items():
        for index, item in enumerate(items if isinstance(items, list) else [None]):
            shaped = isinstance(item, list) and len(item) == 2 and isinstance(item[0], list)
            if not shaped or isinstance(item[1], bool) or not isinstance(item[1], int):
                raise wrong(f"reentry_curves.{name}[{index}]", "[per-frame PSNR list, re-entry frame]")
            if not all(value is None or type(value) in number for value in item[0]):
                raise wrong(f"reentry_curves.{name}[{index}][0]", "a list of numbers or nulls")


def register(subparsers) -> None:
    # No choices= from the registries here: importing them pulls torch into `hybridmem --help`;
    # EvalConfig.validate rejects unknown names with the list of valid ones.
    parser = subparsers.add_parser(
        "eval",
        help="benchmark world models (PSNR, SSIM, LPIPS, DSC, VBench consistency) or print a report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", action="append", help="world-model run folder; repeat for more methods"
    )
    parser.add_argument(
        "--baseline",
        action="append",
        help="reference row, repeatable: copy-last (the last context frame), erased / frozen (the clip's "
        "counterfactual render: the re-entering subject vanished / left where it was last seen), vae (the "
        "VAE's reconstruction of the truth: the ceiling; needs --vae)",
    )
    parser.add_argument("--vae", help="VAE run folder (required with --checkpoint and with --baseline vae)")
    parser.add_argument(
        "--official",
        metavar="DIR",
        help="the paper's model (row hydra-official): the folder of the released files, hydra.pth + "
        "Wan2.1-T2V-1.3B/ (see `hybridmem sample --help`); it embeds each clip's caption itself",
    )
    parser.add_argument(
        "--precision", choices=("bf16", "fp32"), default=None, help="--official: the models' dtype (bf16)"
    )
    parser.add_argument("--data", help="dataset folder holding split folders of clips")
    parser.add_argument("--split", default="test", help="split folder under --data (default: test)")
    parser.add_argument("--num-clips", type=int, help="first N clips in sorted order (default: all)")
    parser.add_argument("--out", help="evaluation folder (created; rerun the same command to resume)")
    parser.add_argument(
        "--weights-dir",
        help="folder with clip-vit-base-patch16/, dino-vitb16/, lpips/ (default: $HYBRIDMEM_WEIGHTS, "
        "else ~/.cache/hybridmem/weights); metrics whose weights are missing are reported as not computed",
    )
    parser.add_argument("--steps", type=int, help="sampling steps (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0, help="clip i is generated with seed + i (default 0)")
    parser.add_argument(
        "--boxes",
        default="gt",
        help="predicted-subject boxes for DSC: gt (default: the ground-truth boxes) or tracker (the "
        "weight-free colour tracker on the generated frames)",
    )
    parser.add_argument(
        "--dsc-definition",
        default="official",
        help="official (default: the HyDRA eval_dsc.py, one box around all subjects, CLIPProcessor crop) or "
        "per-subject (each subject on its own box, frames squashed so boxes align; not the paper's number)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for generation and metric models")
    parser.add_argument("--lpips-backbone", default="alex", help="LPIPS network: alex (default) or vgg")
    parser.add_argument("--side-by-side-clips", type=int, default=1, help="clips that get a comparison video")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute results already in --out that were made from other data, checkpoints or settings "
        "(default: refuse them; a rerun with the same inputs resumes)",
    )
    parser.add_argument(
        "--allow-other-vae",
        action="store_true",
        help="use --vae although a checkpoint records that it was trained with another VAE (default: refuse)",
    )
    parser.set_defaults(func=_run_or_fail(parser))

    commands = parser.add_subparsers(dest="eval_command", metavar="{report}")
    report = commands.add_parser("report", help="re-render and print the report of an evaluation folder")
    report.add_argument("evaldir", help="folder written by `hybridmem eval --out`")
    report.add_argument("--compare-paper", action="store_true", help="print ours next to the paper's Table 2")
    report.add_argument(
        "--reference",
        help="method the paired differences are taken against (default: hydra if present, else the first)",
    )
    report.set_defaults(func=report_command)


def _run_or_fail(parser: argparse.ArgumentParser):
    def checked(args: argparse.Namespace) -> int:
        missing = [flag for flag, value in (("--data", args.data), ("--out", args.out)) if not value]
        if missing:
            parser.error(f"{' and '.join(missing)} required (or use `hybridmem eval report EVALDIR`)")
        return run(args)

    return checked
