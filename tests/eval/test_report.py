import json
import math

import numpy as np
import pytest

from hybridmem.errors import DataError
from hybridmem.eval import report


def test_aggregate_means_numbers_and_keeps_not_computed_reasons():
    records = [
        {"psnr": 20.0, "lpips": "not computed: weights not found at /w/lpips/alex.pth", "reentry_psnr": None},
        {"psnr": 30.0, "lpips": "not computed: weights not found at /w/lpips/alex.pth", "reentry_psnr": 12.0},
        {"psnr": math.nan, "lpips": "not computed: weights not found at /w/lpips/alex.pth"},
    ]
    summary = report.aggregate_clips(records)
    assert summary["metrics"]["psnr"] == 25.0 and summary["counts"]["psnr"] == 2
    assert summary["metrics"]["reentry_psnr"] == 12.0 and summary["counts"]["reentry_psnr"] == 1
    assert summary["metrics"]["lpips"].startswith("not computed: weights not found at /w/lpips")
    assert summary["metrics"]["dsc_gt"] is None and summary["num_clips"] == 3


def test_json_ready_turns_nan_into_null(tmp_path):
    path = tmp_path / "x.json"
    report.write_json_atomic(path, {"a": math.nan, "b": np.float32(2.5), "c": np.array([1.0, np.nan])})
    assert json.loads(path.read_text()) == {"a": None, "b": 2.5, "c": [1.0, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_reentry_alignment_offsets_and_means():
    offsets, means = report.reentry_aligned_curves([([1.0, 2.0, 3.0], 1), ([10.0, 20.0], 0)])
    np.testing.assert_array_equal(offsets, [-1, 0, 1])
    np.testing.assert_allclose(means, [1.0, 6.0, 11.5])


def test_markdown_columns_follow_paper_table_order():
    summary = {"methods": {"m": report.aggregate_clips([{"psnr": 21.0, "ssim": 0.5}])}}
    text = report.markdown_report(summary)
    assert "| Method | PSNR | SSIM | LPIPS | DSC_ctx | DSC_GT | Subject | Background |" in text
    assert "| m | 21.000 | 0.500 | n/a |" in text
    paper = report.paper_tables()["table2"]
    assert [key for key, _ in report.TABLE_COLUMNS] == paper["columns"]
    assert paper["rows"]["DFoT"] == [17.693, 0.482, 0.410, 0.803, 0.826, 0.893, 0.913]


def test_side_by_side_marks_reentry_frames():
    gt = np.zeros((3, 16, 20, 3), dtype=np.uint8)
    strip = report.side_by_side_frames(gt, {"a": gt}, reentry_frame=1)
    assert strip.shape == (3, 16, 40, 3)
    assert (strip[0, -1, -1] == 0).all()  # before re-entry: no border
    assert (strip[1, -1, -1] == (255, 0, 0)).all() and (strip[1, -3, 5] == (255, 0, 0)).all()
    assert (strip[2, -1, -1] == (255, 0, 0)).all() and not (strip[2, -3, 5] == (255, 0, 0)).all()


def test_paired_comparison_counts_wins_and_bootstraps_deterministically():
    ours = {"a": 20.0, "b": 18.0, "c": 25.0, "d": 21.0, "only_ours": 99.0}
    theirs = {"a": 19.0, "b": 18.5, "c": 22.0, "d": 21.0, "only_theirs": 0.0}
    paired = report.paired_comparison(ours, theirs)
    differences = np.array([1.0, -0.5, 3.0, 0.0])  # clips a, b, c, d only
    assert paired["clips"] == 4 and paired["mean"] == differences.mean()
    assert (paired["a_better"], paired["b_better"], paired["ties"]) == (2, 1, 1)
    # the interval is the 2.5/97.5 percentiles of resampled means: a hand-written bootstrap agrees
    rng = np.random.default_rng(report.BOOTSTRAP_SEED)
    means = differences[rng.integers(0, 4, size=(report.BOOTSTRAP_RESAMPLES, 4))].mean(axis=1)
    assert (paired["ci_low"], paired["ci_high"]) == tuple(np.quantile(means, [0.025, 0.975]))
    assert -0.5 <= paired["ci_low"] < paired["mean"] < paired["ci_high"] <= 3.0
    assert report.paired_comparison(ours, theirs) == paired  # seeded: the same every time
    lower = report.paired_comparison(ours, theirs, lower_is_better=True)
    assert (lower["a_better"], lower["b_better"]) == (1, 2)
    assert report.paired_comparison({"a": 1.0}, {"b": 1.0}) is None
    single = report.paired_comparison({"a": 2.0}, {"a": 1.0})
    assert single["mean"] == 1.0 and math.isnan(single["ci_low"])


def test_bootstrap_interval_does_not_depend_on_chunking():
    differences = np.random.default_rng(5).normal(size=3000)
    low, high = report.bootstrap_interval(differences, resamples=1500)
    rng = np.random.default_rng(report.BOOTSTRAP_SEED)
    means = differences[rng.integers(0, 3000, size=(1500, 3000))].mean(axis=1)
    np.testing.assert_allclose((low, high), np.quantile(means, [0.025, 0.975]))


def test_markdown_report_shows_paired_differences_against_the_reference():
    per_clip = {
        "hydra": {"c0": {"psnr": 21.0, "lpips": 0.2}, "c1": {"psnr": 22.0, "lpips": 0.3}},
        "full": {"c0": {"psnr": 20.0, "lpips": 0.25}, "c1": {"psnr": 21.5, "lpips": 0.2}},
        "copy-last": {"c0": {"psnr": 15.0}, "c1": {"psnr": 16.0}},
    }
    summary = {
        "methods": {name: report.aggregate_clips(list(values.values())) for name, values in per_clip.items()},
        "per_clip": per_clip,
        "dsc_definition": "official",
        "boxes": "gt",
    }
    text = report.markdown_report(summary)
    assert "## Paired differences over clips" in text and "official eval_dsc.py" in text
    assert "`--boxes gt|tracker`" in text and "pooled" in text
    assert "| full | PSNR | +0.75 | [+0.50, +1.00] | 2 | 0 | 2 |" in text
    assert "| full | LPIPS | +0.025 | [-0.050, +0.100] | 1 | 1 | 2 |" in text
    assert "| copy-last | PSNR | +6.00 | [+6.00, +6.00] | 2 | 0 | 2 |" in text
    assert "| copy-last | LPIPS |" not in text  # no per-clip LPIPS for copy-last
    against_full = report.markdown_report(summary, reference="full")
    assert "| hydra | PSNR | -0.75 |" in against_full
    with pytest.raises(DataError, match="valid: hydra, full, copy-last"):
        report.markdown_report(summary, reference="nope")
