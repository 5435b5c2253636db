import pytest
import torch

from hybridmem.errors import ConfigError
from hybridmem.models.vae import VAE_PRESETS, VAEConfig, build_vae, fit_latent_normalization, vae_config


@pytest.fixture(autouse=True)
def one_thread():
    """Run on one intra-op thread: on a small shared CI machine two threads per test process oversubscribe
    the cores and a training loop gets many times slower (measured 14 s vs 240 s for the fit below)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def moving_shapes_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """A red square moving right and a dim blue bar moving left on black, in [-1, 1]: "1 T 3 H W"."""
    clip = -torch.ones(frames, 3, height, width)
    for t in range(frames):
        left = 2 + 3 * t
        clip[t, 0, 2:8, left : left + 6] = 1.0
        right = width - 4 - 2 * t
        clip[t, 2, height - 6 : height - 2, right - 4 : right] = 0.5
    return clip[None]


@pytest.mark.parametrize(
    "spatial_factor, height, width", [(8, 24, 40), (8, 40, 24), (4, 12, 20), (16, 48, 16)]
)
def test_shapes_on_odd_latent_grids_and_aspect_ratios(spatial_factor, height, width):
    torch.manual_seed(0)
    vae = build_vae("tiny", base_channels=8, spatial_factor=spatial_factor)
    for frames in (1, 9):
        clip = torch.rand(1, frames, 3, height, width) * 2 - 1
        posterior = vae.encode(clip)
        latent_frames = (frames - 1) // 4 + 1
        expected = (1, latent_frames, 4, height // spatial_factor, width // spatial_factor)
        assert posterior.mean.shape == posterior.logvar.shape == expected
        assert vae.decode(posterior.mode()).shape == clip.shape


def test_bad_frame_count_and_size_raise_clear_errors():
    vae = build_vae("tiny", base_channels=8)
    with pytest.raises(ConfigError, match="4k\\+1"):
        vae.encode(torch.zeros(1, 6, 3, 16, 16))
    with pytest.raises(ConfigError, match="spatial factor 8"):
        vae.encode(torch.zeros(1, 5, 3, 20, 16))
    with pytest.raises(ConfigError, match="latents"):
        vae.decode(torch.zeros(1, 2, 3, 2, 2))


def test_encoder_is_causal():
    torch.manual_seed(0)
    vae = build_vae("tiny", base_channels=8)
    clip = torch.rand(1, 13, 3, 16, 24) * 2 - 1
    reference = vae.encode(clip).mean  # 1 4 C h w
    for latent_index in range(3):
        # latent j depends only on frames <= 4j: change every later frame
        changed = clip.clone()
        changed[:, 4 * latent_index + 1 :] = torch.rand_like(changed[:, 4 * latent_index + 1 :])
        means = vae.encode(changed).mean
        assert torch.equal(means[:, : latent_index + 1], reference[:, : latent_index + 1])
        assert not torch.allclose(means[:, latent_index + 1], reference[:, latent_index + 1])


def test_first_latent_frame_ignores_later_frames():
    torch.manual_seed(1)
    vae = build_vae("tiny", base_channels=8)
    clip = torch.rand(1, 9, 3, 16, 16) * 2 - 1
    alone = vae.encode(clip[:, :1]).mean  # the first frame encoded on its own
    together = vae.encode(clip).mean
    torch.testing.assert_close(together[:, :1], alone, atol=1e-6, rtol=0)


def test_decoder_is_causal():
    torch.manual_seed(2)
    vae = build_vae("tiny", base_channels=8)
    latents = torch.randn(1, 3, 4, 2, 2)
    reference = vae.decode(latents)  # 1 9 3 H W
    changed = latents.clone()
    changed[:, 2] += 1.0  # latent 2 covers frames 5..8
    frames = vae.decode(changed)
    assert torch.equal(frames[:, :5], reference[:, :5])
    assert not torch.allclose(frames[:, 5:], reference[:, 5:])


def test_posterior_sampling_is_seeded():
    torch.manual_seed(3)
    posterior = build_vae("tiny", base_channels=8).encode(torch.rand(2, 5, 3, 16, 16))
    first = posterior.sample(torch.Generator().manual_seed(0))
    second = posterior.sample(torch.Generator().manual_seed(0))
    assert torch.equal(first, second)
    assert not torch.equal(first, posterior.sample(torch.Generator().manual_seed(1)))
    assert torch.equal(posterior.mode(), posterior.mean)
    assert posterior.kl().shape == (2,)


def test_latent_normalization_round_trip():
    vae = build_vae("tiny", base_channels=8)
    generator = torch.Generator().manual_seed(4)
    latents = (
        torch.randn(3, 2, 4, 5, 5, generator=generator) * torch.tensor([1.0, 2.0, 0.5, 3.0])[:, None, None]
        + torch.tensor([0.0, 1.0, -2.0, 5.0])[:, None, None]
    )
    shift, scale = fit_latent_normalization(latents)
    vae.set_latent_normalization(shift, scale)
    assert vae.config.latent_shift == shift and len(shift) == 4
    normalized = vae.normalize(latents)
    per_channel = normalized.transpose(0, 2).reshape(4, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(vae.denormalize(normalized), latents, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="latent_scale"):
        vae.set_latent_normalization(shift, scale[:2])


def test_presets_and_config_round_trip():
    assert set(VAE_PRESETS) == {"tiny", "small", "base", "grouped-tiny", "grouped-compact", "grouped-base"}
    assert vae_config("base").latent_channels == 16 and vae_config("base").spatial_factor == 8
    assert vae_config("tiny").latent_channels < 16
    with pytest.raises(ConfigError, match="valid presets: tiny, small, base, grouped-tiny"):
        build_vae("large")
    with pytest.raises(ConfigError, match="spatial_factor"):
        vae_config("tiny", spatial_factor=6)
    config = vae_config("small", latent_shift=(0.0,) * 8, latent_scale=(2.0,) * 8)
    import json

    assert VAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_short_fit_reconstructs_better_than_init():
    torch.manual_seed(0)
    vae = build_vae("tiny", base_channels=8)
    clip = moving_shapes_clip(5, 16, 24)
    with torch.no_grad():
        error_at_init = (vae.decode(vae.encode(clip).mode()) - clip).pow(2).mean().item()
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(120):
        reconstruction, posterior = vae(clip, generator)
        loss = (reconstruction - clip).pow(2).mean() + 1e-4 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        error_after = (vae.decode(vae.encode(clip).mode()) - clip).pow(2).mean().item()
    assert error_after < 0.2 * error_at_init


@pytest.mark.parametrize("chunk", [1, 2])
def test_streamed_encode_and_decode_equal_whole_clip(chunk):
    # The fast-memory path (cached causal state, chunk latent frames at a time) against the whole clip.
    torch.manual_seed(5)
    vae = build_vae("tiny", base_channels=8)
    clip = torch.rand(1, 13, 3, 16, 24) * 2 - 1
    latents = torch.randn(1, 4, 4, 2, 3)
    with torch.no_grad():
        whole = vae.encode(clip)
        streamed = vae.encode(clip, chunk=chunk)
        torch.testing.assert_close(streamed.mean, whole.mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(streamed.logvar, whole.logvar, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            vae.decode(latents, chunk=chunk), vae.decode(latents), atol=1e-5, rtol=1e-5
        )
    with pytest.raises(ConfigError, match="chunk"):
        vae.encode(clip, chunk=-1)


# --- the grouped design -----------------------------------------------------------------------------------


def _thumbnail_reference(clip: torch.Tensor, factor: int) -> torch.Tensor:
    """Slow reference of a new grouped VAE's round trip: every frame on its own, area-downsampled by
    `factor` with explicit block means, then bicubic-upsampled: "1 T 3 H W"."""
    frames = []
    for frame in clip[0]:  # 3 H W
        channels, height, width = frame.shape
        blocks = frame.reshape(channels, height // factor, factor, width // factor, factor).mean(dim=(2, 4))
        frames.append(
            torch.nn.functional.interpolate(
                blocks[None], scale_factor=factor, mode="bicubic", align_corners=False
            )[0]
        )
    return torch.stack(frames)[None]


@pytest.mark.parametrize("spatial_factor, height, width", [(8, 24, 40), (4, 12, 20), (16, 48, 32)])
def test_grouped_vae_starts_as_the_thumbnail_baseline(spatial_factor, height, width):
    torch.manual_seed(6)
    vae = build_vae("grouped-tiny", spatial_factor=spatial_factor)
    clip = torch.rand(1, 9, 3, height, width) * 2 - 1
    with torch.no_grad():
        posterior = vae.encode(clip)
        assert posterior.mean.shape == (1, 3, 16, height // spatial_factor, width // spatial_factor)
        decoded = vae.decode(posterior.mode())
    torch.testing.assert_close(decoded, _thumbnail_reference(clip, spatial_factor), atol=1e-5, rtol=0)
    # the 12 thumbnail channels of latent frame 1 are frames 1..4 downsampled, the other 4 start at zero
    thumbs = posterior.mean[0, 1, :12].reshape(4, 3, height // spatial_factor, width // spatial_factor)
    expected = torch.nn.functional.avg_pool2d(clip[0, 1:5], spatial_factor)
    torch.testing.assert_close(thumbs, expected, atol=1e-6, rtol=0)
    assert torch.equal(posterior.mean[0, :, 12:], torch.zeros_like(posterior.mean[0, :, 12:]))


def test_grouped_vae_latent_depends_on_its_own_group_only():
    # A bounded temporal receptive field: the clip's length and the other groups cannot change a latent,
    # so a VAE trained on short windows behaves the same on long segments.
    torch.manual_seed(7)
    vae = build_vae("grouped-tiny")
    for parameter in vae.parameters():  # leave the zero-initialised state, so the learned paths count
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    clip = torch.rand(1, 33, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        whole = vae.encode(clip).mean  # 1 9 C h w
        short = vae.encode(clip[:, :9]).mean  # 1 3 C h w
        torch.testing.assert_close(whole[:, :3], short, atol=1e-5, rtol=0)
        for latent_index in (0, 4, 8):
            changed = clip.clone()
            group = slice(0, 1) if latent_index == 0 else slice(4 * latent_index - 3, 4 * latent_index + 1)
            outside = torch.ones(33, dtype=torch.bool)
            outside[group] = False
            changed[:, outside] = torch.rand_like(changed[:, outside])
            torch.testing.assert_close(vae.encode(changed).mean[:, latent_index], whole[:, latent_index])
        latents = torch.randn(1, 9, 16, 2, 3)
        frames = vae.decode(latents)
        changed = latents.clone()
        changed[:, 4] += 1.0  # latent 4 decodes frames 13..16 and nothing else
        moved = (vae.decode(changed) - frames).abs().flatten(2).amax(-1)[0]  # T
        assert set(torch.nonzero(moved > 1e-6).flatten().tolist()) == {13, 14, 15, 16}
        # chunked (bounded activation memory) equals whole
        torch.testing.assert_close(vae.encode(clip, chunk=2).mean, whole, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(vae.decode(latents, chunk=4), frames, atol=1e-5, rtol=1e-5)


def test_grouped_design_needs_a_thumbnail_per_frame():
    with pytest.raises(ConfigError, match="latent_channels must be >= 3 \\* temporal_factor = 12"):
        vae_config("grouped-tiny", latent_channels=8)
    with pytest.raises(ConfigError, match="design 'wavelet' is unknown"):
        vae_config("tiny", design="wavelet")
