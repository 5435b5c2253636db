"""Small building blocks shared by the DiT and the memories: 3D rotary embedding, norms, adaLN helpers,
the sinusoidal timestep embedding.

Shape glossary: B batch, F latent frames, H/W token grid of one latent frame, N = F*H*W tokens in (f, h, w)
order, M any number of tokens (for example memory tokens), D model width, a heads, d head width.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# 3D rotary position embedding over (latent frame, row, column)
# ---------------------------------------------------------------------------------------------------------


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """How the head width is split between the (f, h, w) axes, each part even.

    Follows Wan2.1: rows and columns get 2*(d//6) channels each, time the rest, so d = 128 -> (44, 42, 42).
    """
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"rope needs an even head width >= 6, got {head_dim}")
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angle of every channel pair at every position.

    positions: "M 3" float (f, h, w); may be fractional (a memory token sits at the centre of the patch it
    covers). Returns "M d/2" float32 angles; pair i of the head rotates by angles[:, i].
    """
    positions = positions.to(torch.float32)
    parts = []
    for axis, axis_dim in enumerate(rope_axis_dims(head_dim)):
        # Standard RoPE frequencies theta^(-2i/a) for i < a/2, separately per axis (as Wan2.1 does).
        exponents = torch.arange(0, axis_dim, 2, device=positions.device, dtype=torch.float32) / axis_dim
        frequencies = theta**-exponents  # a/2
        parts.append(positions[:, axis, None] * frequencies)  # M a/2
    return torch.cat(parts, dim=-1)  # M d/2


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (x[2i], x[2i+1]) of x "B a M d" by angles "M d/2"."""
    pairs = rearrange(x.float(), "... (p two) -> ... p two", two=2)  # B a M d/2 2
    first, second = pairs.unbind(-1)  # B a M d/2 each
    cos, sin = angles.cos(), angles.sin()  # M d/2
    rotated = torch.stack([first * cos - second * sin, first * sin + second * cos], dim=-1)  # B a M d/2 2
    return rearrange(rotated, "... p two -> ... (p two)").to(x.dtype)  # B a M d


def grid_positions(frames: int, height: int, width: int, device=None) -> torch.Tensor:
    """Integer (f, h, w) position of every token of a F x H x W grid in (f, h, w) order: "N 3" float."""
    axes = [torch.arange(size, device=device, dtype=torch.float32) for size in (frames, height, width)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # F H W 3
    return rearrange(grid, "f h w three -> (f h w) three")  # N 3


# ---------------------------------------------------------------------------------------------------------
# Norms and adaptive layer norm modulation
# ---------------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """RMS norm over the last axis with a learned gain; computed in float32 for bf16 stability."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def layer_norm(dim: int, eps: float = 1e-6) -> nn.LayerNorm:
    """LayerNorm without affine parameters: the adaLN modulation supplies shift and scale."""
    return nn.LayerNorm(dim, eps=eps, elementwise_affine=False)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift; `1 +` so that zero-initialised modulation is the identity."""
    return x * (1 + scale) + shift


# ---------------------------------------------------------------------------------------------------------
# Timestep embedding
# ---------------------------------------------------------------------------------------------------------


def timestep_embedding(
    t: torch.Tensor, dim: int, max_period: float = 10000.0, precision: str = "float32"
) -> torch.Tensor:
    """Sinusoidal embedding of flow-matching times t "..." in [0, 1] -> "... dim" float32.

    t is multiplied by 1000 first (in float32), so its frequencies span the range they were designed for
    (integer diffusion steps 0..1000, as in DiT and Wan2.1). Layout [cos | sin], zero-padded when dim is odd.
    precision "float64" computes the angles as Wan2.1 does (sinusoidal_embedding_1d): at 1000 rad a float32
    angle is off by up to 6e-5, which is most of the difference to the official model's output. It is
    computed on the CPU, so devices without float64 (MPS) work too; the tensor is tiny.
    """
    half = dim // 2
    if precision == "float64":
        steps = (t.float() * 1000.0).detach().cpu().double()
        frequencies = torch.pow(max_period, -torch.arange(half, dtype=torch.float64) / half)  # dim/2
        angles = steps[..., None] * frequencies  # ... dim/2
        embedding = torch.cat([angles.cos(), angles.sin()], dim=-1).float().to(t.device)
    else:
        exponents = torch.arange(half, device=t.device, dtype=torch.float32) / half
        frequencies = torch.exp(-math.log(max_period) * exponents)  # dim/2
        angles = (t.float() * 1000.0)[..., None] * frequencies  # ... dim/2
        embedding = torch.cat([angles.cos(), angles.sin()], dim=-1)  # ... 2*(dim/2)
    if dim % 2:
        embedding = torch.nn.functional.pad(embedding, (0, 1))  # ... dim
    return embedding


class TimestepEmbedder(nn.Module):
    """t "..." in [0, 1] -> sinusoid "... freq_dim" -> MLP -> "... D"."""

    def __init__(self, dim: int, frequency_dim: int = 256, precision: str = "float32"):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.precision = precision
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        frequencies = timestep_embedding(t, self.frequency_dim, precision=self.precision)  # ... freq_dim
        return self.mlp(frequencies.to(self.mlp[0].weight.dtype))  # ... D
