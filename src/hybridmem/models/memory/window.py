"""`window`: each query latent frame attends to its local window of full-resolution latent frames.

The short-context baseline (DFoT-style): no long-term memory at all, so anything that left the window is
forgotten.

Shapes (docs/ARCHITECTURE.md's glossary): B batch, F latent frames, P tokens of one latent frame, a heads,
d head width; Wn window width in latent frames (retrieval.py).
"""

from __future__ import annotations

from einops import rearrange

from hybridmem.models.memory.base import Memory, register_memory
from hybridmem.models.memory.gathered import frame_attention
from hybridmem.models.memory.retrieval import window_indices


@register_memory("window")
class WindowMemory(Memory):
    """Window of min(`config.window`, F) latent frames, centred, shifted to stay inside the sequence
    (retrieval.py `window_indices`)."""

    def forward(self, q, k, v, x, attn, sequence):
        num_frames = sequence.grid[0]
        q, k, v = (rearrange(t, "b a (f p) d -> b a f p d", f=num_frames) for t in (q, k, v))  # B a F P d
        window_idx = window_indices(num_frames, self.config.window, q.device)  # F Wn
        out = frame_attention(q, k, v, window_idx, query_chunk=self.config.query_chunk)  # B a F P d
        return rearrange(out, "b a f p d -> b a (f p) d")
