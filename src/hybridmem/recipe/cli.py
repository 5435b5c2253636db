"""`hybridmem recipe`: the reference run in one resumable command, and its export.

    hybridmem recipe --budget smoke --out runs/ref_smoke
    hybridmem recipe --budget cpu --out runs/ref_cpu                   # kill and rerun: finished stages skip
    hybridmem recipe --budget gpu --out runs/ref_gpu --device cuda
    hybridmem recipe --budget cpu --out runs/ref_cpu --until encode-val      # data, VAE, caches; then stop
    hybridmem recipe export runs/ref_cpu --to src/hybridmem/assets/checkpoints --overwrite   # replace it
    hybridmem recipe summary runs/ref_cpu          # results section: tables, paired comparisons, stages

Budgets: smoke (minutes on one core), cpu (2.4 h on 2 cores, measured: HM-World's camera, straight-line
subjects, the mean objective; the checkpoints shipped now), cpu-wide (2.4 h, measured: the wide camera, the
checkpoints shipped until 2026-12-02), gpu (one GPU, bf16).
RUN_DIR/recipe.json records each stage's exact command, wall time, rate and machine; RUN_DIR/eval/report.md
is the comparison table. See docs/REFERENCE_RUN.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from hybridmem.recipe.budgets import get_budget
    from hybridmem.recipe.recipe import run_recipe

    budget = get_budget(args.budget)
    record = run_recipe(budget, args.out, device=args.device, weights_dir=args.weights_dir, until=args.until)
    if args.until is not None and args.until != "eval":
        print(f"hybridmem recipe: stopped after stage {args.until}; rerun without --until to continue")
        return 0
    evaldir = Path(args.out) / "eval"
    if record["invocations"][-1]["ran"] == []:  # the eval stage printed the table when it ran
        print((evaldir / "report.md").read_text())
    print(
        f"hybridmem recipe: done. table {evaldir / 'report.md'}, plot {evaldir / 'reentry_psnr.png'}, "
        f"videos {evaldir / 'side_by_side'}, record {Path(args.out) / 'recipe.json'}"
    )
    return 0


def export_command(args: argparse.Namespace) -> int:
    from hybridmem.recipe.export import export_run, exported_models

    folder = export_run(args.run_dir, args.to, overwrite=args.overwrite)
    vae, *worlds = exported_models()
    print(f"hybridmem recipe export: wrote {folder} ({vae.upper()} and {', '.join(worlds)})")
    return 0


def summary_command(args: argparse.Namespace) -> int:
    from hybridmem.recipe.summary import write_results

    path = write_results(args.run_dir)
    print(path.read_text())
    print(f"hybridmem recipe summary: wrote {path}")
    return 0


def register(subparsers) -> None:
    # No choices= from the budget registry: get_budget names the valid budgets on a bad one.
    parser = subparsers.add_parser(
        "recipe",
        help="the reference run (data, VAE, four world models, benchmark) in one resumable command",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--budget", help="smoke | cpu | gpu | cpu-wide")
    parser.add_argument("--out", help="run folder (created; rerun the same command to resume)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--weights-dir",
        help="metric weights for the benchmark (see `hybridmem eval --help`); missing ones: not computed",
    )
    parser.add_argument(
        "--until",
        help="stop after this stage (e.g. encode-val: data, VAE and caches only); rerun without it to go on",
    )
    parser.set_defaults(func=_run_or_fail(parser))

    commands = parser.add_subparsers(dest="recipe_command", metavar="{export,summary}")
    export = commands.add_parser("export", help="copy a finished run's VAE and world models (EMA) + manifest")
    export.add_argument("run_dir", help="folder written by `hybridmem recipe --out`")
    export.add_argument(
        "--to", required=True, help="destination: a new or empty folder (or an earlier export, --overwrite)"
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the earlier export in --to (its manifest.json and model folders; other files are kept)",
    )
    export.set_defaults(func=export_command)
    summary = commands.add_parser(
        "summary", help="a finished run's results as markdown (our table, the paper's, paired comparisons)"
    )
    summary.add_argument("run_dir", help="folder written by `hybridmem recipe --out`")
    summary.set_defaults(func=summary_command)


def _run_or_fail(parser: argparse.ArgumentParser):
    def checked(args: argparse.Namespace) -> int:
        missing = [flag for flag, value in (("--budget", args.budget), ("--out", args.out)) if not value]
        if missing:
            parser.error(
                f"{' and '.join(missing)} required (or use `hybridmem recipe export|summary RUN_DIR`)"
            )
        return run(args)

    return checked
