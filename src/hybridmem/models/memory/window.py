"""`window`: each query latent frame attends to its local window of full-resolution latent frames.

The short-context baseline (DFoT-style): no long-term memory at all, so anything that left the window is
forgotten. Shape glossary in base.py and retrieval.py.
"""

from __future__ import annotations

from einops import rearrange

from hybridmem.models.memory.base import Memory, register_memory
from hybridmem.models.memory.gathered import frame_attention
from hybridmem.models.memory.retrieval import window_indices


@register_memory("window")
class WindowMemory(Memory):
    """Window of `config.window` latent frames, centred and clamped to the sequence (retrieval.py)."""

    def forward(self, q, k, v, x, attn, ctx):
        num_frames = ctx.grid[0]
        q, k, v = (rearrange(t, "b a (f p) d -> b a f p d", f=num_frames) for t in (q, k, v))  # B a F P d
        window_idx = window_indices(num_frames, self.config.window, q.device)  # F Wn
        out = frame_attention(q, k, v, window_idx, query_chunk=self.config.query_chunk)  # B a F P d
        return rearrange(out, "b a f p d -> b a (f p) d")
