"""`hybridmem sample --official DIR`: the paper's inference on an official example pair, with a tiny
official-format release on CPU."""

import importlib.util
from pathlib import Path

import pytest

from hybridmem.cli import main
from hybridmem.official.release import find_release, load_release_dit

from .tiny_release import write_tiny_release

_spec = importlib.util.spec_from_file_location(
    "official_formats", Path(__file__).parents[1] / "data" / "official_formats.py"
)
official_formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official_formats)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_tiny_release(tmp_path_factory.mktemp("ckpts"))


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """examples/1.mp4 (77 synthetic frames, small) + the official examples' own cam1.json + caption.txt."""
    import shutil

    folder = tmp_path_factory.mktemp("examples")
    video, cameras, _ = official_formats.write_official_pair(
        folder, 1, frames_count=77, width=64, height=48, captions=["a man walks in the park ."]
    )
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "official_hydra" / "cam1.json", cameras)
    return video, cameras


def sample_argv(release, video, cameras, out, *flags) -> list[str]:
    """`hybridmem sample --official` on an example pair."""
    return [
        "sample",
        "--official",
        str(release),
        "--video",
        str(video),
        "--cameras",
        str(cameras),
        "--out",
        str(out),
        *flags,
    ]


def test_sample_on_the_official_example_pair_writes_77_frames(release, example, tmp_path, capsys):
    video, cameras = example
    out = tmp_path / "1.mp4"
    code = main(
        sample_argv(release, video, cameras, out, "--size", "64x48", "--steps", "2", "--precision", "fp32")
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    from hybridmem.data.hmworld import read_video

    assert read_video(out).shape == (77, 48, 64, 3)
    assert "caption: 'a man walks in the park .'" in printed
    assert "CFG 5" in printed and "official release in" in printed


def test_same_seed_same_video_and_bf16_runs(release, tmp_path):
    video, cameras, _ = official_formats.write_official_pair(
        tmp_path / "short", 2, frames_count=17, width=64, height=48, captions=["x", "a dog runs"]
    )
    outputs = []
    for name, precision in (("a.mp4", "fp32"), ("b.mp4", "fp32"), ("c.mp4", "bf16")):
        args = sample_argv(
            release,
            video,
            cameras,
            tmp_path / name,
            "--size",
            "64x48",
            "--steps",
            "1",
            "--precision",
            precision,
        )
        assert main(args) == 0
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


def test_paper_size_is_refused_before_any_weight_is_loaded_when_memory_is_short(
    release, example, tmp_path, monkeypatch, capsys
):
    import hybridmem.official.pipeline as pipeline
    from hybridmem import device

    monkeypatch.setattr(device, "available_memory", lambda device=None: 2 * 1024**2)

    def never(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(pipeline.OfficialPipeline, "from_release", classmethod(never))
    video, cameras = example
    code = main(sample_argv(release, video, cameras, tmp_path / "big.mp4"))
    assert code == 2
    error = capsys.readouterr().err
    assert "832x480" in error and "needs an estimated" in error and "MiB, more than the 2.0 MiB" in error
    assert "--precision bf16" in error and "--segment-frames" not in error  # a fix that applies here
    assert not (tmp_path / "big.mp4").exists()


def test_official_flags_conflict_with_ours(release, example, tmp_path, capsys):
    video, cameras = example
    base = ["sample", "--video", str(video), "--cameras", str(cameras), "--out", str(tmp_path / "x.mp4")]
    assert main([*base, "--official", str(release), "--checkpoint", "runs/x", "--vae", "runs/v"]) == 2
    assert "drop --vae" in capsys.readouterr().err  # --checkpoint: a run fine-tuned from the release
    assert main([*base, "--precision", "bf16"]) == 2
    assert "--precision goes with --official" in capsys.readouterr().err


def test_a_release_folder_missing_a_file_is_named(release, tmp_path):
    import shutil

    from hybridmem.errors import CheckpointError

    broken = tmp_path / "ckpts"
    shutil.copytree(release, broken)
    (broken / "Wan2.1-T2V-1.3B" / "Wan2.1_VAE.pth").unlink()
    with pytest.raises(CheckpointError, match="Wan2.1_VAE.pth is missing"):
        find_release(broken)
    with pytest.raises(CheckpointError, match="no such folder"):
        find_release(tmp_path / "nowhere")


def test_plain_wan_release_is_wan_until_trained(tmp_path):
    # without hydra.pth: Wan2.1's weights, HyDRA modules new (cameras ignored, projector identity)
    import torch

    folder = write_tiny_release(tmp_path / "wan", hydra=False)
    release = find_release(folder)
    assert release.hydra_file is None
    model = load_release_dit(release, hydra=True)
    assert model.config.memory.kind == "hydra"
    block = model.blocks[0]
    assert torch.equal(
        block.context_camera_encoder.weight, torch.zeros_like(block.context_camera_encoder.weight)
    )
    assert torch.equal(block.camera_projector.weight, torch.eye(block.camera_projector.weight.shape[0]))
    full = load_release_dit(release, hydra=False)
    assert full.config.memory.kind == "full"
    assert torch.equal(full.blocks[1].ffn[0].weight, model.blocks[1].ffn[0].weight)


def test_complete_hydra_file_is_read_alone(release):
    found = find_release(release)
    assert found.hydra_file is not None and found.wan_dit_file is None  # hydra.pth holds every key


def test_device_auto_is_resolved_as_ours_is(release):
    # `eval --official DIR --device auto` hands the name to from_release as given
    from hybridmem.device import resolve_device
    from hybridmem.official.pipeline import OfficialPipeline

    pipeline = OfficialPipeline.from_release(release, device="auto")
    assert pipeline.device == resolve_device("auto")
    assert next(pipeline.world_model.parameters()).device.type == pipeline.device.type


def test_an_already_found_release_is_not_found_again(release, monkeypatch):
    import hybridmem.official.release as release_module
    from hybridmem.official.pipeline import OfficialPipeline

    found = find_release(release)

    def never(folder):
        raise AssertionError("find_release called again")

    monkeypatch.setattr(release_module, "find_release", never)
    pipeline = OfficialPipeline.from_release(found, device="cpu")
    assert isinstance(pipeline, OfficialPipeline)
    with pytest.raises(AssertionError, match="called again"):  # a path is still found, as before
        OfficialPipeline.from_release(release, device="cpu")
