"""Slow, obviously correct HyDRA attention: one Python iteration per (batch element, query frame).

The clearest statement of HyDRA in the code: start here (then models/memory/retrieval.py and hydra.py). It
lives with the tests, not in the package: nothing in hybridmem runs it; tests/models/test_memory_hydra.py and
benchmarks/attention.py compare the fast path against it, and tests/models/test_memory_retrieval.py checks
the vectorised affinities against its loop_affinity.

The fast path (hydra.py, retrieval.py, gathered.py) gathers every query frame's keys with index tensors;
this one spells each step out with plain slicing and sorting. As a subclass of HydraMemory it shares with
the fast path everything up to the scores: HydraMemory.memory_kv (the tokenizer, its token positions, the
handle's projections and rotation, the slices' spans from retrieval.slice_spans), HydraMemory.score_queries
(the queries an affinity before RoPE reads) and, for slice_ranking "fov" only, HydraMemory.slice_scores
(retrieval.mean_poses, frustum_samples and frustum_overlap; the pose mean and the overlap are tested on
hand-made cameras in tests/models/test_memory_retrieval.py). The window, which slices are eligible, the
affinity (loop_affinity), the top-k choice and the attention are its own.

Shapes (docs/ARCHITECTURE.md's glossary): B batch, F latent frames, P tokens of one latent frame, N = F P
tokens of the sequence, a heads, d head width, S memory slices, H' W' the token grid of one slice, P' = H' W'
tokens of one slice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from hybridmem.models.memory.hydra import HydraMemory


def loop_affinity(
    q_frame: torch.Tensor, slice_keys: torch.Tensor, affinity: str, grid_hw, kernel_hw
) -> float:
    """Score of one slice for one query frame. q_frame: "a P d"; slice_keys: "a P' d"."""
    heads, _, head_dim = q_frame.shape
    if affinity == "mean":
        per_head = (q_frame.mean(dim=1) * slice_keys.mean(dim=1)).sum(-1)  # a
        return float(per_head.mean())
    # eq4: average q over each tokenizer patch (replicate padding), dot with the aligned memory key
    height, width = grid_hw
    kernel_h, kernel_w = kernel_hw
    image = rearrange(q_frame, "a (y x) d -> (a d) 1 y x", y=height, x=width)
    pad_h, pad_w = (-height) % kernel_h, (-width) % kernel_w
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
    pooled = F.avg_pool2d(image, (kernel_h, kernel_w))  # (a d) 1 H' W'
    pooled = rearrange(pooled, "(a d) 1 y x -> a (y x) d", a=heads)
    per_head = (pooled * slice_keys).sum(dim=(1, 2)) / math.sqrt(head_dim)  # a
    return float(per_head.mean())


def hydra_loop_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: tuple[int, int, int],
    memory_keys: torch.Tensor | None,
    memory_values: torch.Tensor | None,
    spans: torch.Tensor,
    window: int,
    top_k: int,
    affinity: str = "mean",
    kernel_hw: tuple[int, int] = (2, 2),
    scores: torch.Tensor | None = None,
    score_q: torch.Tensor | None = None,
    score_keys: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[list[list[int]]]]:
    """q, k, v: "B a N d"; memory_keys/values: "B a S P' d"; spans: "S 2".

    scores: "B F S" to rank by instead of the affinity (slice_ranking "fov"); slices scoring <= 0 are skipped.
    score_q "B a N d", score_keys "B a S P' d": what the affinity reads when it is not q and memory_keys
    (an affinity before RoPE).
    Returns the output "B a N d" and, per batch element and query frame, the retrieved slices ascending.
    """
    num_frames, height, width = grid
    tokens = height * width
    batch = q.shape[0]
    num_slices = 0 if memory_keys is None else memory_keys.shape[2]
    outputs, chosen_all = [], []
    for b in range(batch):
        # per-frame and per-slice pieces, split once: slicing k inside the loop would give every frame's
        # backward its own zero-filled gradient of the whole sequence (gigabytes at 160 frames)
        q_frames = q[b].split(tokens, dim=1)  # F x "a P d"
        key_frames, value_frames = k[b].split(tokens, dim=1), v[b].split(tokens, dim=1)
        slice_keys = () if memory_keys is None else memory_keys[b].unbind(1)  # S x "a P' d"
        scoring_q = q if score_q is None else score_q
        scoring_q_frames = scoring_q[b].split(tokens, dim=1)  # F x "a P d"
        scoring_keys = slice_keys if score_keys is None else score_keys[b].unbind(1)  # S x "a P' d"
        slice_values = () if memory_values is None else memory_values[b].unbind(1)
        frame_outputs, chosen_batch = [], []
        for i in range(num_frames):
            # 1. window: `window` frames centred on i, shifted to stay inside the sequence
            width_f = min(window, num_frames)
            start = min(max(i - (width_f - 1) // 2, 0), num_frames - width_f)
            stop = start + width_f  # exclusive
            q_frame = q_frames[i]  # a P d
            q_scoring = scoring_q_frames[i].detach()  # retrieval is a discrete choice: no gradient
            # 2. score the slices outside the window, keep the best top_k
            candidates = []
            for j in range(num_slices):
                first, last = int(spans[j, 0]), int(spans[j, 1])
                if first >= start and last <= stop - 1:
                    continue
                if scores is not None:
                    score = float(scores[b, i, j])
                    if score <= 0:
                        continue
                else:
                    score = loop_affinity(
                        q_scoring, scoring_keys[j].detach(), affinity, (height, width), kernel_hw
                    )
                candidates.append((score, j))
            candidates.sort(key=lambda pair: -pair[0])
            chosen = sorted(j for _, j in candidates[:top_k])
            # 3. attention over [window tokens; chosen slices' tokens]
            keys = list(key_frames[start:stop]) + [slice_keys[j] for j in chosen]
            values = list(value_frames[start:stop]) + [slice_values[j] for j in chosen]
            attended = F.scaled_dot_product_attention(
                q_frame[None], torch.cat(keys, dim=1)[None], torch.cat(values, dim=1)[None]
            )[0]  # a P d
            frame_outputs.append(attended)
            chosen_batch.append(chosen)
        outputs.append(torch.cat(frame_outputs, dim=1))  # a N d
        chosen_all.append(chosen_batch)
    return torch.stack(outputs), chosen_all


class HydraLoopReference(HydraMemory):
    """HyDRA with the per-frame loop in place of the gathered attention; same parameters as HydraMemory.

    Not registered as a memory kind: it exists to be compared against, by tests and the benchmark.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_selection: list[list[list[int]]] | None = None  # per batch element and query frame

    def forward(self, q, k, v, x, attn, sequence):
        memory = self.memory_kv(x, attn, sequence)
        scores = None
        if self.config.slice_ranking == "fov" and memory.keys is not None:
            scores = self.slice_scores(q, memory.score_keys, memory.spans, sequence)  # B F S
        out, self.last_selection = hydra_loop_attention(
            q,
            k,
            v,
            sequence.grid,
            memory.keys,
            memory.values,
            memory.spans,
            self.config.window,
            self.config.top_k,
            self.config.affinity,
            self.config.tokenizer_kernel[1:],
            scores,
            score_q=self.score_queries(q, x, attn),
            score_keys=memory.score_keys,
        )
        return out
