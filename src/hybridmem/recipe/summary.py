"""The results of a finished recipe run as one markdown section, ready for a README.

    hybridmem recipe summary runs/ref_cpu                 # prints it and writes runs/ref_cpu/results.md

It reads only what the run wrote: RUN/recipe.json (commands, wall times, rates, machine, code version) and
RUN/eval (aggregate.json and the per-clip records under clips/). The section holds:
1. where and how: the recipe command, code version, machine, total wall time;
2. the benchmark in the paper's Table 2 column order plus our re-entry pixel metrics and the re-entry
   metrics against counterfactual renders (presence gain, motion score: hybridmem.eval.reentry; n/a on
   clips without those renders), with each world model's training rate and wall time;
3. the paper's Table 2 beside it, labelled as a different scale and data;
4. paired per-clip comparisons of hydra against every other method, presence gain and motion score first
   (mean difference, its 95% bootstrap confidence interval over clips, and the clips each method wins:
   hybridmem.eval.report.paired_lines, the same table `hybridmem eval report` prints), so a reader can
   tell a difference from noise;
5. every stage's exact command, wall time and rate.
"""

from __future__ import annotations

import os
from pathlib import Path

from hybridmem.errors import DataError
from hybridmem.eval import report
from hybridmem.recipe.recipe import read_record

RESULTS_FILE = "results.md"
SUMMARY_COLUMNS = [
    *report.TABLE_COLUMNS,
    ("reentry_psnr", "Re-entry PSNR"),
    ("reentry_box_psnr", "Re-entry box PSNR"),
    # after the Table 2 columns (a reader compares those with the paper's rows below); dB, 2 decimals
    *report.REENTRY_COLUMNS,
]


def _read_json(path: Path, fix: str) -> dict:
    from hybridmem import jsonio

    if not path.exists():
        raise DataError(f"{path}: missing; {fix}")
    return jsonio.read_json(path, fix=fix)


def _size_text(budget: dict) -> str:
    """The frame size as the budget states it: "128 px" for square frames, "160x96" otherwise."""
    width, height = budget["width"], budget.get("height", budget["width"])
    return f"{width} px" if width == height else f"{width}x{height}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _rate(entry: dict) -> str:
    unit = entry.get("unit", "steps")
    value = entry.get(f"{unit}_per_s")
    return f"{value:.3g} {unit}/s" if isinstance(value, int | float) else "-"


def _machine_text(machine: dict) -> str:
    parts = [
        machine.get("platform", "?"),
        f"{machine.get('cpus_usable', '?')} of {machine.get('cpu_count', '?')} CPUs usable",
        f"torch {machine.get('torch', '?')} ({machine.get('torch_threads', '?')} threads)",
        f"device {machine.get('device', '?')}",
    ]
    if machine.get("gpu"):
        parts.append(machine["gpu"])
    return ", ".join(parts)


def _code_text(code: dict | None) -> str:
    if not code:
        return "not recorded (a run started before recipe.json recorded it)"
    text = f"hybridmem {code.get('version', '?')}"
    if code.get("commit"):
        text += f", commit `{code['commit'][:12]}`" + (
            " with uncommitted changes" if code.get("dirty") else ""
        )
    return text


def _code_by_stage(stages: dict) -> str:
    """The code each stage's finishing attempt ran, grouped: one text when all stages ran the same."""
    groups: dict[str, list[str]] = {}
    for name, entry in stages.items():
        groups.setdefault(_code_text(entry["attempts"][-1].get("code")), []).append(name)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(names)}: {text}" for text, names in groups.items())


def _scored_text(aggregate: dict) -> str:
    """How many clips the re-entry metrics were scored on, and why not the others."""
    counts = {
        name: entry.get("counts", {}).get("presence_gain", 0) for name, entry in aggregate["methods"].items()
    }
    reasons = sorted(
        {
            reason.removeprefix(f"{report.NOT_APPLICABLE}: ")
            for entry in aggregate["methods"].values()
            for reason in entry.get("skipped", {}).get("presence_gain", {})
        }
    )
    scored = max(counts.values(), default=0)
    text = f" Presence gain and motion score scored on {scored} of {aggregate.get('num_clips', '?')} clips"
    return text + (f" (the others: {'; '.join(reasons)})." if reasons else ".")


def results_markdown(run_dir: str | os.PathLike) -> str:
    """The markdown section described in the module docstring; raises DataError on an unfinished run."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    stages = record.get("stages", {})
    unfinished = [name for name, entry in stages.items() if entry.get("status") != "done"]
    if unfinished or "eval" not in stages:
        raise DataError(
            f"{run_dir}: the run is not finished (stages not done: {', '.join(unfinished) or 'eval'}); "
            f"rerun its `hybridmem recipe --budget {record['budget']['name']} --out {run_dir}` to finish it"
        )
    eval_dir = run_dir / "eval"
    aggregate = _read_json(eval_dir / "aggregate.json", "rerun the recipe's eval stage")
    budget = record["budget"]
    last = stages["eval"]["attempts"][-1]
    total = sum(entry.get("wall_s", 0.0) for entry in stages.values())
    started = stages[next(iter(stages))]["attempts"][0]["started"][:16]
    finished = stages["eval"]["finished"][:16]

    outside = [name for name, entry in stages.items() if entry.get("outside_recipe")]
    # 1. where and how
    lines = [
        f"Budget `{budget['name']}` ({budget.get('description', '')}): "
        f"`hybridmem recipe --budget {budget['name']} --out {run_dir}`.",
        "",
        f"- Code: {_code_by_stage(stages)}.",
        f"- Machine: {_machine_text(last.get('machine', {}))}.",
        f"- Wall time: {_hours(total)} over all stages (started {started} UTC, finished {finished} UTC)"
        + (
            f"; {', '.join(outside)} ran outside the recipe with its commands (see each attempt's note in "
            "recipe.json), some at once, so the stages overlap in time."
            if outside
            else "."
        ),
        f"- Benchmark: {aggregate.get('num_clips', '?')} held-out test clips (unseen scenes or subjects), "
        f"{aggregate.get('steps') or 'default'} sampling steps, seed {aggregate.get('seed', '?')}; "
        f"each world model trained {budget['world_steps']} steps at batch {budget['world_batch_size']} on "
        f"{budget['train_clips']} clips of {budget['context_frames']} + {budget['target_frames']} frames at "
        f"{_size_text(budget)}, preset `{budget['world_preset']}`.",
        "",
    ]
    # 2. our table, with training cost per world model
    methods = {name: entry["metrics"] for name, entry in aggregate["methods"].items()}
    header = (
        "| Method | " + " | ".join(title for _, title in SUMMARY_COLUMNS) + " | train steps/s | train wall |"
    )
    lines += [header, "|---|" + "---:|" * (len(SUMMARY_COLUMNS) + 2)]
    for name, metrics in methods.items():
        cells = [
            report.format_value(metrics.get(key), 2 if key in report.DECIBEL_METRICS else 3)
            for key, _ in SUMMARY_COLUMNS
        ]
        stage = stages.get(f"world-{name}")
        if stage:
            cells += [f"{stage.get('steps_per_s', float('nan')):.2f}", _hours(stage.get("wall_s", 0.0))]
        else:
            cells += ["-", "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    reasons = sorted(
        {
            f"{key}: {value}"
            for m in methods.values()
            for key, value in m.items()
            if isinstance(value, str) and not value.startswith(report.NOT_APPLICABLE)
        }
    )
    definition = aggregate.get("dsc_definition", "per-subject (written before --dsc-definition existed)")
    lines += [
        "",
        "PSNR in dB. Re-entry PSNR: frames from the first re-entry on; re-entry box PSNR: inside the "
        "re-entering subjects' ground-truth boxes (see `hybridmem.eval.metrics`). "
        + report.METRIC_NOTES
        + f" DSC: `--dsc-definition {definition}`, predicted boxes `--boxes {aggregate.get('boxes', '?')}`. "
        "LPIPS lower is better, everything else higher.",
        "",
        report.REENTRY_NOTES + _scored_text(aggregate),
    ]
    if reasons:
        lines += ["Not computed (the metric networks' weights were not on disk; nothing is downloaded):"]
        lines += [f"- {reason}" for reason in reasons]
    # 3. the paper's numbers, labelled
    paper = report.paper_tables()["table2"]
    columns = [(key, title) for key, title in report.TABLE_COLUMNS if key in paper["columns"]]
    lines += [
        "",
        f"The paper's Table 2, for reference only: {paper['scale']}.",
        "",
        "| Paper method | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, values in paper["rows"].items():
        row = dict(zip(paper["columns"], values, strict=True))
        lines.append(f"| {name} | " + " | ".join(report.format_value(row[key]) for key, _ in columns) + " |")
    # 4. paired comparisons: hydra against each other method, clip by clip, with bootstrap intervals
    if "hydra" in methods:
        per_clip = aggregate.get("per_clip") or report.load_per_clip(eval_dir, methods)
        lines += ["", *report.paired_lines(per_clip, "hydra")]
    # 5. every stage
    lines += ["", "| Stage | Wall | Rate | Command |", "|---|---:|---:|---|"]
    for name, entry in stages.items():
        lines.append(
            f"| {name} | {_hours(entry.get('wall_s', 0.0))} | {_rate(entry)} | `{entry['command']}` |"
        )
    return "\n".join(lines) + "\n"


def write_results(run_dir: str | os.PathLike) -> Path:
    """Write RUN/results.md atomically; returns its path."""
    path = Path(run_dir) / RESULTS_FILE
    report.write_bytes_atomic(path, results_markdown(run_dir).encode())
    return path
