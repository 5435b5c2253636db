import json

import numpy as np
import pytest
import torch

from hybridmem.cli import main
from hybridmem.data.clip import Clip
from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.geometry import look_at
from hybridmem.models.checkpoint import save_model
from hybridmem.models.memory import MemoryConfig
from hybridmem.models.world import build_world_model
from hybridmem.sample.pipeline import WorldPipeline
from hybridmem.sample.rollout import generate_long, padded_length, segment_lengths, segment_seed

SIZE = 32


def cameras(count, offset=0.0):
    return np.stack(
        [look_at((0.2 * i + offset, 0.0, 1.0), (0.2 * i + offset, 5.0, 1.0)) for i in range(count)]
    )


def turning(angles_deg):
    """Cameras at one place turning about the vertical axis (0 degrees: looking along +y)."""
    angles = np.deg2rad(angles_deg)
    return np.stack([look_at((0.0, 0.0, 1.0), (5 * np.sin(a), 5 * np.cos(a), 1.0)) for a in angles])


def frames(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


INTRINSICS = np.array([20.0, 20.0, 16.0, 16.0])


@pytest.fixture(scope="module")
def pipeline(tiny_models):
    return WorldPipeline.from_checkpoint(tiny_models / "world", tiny_models / "vae", device="cpu", steps=3)


def test_generate_shapes_and_determinism(pipeline):
    context = frames(9)
    out = pipeline.generate(context, cameras(9), cameras(5, 2.0), INTRINSICS, seed=1, progress=False)
    assert out.shape == (5, SIZE, SIZE, 3) and out.dtype == np.uint8
    again = pipeline.generate(context, cameras(9), cameras(5, 2.0), INTRINSICS, seed=1, progress=False)
    other = pipeline.generate(context, cameras(9), cameras(5, 2.0), INTRINSICS, seed=2, progress=False)
    assert np.array_equal(out, again) and not np.array_equal(out, other)


def test_one_segment_rollout_equals_generate(pipeline):
    context = frames(5)
    direct = pipeline.generate(context, cameras(5), cameras(9, 1.0), INTRINSICS, seed=3, progress=False)
    rolled = generate_long(
        pipeline, context, cameras(5), cameras(9, 1.0), INTRINSICS, 9, seed=3, progress=False
    )
    assert np.array_equal(direct, rolled)


def test_long_rollout_grows_the_memory(pipeline, monkeypatch):
    seen = []
    forward = pipeline.world_model.forward

    def spy(context_latents, noisy_target, *args):
        seen.append((context_latents.shape[1], noisy_target.shape[1]))
        return forward(context_latents, noisy_target, *args)

    monkeypatch.setattr(pipeline.world_model, "forward", spy)
    out = pipeline.generate_long(
        frames(5), cameras(5), cameras(12, 1.0), INTRINSICS, 9, seed=0, progress=False
    )
    assert out.shape == (12, SIZE, SIZE, 3)
    # context 5 frames -> 2 latents; segments of 9 frames (3 latents), then 3 frames padded to 5 (2 latents)
    assert sorted(set(seen)) == [(2, 3), (5, 2)]


def test_segment_lengths_and_seeds():
    assert segment_lengths(18, 9, 4) == [9, 9]
    assert segment_lengths(14, 9, 4) == [9, 5]
    assert segment_lengths(12, 9, 4) == [9, 3]
    assert [padded_length(n, 4) for n in (1, 2, 3, 4, 5, 6)] == [1, 5, 5, 5, 5, 9]
    with pytest.raises(DataError, match="at least one"):
        segment_lengths(0, 9, 4)
    with pytest.raises(ConfigError, match="4k\\+1"):
        segment_lengths(9, 8, 4)
    assert segment_seed(7, 0) == 7 and segment_seed(7, 1) != segment_seed(7, 2)


def test_bad_inputs_raise_clear_errors(pipeline):
    with pytest.raises(DataError, match="context_cameras"):
        pipeline.generate(frames(9), cameras(9)[:, :3], cameras(5), INTRINSICS, progress=False)
    with pytest.raises(DataError, match="context_cameras.*9"):
        pipeline.generate(frames(9), cameras(8), cameras(5), INTRINSICS, progress=False)
    with pytest.raises(DataError, match="4k\\+1"):
        pipeline.generate(frames(8), cameras(8), cameras(5), INTRINSICS, progress=False)
    with pytest.raises(DataError, match="target_cameras"):
        pipeline.generate(frames(9), cameras(9), cameras(6), INTRINSICS, progress=False)
    with pytest.raises(DataError, match="intrinsics"):
        pipeline.generate(frames(9), cameras(9), cameras(5), INTRINSICS[:3], progress=False)
    with pytest.raises(DataError, match="intrinsics: fx = 0 px on a 32x32 image is outside any real camera"):
        pipeline.generate(frames(9), cameras(9), cameras(5), [0.0, 20.0, 16.0, 16.0], progress=False)
    with pytest.raises(DataError, match="divisible"):
        pipeline.generate(frames(9)[:, :24], cameras(9), cameras(5), INTRINSICS, progress=False)


def test_bad_checkpoints_raise(tiny_models, tmp_path):
    with pytest.raises(CheckpointError, match="no model here"):
        WorldPipeline.from_checkpoint(tmp_path / "nothing", tiny_models / "vae")
    with pytest.raises(CheckpointError, match="not a WorldModel"):
        WorldPipeline.from_checkpoint(tiny_models / "vae", tiny_models / "vae")
    wide = tmp_path / "wide"
    save_model(build_world_model("tiny", latent_channels=8), wide)
    with pytest.raises(CheckpointError, match="latent channels"):
        WorldPipeline.from_checkpoint(wide, tiny_models / "vae")
    mismatched = tmp_path / "mismatched"
    save_model(build_world_model("tiny"), mismatched)
    document = json.loads((mismatched / "config.json").read_text())
    document["config"]["dim"] = 128
    (mismatched / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="do not match"):
        WorldPipeline.from_checkpoint(mismatched, tiny_models / "vae")
    (mismatched / "model.safetensors").write_bytes(b"truncated")
    document["config"]["dim"] = 64
    (mismatched / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="corrupt"):
        WorldPipeline.from_checkpoint(mismatched, tiny_models / "vae")


def test_cli_samples_a_clip_with_side_by_side(tiny_models, tmp_path):
    from hybridmem.data.hmworld import read_video
    from hybridmem.world.layout import write_clip

    clip = Clip(frames=frames(14), cameras=cameras(14), intrinsics=INTRINSICS, context_frames=9, fps=8.0)
    write_clip(clip, tmp_path / "clip")
    out = tmp_path / "out" / "sample.mp4"
    code = main(
        [
            "sample",
            "--clip",
            str(tmp_path / "clip"),
            "--checkpoint",
            str(tiny_models / "world"),
            "--vae",
            str(tiny_models / "vae"),
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert read_video(out).shape == (5, SIZE, SIZE, 3)
    assert read_video(out.with_name("sample_side_by_side.mp4")).shape == (5, SIZE, 3 * SIZE, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["sample.mp4", "sample_side_by_side.mp4"]


def test_cli_bad_input_exits_nonzero_and_overwrites_nothing(tiny_models, tmp_path, capsys):
    import imageio.v2 as imageio

    video = tmp_path / "ctx.mp4"
    imageio.mimwrite(video, list(frames(8)), fps=8, macro_block_size=1)  # 8 frames: not 4k+1
    cams = tmp_path / "cams.json"
    cams.write_text(
        json.dumps(
            {"intrinsics": INTRINSICS.tolist(), "context": cameras(8).tolist(), "target": cameras(5).tolist()}
        )
    )
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    args = [
        "sample",
        "--video",
        str(video),
        "--cameras",
        str(cams),
        "--checkpoint",
        str(tiny_models / "world"),
        "--vae",
        str(tiny_models / "vae"),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--overwrite",
    ]
    assert main(args) == 2
    assert "4k+1 frames per segment: pass --pad-last (to 9) or --trim (to 5)" in capsys.readouterr().err
    cams.write_text(json.dumps({"intrinsics": INTRINSICS.tolist(), "context": [[1, 2]], "target": []}))
    assert main(args) == 2
    assert "field 'context' must hold 4x4 matrices" in capsys.readouterr().err
    imageio.mimwrite(video, list(frames(9)), fps=8, macro_block_size=1)
    cams.write_text(
        json.dumps(
            {"intrinsics": INTRINSICS.tolist(), "context": cameras(9).tolist(), "target": cameras(5).tolist()}
        )
    )
    assert main([*args, "--checkpoint", str(tmp_path / "no_model")]) == 2  # (--out inside it is refused)
    assert "no model here" in capsys.readouterr().err
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cams.json", "ctx.mp4", "out.mp4"]


def test_caption_guidance(tiny_models):
    from hybridmem.models.checkpoint import load_model

    torch.manual_seed(1)
    world = build_world_model("tiny", caption_dim=6)
    with torch.no_grad():
        for parameter in world.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    pipeline = WorldPipeline(world, load_model(tiny_models / "vae"), "cpu", steps=2)
    caption = np.random.default_rng(0).normal(size=(3, 6))
    args = (frames(5), cameras(5), cameras(5, 1.0), INTRINSICS)
    plain = pipeline.generate(*args, caption_embedding=caption, progress=False)
    guided = pipeline.generate(*args, caption_embedding=caption, guidance=4.0, progress=False)
    assert plain.shape == guided.shape and not np.array_equal(plain, guided)
    with pytest.raises(ConfigError, match="caption embedding"):
        pipeline.generate(*args, guidance=4.0, progress=False)
    with pytest.raises(DataError, match="caption embedding"):
        pipeline.generate(*args, caption_embedding=caption[:, :4], progress=False)


@pytest.mark.parametrize("source", ["context", "last"])
def test_warp_conditioned_model_gets_the_encoded_warp_of_its_context(tiny_models, monkeypatch, source):
    from hybridmem.models.checkpoint import load_model
    from hybridmem.warp import rotation_warp

    torch.manual_seed(1)
    world = build_world_model(
        "tiny", memory=MemoryConfig(kind="full"), warp_condition=True, warp_source=source
    )
    with torch.no_grad():
        for parameter in world.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    pipeline = WorldPipeline(world, load_model(tiny_models / "vae"), "cpu", steps=2)
    # a camera that turns: the first target views look where only the early context frames looked
    context, context_cameras = frames(9), turning(np.linspace(-40, 0, 9))
    target_cameras = turning(np.linspace(-40, 0, 5))
    seen = {}
    forward = world.forward

    def spy(*args, target_condition=None, **kwargs):
        seen["condition"] = target_condition
        return forward(*args, target_condition=target_condition, **kwargs)

    monkeypatch.setattr(world, "forward", spy)
    out = pipeline.generate(context, context_cameras, target_cameras, INTRINSICS, seed=0, progress=False)
    assert out.shape == (5, SIZE, SIZE, 3)
    warped, _ = rotation_warp(context, context_cameras, target_cameras, INTRINSICS, source=source)
    torch.testing.assert_close(seen["condition"], pipeline.encode(warped))
    other = rotation_warp(context, context_cameras, target_cameras, INTRINSICS, source="context")[0]
    assert (source == "last") != np.array_equal(other, warped)  # the sources differ on this input
    if source == "last":
        assert not torch.allclose(seen["condition"], pipeline.encode(other))
    with pytest.raises(ConfigError, match="warp-condition"):
        generate_long(pipeline, context, context_cameras, target_cameras, INTRINSICS, segment_frames=5)
