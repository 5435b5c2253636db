"""hybridmem.official.vae against the official Wan2.1 VAE's numbers (tests/fixtures/official_hydra, README C)
and its checkpoint errors."""

from pathlib import Path

import pytest
import torch

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
    tile_mask,
    tile_ramp,
    tile_starts,
    vae_parity,
)

from .tiny_release import FIXTURE


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


# ----------------------------------------------------------------------------------------------------------
# Tiling: the official tiler (diffsynth WanVideoVAE.tiled_encode / tiled_decode) against a slow reference


def official_tile_starts(length: int, size: int, stride: int) -> list[int]:
    """The official loop as written: a start every stride, skipping one whose predecessor reaches the end."""
    return [
        start
        for start in range(0, length, stride)
        if not (start - stride >= 0 and start - stride + size >= length)
    ]


def ramp_weight(position: int, length: int, border: int, first: bool, last: bool) -> float:
    """One cell's weight along one axis of a tile: the official build_1d_mask, one cell at a time."""
    weight = 1.0
    if not first and position < border:
        weight = (position + 1) / border
    if not last and position >= length - border:  # written second, so it wins where the ramps meet
        weight = (length - position) / border
    return weight


def reference_tiled(run, inputs, tiling: VAETiling, cells_in: int, cells_out: int) -> torch.Tensor:
    """Weighted tiles accumulated one output cell at a time, in float64, then divided by the weights."""
    height, width = inputs.shape[-2] // cells_in, inputs.shape[-1] // cells_in
    border_h = (tiling.size[0] - tiling.stride[0]) * cells_out  # the overlap, in output cells
    border_w = (tiling.size[1] - tiling.stride[1]) * cells_out
    numerator = denominator = None
    for top in official_tile_starts(height, tiling.size[0], tiling.stride[0]):
        bottom = min(top + tiling.size[0], height)
        for left in official_tile_starts(width, tiling.size[1], tiling.stride[1]):
            right = min(left + tiling.size[1], width)
            tile = run(inputs[..., top * cells_in : bottom * cells_in, left * cells_in : right * cells_in])
            tile = tile.double()
            if numerator is None:
                numerator = torch.zeros(*tile.shape[:3], height * cells_out, width * cells_out).double()
                denominator = torch.zeros(height * cells_out, width * cells_out).double()
            tile_height, tile_width = tile.shape[-2:]
            for i in range(tile_height):
                weight_i = ramp_weight(i, tile_height, border_h, top == 0, bottom == height)
                for j in range(tile_width):
                    weight_j = ramp_weight(j, tile_width, border_w, left == 0, right == width)
                    weight = min(weight_i, weight_j)
                    numerator[..., top * cells_out + i, left * cells_out + j] += weight * tile[..., i, j]
                    denominator[top * cells_out + i, left * cells_out + j] += weight
    assert denominator.min() > 0  # every output cell covered
    return numerator / denominator


# 6 x 10 latent cells in tiles of 4 x 5 every 2 x 3: 2 x 3 tiles, each overlapping its neighbours
SMALL_TILING = VAETiling(size=(4, 5), stride=(2, 3))


@pytest.fixture(scope="module")
def tiled_and_untiled(fixture_config):
    return (
        load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=SMALL_TILING),
        load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=None),
    )


def test_tiled_encode_is_the_official_blend_of_untiled_tiles(tiled_and_untiled):
    tiled, untiled = tiled_and_untiled
    video = torch.rand(1, 3, 5, 48, 80, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert tile_starts(6, 4, 2) == [0, 2] and tile_starts(10, 5, 3) == [0, 3, 6]  # tiles in both axes
    latents = tiled.encode(video)
    expected = reference_tiled(untiled.encode, video, SMALL_TILING, cells_in=8, cells_out=1)
    assert latents.shape == expected.shape == (1, 16, 2, 6, 10)
    assert (latents.double() - expected).abs().max() < 1e-6
    # the blend matters: the untiled encoding (one receptive field over the whole frame) is elsewhere
    assert (untiled.encode(video) - latents).abs().max() > 1e-3


def test_tiled_decode_is_the_official_blend_of_unclamped_tiles_then_the_clamp(tiled_and_untiled):
    tiled, untiled = tiled_and_untiled
    latents = 3.0 * torch.randn(1, 16, 2, 6, 10, generator=torch.Generator().manual_seed(1))
    unclamped = tiled.decode(latents, clamp=False)
    expected = reference_tiled(
        lambda tile: untiled.decode(tile, clamp=False), latents, SMALL_TILING, cells_in=1, cells_out=8
    )
    assert unclamped.shape == expected.shape == (1, 3, 5, 48, 80)
    assert (unclamped.double() - expected).abs().max() < 1e-6
    assert unclamped.abs().max() > 1.0  # so the clamp has something to do
    clamped = tiled.decode(latents)
    assert (clamped.double() - expected.clamp(-1, 1)).abs().max() < 1e-6


def test_one_tile_video_is_the_same_tiled_and_untiled(tiled_and_untiled):
    tiled, untiled = tiled_and_untiled
    # 32 x 40 pixels, 4 x 5 latent cells: exactly one SMALL_TILING tile, so tiling must change nothing
    video = torch.rand(1, 3, 5, 32, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
    latents = 3.0 * torch.randn(1, 16, 2, 4, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(tiled.encode(video), untiled.encode(video))
    assert torch.equal(tiled.decode(latents), untiled.decode(latents))
    assert torch.equal(tiled.decode(latents, clamp=False), untiled.decode(latents, clamp=False))


def test_tile_grid_is_the_official_loop():
    # HyDRA at 480 x 832: 60 x 104 latent cells in tiles of 30 x 52 every 15 x 26
    assert (OFFICIAL_TILING.size, OFFICIAL_TILING.stride, OFFICIAL_TILING.overlap) == (
        (30, 52),
        (15, 26),
        (15, 26),
    )
    assert tile_starts(60, 30, 15) == [0, 15, 30] and tile_starts(104, 52, 26) == [0, 26, 52]
    assert tile_starts(30, 30, 15) == [0]  # one tile reaches the end: no second one
    for length in range(1, 40):
        for size in range(2, 12):
            for stride in range(1, size):
                assert tile_starts(length, size, stride) == official_tile_starts(length, size, stride)


def test_tile_mask_is_the_official_formula():
    third = 1 / 3
    # a middle tile: a ramp of 3 at each side
    assert torch.allclose(
        tile_ramp(6, 3, first=False, last=False), torch.tensor([third, 2 * third, 1, 1, 2 * third, third])
    )
    # the first tile ramps only towards its neighbour
    assert torch.allclose(
        tile_ramp(6, 3, first=True, last=False), torch.tensor([1, 1, 1, 1, 2 * third, third])
    )
    # ramps that meet (tile shorter than twice the border): the end ramp overwrites, as the official code
    assert torch.allclose(
        tile_ramp(4, 3, first=False, last=False), torch.tensor([third, 1, 2 * third, third])
    )
    # 2-D: the smaller of the h ramp [1/2, 1, 1] and the w ramp [1, 1, 1, 1/2] at each cell
    mask = tile_mask(3, 4, border=(2, 2), bounds=(False, True, True, False))
    expected = torch.tensor([[0.5, 0.5, 0.5, 0.5], [1, 1, 1, 0.5], [1, 1, 1, 0.5]])
    assert mask.shape == (3, 4) and torch.equal(mask, expected)


def test_tiling_needs_overlapping_tiles():
    with pytest.raises(ConfigError, match="stride"):
        VAETiling(size=(30, 52), stride=(31, 26))
    with pytest.raises(ConfigError, match="overlap"):
        VAETiling(size=(30, 52), stride=(30, 26))  # touching tiles: the official mask has no ramp to build


def test_untiled_decode_is_diffusers_decode_with_the_clamp_last(fixture_config):
    vae = load_wan_vae(FIXTURE / "vae.pth", fixture_config, tiling=None)
    assert not vae.autoencoder.use_tiling  # diffusers' own tiler is never switched on
    latents = 3.0 * torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    unclamped = vae.decode(latents, clamp=False)
    assert unclamped.shape == (1, 3, 5, 16, 16)
    assert unclamped.abs().max() > 1.0  # the clamp has something to do, so the comparison means something
    mean, std = torch.tensor(fixture_config.latents_mean), torch.tensor(fixture_config.latents_std)
    z = latents / (1.0 / std).view(1, -1, 1, 1, 1) + mean.view(1, -1, 1, 1, 1)
    with torch.no_grad():
        diffusers_video = vae.autoencoder.decode(z).sample  # clamped inside
    assert torch.equal(unclamped.clamp(-1.0, 1.0), diffusers_video)
    assert torch.equal(vae.decode(latents), diffusers_video)


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


def test_safetensors_and_wrapped_files_load_the_same(tmp_path, fixture_config, fixture_state):
    from safetensors.torch import save_file

    save_file(fixture_state, str(tmp_path / "vae.safetensors"))
    torch.save({"state_dict": fixture_state}, tmp_path / "wrapped.pth")
    for path in (tmp_path / "vae.safetensors", tmp_path / "wrapped.pth"):
        vae = load_wan_vae(path, fixture_config, tiling=None)
        assert torch.equal(
            vae.autoencoder.encoder.conv_in.weight, fixture_state["model.encoder.conv1.weight"]
        )


def test_default_statistics_are_the_fixture_constants():
    record = read_json(FIXTURE / "vae_config.json")
    for ours, theirs in ((WAN21_LATENTS_MEAN, "latents_mean"), (WAN21_LATENTS_STD, "latents_std")):
        assert torch.equal(torch.tensor(ours, dtype=torch.float32), torch.tensor(record[theirs]))


def test_official_kwargs_with_an_unknown_field_are_refused():
    with pytest.raises(ConfigError, match="unknown \\['width'\\]"):
        WanVAEConfig.from_official_kwargs({"dim": 8, "width": 3})


def test_the_vae_tiles_as_the_official_pipeline_by_default(fixture_config):
    assert load_wan_vae(FIXTURE / "vae.pth", fixture_config).tiling == OFFICIAL_TILING
