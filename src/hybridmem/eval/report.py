"""Benchmark outputs: atomic JSON, aggregates, the markdown table, the paper comparison, plots and videos.

Per-clip metric values are a float, None (the region does not exist in that clip: no re-entry, no masks,
subject never visible) or a string: "not computed: ..." (the metric's weights are missing) or "n/a: ..." (the
clip cannot have it: no counterfactual renders for presence gain and motion score). Aggregates are means over
the clips that have a float, with that count and, per metric, how many clips each reason skipped; a metric
no clip could compute keeps its reason string.

The report leads with the re-entry metrics against counterfactual renders (presence gain, motion score:
hybridmem.eval.reentry), then the paper's Table 2 columns, then our re-entry/background pixel metrics.

Paired comparisons: for a reference method (hydra when present, else the first) against each other method,
per metric, over the clips where both have a value: the mean of the per-clip differences (reference minus
other), its 95% percentile-bootstrap confidence interval (BOOTSTRAP_RESAMPLES resamples of the clips with
replacement, numpy Generator seeded with BOOTSTRAP_SEED for every comparison, so a report is deterministic)
and the number of clips where each method is better (equal values are ties, counted for neither).

Shape letters: T frames, H/W pixels, M methods.
"""

from __future__ import annotations

import math
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from hybridmem import jsonio
from hybridmem.errors import DataError

# Re-entry against counterfactual renders (hybridmem.eval.reentry): the head of every table.
REENTRY_COLUMNS = [
    ("presence_gain", "Presence gain"),
    ("motion_score", "Motion score"),
]
# The paper's Table 2 column order: (key in our JSON, column title).
TABLE_COLUMNS = [
    ("psnr", "PSNR"),
    ("ssim", "SSIM"),
    ("lpips", "LPIPS"),
    ("dsc_ctx", "DSC_ctx"),
    ("dsc_gt", "DSC_GT"),
    ("subject_consistency", "Subject"),
    ("background_consistency", "Background"),
]
# Our additional pixel metrics (see hybridmem.eval.metrics for the region definitions).
EXTRA_COLUMNS = [
    ("reentry_psnr", "Re-entry PSNR"),
    ("reentry_ssim", "Re-entry SSIM"),
    ("reentry_box_psnr", "Re-entry box PSNR"),
    ("reentry_box_ssim", "Re-entry box SSIM"),
    ("background_psnr", "BG PSNR"),
    ("background_ssim", "BG SSIM"),
]
METRIC_KEYS = [key for key, _ in REENTRY_COLUMNS + TABLE_COLUMNS + EXTRA_COLUMNS]
NOT_COMPUTED = "not computed"
NOT_APPLICABLE = "n/a"  # prefix of a per-clip reason: the clip cannot have the metric
LOWER_IS_BETTER = {"lpips"}
DECIBEL_METRICS = {"presence_gain", "motion_score"}  # besides every *psnr* key: two decimals
# the metrics compared clip by clip in every report (those without per-clip numbers are left out)
PAIRED_METRICS = [
    *REENTRY_COLUMNS,
    *TABLE_COLUMNS,
    ("reentry_psnr", "Re-entry PSNR"),
    ("reentry_box_psnr", "Re-entry box PSNR"),
    ("background_psnr", "BG PSNR"),
]
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
METRIC_NOTES = (
    "PSNR and SSIM are means over frames of per-frame values (a frame's PSNR capped at 100 dB for identical "
    "frames), then over clips. The re-entry, re-entry box and BG columns are one value per clip from the "
    "region's pixels pooled over the clip (PSNR of the pooled squared error; SSIM map averaged over the "
    "region), then the mean over clips: see hybridmem.eval.metrics."
)
REENTRY_NOTES = (
    "Presence gain and motion score (dB; hybridmem.eval.reentry) compare contrast: the re-entering "
    "subject's pixels minus the mean of a ring of background around them, in the same image, over the "
    "target frames where ground truth shows the subject. Presence gain = PSNR of the generation's contrast "
    "against the truth's, minus the better of the erased render's and a flat image's (contrast 0): above 0 "
    "only when the subject is drawn where it is; a one-colour, colour-shifted or subject-less frame scores "
    "<= 0, ground truth the 100 dB cap minus that baseline. Motion score = 10 log10(contrast MSE against the "
    "frozen render / contrast MSE against the truth) over the true and the frozen subject's pixels, minus "
    "the same for the erased render: positive when the subject is where it went rather than where it was "
    "left; ground truth scores high, the frozen render low, the erased render 0. Scored only on clips with "
    "counterfactual renders."
)


# --- files ----------------------------------------------------------------------------------------


def write_bytes_atomic(path: str | Path, payload: bytes) -> None:
    """hybridmem.publish.write_bytes: temp file, checked, renamed; readers never see half a file."""
    from hybridmem import publish

    publish.write_bytes(path, payload)


def json_ready(value):
    """NaN -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | Path, record: dict) -> None:
    from hybridmem import publish

    publish.write_json(path, json_ready(record))


def read_json(path: str | Path) -> dict:
    """A JSON object of an evaluation folder; DataError naming the file and field (hybridmem.jsonio)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run `hybridmem eval` with --out {path.parent} first")
    return jsonio.read_json(path, fix="delete it and rerun `hybridmem eval`")


def paper_tables() -> dict:
    """The paper's published tables (package data paper_tables.json)."""
    resource = resources.files("hybridmem.eval").joinpath("paper_tables.json")
    return jsonio.loads(resource.read_bytes(), "hybridmem/eval/paper_tables.json")


# --- aggregation ----------------------------------------------------------------------------------


def aggregate_clips(clip_records: list[dict]) -> dict:
    """Mean of each metric over the clips that have a number; counts; reasons for metrics never computed;
    "skipped": {metric: {reason: clips}} for every metric some clips have a reason string for."""
    metrics, counts, skipped = {}, {}, {}
    for key in METRIC_KEYS:
        values = [record.get(key) for record in clip_records]
        numbers = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
        reasons = sorted({v for v in values if isinstance(v, str)})
        if reasons:
            skipped[key] = {reason: sum(v == reason for v in values) for reason in reasons}
        counts[key] = len(numbers)
        if numbers:
            metrics[key] = float(np.mean(numbers))
        elif reasons:
            metrics[key] = reasons[0]
        else:
            metrics[key] = None
    return {"metrics": metrics, "counts": counts, "skipped": skipped, "num_clips": len(clip_records)}


def per_clip_values(clip_records: list[dict]) -> dict:
    """{clip id: {metric: value}} of the finite numbers in each clip's record (for paired comparisons)."""
    table = {}
    for record in clip_records:
        values = {}
        for key in METRIC_KEYS:
            value = record.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                values[key] = float(value)
        table[str(record["clip"])] = values
    return table


def load_per_clip(eval_dir: str | Path, methods) -> dict:
    """{method: per_clip_values} from EVALDIR/clips/METHOD/*.json (an aggregate.json written before the
    summary carried per-clip values)."""
    per_clip = {}
    for method in methods:
        records = []
        for path in sorted((Path(eval_dir) / "clips" / method).glob("*.json")):
            records.append({"clip": path.stem, **read_json(path)})
        per_clip[method] = per_clip_values(records)
    return per_clip


def bootstrap_interval(
    differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of `differences` ("N"); NaNs when N < 2."""
    count = differences.size
    if count < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // count)  # bounded memory for many clips; same draws whatever the chunk
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = differences[rng.integers(0, count, size=(stop - start, count))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def paired_comparison(values_a: dict, values_b: dict, lower_is_better: bool = False) -> dict | None:
    """a - b over the clips both have: mean, 95% bootstrap interval, clips where each is better, ties."""
    shared = sorted(set(values_a) & set(values_b))
    if not shared:
        return None
    differences = np.array([values_a[clip] - values_b[clip] for clip in shared], dtype=np.float64)
    better_a = differences < 0 if lower_is_better else differences > 0
    better_b = differences > 0 if lower_is_better else differences < 0
    low, high = bootstrap_interval(differences)
    return {
        "mean": float(differences.mean()),
        "ci_low": low,
        "ci_high": high,
        "a_better": int(better_a.sum()),
        "b_better": int(better_b.sum()),
        "ties": int((differences == 0).sum()),
        "clips": len(shared),
    }


def default_reference(methods) -> str:
    methods = list(methods)
    return "hydra" if "hydra" in methods else methods[0]


def paired_lines(
    per_clip: dict, reference: str | None = None, metrics=PAIRED_METRICS, methods=None
) -> list[str]:
    """Markdown of `reference` minus every other method, per metric, over their shared clips.

    methods: every method of the run (default: those of `per_clip`); one without per-clip values cannot be
    paired, and a line says so rather than leaving it out silently."""
    methods = list(per_clip) if methods is None else list(methods)
    if len(methods) < 2:
        return []
    reference = reference or default_reference(methods)
    if reference not in methods:
        raise DataError(f"--reference '{reference}' is not a method of this run; valid: {', '.join(methods)}")
    unpaired = [name for name in methods if not per_clip.get(name)]
    note = (
        [
            f"{', '.join(unpaired)}: no per-clip values, left out of the paired comparisons (rerun "
            "`hybridmem eval` to record them).",
            "",
        ]
        if unpaired
        else []
    )
    if reference in unpaired:
        return note
    rows = []
    for other in (name for name in methods if name != reference and name not in unpaired):
        for key, title in metrics:
            values = [
                {clip: values[key] for clip, values in per_clip[name].items() if key in values}
                for name in (reference, other)
            ]
            paired = paired_comparison(*values, lower_is_better=key in LOWER_IS_BETTER)
            if paired is None:
                continue
            digits = 2 if "psnr" in key or key in DECIBEL_METRICS else 3
            interval = (
                f"[{paired['ci_low']:+.{digits}f}, {paired['ci_high']:+.{digits}f}]"
                if math.isfinite(paired["ci_low"])
                else "n/a (1 clip)"
            )
            rows.append(
                f"| {other} | {title} | {paired['mean']:+.{digits}f} | {interval} | {paired['a_better']} | "
                f"{paired['b_better']} | {paired['clips']} |"
            )
    if not rows:
        return note
    return [
        *note,
        f"{reference} minus each other method, paired over the clips both have a value for: mean "
        f"difference, its 95% bootstrap confidence interval ({BOOTSTRAP_RESAMPLES} resamples of the clips, "
        f"seed {BOOTSTRAP_SEED}) and the clips where each method is better (ties count for neither). An "
        "interval that excludes 0 is a gap larger than the clip-to-clip variation; one clip gives no "
        f"interval. LPIPS is lower-better, so a negative difference favours {reference}.",
        "",
        f"| {reference} vs | Metric | {reference} - other | 95% CI | {reference} better | other better "
        "| clips |",
        "|---|---|---:|---|---:|---:|---:|",
        *rows,
    ]


def format_value(value, digits: int = 3) -> str:
    if isinstance(value, str):
        return NOT_APPLICABLE if value.startswith(NOT_APPLICABLE) else NOT_COMPUTED
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _table(rows: dict, columns: list) -> list[str]:
    lines = ["| Method | " + " | ".join(title for _, title in columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    for method, metrics in rows.items():
        cells = [format_value(metrics.get(key)) for key, _ in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def reentry_lines(summary: dict) -> list[str]:
    """The report's head: presence gain and motion score per method, the clips each was scored on, the
    definitions and why the other clips were not scored."""
    entries = summary["methods"]
    total = summary.get("num_clips", "?")
    lines = [
        "| Method | " + " | ".join(f"{title} (dB)" for _, title in REENTRY_COLUMNS) + " | clips scored |",
        "|---|" + "---:|" * (len(REENTRY_COLUMNS) + 1),
    ]
    for method, entry in entries.items():
        cells = [format_value(entry["metrics"].get(key), 2) for key, _ in REENTRY_COLUMNS]
        counts = entry.get("counts", {})
        scored = " / ".join(str(counts.get(key, 0)) for key, _ in REENTRY_COLUMNS)
        clips = entry.get("num_clips", total)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {scored} of {clips} |")
    skipped = {}
    for entry in entries.values():
        for key, _ in REENTRY_COLUMNS:
            for reason, count in entry.get("skipped", {}).get(key, {}).items():
                skipped[reason] = max(skipped.get(reason, 0), count)
    lines += ["", REENTRY_NOTES + " Clips scored: presence / motion."]
    if skipped:
        lines += ["Not scored:"]
        lines += [
            f"- {count} clip(s): {reason.removeprefix(NOT_APPLICABLE + ': ')}"
            for reason, count in sorted(skipped.items())
        ]
    return lines


def markdown_report(summary: dict, reference: str | None = None) -> str:
    """The aggregate as markdown: presence gain and motion score first, then Table 2 column order, our
    re-entry and background pixel metrics, then the paired per-clip comparisons (from summary["per_clip"];
    `hybridmem eval report` fills it for older runs)."""
    from hybridmem.eval.dsc import DSC_DEFINITIONS

    methods = {name: entry["metrics"] for name, entry in summary["methods"].items()}
    definition = summary.get("dsc_definition", "per-subject (written before --dsc-definition existed)")
    dsc_counts = {
        name: entry.get("counts", {}).get("dsc_gt", 0)
        for name, entry in summary["methods"].items()
        if isinstance(entry["metrics"].get("dsc_gt"), float)
    }
    lines = [
        "# hybridmem benchmark",
        "",
        f"Data: `{summary.get('data', '?')}` split `{summary.get('split', '?')}`, "
        f"{summary.get('num_clips', '?')} clips, seed {summary.get('seed', '?')}, "
        f"sampling steps {summary.get('steps') or 'pipeline default'}.",
        f"DSC definition (`--dsc-definition`): {definition}"
        + (f", {DSC_DEFINITIONS[definition]}" if definition in DSC_DEFINITIONS else "")
        + ".",
        f"Predicted-subject boxes for DSC (`--boxes gt|tracker`): {summary.get('boxes', '?')}, "
        f"{summary.get('box_source_text', '?')}. (The official script tracks the subject in the generated "
        "frames with YOLOv11, not released; `tracker` is our weight-free stand-in, `gt` scores the subject "
        "where the ground truth has it.)",
    ]
    if dsc_counts:
        lines.append(
            "DSC scored on "
            + ", ".join(
                f"{count} of {summary.get('num_clips', '?')} clips ({name})"
                for name, count in dsc_counts.items()
            )
            + " (a clip whose context, target or prediction never shows a subject has no DSC)."
        )
    lines += [
        "",
        "## Re-entry against counterfactual renders",
        "",
        *reentry_lines(summary),
        "",
        "## Table 2 metrics (paper column order)",
        "",
        *_table(methods, TABLE_COLUMNS),
        "",
        "## Re-entry and background (pixel metrics)",
        "",
        *_table(methods, EXTRA_COLUMNS),
        "",
        METRIC_NOTES + " n/a: no clip has that region (no re-entry, no masks). LPIPS lower is better; "
        "everything else higher is better. Subject/Background (VBench) reward temporal stability, so a "
        "frozen video scores 1: read them with PSNR and DSC. DSC compares every frame with every frame, so "
        "even a perfect prediction scores the subject's self-similarity, not 1.",
    ]
    paired = paired_lines(summary.get("per_clip", {}), reference, methods=list(summary["methods"]))
    if paired:
        lines += ["", "## Paired differences over clips", "", *paired]
    reasons = sorted(
        {
            f"{key}: {value}"
            for entry in methods.values()
            for key, value in entry.items()
            if isinstance(value, str) and not value.startswith(NOT_APPLICABLE)
        }
    )
    if reasons:
        lines += ["", "Not computed:", *[f"- {reason}" for reason in reasons]]
    return "\n".join(lines) + "\n"


def compare_paper_text(summary: dict, table: str = "table2") -> str:
    """Our aggregate rows next to the paper's, labelled as a different scale and data."""
    paper = paper_tables()[table]
    columns = [(key, title) for key, title in TABLE_COLUMNS if key in paper["columns"]]
    ours = {f"ours: {name}": entry["metrics"] for name, entry in summary["methods"].items()}
    published = {
        f"paper: {name}": dict(zip(paper["columns"], values, strict=True))
        for name, values in paper["rows"].items()
    }
    lines = [
        f"Paper: {paper['source']}.",
        f"Paper scale: {paper['scale']}.",
        f"Ours: {summary.get('num_clips', '?')} clips of `{summary.get('data', '?')}` "
        f"(split {summary.get('split', '?')}); a different model scale and different data, so the numbers "
        "are not directly comparable: compare the ordering of methods, not the values.",
        "",
        *_table({**ours, **published}, columns),
    ]
    return "\n".join(lines) + "\n"


# --- plots and videos -----------------------------------------------------------------------------


def reentry_aligned_curves(curves: list[tuple[list, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean per-frame value aligned on each clip's re-entry frame: (offsets "K", means "K"), NaN-aware."""
    if not curves:
        return np.zeros(0), np.zeros(0)
    low = min(-entry for _, entry in curves)
    high = max(len(values) - entry for values, entry in curves)
    offsets = np.arange(low, high)
    stacked = np.full((len(curves), offsets.size), np.nan)
    for row, (values, entry) in enumerate(curves):
        values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        start = -entry - low
        stacked[row, start : start + values.size] = values
    with warnings.catch_warnings():  # an offset that no clip reaches is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return offsets, np.nanmean(stacked, axis=0)


def plot_reentry_psnr(curves_by_method: dict, path: str | Path) -> None:
    """PNG of mean per-frame PSNR against frames since re-entry (0 = re-entry frame), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for method, curves in curves_by_method.items():
        offsets, means = reentry_aligned_curves(curves)
        if offsets.size:
            axis.plot(offsets, means, marker=".", label=f"{method} ({len(curves)} re-entries)")
    axis.axvline(0, color="black", linestyle="--", linewidth=1)
    axis.set_xlabel("target frame - re-entry frame")
    axis.set_ylabel("PSNR (dB), mean over clips")
    axis.set_title("Per-frame PSNR aligned on subject re-entry")
    if curves_by_method and any(curves_by_method.values()):
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no re-entry in the evaluated clips", ha="center", transform=axis.transAxes)
    figure.tight_layout()
    from hybridmem import publish

    try:
        with publish.staged(path, check=publish.check_png) as temp:
            figure.savefig(temp, dpi=100, format="png")
    finally:
        plt.close(figure)


def _label(frame: "H W 3", text: str) -> "H W 3":
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, min(frame.shape[1], 7 * len(text) + 4), 12], fill=(0, 0, 0))
    draw.text((2, 0), text, fill=(255, 255, 255))
    return np.asarray(image)


def side_by_side_frames(ground_truth: "T H W 3", predictions: dict, reentry_frame: int | None) -> "T H W' 3":
    """Ground truth then each method, left to right, labelled; a red border on frames from re-entry on."""
    columns = {"ground truth": ground_truth, **predictions}
    frames = []
    for index in range(ground_truth.shape[0]):
        tiles = []
        for name, video in columns.items():
            tile = video[index].copy()
            if reentry_frame is not None and index >= reentry_frame:
                border = 3 if index == reentry_frame else 1
                for edge in (np.s_[:border], np.s_[-border:], np.s_[:, :border], np.s_[:, -border:]):
                    tile[edge] = (255, 0, 0)
            tiles.append(_label(tile, name if reentry_frame != index else f"{name} RE-ENTRY"))
        frames.append(np.concatenate(tiles, axis=1))
    return np.stack(frames)


def write_side_by_side(
    ground_truth: "T H W 3", predictions: dict, reentry_frame: int | None, stem: str | Path, fps: float
) -> list[Path]:
    """stem.mp4 (H.264, crf 0) and stem.gif of the side-by-side strip, both written and checked before either
    is published (hybridmem.publish)."""
    from hybridmem import publish

    frames = side_by_side_frames(ground_truth, predictions, reentry_frame)
    stem = Path(stem)
    # libx264 in yuv420p needs even sizes: stage_video pads by repeating the last row/column
    video = publish.stage_video(stem.with_suffix(".mp4"), frames, fps, crf=0)
    try:
        gif = publish.stage_gif(stem.with_suffix(".gif"), frames, fps)
    except BaseException:
        video.discard()
        raise
    return publish.publish_together([video, gif])
