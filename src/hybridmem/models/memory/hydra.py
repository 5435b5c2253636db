"""`hydra`: HyDRA's hybrid memory (memory tokenizer + spatiotemporal relevance retrieval).

For each query latent frame: attention over [keys/values of its local window of full-resolution latent
frames; keys/values of the top-K memory slices it retrieves]. A memory slice is one time step of the memory
tokenizer's output (a Conv3d with kernel = stride over the token grid), so one slice summarises
kernel_f latent frames at 1/(kernel_h kernel_w) of their spatial resolution.

Choices (see MemoryConfig for the knobs):
- memory_scope "all" (released code) tokenizes the whole sequence, clean context and noisy target, and every
  latent frame, context included, retrieves; "context" tokenizes only the context frames (every frame
  still retrieves, from context slices only).
- A slice lies inside a query's window when every real latent frame it covers is inside it; such slices
  are not retrievable (the window already holds them at full resolution).
- slice_ranking "affinity": affinity "mean" / "eq4" scores slices from the queries and the memory keys
  (retrieval.py), both taken before RoPE or after it (affinity_rope); slice_ranking "fov" scores them by
  the frustum overlap of each query frame's camera with the slice's mean camera, and slices with zero
  overlap are not retrievable.
- Scores only choose indices (top-K is not differentiable), so they are computed under no_grad, which
  saves memory; gradients reach the tokenizer through the retrieved keys and values.

Shapes (docs/ARCHITECTURE.md's glossary): B batch, F latent frames (Fc context), H W the token grid of a
latent frame, P = H W tokens a latent frame, N = F P tokens of the sequence, D model width, a heads, d head
width, F'/H'/W' the memory tokenizer's output grid, S = F' memory slices, P' = H' W' tokens a slice, K
retrieved slices; Wn window width in latent frames (retrieval.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from hybridmem.models.memory.base import (
    AttentionHandle,
    Memory,
    MemoryConfig,
    SequenceInfo,
    register_memory,
    require_cameras,
)
from hybridmem.models.memory.gathered import frame_attention
from hybridmem.models.memory.retrieval import (
    affinity_eq4,
    affinity_mean,
    frustum_overlap,
    frustum_samples,
    inside_window,
    mean_poses,
    pad_to_multiple,
    patch_centres,
    select_top_k,
    slice_spans,
    window_indices,
)


class MemoryTokenizer(nn.Module):
    """Conv3d over the token grid, kernel = stride: "B F H W D" -> "B F' H' W' D", F' = ceil(F / kernel_f).

    Grids that are not multiples of the kernel are replicate-padded at the end of each axis (retrieval.py
    `pad_to_multiple`), so any size works and border tokens are not diluted by zeros.
    """

    def __init__(self, dim: int, kernel: tuple[int, int, int]):
        super().__init__()
        self.kernel = tuple(kernel)
        self.conv = nn.Conv3d(dim, dim, kernel_size=self.kernel, stride=self.kernel)
        # Start as average pooling (identity across channels, 1/|kernel| over the patch): memory tokens begin
        # as the mean of the tokens they cover, so from the first step their keys live where the queries
        # expect tokens to be and the affinity ranks slices by content. A random init would make retrieval
        # and the memory half of attention noise at the start, pulling a pretrained backbone off course.
        with torch.no_grad():
            self.conv.weight.zero_()
            channels = torch.arange(dim)
            self.conv.weight[channels, channels] = 1.0 / math.prod(self.kernel)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: "B F H W D" -> memory tokens "B F' H' W' D"."""
        for axis, size in zip((1, 2, 3), self.kernel, strict=True):
            x = pad_to_multiple(x, axis, size)  # B F H W D, each axis a multiple of the kernel
        tokens = self.conv(rearrange(x, "b f h w d -> b d f h w"))  # B D F' H' W'
        return rearrange(tokens, "b d f h w -> b f h w d")

    def positions(self, grid: tuple[int, int, int], rule: str = "centre") -> torch.Tensor:
        """(f, h, w) of each memory token: "(F' H' W') 3" float.

        rule "centre": every axis at the centre of the real cells the token covers; "official": time at the
        centre, rows and columns at the first cell (the official get_compressed_freqs_cis_3d: 2f + 0.5, 2h,
        2w for kernel 2), so a memory token shares its row/column phase with the top-left token it covers.
        """
        axes = [patch_centres(size, kernel) for size, kernel in zip(grid, self.kernel, strict=True)]
        if rule == "official":
            axes[1:] = [
                torch.arange(0, size, kernel, dtype=torch.float32)
                for size, kernel in zip(grid[1:], self.kernel[1:], strict=True)
            ]
        mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # F' H' W' 3
        return rearrange(mesh, "f h w c -> (f h w) c")


@dataclass
class MemoryTokens:
    """A block's memory tokens: keys (rope'd) and values "B a S P' d", the keys the affinity reads (the
    same keys, or before RoPE), and the span of latent frames "S 2" each slice covers. All but spans are
    None when there is nothing to tokenize."""

    keys: torch.Tensor | None
    values: torch.Tensor | None
    score_keys: torch.Tensor | None
    spans: torch.Tensor


@dataclass
class RetrievedSlices:
    """What `HydraMemory.retrieve` found for every query frame: its window, the memory slices' keys and
    values, their scores and the top-K chosen. forward attends with it; tests compare it against the loop
    reference, and the official check compares indices and scores against the official top-k."""

    window_idx: torch.Tensor  # "F Wn" latent frames of each query frame's window
    memory_keys: torch.Tensor | None  # "B a S P' d", None when there is nothing to tokenize
    memory_values: torch.Tensor | None  # "B a S P' d"
    spans: torch.Tensor  # "S 2" first and last real latent frame of each slice
    scores: torch.Tensor | None  # "B F S" affinity or frustum overlap
    indices: torch.Tensor  # "B F K" retrieved slices, ascending
    valid: torch.Tensor  # "B F K" False where fewer than K slices were eligible


@register_memory("hydra")
class HydraMemory(Memory):
    """Window of full-resolution latent frames + top-K retrieved memory slices, for every query frame."""

    def __init__(self, config: MemoryConfig, dim: int):
        super().__init__(config, dim)
        self.tokenizer = MemoryTokenizer(dim, config.tokenizer_kernel)

    def memory_kv(self, x: torch.Tensor, attn: AttentionHandle, sequence: SequenceInfo) -> MemoryTokens:
        """The memory tokens' keys and values, and the keys the affinity scores (MemoryTokens)."""
        # B F H W D (memory_scope "all") or B Fc H W D ("context")
        source = x if self.config.memory_scope == "all" else x[:, : sequence.context_frames]
        num_source = source.shape[1]
        spans = slice_spans(num_source, self.config.tokenizer_kernel[0], device=x.device)  # S 2
        if num_source == 0:
            return MemoryTokens(None, None, None, spans)
        tokens = self.tokenizer(source)  # B F' H' W' D
        # float32 even under bf16: half-frame centres past frame 128 are not representable in bf16
        positions = self.tokenizer.positions(tuple(source.shape[1:4]), self.config.token_positions)
        unrotated_keys, memory_values = attn.unrotated_kv(
            rearrange(tokens, "b f h w d -> b (f h w) d")
        )  # B a (F' H' W') d
        memory_keys = attn.rotate(unrotated_keys, positions.to(x.device))  # B a (F' H' W') d
        num_slices = tokens.shape[1]
        memory_keys, memory_values, unrotated_keys = (
            rearrange(t, "b a (s p) d -> b a s p d", s=num_slices)
            for t in (memory_keys, memory_values, unrotated_keys)
        )  # B a S P' d
        score_keys = unrotated_keys if self.config.affinity_rope == "before" else memory_keys
        return MemoryTokens(memory_keys, memory_values, score_keys, spans)

    def score_queries(self, q: torch.Tensor, x: torch.Tensor, attn: AttentionHandle) -> torch.Tensor:
        """The queries the affinity reads, "B a N d": q itself, or (affinity before RoPE) q without its
        rotation, recomputed from the block's input x "B F H W D" (exact in any dtype; the projection is
        run again under no_grad, about 1/16 of a Wan-size block's forward)."""
        if self.config.affinity_rope == "after":
            return q
        with torch.no_grad():
            return attn.unrotated_q(rearrange(x, "b f h w d -> b (f h w) d"))  # B a N d

    def slice_scores(
        self,
        score_queries: torch.Tensor,
        score_keys: torch.Tensor,
        spans: torch.Tensor,
        sequence: SequenceInfo,
    ) -> torch.Tensor:
        """Relevance of each memory slice to each query frame: "B F S" (no gradient)."""
        config = self.config
        with torch.no_grad():
            if config.slice_ranking == "fov":
                cameras, intrinsics = require_cameras(sequence, "hydra (slice_ranking 'fov')")
                slice_poses = mean_poses(cameras, spans)  # B S 4 4
                samples = frustum_samples(config.fov_points, config.fov_near, config.fov_far)
                return frustum_overlap(cameras, slice_poses, intrinsics, samples)
            if config.affinity == "mean":
                return affinity_mean(score_queries, sequence.grid[0], score_keys)
            return affinity_eq4(score_queries, sequence.grid, score_keys, config.tokenizer_kernel[1:])

    def retrieve(
        self, q: torch.Tensor, x: torch.Tensor, attn: AttentionHandle, sequence: SequenceInfo
    ) -> RetrievedSlices:
        """Steps 1-3 of forward: tokenize, score, select."""
        num_frames = sequence.grid[0]
        # 1. memory tokens -> keys and values, rope'd at their token positions
        memory = self.memory_kv(x, attn, sequence)
        spans = memory.spans
        window_idx = window_indices(num_frames, self.config.window, q.device)  # F Wn
        if memory.keys is None:
            empty = torch.zeros(q.shape[0], num_frames, 0, dtype=torch.long, device=q.device)
            return RetrievedSlices(window_idx, None, None, spans, None, empty, empty.bool())
        # 2. score every slice for every query frame
        scores = self.slice_scores(
            self.score_queries(q, x, attn), memory.score_keys, spans, sequence
        )  # B F S
        # 3. top-K among the slices outside the window
        eligible = ~inside_window(window_idx, spans)  # F S
        if self.config.slice_ranking == "fov":
            eligible = eligible & (scores > 0)  # B F S
        indices, valid = select_top_k(scores, eligible, self.config.top_k)  # B F K
        return RetrievedSlices(window_idx, memory.keys, memory.values, spans, scores, indices, valid)

    def forward(self, q, k, v, x, attn, sequence):
        num_frames = sequence.grid[0]
        retrieved = self.retrieve(q, x, attn, sequence)
        # 4. attend to [window; retrieved slices] for all query frames at once (in chunks; gathered.py)
        q, k, v = (rearrange(t, "b a (f p) d -> b a f p d", f=num_frames) for t in (q, k, v))  # B a F P d
        out = frame_attention(
            q,
            k,
            v,
            retrieved.window_idx,
            retrieved.memory_keys,
            retrieved.memory_values,
            retrieved.indices,
            retrieved.valid,
            self.config.query_chunk,
        )  # B a F P d
        return rearrange(out, "b a f p d -> b a (f p) d")
