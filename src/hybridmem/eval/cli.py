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


def run(args: argparse.Namespace) -> int:
    from hybridmem.eval.protocol import EvalConfig, run_evaluation
    from hybridmem.eval.report import markdown_report

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
    )
    summary = run_evaluation(config)
    print(markdown_report(summary))
    print(f"hybridmem eval: wrote report.md, aggregate.json, reentry_psnr.png, side_by_side/ in {args.out}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    from hybridmem.eval.protocol import write_outputs
    from hybridmem.eval.report import compare_paper_text, markdown_report, read_json, write_bytes_atomic

    folder = Path(args.evaldir)
    summary = read_json(folder / "aggregate.json")
    check_aggregate(summary, folder / "aggregate.json")
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
