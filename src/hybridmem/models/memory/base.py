"""The one interface every memory implements, and the registry the backbone builds them from.

The DiT block owns the q/k/v/output projections, the q/k norms and the rotary embedding; a memory only
decides which keys and values each query attends to (and may own parameters of its own, such as HyDRA's
memory tokenizer). The backbone never knows which memory it holds.

Shape glossary: B batch, F latent frames (context first, then target), H/W token grid of one latent frame,
N = F*H*W tokens in (f, h, w) order, D model width, h heads, d head width, K retrieved slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from hybridmem.errors import ConfigError
from hybridmem.models.configs import dataclass_from_dict
from hybridmem.validation import check_value

AFFINITY_ROPE = ("before", "after")  # see MemoryConfig.affinity_rope
TOKEN_POSITIONS = ("official", "centre")  # see MemoryConfig.token_positions


@dataclass
class MemoryConfig:
    """Every knob of every memory; each variant reads the ones it needs. Saved inside model configs."""

    kind: str = "full"  # one of MEMORIES: full | window | fov | hydra
    window: int = 5  # local window of full-resolution latent frames, centred on the query, clamped
    top_k: int = 10  # retrieved memory slices (hydra) or context frames (fov) per query latent frame
    tokenizer_kernel: tuple[int, int, int] = (2, 2, 2)  # hydra Conv3d kernel = stride over (f, h, w) tokens
    affinity: str = "mean"  # hydra: "mean" (released code) or "eq4" (paper Eq. 4)
    retrieval: str = "affinity"  # hydra: "affinity" or "fov" (frustum overlap of memory slices)
    memory_scope: str = "all"  # hydra: "all" (context and target tokenized, released code) or "context"
    fov_points: int = 256  # fov: Monte Carlo points sampled in the query frustum
    fov_near: float = 0.5  # fov: depth range of those points, metres
    fov_far: float = 30.0
    query_chunk: int = 8  # latent frames per attention chunk (bounds memory, same result); 0 = all at once
    # hydra: the affinity scores q and the memory keys "before" RoPE (the official code: a frame's mean
    # query and a slice's mean key carry no position, so the score is content alone) or "after" it
    affinity_rope: str = "before"
    # hydra: RoPE positions of the memory tokens. "official": time at the centre of the latent frames a
    # slice covers (2i + 0.5 for kernel 2), rows and columns at the first cell a token covers (2i), as the
    # official code's get_compressed_freqs_cis_3d; "centre": every axis at the centre of the cells covered
    token_positions: str = "official"

    # Values of fields a config saved before the field existed was trained with (a model folder's
    # config.json written by an older hybridmem); a new config gets the defaults above.
    SAVED_BEFORE_FIELD = {"affinity_rope": "after", "token_positions": "centre"}

    @classmethod
    def from_dict(cls, data: dict, what: str = "MemoryConfig") -> MemoryConfig:
        """A config from JSON; fields missing from it take the value older models were trained with."""
        if isinstance(data, dict):
            data = {**cls.SAVED_BEFORE_FIELD, **data}
        return dataclass_from_dict(cls, data, what)

    def validate(self) -> MemoryConfig:
        if self.kind not in MEMORIES:
            valid = ", ".join(sorted(MEMORIES))
            raise ConfigError(f"memory kind '{self.kind}' is unknown; valid kinds: {valid}")
        # the range table's rules (--memory-top-k >= 1: with 0, hydra's tokenizer would be unused, that is
        # the 'window' memory, and fov would be the window too)
        check_value("memory_window", self.window)
        check_value("memory_top_k", self.top_k)
        if len(self.tokenizer_kernel) != 3 or min(self.tokenizer_kernel) < 1:
            raise ConfigError(f"tokenizer_kernel must be three positive ints, got {self.tokenizer_kernel}")
        self.tokenizer_kernel = tuple(int(size) for size in self.tokenizer_kernel)  # JSON gives a list
        if self.query_chunk < 0:
            raise ConfigError(f"memory query_chunk must be >= 0 (0 = all at once), got {self.query_chunk}")
        if self.fov_points < 1 or not 0 < self.fov_near < self.fov_far:
            raise ConfigError(
                "memory fov_points must be >= 1 and 0 < fov_near < fov_far, got "
                f"{self.fov_points}, {self.fov_near}, {self.fov_far}"
            )
        for name, value, allowed in [
            ("affinity", self.affinity, ("mean", "eq4")),
            ("retrieval", self.retrieval, ("affinity", "fov")),
            ("memory_scope", self.memory_scope, ("all", "context")),
            ("affinity_rope", self.affinity_rope, AFFINITY_ROPE),
            ("token_positions", self.token_positions, TOKEN_POSITIONS),
        ]:
            if value not in allowed:
                raise ConfigError(f"memory {name} '{value}' is unknown; valid: {', '.join(allowed)}")
        return self


@dataclass
class SequenceInfo:
    """What a memory may know about the sequence besides q, k and v."""

    grid: tuple[int, int, int]  # (F, H, W) token grid
    context_frames: int  # latent frames [0, context_frames) are clean context, the rest noisy target
    cameras: torch.Tensor | None = None  # "B F 4 4" camera-to-world relative to the first target frame
    intrinsics: torch.Tensor | None = None  # "B 4" (fx/W, fy/H, cx/W, cy/H): normalised by image size


def require_cameras(ctx: SequenceInfo, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """ctx.cameras "B F 4 4" and ctx.intrinsics "B 4", or a ConfigError saying what to pass."""
    if ctx.cameras is None or ctx.intrinsics is None:
        missing = "cameras" if ctx.cameras is None else "intrinsics"
        raise ConfigError(
            f"memory '{kind}' ranks frames by camera frustum overlap but SequenceInfo.{missing} is None; "
            'pass the latent frames\' cameras "B F 4 4" and normalised intrinsics "B 4", '
            "or choose a memory that needs no cameras (window, or hydra with retrieval 'affinity')"
        )
    cameras, intrinsics = ctx.cameras, ctx.intrinsics
    if cameras.ndim != 4 or cameras.shape[1:] != (ctx.grid[0], 4, 4):
        raise ConfigError(
            f"memory '{kind}': SequenceInfo.cameras must be \"B F 4 4\" with F={ctx.grid[0]} latent "
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
    """Base class. forward(q, k, v, x, attn, ctx) -> attention output "B a N d" (before the out projection).

    q, k, v: "B a N d" for the sequence's own tokens, normed and rope'd at integer (f, h, w) positions.
    x: "B F H W D", the block's normalised self-attention input (what a memory tokenizer compresses).
    """

    def __init__(self, config: MemoryConfig, dim: int, num_heads: int):
        super().__init__()
        self.config = config
        self.dim = dim
        self.num_heads = num_heads

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        x: torch.Tensor,
        attn: AttentionHandle,
        ctx: SequenceInfo,
    ) -> torch.Tensor:
        raise NotImplementedError


class FullMemory(Memory):
    """The paper's "Baseline": every token attends to every context and target token."""

    def forward(self, q, k, v, x, attn, ctx):
        return F.scaled_dot_product_attention(q, k, v)  # B a N d


MEMORIES: dict[str, type[Memory]] = {"full": FullMemory}


def register_memory(name: str):
    """Class decorator adding a Memory subclass to the registry under `name`."""

    def decorate(cls: type[Memory]) -> type[Memory]:
        MEMORIES[name] = cls
        return cls

    return decorate


def build_memory(config: MemoryConfig, dim: int, num_heads: int, validated: bool = False) -> Memory:
    """The memory `config` names. validated: the caller has validated `config` already (a model's blocks:
    WorldModel validates its config once, not once per block)."""
    if not validated:
        config.validate()
    return MEMORIES[config.kind](config, dim, num_heads)
