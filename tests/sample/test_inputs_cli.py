"""`hybridmem sample` on every input format, and its checks before any model is loaded (issues 11 and 12)."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hybridmem import device
from hybridmem.cli import main
from hybridmem.data.hmworld import read_video
from hybridmem.errors import ConfigError, DataError
from hybridmem.geometry import look_at
from hybridmem.sample import cli as sample_cli
from hybridmem.sample import plan

_spec = importlib.util.spec_from_file_location(
    "official_formats", Path(__file__).parents[1] / "data" / "official_formats.py"
)
official_formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official_formats)


def _args(tiny_models, out, *extra):
    return [
        "sample",
        *extra,
        "--checkpoint",
        str(tiny_models / "world"),
        "--vae",
        str(tiny_models / "vae"),
        "--out",
        str(out),
        "--steps",
        "1",
        "--device",
        "cpu",
    ]


def test_official_context_only_pair_samples_end_to_end_with_a_line_per_stage(tiny_models, tmp_path, capsys):
    video, cameras, _ = official_formats.write_official_pair(
        tmp_path / "examples", number=1, frames_count=77, width=64, height=48, captions=["a man walks"]
    )
    out = tmp_path / "out" / "1.mp4"
    assert (
        main(_args(tiny_models, out, "--video", str(video), "--cameras", str(cameras), "--size", "32x32"))
        == 0
    )
    printed = capsys.readouterr().out
    generated = read_video(out)
    assert generated.shape == (77, 32, 32, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["1.mp4"]  # no ground truth: no side-by-side
    import imageio.v2 as imageio

    assert imageio.get_reader(str(out)).get_meta_data()["fps"] == pytest.approx(15.0)  # the input's rate
    stages = [
        "reading",
        "format: official HyDRA example pair",
        "cameras: Unreal cm, column-vector",
        "intrinsics: default horizontal FOV 36.3",
        "caption: ",
        "size: 64x48 -> 32x32 (--size)",
        "estimated peak memory",
        "loading",
        "encoding the context (77 frames, 32x32)",
        "denoising 20 latent frames",
        "decoding 77 frames",
        "writing",
        "done",
    ]
    positions = [printed.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions), dict(zip(stages, positions, strict=True))
    assert positions == sorted(positions)
    assert printed.startswith("sample [   0.0s] reading")  # the first line comes at once


def test_released_sample_without_target_samples_and_one_with_target_writes_side_by_side(
    tiny_models, tmp_path
):
    root = tmp_path / "HM-World"
    official_formats.write_released_sample(root / "sample1", with_target=False)
    official_formats.write_released_sample(root / "sample2", with_target=True)
    (root / "caption.txt").write_text("one\ntwo\n")
    out = tmp_path / "out" / "s1.mp4"
    assert main(_args(tiny_models, out, "--clip", str(root / "sample1"))) == 0
    assert read_video(out).shape == (9, 32, 32, 3) and not (tmp_path / "out" / "s1_side_by_side.mp4").exists()
    out = tmp_path / "out" / "s2.mp4"
    assert main(_args(tiny_models, out, "--clip", str(root / "sample2"))) == 0
    assert read_video(tmp_path / "out" / "s2_side_by_side.mp4").shape == (9, 32, 96, 3)


def test_pad_last_keeps_the_requested_target_length(tiny_models, tmp_path):
    poses = np.stack([look_at((0.1 * i, 0, 1.5), (0.1 * i, 5, 1.5)) for i in range(16)])
    video = tmp_path / "ctx.mp4"
    official_formats.write_mp4(video, official_formats.frames(10, 32, 32), fps=12.0)
    cams = tmp_path / "cams.json"
    cams.write_text(
        json.dumps(
            {"intrinsics": [30, 30, 16, 16], "context": poses[:10].tolist(), "target": poses[10:].tolist()}
        )
    )
    out = tmp_path / "out.mp4"
    assert (
        main(
            _args(tiny_models, out, "--video", str(video), "--cameras", str(cams), "--pad-last", "--fps", "6")
        )
        == 0
    )
    assert read_video(out).shape == (6, 32, 32, 3)


def _write_our_schema(tmp_path, target=5, context=5):
    poses = np.stack([look_at((0.1 * i, 0, 1.5), (0.1 * i, 5, 1.5)) for i in range(context + 1)])
    video = tmp_path / "ctx.mp4"
    official_formats.write_mp4(video, official_formats.frames(context, 32, 32))
    cams = tmp_path / "cams.json"
    target_cameras = np.repeat(poses[context:], target, axis=0)
    cams.write_text(
        json.dumps(
            {
                "intrinsics": [30, 30, 16, 16],
                "context": poses[:context].tolist(),
                "target": target_cameras.tolist(),
            }
        )
    )
    return video, cams


def _exit_code(argv):
    """main's status; argparse's usage errors (hybridmem.validation's per-flag rules) exit 2 too."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shift", "nan"], "--shift"),
        (["--shift", "0"], "--shift"),
        (["--steps", "0"], "--steps"),
        (["--fps", "0"], "--fps"),
        (["--fps", "-8"], "--fps"),
        (["--fps", "nan"], "--fps"),
        (["--fps", "inf"], "--fps"),
        (["--seed", str(2**64)], "--seed"),
        (["--guidance", "nan"], "--guidance"),
        (["--hfov", "200"], "--hfov/--horizontal-fov: 200 is out of range"),
        (["--size", "33x32"], "--size 33x32: width must be a multiple of 16"),
        (["--size", "big"], "--size 'big'"),
        (["--intrinsics", "1,2"], "--intrinsics"),
        (["--matrix-form", "row"], "--matrix-form does not apply"),
        (["--caption-embedding", "x.npy"], "no cross-attention"),
        (["--guidance", "3"], "--guidance != 1 needs --caption-embedding"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag_before_anything_is_written(
    tiny_models, tmp_path, capsys, extra, message
):
    video, cams = _write_our_schema(tmp_path)
    out = tmp_path / "out" / "o.mp4"
    assert _exit_code(_args(tiny_models, out, "--video", str(video), "--cameras", str(cams), *extra)) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not out.parent.exists()


def test_flag_checks_hold_without_the_parser_layer():
    # sample's own checks (for callers that build the namespace themselves): steps 0 no longer means 50
    import argparse

    base = dict(
        out="o.mp4",
        clip="c",
        video=None,
        cameras=None,
        steps=50,
        seed=0,
        shift=5.0,
        guidance=1.0,
        fps=None,
        hfov=None,
        segment_frames=None,
        caption_embedding=None,
        overwrite=False,
    )
    for change, flag in (
        ({"steps": 0}, "--steps: 0 is out of range"),
        ({"shift": math.nan}, "--shift: nan is not a finite number"),
        ({"fps": 0.0}, "--fps: 0 is out of range"),
        ({"fps": -8.0}, "--fps: -8 is out of range"),
        ({"fps": math.nan}, "--fps: nan is not a finite number"),
        ({"seed": 2**64}, "--seed: 18446744073709551616 is out of range"),
    ):
        with pytest.raises(ConfigError, match=flag):
            sample_cli.check_arguments(argparse.Namespace(**{**base, **change}))


def test_existing_outputs_are_not_replaced_without_overwrite(tiny_models, tmp_path, capsys):
    root = tmp_path / "HM-World"
    official_formats.write_released_sample(root / "sample1")
    out = tmp_path / "o.mp4"
    out.write_bytes(b"earlier")
    assert main(_args(tiny_models, out, "--clip", str(root / "sample1"))) == 2
    assert "o.mp4: exists; pass --overwrite" in capsys.readouterr().err
    out.unlink()
    comparison = tmp_path / "o_side_by_side.mp4"
    comparison.write_bytes(b"earlier side by side")
    assert main(_args(tiny_models, out, "--clip", str(root / "sample1"))) == 2
    assert "o_side_by_side.mp4: exists" in capsys.readouterr().err
    assert comparison.read_bytes() == b"earlier side by side" and not out.exists()
    assert main(_args(tiny_models, out, "--clip", str(root / "sample1"), "--overwrite")) == 0
    assert read_video(comparison).shape == (9, 32, 96, 3)


def test_a_huge_target_is_refused_before_allocation(tiny_models, tmp_path, capsys, monkeypatch):
    video, cams = _write_our_schema(tmp_path, target=40001)
    monkeypatch.setattr(device, "available_memory", lambda device=None: 8 * plan.GIB)
    loaded = []
    monkeypatch.setattr(
        "hybridmem.sample.pipeline.WorldPipeline.from_checkpoint", lambda *a, **k: loaded.append(1)
    )
    out = tmp_path / "o.mp4"
    assert main(_args(tiny_models, out, "--video", str(video), "--cameras", str(cams))) == 2
    error = capsys.readouterr().err
    assert "needs an estimated" in error and "--segment-frames" in error and "Traceback" not in error
    assert not loaded and not out.exists()


def test_checkpoint_and_vae_go_together(tiny_models, tmp_path, capsys):
    video, cams = _write_our_schema(tmp_path)
    args = ["sample", "--video", str(video), "--cameras", str(cams), "--out", str(tmp_path / "o.mp4")]
    assert main([*args, "--checkpoint", str(tiny_models / "world")]) == 2
    assert "--checkpoint and --vae together" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"garbage, not numpy", "not a readable .npy array header.*--caption-embedding"),
        (b"", "not a readable .npy array header.*--caption-embedding"),
        (None, r"shape \(3,\), expected \(L, 6\)"),
        ("nan", "NaN or infinity"),
        ("object", "Python objects.*--caption-embedding"),
    ],
)
def test_garbage_caption_embedding_is_a_data_error(tmp_path, content, message):
    path = tmp_path / "caption.npy"
    if content is None:
        np.save(path, np.zeros(3))
    elif content == "nan":
        np.save(path, np.full((2, 6), np.nan))
    elif content == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        sample_cli.read_caption_embedding(str(path), 6)
    with pytest.raises(ConfigError, match="no cross-attention"):
        sample_cli.read_caption_embedding(str(path), 0)


def test_default_size_is_the_training_size_of_an_exported_folder(tiny_models, tmp_path):
    exported = tmp_path / "exported"
    shutil.copytree(tiny_models / "world", exported / "hydra")
    shutil.copytree(tiny_models / "vae", exported / "vae")
    (exported / "manifest.json").write_text(json.dumps({"data": {"width": 48, "height": 32}}))
    info = plan.read_model_info(exported / "hydra", exported / "vae")
    assert info.training_size == (48, 32) and "manifest.json" in info.training_size_source
    assert plan.read_model_info(tiny_models / "world", tiny_models / "vae").training_size is None
    video, cams = _write_our_schema(tmp_path)
    out = tmp_path / "o.mp4"
    args = ["sample", "--video", str(video), "--cameras", str(cams), "--out", str(out), "--steps", "1"]
    args += ["--checkpoint", str(exported / "hydra"), "--vae", str(exported / "vae"), "--device", "cpu"]
    assert main(args) == 0
    assert read_video(out).shape == (5, 32, 48, 3)


def test_memory_estimate_grows_with_size_and_length(tiny_models):
    info = plan.read_model_info(tiny_models / "world", tiny_models / "vae")
    small = plan.estimate_peak_bytes(info, (9, 32, 32), 9, 9, 32, 32)
    assert plan.estimate_peak_bytes(info, (9, 32, 32), 9, 9, 64, 64) > small
    assert plan.estimate_peak_bytes(info, (9, 32, 32), 9, 81, 32, 32) > small
    assert math.isfinite(small) and small > plan.MEASURED_BASE_BYTES


def test_training_size_of_a_run_comes_from_its_latent_cache(tiny_models, tmp_path):
    from safetensors.torch import save_file

    run, cache = tmp_path / "run", tmp_path / "cache"
    shutil.copytree(tiny_models / "world", run / "final")
    (cache / "clips").mkdir(parents=True)
    save_file({"context_latents": torch.zeros(3, 4, 6, 5)}, str(cache / "clips" / "000000.safetensors"))
    (run / "train_config.json").write_text(json.dumps({"cache": str(cache)}))
    info = plan.read_model_info(run, tiny_models / "vae")
    assert info.training_size == (40, 48) and "training cache" in info.training_size_source
    (run / "train_config.json").write_text(json.dumps({"cache": str(tmp_path / "gone")}))
    assert plan.read_model_info(run, tiny_models / "vae").training_size is None


def test_pipeline_refuses_steps_0_and_shift_nan(tiny_models):
    from hybridmem.sample.pipeline import WorldPipeline

    pipeline = WorldPipeline.from_checkpoint(tiny_models / "world", tiny_models / "vae", device="cpu")
    poses = np.stack([look_at((0.1 * i, 0, 1.5), (0.1 * i, 5, 1.5)) for i in range(10)])
    args = (official_formats.frames(5, 32, 32), poses[:5], poses[5:], np.array([30.0, 30.0, 16.0, 16.0]))
    with pytest.raises(ConfigError, match="steps: 0 is out of range"):
        pipeline.generate(*args, steps=0, progress=False)
    with pytest.raises(ConfigError, match="shift: nan is not a finite number"):
        pipeline.generate(*args, shift=math.nan, progress=False)
