import dataclasses

import pytest
import torch

from hybridmem.data import cache
from hybridmem.errors import CheckpointError, ConfigError
from hybridmem.models.checkpoint import load_model
from hybridmem.train import state as train_state
from hybridmem.train.logging import read_metrics
from hybridmem.train.world import train_world

from .helpers import make_latent_cache, tiny_world_config


def config(cache, out, **overrides):
    return tiny_world_config(cache, out, **{"steps": 6, "warmup": 2, "save_every": 3, "keep": 2, **overrides})


@pytest.fixture(scope="module")
def latent_cache(tmp_path_factory):
    return make_latent_cache(tmp_path_factory.mktemp("cache"), clips=3)


def test_resume_continues_the_uninterrupted_loss_curve(latent_cache, tmp_path):
    straight = train_world(config(latent_cache, tmp_path / "straight"))
    assert straight["step"] == 6 and len(straight["losses"]) == 6

    first = train_world(config(latent_cache, tmp_path / "resumed", steps=3))
    second = train_world(config(latent_cache, tmp_path / "resumed", steps=6, resume=True))
    assert first["step"] == 3 and second["step"] == 6
    torch.testing.assert_close(
        torch.tensor(first["losses"] + second["losses"]),
        torch.tensor(straight["losses"]),
        rtol=1e-5,
        atol=1e-6,
    )
    logged = [value for _, _, value in read_metrics(tmp_path / "resumed", "loss")]
    torch.testing.assert_close(torch.tensor(logged), torch.tensor(straight["losses"]), rtol=1e-5, atol=1e-6)
    a = load_model(tmp_path / "straight" / "final")
    b = load_model(tmp_path / "resumed" / "final")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
    assert [p.name for p in train_state.list_checkpoints(tmp_path / "resumed")] == [
        "step_00000003",
        "step_00000006",
    ]


def test_training_reduces_validation_loss(latent_cache, tmp_path):
    result = train_world(
        config(latent_cache, tmp_path / "run", memory="full", steps=12, save_every=0, lr=3e-3, val_every=6)
    )
    val = [value for _, _, value in read_metrics(tmp_path / "run", "val_loss")]
    assert len(val) == 2 and val[1] < val[0]
    assert result["step"] == 12


def test_refuses_to_overwrite_and_to_resume_with_other_flags(latent_cache, tmp_path):
    train_world(config(latent_cache, tmp_path / "run", steps=1))
    with pytest.raises(CheckpointError, match="--resume"):
        train_world(config(latent_cache, tmp_path / "run", steps=2))
    with pytest.raises(CheckpointError, match="--memory 'hydra'"):
        train_world(config(latent_cache, tmp_path / "run", steps=2, memory="window", resume=True))


def test_a_run_saved_before_a_fixed_flag_existed_resumes_with_its_default(latent_cache, tmp_path):
    import json

    train_world(config(latent_cache, tmp_path / "run", steps=1))
    state_file = train_state.latest_checkpoint(tmp_path / "run") / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["camera_rays"]  # as written by the code before --camera-rays
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="--camera-rays False"):
        train_world(config(latent_cache, tmp_path / "run", steps=2, camera_rays=True, resume=True))
    assert train_world(config(latent_cache, tmp_path / "run", steps=2, resume=True))["step"] == 2


def test_a_run_saved_before_a_memory_knob_existed_resumes_with_the_old_behaviour(latent_cache, tmp_path):
    import json

    train_world(config(latent_cache, tmp_path / "run", steps=1))
    # as written before --affinity-rope and --token-positions: those runs scored and placed the memory the
    # old way (MemoryConfig.SAVED_BEFORE_FIELD), so today's defaults would change the run silently
    state_file = train_state.latest_checkpoint(tmp_path / "run") / "state.json"
    run_file = tmp_path / "run" / "run.json"
    state, record = json.loads(state_file.read_text()), json.loads(run_file.read_text())
    for recorded in (state["config"], record["inputs"]["config"]):
        del recorded["affinity_rope"], recorded["token_positions"]
    state_file.write_text(json.dumps(state))
    run_file.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="--affinity-rope 'after' \\(now 'before'\\)"):
        train_world(config(latent_cache, tmp_path / "run", steps=2, resume=True))
    resumed = config(latent_cache, tmp_path / "run", steps=2, resume=True, affinity_rope="after")
    assert train_world(dataclasses.replace(resumed, token_positions="centre"))["step"] == 2


def test_bad_flags_name_the_flag(latent_cache, tmp_path):
    with pytest.raises(ConfigError, match="--precision"):
        train_world(config(latent_cache, tmp_path / "run", precision="fp8"))
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        train_world(config(latent_cache, tmp_path / "run", precision="fp16"))
    with pytest.raises(ConfigError, match="valid kinds"):
        train_world(config(latent_cache, tmp_path / "run", memory="lstm"))
    with pytest.raises(ConfigError, match="valid presets"):
        train_world(config(latent_cache, tmp_path / "run", preset="huge"))
    other_vae = make_latent_cache(tmp_path / "val", clips=1)
    cache.write_index(other_vae, {"vae_config": {"preset": "other"}})
    with pytest.raises(ConfigError, match="another VAE"):
        train_world(config(latent_cache, tmp_path / "run", val_cache=str(other_vae)))


def test_memory_flags_reach_the_saved_model(latent_cache, tmp_path):
    run = tmp_path / "run"
    train_world(
        config(
            latent_cache,
            run,
            steps=1,
            save_every=0,
            memory_window=3,
            memory_top_k=2,
            tokenizer_kernel="1,2,2",
            affinity="eq4",
            memory_scope="context",
        )
    )
    memory = load_model(run / "final").config.memory
    assert (memory.kind, memory.window, memory.top_k) == ("hydra", 3, 2)
    assert (tuple(memory.tokenizer_kernel), memory.affinity, memory.memory_scope) == (
        (1, 2, 2),
        "eq4",
        "context",
    )
    with pytest.raises(ConfigError, match="--tokenizer-kernel"):
        config(latent_cache, tmp_path / "bad", tokenizer_kernel="2x2x2").validate()
    with pytest.raises(ConfigError, match="affinity"):
        config(latent_cache, tmp_path / "bad", affinity="cosine").validate()


@pytest.mark.parametrize("memory", ["window", "fov"])
def test_other_memories_train(latent_cache, tmp_path, memory):
    result = train_world(config(latent_cache, tmp_path / memory, memory=memory, steps=2, save_every=0))
    assert all(torch.isfinite(torch.tensor(result["losses"])))


def test_gradient_checkpointing_gives_the_same_losses(latent_cache, tmp_path):
    plain = train_world(config(latent_cache, tmp_path / "plain", memory="full", steps=2, save_every=0))
    recomputed = train_world(
        config(latent_cache, tmp_path / "ckpt", memory="full", steps=2, save_every=0, grad_checkpointing=True)
    )
    torch.testing.assert_close(torch.tensor(recomputed["losses"]), torch.tensor(plain["losses"]))


def test_bf16_autocast_on_cpu(latent_cache, tmp_path):
    result = train_world(config(latent_cache, tmp_path / "bf16", memory="full", steps=1, precision="bf16"))
    assert torch.isfinite(torch.tensor(result["losses"])).all()


def test_sample_latents_needs_logvar(latent_cache, tmp_path):
    with pytest.raises(ConfigError, match="--store-logvar"):
        train_world(config(latent_cache, tmp_path / "run", sample_latents=True))
    with_logvar = make_latent_cache(tmp_path / "cache", clips=2, logvar=True)
    mean_only = train_world(config(with_logvar, tmp_path / "mean", memory="full", steps=1))
    sampled = train_world(
        config(with_logvar, tmp_path / "sampled", memory="full", steps=1, sample_latents=True)
    )
    assert sampled["losses"] != mean_only["losses"]
