import json

import numpy as np
import pytest

from hybridmem.data.clip import Clip, Event, SubjectTrack
from hybridmem.errors import ConfigError
from hybridmem.eval.protocol import EvalConfig, MetricModels, evaluate_clip, run_evaluation
from hybridmem.world.layout import write_clip

CONTEXT, TARGET, HEIGHT, WIDTH = 4, 4, 40, 48


def make_clip(seed: int, context=CONTEXT, target=TARGET, height=HEIGHT, width=WIDTH, step=4) -> Clip:
    """Textured background; a red square leaves the view in the context and re-enters at target frame 1."""
    rng = np.random.default_rng(seed)
    total = context + target
    background = rng.integers(40, 120, size=(height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], total, axis=0)
    ids = np.zeros((total, height, width), dtype=np.uint8)
    for t in [0, 1, *range(context + 1, total)]:
        x = 6 + step * t
        frames[t, 12:24, x : x + 10] = (230, 40, 40)
        ids[t, 12:24, x : x + 10] = 1
    track = SubjectTrack(
        subject_id=1, name="human_00", positions=np.zeros((total, 3)), headings=np.zeros(total)
    )
    return Clip(
        frames=frames,
        cameras=np.repeat(np.eye(4)[None], total, axis=0),
        intrinsics=np.array([40.0, 40.0, width / 2, height / 2]),
        context_frames=context,
        fps=8.0,
        subjects=[track],
        events=[Event(1, "exit", 2), Event(1, "entry", context + 1)],
        instance_ids=ids,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for index in range(2):
        write_clip(make_clip(index), root / "test" / f"{index:06d}")
    return root


class Oracle:
    """Stand-in generator: returns the ground truth."""

    def __init__(self):
        self.calls = 0

    def generate(self, clip, seed):
        self.calls += 1
        return clip.frames[clip.target].copy()


class Refuses:
    def generate(self, clip, seed):
        raise AssertionError("should have been read from the generation cache")


def _config(dataset, out, weights_dir, **overrides):
    options = dict(
        data=str(dataset),
        out=str(out),
        num_clips=2,
        checkpoints=[str(out.parent / "oracle")],
        vae="unused",
        baselines=["copy-last"],
        weights_dir=str(weights_dir),
    )
    options.update(overrides)
    return EvalConfig(**options)


def test_device_auto_reaches_every_model(dataset, tmp_path, tiny_weights):
    # the metric models were moved to the flag's text: "auto" failed in torch.device
    config = _config(dataset, tmp_path / "eval", tiny_weights, device="auto", num_clips=1)
    summary = run_evaluation(config, generators={"oracle": Oracle()}, progress=False)
    assert summary["methods"]["oracle"]["metrics"]["psnr"] == 100.0
    assert summary["methods"]["oracle"]["metrics"]["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_tiny_run_writes_every_report_file_and_resumes(dataset, tmp_path, tiny_weights):
    out = tmp_path / "eval"
    oracle = Oracle()
    summary = run_evaluation(
        _config(dataset, out, tiny_weights), generators={"oracle": oracle}, progress=False
    )
    assert oracle.calls == 2
    for name in (
        "aggregate.json",
        "report.md",
        "reentry_psnr.png",
        "side_by_side/000000.mp4",
        "side_by_side/000000.gif",
    ):
        assert (out / name).is_file(), name
    for method in ("oracle", "copy-last"):
        for clip_id in ("000000", "000001"):
            assert (out / "generations" / method / f"{clip_id}.npz").is_file()
            record = json.loads((out / "clips" / method / f"{clip_id}.json").read_text())
            assert record["reentries"] == [{"subject_id": 1, "target_frame": 1}]
    oracle_metrics = summary["methods"]["oracle"]["metrics"]
    copy_metrics = summary["methods"]["copy-last"]["metrics"]
    assert oracle_metrics["psnr"] == 100.0 and oracle_metrics["ssim"] == pytest.approx(1.0)
    assert oracle_metrics["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert oracle_metrics["reentry_box_psnr"] == 100.0
    assert copy_metrics["psnr"] < 100.0 and copy_metrics["reentry_box_psnr"] < 30.0
    for key in ("dsc_ctx", "dsc_gt", "subject_consistency", "background_consistency"):
        assert isinstance(oracle_metrics[key], float) and isinstance(copy_metrics[key], float)
    # the oracle's DSC_GT is the subject's self-similarity; copying a frame without the subject scores lower
    assert copy_metrics["dsc_gt"] < oracle_metrics["dsc_gt"]
    table = (out / "report.md").read_text()
    assert "| Method | PSNR | SSIM | LPIPS | DSC_ctx | DSC_GT | Subject | Background |" in table
    assert "| oracle | 100.000 | 1.000 |" in table
    # the default DSC is the official definition, stated in the header; paired differences over clips
    assert summary["dsc_definition"] == "official" and "official eval_dsc.py" in table
    assert set(summary["per_clip"]["oracle"]) == {"000000", "000001"}
    assert summary["per_clip"]["oracle"]["000000"]["psnr"] == 100.0
    assert "## Paired differences over clips" in table
    assert any(line.startswith("| copy-last | PSNR | +") for line in table.splitlines())
    # rerun: every generation comes from the cache, same numbers
    again = run_evaluation(
        _config(dataset, out, tiny_weights), generators={"oracle": Refuses()}, progress=False
    )
    assert again["methods"] == json.loads(json.dumps(summary["methods"]))
    # a cache made with another seed is not silently reused
    with pytest.raises(ConfigError, match="cached generation was made with"):
        run_evaluation(
            _config(dataset, out, out / "none", seed=5), generators={"oracle": Refuses()}, progress=False
        )


def test_missing_weights_are_reported_not_computed(dataset, tmp_path):
    out = tmp_path / "eval"
    empty = tmp_path / "no_weights"
    config = _config(dataset, out, empty, num_clips=1, checkpoints=[], vae=None, side_by_side_clips=0)
    summary = run_evaluation(config, progress=False)
    metrics = summary["methods"]["copy-last"]["metrics"]
    assert metrics["lpips"] == f"not computed: weights not found at {empty / 'lpips' / 'alex.pth'}"
    assert metrics["dsc_gt"] == f"not computed: weights not found at {empty / 'clip-vit-base-patch16'}"
    assert metrics["subject_consistency"] == f"not computed: weights not found at {empty / 'dino-vitb16'}"
    assert isinstance(metrics["psnr"], float)
    report = (out / "report.md").read_text()
    assert "not computed" in report and str(empty / "dino-vitb16") in report


def test_tracker_boxes_are_recorded(dataset, tmp_path, tiny_weights):
    from hybridmem.data.hmworld import load_clip

    clip = load_clip(dataset / "test" / "000000")
    models = MetricModels.load(tiny_weights)
    record = evaluate_clip(clip, clip.frames[clip.target].copy(), models, box_source="tracker")
    boxes = np.array(record["predicted_boxes"]["1"], dtype=float)
    assert np.isnan(boxes[0]).all()  # the subject is out of view in target frame 0
    truth_x0 = np.array([6 + 4 * t for t in (5, 6, 7)], dtype=float)
    np.testing.assert_allclose(boxes[1:, 0], truth_x0, atol=3)


def test_dsc_definitions_differ_on_a_non_square_clip(dataset, tmp_path, tiny_weights):
    from hybridmem.data.hmworld import load_clip

    clip = load_clip(dataset / "test" / "000000")  # 40 x 48 frames: the official crop drops the sides
    models = MetricModels.load(tiny_weights)
    predicted = clip.frames[clip.target].copy()
    official = evaluate_clip(clip, predicted, models, dsc_definition="official")
    per_subject = evaluate_clip(clip, predicted, models, dsc_definition="per-subject")
    assert official["dsc_frames"] == {"predicted": 3, "ground_truth": 3, "context": 2}
    assert "dsc_per_subject" in per_subject and "dsc_frames" not in per_subject
    assert abs(official["dsc_gt"] - per_subject["dsc_gt"]) > 1e-4
    # the pixel metrics do not depend on the DSC definition
    assert official["reentry_box_psnr"] == per_subject["reentry_box_psnr"] == 100.0


def test_config_errors_list_valid_names(dataset, tmp_path):
    with pytest.raises(ConfigError, match="copy-last"):
        run_evaluation(
            _config(dataset, tmp_path, tmp_path, checkpoints=[], baselines=["nope"]), progress=False
        )
    with pytest.raises(ConfigError, match="gt, tracker"):
        run_evaluation(_config(dataset, tmp_path, tmp_path, boxes="magic"), progress=False)
    with pytest.raises(ConfigError, match="official, per-subject"):
        run_evaluation(_config(dataset, tmp_path, tmp_path, dsc_definition="paper"), progress=False)
    with pytest.raises(ConfigError, match="--vae"):
        run_evaluation(_config(dataset, tmp_path, tmp_path, vae=None), progress=False)


def test_real_pipeline_generations_are_cached_and_seeded(tmp_path):
    """Integration with hybridmem.sample.pipeline on a tiny random world model (4k+1-frame segments)."""
    import torch

    from hybridmem.models.checkpoint import save_model
    from hybridmem.models.vae import build_vae
    from hybridmem.models.world import build_world_model

    torch.manual_seed(0)
    save_model(build_world_model("tiny"), tmp_path / "runs" / "world")
    save_model(build_vae("tiny"), tmp_path / "runs" / "vae")
    data = tmp_path / "data"
    write_clip(make_clip(0, context=5, target=5, height=32, width=32, step=2), data / "test" / "000000")
    outputs = []
    for name in ("a", "b"):
        config = EvalConfig(
            data=str(data),
            out=str(tmp_path / name),
            checkpoints=[str(tmp_path / "runs" / "world")],
            vae=str(tmp_path / "runs" / "vae"),
            weights_dir=str(tmp_path / "no_weights"),
            steps=2,
            side_by_side_clips=0,
        )
        summary = run_evaluation(config, progress=False)
        assert isinstance(summary["methods"]["world"]["metrics"]["psnr"], float)
        with np.load(tmp_path / name / "generations" / "world" / "000000.npz") as archive:
            outputs.append(archive["frames"])
            assert int(archive["seed"]) == 0 and int(archive["steps"]) == 2
    assert outputs[0].shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(outputs[0], outputs[1])
