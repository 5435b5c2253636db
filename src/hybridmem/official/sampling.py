"""The official sampler: the noise a seed draws, the schedule, what the DiT sees, guidance.

HyDRAPipeline.__call__ (diffsynth/pipelines/HyDRA.py), step by step, on our WorldModel:
1. noise: torch.randn((1, 16, F, h, w)) from torch.Generator("cpu").manual_seed(seed), float32, in the
   official (B, C, F, h, w) axes; `official_noise` draws exactly that and returns it in ours (B F C h w);
2. schedule: FlowMatchScheduler(shift 5, extra_one_step): the float32 sigmas of
   hybridmem.diffusion.flow.sampling_timesteps(steps, shift, torch.float32), then 0;
3. each step: the DiT sees 1000 sigma cast to the model's dtype (bf16 inference feeds 952.0 for 952.38),
   once with the caption and once with the negative prompt, on context ++ noisy target with the same
   cameras; velocity = negative + cfg (positive - negative); x <- x + velocity (sigma_next - sigma) on the
   target only (the context stays the clean latents).

    noise = official_noise(seed=0, latent_frames=20, latent_height=60, latent_width=104)
    target = official_denoise(model, context_latents, noise, cameras, caption, negative_caption)
"""

from __future__ import annotations

OFFICIAL_STEPS = 50
OFFICIAL_CFG_SCALE = 5.0


def official_noise(seed: int, latent_frames: int, latent_height: int, latent_width: int, channels: int = 16):
    """The initial noise the official pipeline draws for `seed`: "1 F C h w" float32 (CPU generator)."""
    import torch
    from einops import rearrange

    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(
        (1, channels, latent_frames, latent_height, latent_width), generator=generator, dtype=torch.float32
    )  # 1 C F h w, the official axes and draw order
    return rearrange(noise, "b c f h w -> b f c h w")


def official_denoise(
    model,
    context_latents,
    noise,
    cameras,
    caption,
    negative_caption=None,
    steps: int = OFFICIAL_STEPS,
    cfg_scale: float = OFFICIAL_CFG_SCALE,
    shift: float | None = None,
    progress: bool = False,
):
    """Denoise the target as the official pipeline does; returns the target latents "B Ft C h w".

    model: a WorldModel (official_dit_config, any dtype); context_latents "B Fc C h w" (clean); noise
    "B Ft C h w" (official_noise); cameras "B F 4 4"; caption, negative_caption "B L Dc" (the umT5
    embeddings; negative_caption is needed when cfg_scale != 1). shift: the model's sample_shift if None.
    """
    import torch

    from hybridmem.diffusion import flow
    from hybridmem.errors import ConfigError
    from hybridmem.official.dit import time_from_official

    if cfg_scale != 1.0 and negative_caption is None:
        raise ConfigError(
            "official_denoise: cfg_scale != 1 needs negative_caption (the negative prompt's embedding)"
        )
    dtype = next(model.parameters()).dtype
    context_latents = context_latents.to(dtype)

    def velocity(caption_embedding):
        def predict(latents, sigma):  # sigma "B", float32
            # what the official DiT is fed: 1000 sigma in the model's dtype, as our t
            t = time_from_official((sigma * 1000).to(dtype).float())  # B
            return model(context_latents, latents, t, cameras, caption=caption_embedding)

        return predict

    with torch.no_grad():
        return flow.sample(
            velocity(caption),
            noise.to(dtype),
            steps,
            model.config.sample_shift if shift is None else shift,
            guidance=cfg_scale,
            unconditional_velocity_fn=velocity(negative_caption) if cfg_scale != 1.0 else None,
            progress=progress,
            schedule_dtype=torch.float32,  # the official FlowMatchScheduler's sigmas
        )
