"""What limits presence gain: how predictable the returning subject is, and whether a model fits it at all.

    .venv/bin/python benchmarks/reentry_bounds.py extrapolate --data runs/hmw160 --split test \
        --out runs/bounds/test
    .venv/bin/python benchmarks/reentry_bounds.py probe --data runs/hmw160 --split train --clips 16 \
        --out runs/bounds/train_probe

`extrapolate` re-renders each clip's target with the re-entering subject walking on from where it was last
seen in a straight line at its velocity there (hybridmem.world.counterfactual.extrapolated_plan) and scores
that render, the frozen render and the erased render as if they were generations (hybridmem.eval.reentry),
over the whole target and over the first EARLY frames after the re-entry. A model that read the subject's
motion off the context perfectly and extrapolated it would draw about the extrapolated render; if even that
scores little presence, the re-entry position is not in the context and no deterministic model can draw the
subject where it is (it can only draw a blur over the likely places, or a sharp subject in one of them). It
also reports how much the true subject overlaps the frozen and the extrapolated ones (mask IoU).

`probe` copies clips of a split without counterfactuals (train) into OUT/test/ with counterfactuals rendered
the way the generator renders them for val/test, so `benchmarks/world_curve.py --data OUT --split test`
scores a model on clips it trained on: presence near 0 there too means the model does not even fit the
returning subject (a learning limit), not that it fails to generalise.

Writes OUT/bounds.json (per clip and the means with 95% bootstrap intervals) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from hybridmem.data.counterfactual import COUNTERFACTUALS_FILE, save_counterfactuals
from hybridmem.data.encode import list_clip_folders
from hybridmem.data.hmworld import load_clip
from hybridmem.eval.reentry import presence_gain, reentry_metrics
from hybridmem.eval.report import bootstrap_interval
from hybridmem.world import events
from hybridmem.world.config import WorldConfig
from hybridmem.world.counterfactual import extrapolated_plan, render_counterfactuals
from hybridmem.world.plan import ClipPlan
from hybridmem.world.render import Renderer

EARLY = 8  # target frames from the re-entry on, for the "early" columns (where the context says most)


def clip_plan_and_config(folder: Path) -> tuple[ClipPlan, WorldConfig]:
    metadata = json.loads((folder / "metadata.json").read_text())
    return ClipPlan.from_dict(metadata["plan"]), WorldConfig.from_dict(metadata["config"])


def mask_iou(a: "T H W", b: "T H W") -> float:
    """Intersection over union of two boolean masks, pooled over frames (nan when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else math.nan


def summary(values: list[float]) -> dict:
    finite = np.array(
        [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)], dtype=np.float64
    )
    if finite.size == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "clips": 0}
    low, high = bootstrap_interval(finite)
    return {"mean": float(finite.mean()), "ci_low": low, "ci_high": high, "clips": int(finite.size)}


def extrapolate(args) -> dict:
    rows = []
    renderers: dict[tuple, Renderer] = {}
    try:
        for folder in list_clip_folders(args.data, args.split)[: args.clips]:
            clip = load_clip(folder)
            cf = clip.counterfactuals
            if cf is None:
                print(f"{folder.name}: skipped ({clip.counterfactuals_note})", flush=True)
                continue
            plan, config = clip_plan_and_config(folder)
            key = (config.width, config.height, config.supersample)
            if key not in renderers:
                renderers[key] = Renderer(config.width, config.height, supersample=config.supersample)
            s = cf.subject_id - 1
            moved = renderers[key].render(
                extrapolated_plan(plan, s, cf.last_seen_frame, config.context_frames, history=args.history)
            )
            truth_ids = clip.instance_ids[clip.target] == cf.subject_id
            early = slice(cf.entry_frame - clip.context_frames, cf.entry_frame - clip.context_frames + EARLY)
            row = {"clip": folder.name, "subject": cf.subject_id}
            generations = {
                "extrapolated": np.asarray(moved.frames, np.uint8),
                "frozen": cf.frozen_frames,
                "erased": cf.erased_frames,
            }
            for name, frames in generations.items():
                scores = reentry_metrics(clip, frames)
                row[f"{name}_presence"] = scores["presence_gain"]
                row[f"{name}_motion"] = scores["motion_score"]
                early_presence = presence_gain(
                    frames[early],
                    clip.frames[clip.target][early],
                    cf.erased_frames[early],
                    clip.instance_ids[clip.target][early],
                    cf.subject_id,
                )["presence_gain"]
                row[f"{name}_presence_early"] = float(early_presence)
            row["iou_frozen"] = mask_iou(truth_ids, cf.frozen_ids == cf.subject_id)
            row["iou_extrapolated"] = mask_iou(truth_ids, np.asarray(moved.instance_ids) == cf.subject_id)
            row["iou_frozen_early"] = mask_iou(truth_ids[early], (cf.frozen_ids == cf.subject_id)[early])
            row["iou_extrapolated_early"] = mask_iou(
                truth_ids[early], (np.asarray(moved.instance_ids) == cf.subject_id)[early]
            )
            row["hidden_frames"] = cf.entry_frame - cf.last_seen_frame - 1
            rows.append(row)
            print(
                f"{folder.name}: hidden {row['hidden_frames']:2d} frames | presence extrapolated "
                f"{_fmt(row['extrapolated_presence'])} (early {_fmt(row['extrapolated_presence_early'])}) "
                f"frozen {_fmt(row['frozen_presence'])} | IoU with truth: frozen {row['iou_frozen']:.2f}, "
                f"extrapolated {row['iou_extrapolated']:.2f}",
                flush=True,
            )
    finally:
        for renderer in renderers.values():
            renderer.close()
    columns = [key for key in rows[0] if key not in ("clip", "subject")] if rows else []
    return {"rows": rows, "means": {key: summary([row[key] for row in rows]) for key in columns}}


def probe(args) -> dict:
    """Copy clips of a split into OUT/test/ with their counterfactuals rendered; returns what was written."""
    out = Path(args.out) / "test"
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    renderers: dict[tuple, Renderer] = {}
    try:
        for folder in list_clip_folders(args.data, args.split)[: args.clips]:
            target = out / folder.name
            if (target / COUNTERFACTUALS_FILE).is_file():
                written.append(folder.name)
                continue
            plan, config = clip_plan_and_config(folder)
            key = (config.width, config.height, config.supersample)
            if key not in renderers:
                renderers[key] = Renderer(config.width, config.height, supersample=config.supersample)
            rendered = renderers[key].render(plan)
            fractions = events.visible_fractions(rendered.instance_ids, rendered.full_pixels)
            visible = events.visibility_states(fractions, config.visible_threshold, config.hidden_threshold)
            found = events.reentering_subject(
                visible, context_frames=config.context_frames, min_hidden_frames=config.min_hidden_frames
            )
            if found is None:
                skipped.append(folder.name)
                continue
            s, last_seen, entry = found
            cf = render_counterfactuals(renderers[key], plan, s, last_seen, entry, config.context_frames)
            staging = out / f".{folder.name}.staging"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(folder, staging)
            metadata = json.loads((staging / "metadata.json").read_text())
            metadata["probe_of_split"] = metadata.get("split")
            metadata["split"] = "test"  # so the loader reads the counterfactuals
            metadata["counterfactuals"] = {
                "file": COUNTERFACTUALS_FILE,
                "subject_id": cf.subject_id,
                "last_seen_frame": cf.last_seen_frame,
                "entry_frame": cf.entry_frame,
            }
            (staging / "metadata.json").write_text(json.dumps(metadata, indent=1))
            save_counterfactuals(staging / COUNTERFACTUALS_FILE, cf)
            staging.rename(target)
            written.append(folder.name)
            print(
                f"{folder.name}: subject {cf.subject_id}, last seen {last_seen}, back at {entry}", flush=True
            )
    finally:
        for renderer in renderers.values():
            renderer.close()
    return {"written": written, "skipped_no_reentry": skipped, "source": str(args.data), "split": args.split}


def _fmt(value) -> str:
    return f"{value:+6.2f}" if isinstance(value, float) and math.isfinite(value) else "   n/a"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("extrapolate", "probe"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--history", type=int, default=4, help="frames the last seen velocity is taken over")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = extrapolate(args) if args.mode == "extrapolate" else probe(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bounds.json").write_text(json.dumps({"args": vars(args), **result}, indent=1, default=str))
    if args.mode == "extrapolate":
        print(f"\nmeans over clips (95% bootstrap interval), {args.data} {args.split}:")
        for key, value in result["means"].items():
            print(
                f"  {key:28s} {value['mean']:+7.2f} [{value['ci_low']:+.2f}, {value['ci_high']:+.2f}] "
                f"n={value['clips']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
