"""hybridmem.official.vae against the official Wan2.1 VAE's numbers (tests/fixtures/official_hydra, README C)
and its checkpoint errors."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.jsonio import read_json
from hybridmem.official.vae import (
    OFFICIAL_TILING,
    WAN21_LATENTS_MEAN,
    WAN21_LATENTS_STD,
    VAETiling,
    WanVAEConfig,
    convert_official_vae_state,
    load_wan_vae,
    vae_parity,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official_hydra"


@pytest.fixture(scope="module")
def fixture_config() -> WanVAEConfig:
    record = read_json(FIXTURE / "vae_config.json")
    return WanVAEConfig.from_official_kwargs(
        record["inner_kwargs"], latents_mean=record["latents_mean"], latents_std=record["latents_std"]
    )


@pytest.fixture(scope="module")
def fixture_state() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE / "vae.pth", map_location="cpu", weights_only=True)


def saved(tmp_path: Path, state: dict, name: str = "vae.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_parity_with_the_official_vae():
    differences = vae_parity(FIXTURE)
    assert set(differences) == {"vae latents", "vae decode", "vae decode unclamped"}
    assert differences["vae latents"] <= 1e-5
    assert differences["vae decode"] <= 5e-5
    assert differences["vae decode unclamped"] <= 5e-5


def test_parity_of_a_folder_without_vae_files_is_empty(tmp_path):
    assert vae_parity(tmp_path) == {}


def test_parity_refuses_a_folder_with_only_some_vae_files(tmp_path):
    (tmp_path / "vae_config.json").write_bytes((FIXTURE / "vae_config.json").read_bytes())
    with pytest.raises(DataError, match="vae.pth"):
        vae_parity(tmp_path)


def test_one_tile_video_is_the_same_tiled_and_untiled(fixture_config):
    video = load_file(str(FIXTURE / "vae_inputs.safetensors"))["video"]
    latents = load_file(str(FIXTURE / "vae_expected.safetensors"))["latents"]
    # the fixture video fits in one official tile (240 x 416 pixels), so tiling must change nothing
    assert video.shape[-2] <= 8 * OFFICIAL_TILING.size[0] and video.shape[-1] <= 8 * OFFICIAL_TILING.size[1]
    untiled = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=None)
    tiled = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=OFFICIAL_TILING)
    assert torch.equal(tiled.encode(video), untiled.encode(video))
    assert torch.equal(tiled.decode(latents), untiled.decode(latents))


def test_official_tiling_is_passed_to_diffusers_in_pixels(fixture_config):
    vae = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=OFFICIAL_TILING)
    autoencoder = vae.autoencoder
    assert autoencoder.use_tiling
    assert (autoencoder.tile_sample_min_height, autoencoder.tile_sample_min_width) == (240, 416)
    assert (autoencoder.tile_sample_stride_height, autoencoder.tile_sample_stride_width) == (120, 208)
    vae.set_tiling(None)
    assert not autoencoder.use_tiling


def test_tiling_needs_overlapping_tiles():
    with pytest.raises(ConfigError, match="stride"):
        VAETiling(size=(30, 52), stride=(31, 26))


def test_unclamped_decode_is_the_clamped_one_before_the_clamp(fixture_config):
    vae = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=None)
    latents = 3.0 * torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    unclamped = vae.decode(latents, clamp=False)
    assert unclamped.shape == (1, 3, 5, 16, 16)
    assert unclamped.abs().max() > 1.0  # the clamp has something to do, so the comparison means something
    assert torch.equal(unclamped.clamp(-1.0, 1.0), vae.decode(latents))


def test_unclamped_decode_refuses_latents_that_would_be_tiled(fixture_config):
    vae = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=VAETiling(size=(2, 2), stride=(1, 1)))
    with pytest.raises(ConfigError, match="set_tiling"):
        vae.decode(torch.zeros(1, 16, 1, 4, 4), clamp=False)


def test_encode_refuses_a_frame_count_the_causal_encoder_would_cut(fixture_config):
    vae = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=None)
    with pytest.raises(DataError, match="1 \\+ 4k"):
        vae.encode(torch.zeros(1, 3, 6, 16, 16))


def test_encode_refuses_pixels_outside_minus_one_one(fixture_config):
    vae = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=None)
    with pytest.raises(DataError, match="\\[-1, 1\\]"):
        vae.encode(torch.full((1, 3, 1, 16, 16), 255.0))


def test_released_layout_without_prefix_loads_the_same(tmp_path, fixture_config, fixture_state):
    released = {key.removeprefix("model."): value for key, value in fixture_state.items()}
    assert convert_official_vae_state(released).keys() == convert_official_vae_state(fixture_state).keys()
    vae = load_wan_vae(saved(tmp_path, released), fixture_config, tiling=None)
    weight = vae.autoencoder.encoder.conv_in.weight
    assert torch.equal(weight, fixture_state["model.encoder.conv1.weight"])


def test_bfloat16_and_float32_files_both_load(tmp_path, fixture_config, fixture_state):
    bf16_path = saved(tmp_path, {key: value.to(torch.bfloat16) for key, value in fixture_state.items()})
    from_bf16 = load_wan_vae(bf16_path, fixture_config, dtype=torch.float32, tiling=None)
    weight = from_bf16.autoencoder.encoder.conv_in.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, fixture_state["model.encoder.conv1.weight"].to(torch.bfloat16).float())

    as_bf16 = load_wan_vae(FIXTURE / "vae.pth", fixture_config, dtype=torch.bfloat16, tiling=None)
    assert {parameter.dtype for parameter in as_bf16.parameters()} == {torch.bfloat16}
    latents = as_bf16.encode(torch.zeros(1, 3, 1, 16, 16))
    assert latents.dtype == torch.bfloat16 and latents.shape == (1, 16, 1, 2, 2)


def test_missing_key_is_named(tmp_path, fixture_config, fixture_state):
    state = {key: value for key, value in fixture_state.items() if key != "model.encoder.conv1.weight"}
    with pytest.raises(CheckpointError, match="missing: encoder.conv_in.weight") as error:
        load_wan_vae(saved(tmp_path, state), fixture_config)
    assert error.value.__context__ is None  # found before torch's load_state_dict could raise


def test_unexpected_key_is_named(tmp_path, fixture_config, fixture_state):
    state = dict(fixture_state, **{"model.encoder.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="unexpected: encoder.extra.weight") as error:
        load_wan_vae(saved(tmp_path, state), fixture_config)
    assert "in the file: model.encoder.extra.weight" in str(error.value)
    assert error.value.__context__ is None


def test_wrong_shape_is_named(tmp_path, fixture_config, fixture_state):
    state = dict(fixture_state, **{"model.conv1.bias": torch.zeros(5)})
    with pytest.raises(CheckpointError, match="wrong shape: quant_conv.bias") as error:
        load_wan_vae(saved(tmp_path, state), fixture_config)
    assert "in the file: model.conv1.bias" in str(error.value) and "(5,), expected (32,)" in str(error.value)
    assert error.value.__context__ is None


def test_architecture_mismatch_is_a_checkpoint_error(fixture_state):
    # the real Wan2.1 architecture (base_dim 96) against the fixture's base-dim-8 weights
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_wan_vae(FIXTURE / "vae.pth")


def test_mixed_key_layouts_are_refused(tmp_path, fixture_config, fixture_state):
    state = dict(fixture_state, **{"encoder.conv1.weight": fixture_state["model.encoder.conv1.weight"]})
    with pytest.raises(CheckpointError, match="one layout or the other"):
        load_wan_vae(saved(tmp_path, state), fixture_config)


def test_missing_file_names_the_path_and_the_release(tmp_path):
    with pytest.raises(CheckpointError, match="Wan2.1_VAE.pth in the released Wan2.1-T2V-1.3B") as error:
        load_wan_vae(tmp_path / "Wan2.1_VAE.pth")
    assert str(tmp_path / "Wan2.1_VAE.pth") in str(error.value)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "Wan2.1_VAE.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_wan_vae(path)


def test_default_statistics_are_the_fixture_constants():
    record = read_json(FIXTURE / "vae_config.json")
    for ours, theirs in ((WAN21_LATENTS_MEAN, "latents_mean"), (WAN21_LATENTS_STD, "latents_std")):
        assert torch.equal(torch.tensor(ours, dtype=torch.float32), torch.tensor(record[theirs]))


def test_official_kwargs_with_an_unknown_field_are_refused():
    with pytest.raises(ConfigError, match="unknown \\['width'\\]"):
        WanVAEConfig.from_official_kwargs({"dim": 8, "width": 3})
