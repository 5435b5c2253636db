"""Retrieval policy as pure functions: window -> score -> select. Which keys each query frame may read.

This is the paper's idea (HyDRA, Sec. 3.3) without the machinery that executes it: a local window of
full-resolution latent frames, a relevance score for every memory slice (affinity, or frustum overlap), and
the top-K eligible slices per query frame. Nothing here owns parameters or knows which memory calls it, so
every step is testable without a model. The memories (window.py, fov.py, hydra.py) compose these functions
and hand the result (window frames, retrieved indices, valid) to gathered.py, the attention kernel that
reads exactly those keys.

Shapes (docs/ARCHITECTURE.md's glossary): B batch, F latent frames, H W the token grid of one latent frame,
P = H W tokens of one latent frame, N = F P tokens of the sequence, a heads, d head width, S candidates
(memory slices; for the fov memory, context latent frames), H' W' the token grid of one slice, P' = H' W'
tokens of one slice, K retrieved candidates. Defined here: Wn window width in latent frames, Q query latent
frames (F or a subset), Mc Monte Carlo points of a frustum.

Conventions:
- The local window of query frame i is `window` consecutive latent frames centred on i (for an even width
  the extra frame lies after i), shifted to stay inside the sequence; it is min(window, F) wide.
- A candidate slice covers a contiguous span of real latent frames (padding frames do not count); it lies
  inside a window when every frame it covers is inside the window, and such slices are never retrieved,
  because the window already holds them at full resolution.
- Retrieval returns `indices` with `valid` beside them: when fewer than K candidates are eligible the
  leftover entries are invalid and masked out of attention, never attended.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, reduce

# ---------------------------------------------------------------------------------------------- helpers


def pad_to_multiple(x: torch.Tensor, dim: int, multiple: int) -> torch.Tensor:
    """Replicate-pad axis `dim` of x at its end to a multiple of `multiple` (differentiable, any axis).

    Replicate, not zero: a padded cell repeats the last real cell, so an average over a patch stays on the
    scale of the real tokens instead of shrinking toward zero at the border.
    """
    size = x.shape[dim]
    padded = math.ceil(size / multiple) * multiple
    if padded == size:
        return x
    index = torch.arange(padded, device=x.device).clamp(max=size - 1)
    return x.index_select(dim, index)


def slice_spans(num_frames: int, kernel_f: int, device=None) -> torch.Tensor:
    """First and last real latent frame each memory slice covers: "S 2" long, S = ceil(F / kernel_f)."""
    first = torch.arange(0, num_frames, kernel_f, device=device)
    last = (first + kernel_f - 1).clamp(max=num_frames - 1)
    return torch.stack([first, last], dim=-1)


def patch_centres(size: int, kernel: int) -> torch.Tensor:
    """Centre of the real cells each patch of `kernel` cells covers along one axis: "ceil(size / kernel)"
    float."""
    first = torch.arange(0, size, kernel, dtype=torch.float32)
    last = (first + kernel - 1).clamp(max=size - 1)
    return (first + last) / 2


# ------------------------------------------------------------------------------------------------ window


def window_indices(num_frames: int, window: int, device=None) -> torch.Tensor:
    """Latent frames in each frame's local window: "F Wn" long, Wn = min(window, F), rows ascending.

    Centred on the query; near either end the window shifts (does not shrink) while the sequence allows.
    """
    width = min(window, num_frames)
    before = (width - 1) // 2
    starts = (torch.arange(num_frames, device=device) - before).clamp(0, num_frames - width)  # F
    return starts[:, None] + torch.arange(width, device=device)[None]  # F Wn


def inside_window(window_idx: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Whether each candidate lies inside each query's window: "Q S" bool.

    window_idx: "Q Wn" contiguous ascending frames; spans: "S 2" first and last real frame of a candidate.
    """
    start, end = window_idx[:, :1], window_idx[:, -1:]  # Q 1
    return (spans[None, :, 0] >= start) & (spans[None, :, 1] <= end)  # Q S


# ------------------------------------------------------------------------------------------------ scores


def affinity_mean(q: torch.Tensor, num_frames: int, memory_keys: torch.Tensor) -> torch.Tensor:
    """Released-code affinity: mean query of frame i dotted with the mean key of slice j -> "B F S".

    q: "B a N d"; memory_keys: "B a S P' d". The dot is taken per head and averaged over heads, which is the
    full-vector dot divided by a (the head count): the ranking is the same, the scale does not grow with
    the head count.
    """
    query_means = reduce(q, "b a (f p) d -> b a f d", "mean", f=num_frames)
    key_means = reduce(memory_keys, "b a s p d -> b a s d", "mean")
    # subscript h, not the glossary's a, for heads: torch.einsum orders the contraction by letter, and with
    # a the scores round differently in the last bits, which can flip a near-tie in select_top_k
    return torch.einsum("bhfd,bhsd->bfs", query_means, key_means) / q.shape[1]  # B F S


def pool_queries(q: torch.Tensor, grid: tuple[int, int, int], kernel_hw: tuple[int, int]) -> torch.Tensor:
    """Queries averaged over the tokenizer's spatial patches: "B a N d" -> "B a F H' W' d".

    Padding is replicate, as in the tokenizer, so query patch (y, x) lines up with memory token (y, x).
    """
    num_frames, height, width = grid
    kernel_h, kernel_w = kernel_hw
    grid_q = rearrange(q, "b a (f y x) d -> b a f y x d", f=num_frames, y=height, x=width)
    grid_q = pad_to_multiple(pad_to_multiple(grid_q, 3, kernel_h), 4, kernel_w)
    return reduce(grid_q, "b a f (y ky) (x kx) d -> b a f y x d", "mean", ky=kernel_h, kx=kernel_w)


def affinity_eq4(
    q: torch.Tensor, grid: tuple[int, int, int], memory_keys: torch.Tensor, kernel_hw: tuple[int, int]
) -> torch.Tensor:
    """Paper Eq. 4: sum over aligned positions of pooled q_i . k_j, divided by sqrt(d) -> "B F S".

    q: "B a N d"; memory_keys: "B a S P' d" with P' = H' W' in (y, x) order. Averaged over heads like
    `affinity_mean`.
    """
    pooled = pool_queries(q, grid, kernel_hw)  # B a F H' W' d
    pooled = rearrange(pooled, "b a f y x d -> b a f (y x) d")
    scores = torch.einsum("bhfpd,bhspd->bfs", pooled, memory_keys)  # B F S, h heads as in affinity_mean
    return scores / (math.sqrt(q.shape[-1]) * q.shape[1])


def frustum_samples(num_points: int, near: float, far: float, seed: int = 0) -> torch.Tensor:
    """Fixed Monte Carlo pattern in a frustum: "Mc 3" (u, v in [0, 1] of the image, depth in [near, far]).

    Drawn from its own seeded generator, so every call (and every process) sees the same points.
    """
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(num_points, 3, generator=generator, dtype=torch.float64)
    depth = near + (far - near) * uniform[:, 2]
    return torch.stack([uniform[:, 0], uniform[:, 1], depth], dim=-1).float()


def frustum_overlap(
    query_poses: torch.Tensor, candidate_poses: torch.Tensor, intrinsics: torch.Tensor, samples: torch.Tensor
) -> torch.Tensor:
    """Fraction of points sampled in each query frustum that another camera sees: "B Q S" in [0, 1].

    query_poses: "B Q 4 4", candidate_poses: "B S 4 4" camera-to-world (OpenCV: x right, y down, z forward);
    intrinsics: "B 4" (fx/W, fy/H, cx/W, cy/H); samples: "Mc 3" from `frustum_samples`. A point counts when
    it lies in front of the candidate (positive depth) and projects inside its image.
    """
    fx, fy, cx, cy = (value[:, None] for value in intrinsics.float().unbind(-1))  # each B 1
    samples = samples.to(query_poses.device)
    u, v, depth = samples.unbind(-1)  # each Mc
    # 1. points in each query camera, then in the world
    camera_points = torch.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth.expand_as(fx * u)], -1)
    rotation_q, origin_q = query_poses[..., :3, :3].float(), query_poses[..., :3, 3].float()
    world = torch.einsum("bqij,bmj->bqmi", rotation_q, camera_points) + origin_q[:, :, None]  # B Q Mc 3
    # 2. into each candidate camera: rotation^T (world - origin)
    rotation_s, origin_s = candidate_poses[..., :3, :3].float(), candidate_poses[..., :3, 3].float()
    offsets = world[:, :, None] - origin_s[:, None, :, None]  # B Q S Mc 3
    local = torch.einsum("bsji,bqsmj->bqsmi", rotation_s, offsets)  # B Q S Mc 3
    x, y, z = local.unbind(-1)
    safe_z = torch.where(z > 1e-6, z, torch.ones_like(z))
    fx, fy, cx, cy = (value[..., None, None] for value in (fx, fy, cx, cy))  # each B 1 1 1
    u_s, v_s = fx * x / safe_z + cx, fy * y / safe_z + cy  # B Q S Mc
    seen = (z > 1e-6) & (u_s >= 0) & (u_s <= 1) & (v_s >= 0) & (v_s <= 1)
    return seen.float().mean(-1)  # B Q S


def mean_poses(poses: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Pose of each span of frames: mean translation, mean rotation projected back onto SO(3) by SVD.

    poses: "B F 4 4"; spans: "S 2" first/last frame. Returns "B S 4 4". The projection (the rotation closest
    to the averaged matrix in Frobenius norm) is the chordal L2 mean, exact for one frame.
    """
    frames = torch.arange(poses.shape[1], device=poses.device)
    covers = (frames[None] >= spans[:, :1]) & (frames[None] <= spans[:, 1:])  # S F
    weights = covers.to(poses.dtype) / covers.sum(-1, keepdim=True)  # S F
    mean = torch.einsum("sf,bfij->bsij", weights, poses)  # B S 4 4
    left, _, right = torch.linalg.svd(mean[..., :3, :3])
    sign = torch.sign(torch.linalg.det(left @ right))  # B S, -1 where the projection would reflect
    flip = torch.ones_like(mean[..., :3, 0])
    flip[..., 2] = sign
    rotation = left @ torch.diag_embed(flip) @ right
    result = torch.zeros_like(mean)
    result[..., :3, :3] = rotation
    result[..., :3, 3] = mean[..., :3, 3]
    result[..., 3, 3] = 1
    return result


# ------------------------------------------------------------------------------------------------ select


def select_top_k(
    scores: torch.Tensor, eligible: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best `top_k` eligible candidates per query: indices, valid "B Q K'" with K' = min(top_k, S).

    scores: "B Q S"; eligible: "Q S" or "B Q S" bool. Entries past the eligible count are valid=False.
    Ties go to the lower candidate index.
    Indices are returned in ascending order within a row (the order of keys does not change attention, and a
    canonical order makes selections comparable).
    """
    batch, queries, candidates = scores.shape
    count = min(top_k, candidates)
    eligible = eligible.expand(batch, queries, candidates)
    if count == 0:
        empty = torch.zeros(batch, queries, 0, dtype=torch.long, device=scores.device)
        return empty, empty.bool()
    # Stable sorts, not topk: equal scores (common for frustum overlap, where several cameras see the
    # whole query frustum) go to the earlier candidate, the same on every machine and in the loop reference.
    # Two passes order by (eligible first, score descending, index ascending), so an eligible candidate whose
    # score is -inf or NaN (an overflowed affinity) still beats every ineligible one.
    finite_scores = torch.nan_to_num(scores, nan=float("-inf"))
    _, by_score = finite_scores.sort(dim=-1, descending=True, stable=True)  # B Q S
    ineligible_key = (~eligible).gather(-1, by_score).to(torch.uint8)  # B Q S, 0 = eligible
    _, by_eligibility = ineligible_key.sort(dim=-1, stable=True)
    order = by_score.gather(-1, by_eligibility)  # B Q S
    indices = order[..., :count]  # B Q K'
    valid = eligible.gather(-1, indices)
    # invalid entries sort last so the valid ones read as a sorted prefix
    order_key = torch.where(valid, indices, indices + candidates)
    order_key, order = order_key.sort(dim=-1)
    return indices.gather(-1, order), valid.gather(-1, order)
