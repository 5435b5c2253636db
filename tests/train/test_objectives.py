"""The mean objective (t = 1 only, one sampling step) and the subject-weighted loss."""

import numpy as np
import pytest
import torch

from hybridmem.data import cache
from hybridmem.data.hmworld import load_clip
from hybridmem.errors import ConfigError
from hybridmem.models.checkpoint import load_model
from hybridmem.sample.pipeline import sampling_steps
from hybridmem.train.config import WorldTrainConfig
from hybridmem.train.world import flow_loss, subject_cell_weights, train_world, training_timesteps

from .helpers import make_latent_cache
from .test_world import config


@pytest.fixture(scope="module")
def latent_cache(tmp_path_factory):
    return make_latent_cache(tmp_path_factory.mktemp("cache"), clips=3)


def test_mean_objective_trains_at_t_one_and_samples_in_one_step(latent_cache, tmp_path):
    run = config(latent_cache, tmp_path / "run", objective="mean", memory="full", steps=2)
    assert torch.equal(training_timesteps(run, 3, torch.Generator().manual_seed(0)), torch.ones(3))
    flow_run = config(latent_cache, tmp_path / "flow", steps=2)
    drawn = training_timesteps(flow_run, 64, torch.Generator().manual_seed(0))
    assert 0 < drawn.min() and drawn.max() < 1
    train_world(run)
    model = load_model(tmp_path / "run" / "final")
    assert model.config.objective == "mean"
    assert sampling_steps(model.config, 20) == 1 and sampling_steps(load_model_config("flow"), 20) == 20


def load_model_config(objective):
    from hybridmem.models.world import dit_config

    return dit_config("tiny", latent_channels=4, objective=objective)


def test_mean_model_is_sampled_by_one_call_at_t_one():
    from hybridmem.sample.pipeline import WorldPipeline

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = load_model_config("mean")
            self.times = []

        def forward(self, context, noisy, t, cameras, intrinsics, caption):
            self.times.append(float(torch.as_tensor(t).flatten()[0]))
            return noisy - 0.5  # "velocity": then x_0 = noise - v = 0.5 everywhere

    class Vae(torch.nn.Module):
        config = type("C", (), {"latent_channels": 4})()

    world = Recorder()
    pipeline = WorldPipeline.__new__(WorldPipeline)
    pipeline.world_model, pipeline.steps, pipeline.shift = world, 20, 5.0
    pipeline.device = torch.device("cpu")
    context = torch.zeros(1, 2, 4, 4, 4)
    latents = pipeline.denoise(
        context, torch.eye(4).repeat(4, 1, 1), torch.tensor([0.8, 0.8, 0.5, 0.5]), 2, 0, 20, None, 1.0, None
    )
    assert world.times == [1.0]
    assert torch.allclose(latents, torch.full_like(latents, 0.5))


def test_unit_weights_give_the_plain_loss_and_weights_move_it():
    torch.manual_seed(0)
    model = lambda context, noisy, t, cameras, intrinsics, caption: noisy * 0.3  # noqa: E731
    batch = {
        "context_latents": torch.randn(2, 2, 4, 3, 5),
        "target_latents": torch.randn(2, 3, 4, 3, 5),
        "cameras": None,
        "intrinsics": None,
    }
    t, noise = torch.rand(2), torch.randn(2, 3, 4, 3, 5)
    plain = flow_loss(model, batch, t, noise, None)
    weighted = flow_loss(model, {**batch, "target_weights": torch.ones(2, 3, 3, 5)}, t, noise, None)
    torch.testing.assert_close(plain, weighted)
    # one cell weighted up: the loss is the weighted mean of per-cell squared errors (a slow reference)
    weights = torch.ones(2, 3, 3, 5)
    weights[1, 2, 0, 4] = 9.0
    got = flow_loss(model, {**batch, "target_weights": weights}, t, noise, None)
    velocity = model(
        None,
        (1 - t.view(2, 1, 1, 1, 1)) * batch["target_latents"] + t.view(2, 1, 1, 1, 1) * noise,
        t,
        0,
        0,
        0,
    )
    total = 0.0
    for b in range(2):
        for f in range(3):
            for y in range(3):
                for x in range(5):
                    error = velocity[b, f, :, y, x] - (
                        noise[b, f, :, y, x] - batch["target_latents"][b, f, :, y, x]
                    )
                    total += float(weights[b, f, y, x]) * float(error.pow(2).mean())
    assert abs(float(got) - total / float(weights.sum())) < 1e-5


def test_subject_cell_weights_match_a_per_cell_reference(tmp_path):
    pytest.importorskip("moderngl")
    from hybridmem.world.config import WorldConfig
    from hybridmem.world.generate import generate

    world = WorldConfig(width=64, height=48, context_frames=9, target_frames=9, min_hidden_frames=3, seed=1)
    generate(world, tmp_path / "w", num_clips=1, split="train", workers=1, progress=False)
    folder = tmp_path / "w" / "train" / "000000"
    clip = load_clip(folder)
    entry = {"source": str(folder), "target_latents": torch.zeros(3, 4, 6, 8)}  # f8: 48x64 -> 6x8
    weights = subject_cell_weights(entry, 5.0, temporal_stride=4)
    ids = clip.instance_ids[clip.target]
    expected = np.ones((3, 6, 8))
    frames_of = {0: [0], 1: [1, 2, 3, 4], 2: [5, 6, 7, 8]}
    for k, frames in frames_of.items():
        for y in range(6):
            for x in range(8):
                if np.any(ids[frames, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8] > 0):
                    expected[k, y, x] = 5.0
    np.testing.assert_array_equal(weights.numpy(), expected)
    assert (expected == 5.0).any()
    with pytest.raises(ConfigError, match="source folder"):
        subject_cell_weights(
            {"source": str(tmp_path / "gone"), "target_latents": entry["target_latents"]}, 5.0, 4
        )


def test_subject_weight_trains_from_a_cache_with_sources(tmp_path):
    # the tiny random cache has no source folders: the flag names the problem before training
    folder = make_latent_cache(tmp_path / "cache", clips=2)
    with pytest.raises(ConfigError, match="--subject-weight"):
        train_world(config(folder, tmp_path / "run", subject_weight=4.0, steps=1))
    with pytest.raises(ConfigError, match="--subject-weight"):
        WorldTrainConfig(cache="c", out="o", subject_weight=0.5).validate()
    with pytest.raises(ConfigError, match="--objective"):
        WorldTrainConfig(cache="c", out="o", objective="x0").validate()
    assert cache.read_index(folder)["split"] == "train"


def test_warp_condition_trains_from_a_cache_with_warp_latents_only(tmp_path):
    folder = make_latent_cache(tmp_path / "cache", clips=2)
    with pytest.raises(ConfigError, match="--store-warp"):
        train_world(config(folder, tmp_path / "refused", warp_condition=True, steps=1))
    for path in (folder / cache.CLIPS_DIR).glob("*.safetensors"):
        entry = cache.read_clip_entry(path)
        tensors = {key: value for key, value in entry.items() if isinstance(value, torch.Tensor)}
        tensors["target_warp_latents"] = torch.randn(entry["target_latents"].shape)
        cache.write_clip_entry(folder, path.stem, tensors, {"caption": "", "events": []})
    train_world(config(folder, tmp_path / "run", warp_condition=True, memory="full", steps=2))
    assert load_model(tmp_path / "run" / "final").config.warp_condition is True


def test_warp_source_must_match_the_cache(tmp_path):
    import json

    folder = make_latent_cache(tmp_path / "cache", clips=2)
    for path in (folder / cache.CLIPS_DIR).glob("*.safetensors"):
        entry = cache.read_clip_entry(path)
        tensors = {key: value for key, value in entry.items() if isinstance(value, torch.Tensor)}
        tensors["target_warp_latents"] = torch.randn(entry["target_latents"].shape)
        cache.write_clip_entry(folder, path.stem, tensors, {"caption": "", "events": []})
    with pytest.raises(ConfigError, match="--warp-source needs --warp-condition"):
        WorldTrainConfig(cache="c", out="o", warp_source="last").validate()
    with pytest.raises(ConfigError, match="--warp-source 'first'"):
        WorldTrainConfig(cache="c", out="o", warp_condition=True, warp_source="first").validate()
    # the cache holds the warp of every context frame (no warp_source recorded): "last" is refused
    with pytest.raises(ConfigError, match="encode --store-warp --warp-source last"):
        train_world(config(folder, tmp_path / "refused", warp_condition=True, warp_source="last", steps=1))
    index_path = folder / cache.INDEX_FILE
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({**index, "warp_source": "last"}))
    train_world(
        config(folder, tmp_path / "run", warp_condition=True, warp_source="last", memory="full", steps=2)
    )
    assert load_model(tmp_path / "run" / "final").config.warp_source == "last"
