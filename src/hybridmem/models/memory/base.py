"""The one interface every memory implements, and the registry the backbone builds them from.

The DiT block owns the q/k/v/output projections, the q/k norms and the rotary embedding; a memory only
decides which keys and values each query attends to (and may own parameters of its own, such as HyDRA's
memory tokenizer). The backbone never knows which memory it holds.

Shapes use the glossary of docs/ARCHITECTURE.md: B batch, F latent frames (context first, then target),
H W the token grid of a latent frame, N = F H W tokens in (f, h, w) order, D model width, a heads, d head
width, M any number of tokens.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from hybridmem.errors import ConfigError
from hybridmem.models.memory.config import MEMORY_KINDS, MemoryConfig


@dataclass
class SequenceInfo:
    """What a memory may know about the sequence besides q, k and v."""

    grid: tuple[int, int, int]  # (F, H, W) token grid
    context_frames: int  # latent frames [0, context_frames) are clean context, the rest noisy target
    cameras: torch.Tensor | None = None  # "B F 4 4" camera-to-world relative to the first target frame
    intrinsics: torch.Tensor | None = None  # "B 4" (fx/W, fy/H, cx/W, cy/H): normalised by image size


def require_cameras(sequence: SequenceInfo, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """sequence.cameras "B F 4 4" and sequence.intrinsics "B 4", or a ConfigError saying what to pass."""
    if sequence.cameras is None or sequence.intrinsics is None:
        missing = "cameras" if sequence.cameras is None else "intrinsics"
        raise ConfigError(
            f"memory '{kind}' ranks frames by camera frustum overlap but SequenceInfo.{missing} is None; "
            'pass the latent frames\' cameras "B F 4 4" and normalised intrinsics "B 4", '
            "or choose a memory that needs no cameras (window, or hydra with slice_ranking 'affinity')"
        )
    cameras, intrinsics = sequence.cameras, sequence.intrinsics
    if cameras.ndim != 4 or cameras.shape[1:] != (sequence.grid[0], 4, 4):
        raise ConfigError(
            f"memory '{kind}': SequenceInfo.cameras must be \"B F 4 4\" with F={sequence.grid[0]} latent "
            f"frames, got {tuple(cameras.shape)}"
        )
    if intrinsics.shape != (cameras.shape[0], 4):
        raise ConfigError(
            f"memory '{kind}': SequenceInfo.intrinsics must be \"B 4\" (fx/W, fy/H, cx/W, cy/H), "
            f"got {tuple(intrinsics.shape)}"
        )
    return cameras, intrinsics


class AttentionHandle(Protocol):
    """What the block's self-attention offers a memory."""

    def project_kv(self, tokens: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens "B M D", positions "M 3" float (f, h, w) -> k, v "B a M d", k normed and rope'd."""
        ...

    def unrotated_q(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens "B M D" -> q "B a M d", normed, no rope (what an affinity before RoPE reads)."""
        ...

    def unrotated_kv(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens "B M D" -> k, v "B a M d", k normed, no rope."""
        ...

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x "B a M d" rope'd at positions "M 3" float (f, h, w)."""
        ...


class Memory(nn.Module):
    """Base class. forward(q, k, v, x, attn, sequence) -> attention output "B a N d" (before the out
    projection).

    q, k, v: "B a N d" for the sequence's own tokens, normed and rope'd at integer (f, h, w) positions.
    x: "B F H W D", the block's normalised self-attention input (what a memory tokenizer compresses).
    attn: the block's self-attention (AttentionHandle); sequence: its grid, context frames and cameras.
    """

    def __init__(self, config: MemoryConfig, dim: int):
        super().__init__()
        self.config = config

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        x: torch.Tensor,
        attn: AttentionHandle,
        sequence: SequenceInfo,
    ) -> torch.Tensor:
        raise NotImplementedError


class FullMemory(Memory):
    """The paper's "Baseline": every token attends to every context and target token."""

    def forward(self, q, k, v, x, attn, sequence):
        return F.scaled_dot_product_attention(q, k, v)  # B a N d


# kind -> class, filled by @register_memory as each kind's module (config.MEMORY_KINDS) is imported
MEMORIES: dict[str, type[Memory]] = {}


def register_memory(name: str):
    """Class decorator adding a Memory subclass to the registry under `name`."""

    def decorate(cls: type[Memory]) -> type[Memory]:
        MEMORIES[name] = cls
        return cls

    return decorate


register_memory("full")(FullMemory)


def memory_class(kind: str) -> type[Memory]:
    """The class of memory `kind`, importing the module MEMORY_KINDS names for it the first time."""
    if kind not in MEMORIES and kind in MEMORY_KINDS:
        importlib.import_module(MEMORY_KINDS[kind])
    if kind not in MEMORIES:
        where = (
            f"its module {MEMORY_KINDS[kind]} registers none"
            if kind in MEMORY_KINDS
            else "it is not in MEMORY_KINDS"
        )
        raise ConfigError(
            f"memory kind '{kind}' cannot be built: {where}; valid kinds: {', '.join(MEMORY_KINDS)}"
        )
    return MEMORIES[kind]


def build_memory(config: MemoryConfig, dim: int, validated: bool = False) -> Memory:
    """The memory `config` names, for a block of width `dim`. validated: the caller has validated `config`
    already (a model's blocks: WorldModel validates its config once, not once per block)."""
    if not validated:
        config.validate()
    return memory_class(config.kind)(config, dim)
