import json

import pytest
import torch

from hybridmem.errors import CheckpointError
from hybridmem.models.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    brief_list,
    check_state_matches,
    load_model,
    read_config,
    save_model,
)
from hybridmem.models.memory.base import MemoryConfig
from hybridmem.models.vae import VideoVAE, build_vae
from hybridmem.models.world import WorldModel, build_world_model


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, so a wrongly restored zero-init layer would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))


def world_inputs(caption_dim: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    cameras = torch.eye(4).repeat(1, 4, 1, 1)
    cameras[:, :, :3, 3] = torch.randn(1, 4, 3, generator=generator)
    return dict(
        context_latents=torch.randn(1, 1, 4, 6, 10, generator=generator),
        noisy_target=torch.randn(1, 3, 4, 6, 10, generator=generator),
        t=torch.tensor([0.3]),
        cameras=cameras,
        intrinsics=torch.tensor([[0.8, 1.2, 0.5, 0.5]]),
        caption=torch.randn(1, 2, caption_dim, generator=generator),
    )


def test_world_model_round_trip_from_files_alone(tmp_path):
    model = build_world_model(
        "tiny",
        caption_dim=8,
        patch_size=(1, 2, 2),
        memory=MemoryConfig(kind="full", tokenizer_kernel=(1, 2, 2)),
    )
    randomize(model, seed=0)
    model.eval()
    folder = save_model(model, tmp_path / "world")
    assert sorted(path.name for path in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temp files left
    assert read_config(folder)[0] == "WorldModel"

    restored = load_model(folder)
    assert isinstance(restored, WorldModel) and not restored.training
    assert restored.config == model.config
    inputs = world_inputs(caption_dim=8)
    with torch.no_grad():
        assert torch.equal(restored(**inputs), model(**inputs))


def test_vae_round_trip_keeps_latent_normalization(tmp_path):
    torch.manual_seed(0)
    vae = build_vae("tiny", base_channels=8)
    randomize(vae, seed=1)
    vae.set_latent_normalization((0.5, -1.0, 0.0, 2.0), (1.0, 2.0, 3.0, 4.0))
    save_model(vae, tmp_path / "vae")
    restored = load_model(tmp_path / "vae")
    assert isinstance(restored, VideoVAE)
    assert restored.config.latent_scale == (1.0, 2.0, 3.0, 4.0)
    clip = torch.rand(1, 5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(restored.encode(clip).mean, vae.encode(clip).mean)
        latents = torch.randn(1, 2, 4, 2, 2)
        assert torch.equal(restored.decode(latents), vae.decode(latents))


def test_saving_again_overwrites(tmp_path):
    model = build_world_model("tiny")
    save_model(model, tmp_path / "m")
    randomize(model, seed=2)
    save_model(model, tmp_path / "m")
    restored = load_model(tmp_path / "m")
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


def test_missing_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=CONFIG_FILE):
        load_model(tmp_path / "nowhere")
    save_model(build_world_model("tiny"), tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_model(tmp_path / "m")


def test_corrupt_files_raise_checkpoint_error(tmp_path):
    save_model(build_world_model("tiny"), tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_model(tmp_path / "m")


def test_config_weight_mismatch_is_reported(tmp_path):
    save_model(build_world_model("tiny"), tmp_path / "m")
    config_path = tmp_path / "m" / CONFIG_FILE
    document = json.loads(config_path.read_text())
    document["config"]["ffn_dim"] = 96  # the weights hold ffn_dim=128
    config_path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="wrong shape.*ffn"):
        load_model(tmp_path / "m")
    document["config"]["num_layers"] = 3
    document["config"]["ffn_dim"] = 128
    config_path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="missing: blocks.2"):
        load_model(tmp_path / "m")


def test_bad_config_documents(tmp_path):
    save_model(build_world_model("tiny"), tmp_path / "m")
    config_path = tmp_path / "m" / CONFIG_FILE
    document = json.loads(config_path.read_text())
    for change, message in [
        ({"class": "GPT"}, "valid classes: VideoVAE, WorldModel"),
        ({"format": 99}, "format 99"),
        ({"config": {**document["config"], "depth": 4}}, "unknown field"),
        ({"config": {**document["config"], "num_heads": 5}}, "divisible"),
    ]:
        config_path.write_text(json.dumps({**document, **change}))
        with pytest.raises(CheckpointError, match=message):
            load_model(tmp_path / "m")


def test_only_registered_models_can_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="savable classes"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "linear")


# ----------------------------------------------------------------------------------------------------------
# Checking a state against the model it is for (check_state_matches, shared with the official importers)


def small_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(3, 2, generator=generator),
        "a.bias": torch.randn(3, generator=generator),
        "b.weight": torch.randn(2, 3, generator=generator),
        "c.scale": torch.randn(4, generator=generator),
    }


def test_a_matching_state_passes():
    check_state_matches(small_state(0), small_state(1), "model.pth", fix="unused")


def test_missing_unexpected_and_misshapen_keys_are_named_with_the_file_and_the_fix():
    expected = small_state()
    state = {key: value for key, value in expected.items() if key != "a.bias"}
    state["b.weight"] = torch.zeros(5, 3)
    state["z.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as error:
        check_state_matches(expected, state, "ckpt/model.pth", fix="pass the released model.pth")
    assert str(error.value) == (
        "ckpt/model.pth: weights do not match the model (1 missing: a.bias; 1 unexpected: z.extra; "
        "1 wrong shape: b.weight (5, 3), expected (2, 3)); pass the released model.pth"
    )


def test_converted_keys_are_named_as_the_file_holds_them_too():
    expected = {"encoder.conv_in.weight": torch.zeros(2), "encoder.conv_out.weight": torch.zeros(2)}
    state = {"encoder.conv_in.weight": torch.zeros(3), "encoder.extra": torch.zeros(1)}
    file_names = {
        "encoder.conv_in.weight": "model.encoder.conv1.weight",
        "encoder.conv_out.weight": "model.encoder.head.weight",
        "encoder.extra": "model.encoder.extra",
    }
    with pytest.raises(CheckpointError) as error:
        check_state_matches(expected, state, "vae.pth", fix="fix", file_names=file_names)
    message = str(error.value)
    assert "1 missing: encoder.conv_out.weight (in the file: model.encoder.head.weight)" in message
    assert "1 unexpected: encoder.extra (in the file: model.encoder.extra)" in message
    assert "encoder.conv_in.weight (in the file: model.encoder.conv1.weight) (3,), expected (2,)" in message


def test_long_lists_are_cut_with_a_count():
    assert brief_list(["a", "b"]) == "a, b"
    assert brief_list([f"k{index}" for index in range(8)]) == "k0, k1, k2, k3, k4 and 3 more"
    expected = {f"k{index}": torch.zeros(1) for index in range(8)}
    with pytest.raises(CheckpointError, match="8 missing: k0, k1, k2, k3, k4 and 3 more"):
        check_state_matches(expected, {}, "empty.pth", fix="fix")
