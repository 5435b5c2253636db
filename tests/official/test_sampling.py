"""The official sampler on a tiny official-format model: the seed's noise, the schedule, guidance."""

import dataclasses

import pytest
import torch
from einops import rearrange

from hybridmem.errors import ConfigError
from hybridmem.models.world import WorldModel
from hybridmem.official.dit import WAN_T2V_1_3B, official_dit_config
from hybridmem.official.sampling import official_denoise, official_noise

SMALL = dict(WAN_T2V_1_3B, dim=48, ffn_dim=64, text_dim=12, num_heads=2, num_layers=2, in_dim=4, out_dim=4)


def tiny_model(seed=0):
    config = official_dit_config(**SMALL)
    config = dataclasses.replace(config, memory=dataclasses.replace(config.memory, top_k=2, window=3))
    model = WorldModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


def test_noise_is_the_official_draw_in_our_axes():
    noise = official_noise(seed=7, latent_frames=3, latent_height=4, latent_width=6, channels=16)
    generator = torch.Generator("cpu").manual_seed(7)
    official = torch.randn((1, 16, 3, 4, 6), generator=generator, dtype=torch.float32)
    assert noise.shape == (1, 3, 16, 4, 6)
    assert torch.equal(noise, rearrange(official, "b c f h w -> b f c h w"))


def test_denoise_is_the_official_loop():
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    context = torch.randn(1, 4, 4, 4, 6, generator=generator)
    caption, negative = torch.randn(1, 5, 12, generator=generator), torch.randn(1, 5, 12, generator=generator)
    cameras = torch.eye(4).repeat(1, 7, 1, 1)
    noise = official_noise(0, 3, 4, 6, channels=4)
    ours = official_denoise(model, context, noise, cameras, caption, negative, steps=4, cfg_scale=5.0)
    # the official pipeline written out: float32 sigmas of linspace(1, 0, steps + 1)[:steps], shift 5
    sigmas = torch.linspace(1.0, 0.0, 5)[:4]
    sigmas = 5.0 * sigmas / (1 + 4.0 * sigmas)
    latents = noise.clone()
    with torch.no_grad():
        for index, sigma in enumerate(sigmas):
            t = (sigma * 1000) / 1000
            positive = model(context, latents, t.expand(1), cameras, caption=caption)
            negative_prediction = model(context, latents, t.expand(1), cameras, caption=negative)
            prediction = negative_prediction + 5.0 * (positive - negative_prediction)
            sigma_next = sigmas[index + 1] if index + 1 < len(sigmas) else torch.tensor(0.0)
            latents = latents + prediction * (sigma_next - sigma)
    assert torch.allclose(ours, latents, atol=1e-6)
    assert not torch.allclose(
        ours, official_denoise(model, context, noise, cameras, caption, negative, steps=4, cfg_scale=1.0)
    )


def test_guidance_needs_the_negative_caption():
    model = tiny_model()
    with pytest.raises(ConfigError, match="negative"):
        official_denoise(
            model,
            torch.zeros(1, 4, 4, 4, 6),
            torch.zeros(1, 3, 4, 4, 6),
            torch.eye(4).repeat(1, 7, 1, 1),
            torch.zeros(1, 5, 12),
            None,
            steps=1,
        )
