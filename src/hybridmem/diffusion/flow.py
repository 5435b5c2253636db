"""Rectified flow matching: the noise schedule and the Euler sampler, separate from the network.

Sign convention (the only one in this project):

    x_t = (1 - t) * x_0 + t * noise,    t in [0, 1]: t = 0 is clean data, t = 1 is pure noise
    velocity = dx_t/dt = noise - x_0    (what the network predicts)

so sampling walks t from 1 down to 0 with x_{t_next} = x_t + (t_next - t) * velocity, and t_next < t.

Timesteps are shifted towards the noisy end with t' = shift * t / (1 + (shift - 1) * t), as in SD3 and
Wan2.1 (the paper's scheduler: shift 5, 1000 training steps). Everything here is a pure function of its
arguments; randomness comes only from an explicit `torch.Generator`.

Shape glossary: B batch, F latent frames, C latent channels, h/w latent grid; "B ..." means any trailing
axes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange

from hybridmem.diffusion import TIMESTEP_DISTRIBUTIONS
from hybridmem.errors import ConfigError


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t' = shift*t / (1 + (shift-1)*t): monotonic, fixes 0 and 1, pushes mass towards t = 1 for shift > 1."""
    if shift <= 0:
        raise ConfigError(f"shift must be > 0, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def _broadcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t "B" (or scalar) -> "B 1 1 ..." so it multiplies a "B ..." tensor."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape + (1,) * (like.ndim - t.ndim))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0, noise: "B ..."; t: "B" or scalar -> x_t = (1 - t) x0 + t noise."""
    t = _broadcast(t, x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target of the network: noise - x0 (independent of t for a straight path)."""
    return noise - x0


def sample_timesteps(
    batch: int,
    generator: torch.Generator | None,
    shift: float = 1.0,
    distribution: str = "uniform",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Training timesteps "B" in (0, 1): uniform or logit-normal(0, 1) draws, then shifted."""
    if distribution == "uniform":
        t = torch.rand(batch, generator=generator, device=device)
    elif distribution == "logit_normal":
        t = torch.sigmoid(torch.randn(batch, generator=generator, device=device))
    else:
        raise ConfigError(
            f"timestep distribution '{distribution}' is unknown; valid: {', '.join(TIMESTEP_DISTRIBUTIONS)}"
        )
    return shift_timesteps(t, shift)


def sampling_timesteps(steps: int, shift: float = 5.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """steps + 1 timesteps from 1 down to 0 (both included), evenly spaced before the shift.

    dtype float32 reproduces the official HyDRA/DiffSynth schedule bit for bit (its sigmas are the float32
    linspace(1, 0, steps + 1)[:steps], shifted by the same expression, then 0); float64 is ours.
    """
    if steps < 1:
        raise ConfigError(f"sampling steps must be >= 1, got {steps}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1, dtype=dtype), shift)


def euler_step(
    x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float, t_next: torch.Tensor | float
) -> torch.Tensor:
    """One Euler step of dx/dt = velocity from t to t_next (t_next < t when denoising)."""
    dt = _broadcast(
        torch.as_tensor(t_next, dtype=torch.float64) - torch.as_tensor(t, dtype=torch.float64), x_t
    )
    return x_t + dt * velocity


def guided_velocity(conditional: torch.Tensor, unconditional: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: v_u + g (v_c - v_u); g = 1 gives the conditional velocity."""
    return unconditional + guidance * (conditional - unconditional)


VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    steps: int,
    shift: float = 5.0,
    guidance: float = 1.0,
    unconditional_velocity_fn: VelocityFn | None = None,
    progress: bool = False,
    schedule_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Integrate from pure noise (t = 1) to data (t = 0) with `steps` Euler steps.

    schedule_dtype: of the timesteps (`sampling_timesteps`); float32 is the official sampler's.

    velocity_fn(x_t "B ...", t "B") -> velocity "B ...", conditioned on whatever the caller closed over
    (context latents, cameras, caption). With `guidance` != 1, `unconditional_velocity_fn` (the same model
    without the caption) is required and the two are mixed by classifier-free guidance.
    """
    if guidance != 1.0 and unconditional_velocity_fn is None:
        raise ConfigError(
            "guidance != 1 needs an unconditional velocity (a caption to drop); pass --guidance 1"
        )
    timesteps = sampling_timesteps(steps, shift, schedule_dtype)
    batch = noise.shape[0]
    x_t = noise
    indices = range(steps)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="sampling", leave=False)
    for i in indices:
        t, t_next = timesteps[i], timesteps[i + 1]
        t_batch = t.to(device=noise.device, dtype=torch.float32).expand(batch)  # B
        velocity = velocity_fn(x_t, t_batch)
        if guidance != 1.0:
            velocity = guided_velocity(velocity, unconditional_velocity_fn(x_t, t_batch), guidance)
        x_t = euler_step(x_t, velocity.to(x_t.dtype), t, t_next)
    return x_t


def flow_matching_loss(
    predicted_velocity: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Mean squared error to the velocity target, averaged over every axis (scalar)."""
    return torch.mean((predicted_velocity.float() - velocity_target(x0, noise).float()) ** 2)


def per_sample_loss(predicted_velocity: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error per batch element: "B ..." -> "B"."""
    error = (predicted_velocity.float() - velocity_target(x0, noise).float()) ** 2
    return rearrange(error, "b ... -> b (...)").mean(dim=1)
