"""`fov`: Context-as-Memory style retrieval of whole context latent frames by camera frustum overlap.

Each TARGET latent frame attends to its local window plus the K context latent frames whose camera frustum
overlaps its own the most, all at full resolution. Context frames are clean and already known, so they
attend to the whole context (and nothing of the noisy target), as in Context-as-Memory where the context is
the memory bank. Context frames inside a target's window are not retrieved again (they are already there),
and a context frame that sees none of the target frustum (overlap 0, for example a camera facing away) is
never retrieved: fewer than K frames are then attended rather than padding with irrelevant ones.

Shapes (docs/ARCHITECTURE.md's glossary): B batch, F latent frames (Fc context, Ft target), P tokens of one
latent frame, a heads, d head width, K retrieved context latent frames; Wn window width in latent frames
(retrieval.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from hybridmem.models.memory.base import Memory, register_memory, require_cameras
from hybridmem.models.memory.gathered import frame_attention
from hybridmem.models.memory.retrieval import (
    frustum_overlap,
    frustum_samples,
    inside_window,
    select_top_k,
    window_indices,
)


def fov_retrieval(
    cameras: torch.Tensor,
    intrinsics: torch.Tensor,
    context_frames: int,
    window_idx: torch.Tensor,
    top_k: int,
    samples: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Context frames each target frame retrieves: indices, valid "B Ft K" (Ft = F - context_frames).

    cameras: "B F 4 4"; intrinsics: "B 4" normalised; window_idx: "Ft Wn" windows of the target frames.
    The candidates are the Fc context frames, each its own one-frame span.
    """
    context_range = torch.arange(context_frames, device=cameras.device)
    spans = torch.stack([context_range, context_range], dim=-1)  # Fc 2: a context frame spans itself
    overlap = frustum_overlap(cameras[:, context_frames:], cameras[:, :context_frames], intrinsics, samples)
    eligible = ~inside_window(window_idx, spans) & (overlap > 0)  # B Ft Fc
    return select_top_k(overlap, eligible, top_k)


@register_memory("fov")
class FovMemory(Memory):
    """Window + top-K context frames by frustum overlap (needs SequenceInfo.cameras and intrinsics)."""

    def forward(self, q, k, v, x, attn, sequence):
        cameras, intrinsics = require_cameras(sequence, "fov")
        num_frames, context_frames = sequence.grid[0], sequence.context_frames
        q, k, v = (rearrange(t, "b a (f p) d -> b a f p d", f=num_frames) for t in (q, k, v))  # B a F P d
        outputs = []
        # 1. context frames attend to the context
        if context_frames > 0:
            context_q, context_k, context_v = (
                rearrange(t[:, :, :context_frames], "b a f p d -> b a (f p) d") for t in (q, k, v)
            )
            attended = F.scaled_dot_product_attention(context_q, context_k, context_v)  # B a (Fc P) d
            outputs.append(rearrange(attended, "b a (f p) d -> b a f p d", f=context_frames))
        # 2. target frames attend to their window and their retrieved context frames
        if num_frames > context_frames:
            window_idx = window_indices(num_frames, self.config.window, q.device)[context_frames:]  # Ft Wn
            samples = frustum_samples(self.config.fov_points, self.config.fov_near, self.config.fov_far)
            with torch.no_grad():
                indices, valid = fov_retrieval(
                    cameras, intrinsics, context_frames, window_idx, self.config.top_k, samples
                )  # B Ft K
            outputs.append(
                frame_attention(
                    q[:, :, context_frames:],
                    k,
                    v,
                    window_idx,
                    k[:, :, :context_frames],
                    v[:, :, :context_frames],
                    indices,
                    valid,
                    self.config.query_chunk,
                )
            )  # B a Ft P d
        return rearrange(torch.cat(outputs, dim=2), "b a f p d -> b a (f p) d")
