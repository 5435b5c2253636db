import json
import math

import numpy as np

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
