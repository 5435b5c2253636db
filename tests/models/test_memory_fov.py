"""fov memory (Context-as-Memory style) and window memory against brute-force masked attention."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hybridmem.errors import ConfigError
from hybridmem.geometry import look_at
from hybridmem.models.memory import MemoryConfig
from hybridmem.models.memory.base import SequenceInfo, build_memory
from hybridmem.models.memory.fov import fov_retrieval
from hybridmem.models.memory.retrieval import frustum_samples, window_indices

INTRINSICS = torch.tensor([[0.5, 0.5, 0.5, 0.5]])  # 90 degree field of view


def poses(*pairs):
    return torch.tensor(np.stack([look_at(eye, target) for eye, target in pairs]), dtype=torch.float32)


# context: 0 faces +x like the targets, 1 faces away, 2 faces +x turned a little, from further back,
# 3 faces +y, 4 and 5 sit next to the targets (inside their window); targets 6 and 7 face +x.
CAMERAS = poses(
    ([0, 0, 1], [10, 0, 1]),
    ([0, 0, 1], [-10, 0, 1]),
    ([-2, 0, 1], [10, 4, 1]),
    ([0, 0, 1], [0, 10, 1]),
    ([0, 0, 1], [-10, 0.1, 1]),
    ([0, 0, 1], [-10, -0.1, 1]),
    ([0, 0, 1], [10, 0, 1]),
    ([0.3, 0, 1], [10, 0, 1]),
)[None]


def random_qkv(batch, heads, tokens, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, heads, tokens, dim, generator=generator) for _ in range(3))


def masked_attention(q, k, v, allowed_frames, tokens):
    """Dense attention with a frame-level mask "B F F" expanded to tokens."""
    mask = allowed_frames.repeat_interleave(tokens, 1).repeat_interleave(tokens, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])


def test_fov_picks_overlapping_frames_and_ignores_cameras_facing_away():
    window_idx = window_indices(8, 3)[6:]  # targets 6, 7 -> windows [5, 6, 7]
    samples = frustum_samples(256, 0.5, 30.0)
    indices, valid = fov_retrieval(CAMERAS, INTRINSICS, 6, window_idx, 2, samples)
    assert indices[valid].view(2, 2).tolist() == [[0, 2], [0, 2]]
    indices, valid = fov_retrieval(CAMERAS, INTRINSICS, 6, window_idx, 6, samples)
    for row in range(2):
        chosen = set(indices[0, row][valid[0, row]].tolist())
        assert {0, 2} <= chosen
        assert 1 not in chosen and 4 not in chosen and 5 not in chosen  # facing away / inside the window


def test_fov_memory_equals_brute_force_masked_attention():
    grid, tokens, context = (8, 2, 2), 4, 6
    memory = build_memory(MemoryConfig(kind="fov", window=3, top_k=1), 8)
    q, k, v = random_qkv(1, 2, 8 * tokens, 4)
    sequence = SequenceInfo(grid=grid, context_frames=context, cameras=CAMERAS, intrinsics=INTRINSICS)
    out = memory(q, k, v, None, None, sequence)
    allowed = torch.zeros(1, 8, 8, dtype=torch.bool)
    allowed[:, :context, :context] = True  # context attends to the context
    allowed[:, 6:, 5:] = True  # targets: window [5, 6, 7]
    allowed[:, 6:, 0] = True  # plus the best overlapping context frame (frame 0, identical to target 6)
    assert torch.allclose(out, masked_attention(q, k, v, allowed, tokens), atol=1e-5)
    memory.config.query_chunk = 1
    assert torch.allclose(memory(q, k, v, None, None, sequence), out, atol=1e-6)


def test_fov_and_window_gradients_equal_masked_attention():
    grid, tokens, context = (8, 2, 2), 4, 6
    sequence = SequenceInfo(grid=grid, context_frames=context, cameras=CAMERAS, intrinsics=INTRINSICS)
    allowed = {"fov": torch.zeros(1, 8, 8, dtype=torch.bool), "window": window_mask_of(8, 3)}
    allowed["fov"][:, :context, :context] = True
    allowed["fov"][:, 6:, 5:] = True
    allowed["fov"][:, 6:, 0] = True
    for kind in ("fov", "window"):
        memory = build_memory(MemoryConfig(kind=kind, window=3, top_k=1, query_chunk=1), 8)
        gradients = []
        for run in (memory, None):
            q, k, v = (t.requires_grad_() for t in random_qkv(1, 2, 8 * tokens, 4))
            if run is None:
                out = masked_attention(q, k, v, allowed[kind], tokens)
            else:
                out = run(q, k, v, None, None, sequence)
            out.square().sum().backward()
            gradients.append((q.grad, k.grad, v.grad))
        for fast, slow in zip(*gradients, strict=True):
            assert torch.allclose(fast, slow, atol=1e-5), kind


def window_mask_of(num_frames, window):
    allowed = torch.zeros(1, num_frames, num_frames, dtype=torch.bool)
    for i in range(num_frames):
        start = min(max(i - (window - 1) // 2, 0), max(num_frames - window, 0))
        allowed[0, i, start : start + window] = True
    return allowed


def test_fov_needs_cameras():
    memory = build_memory(MemoryConfig(kind="fov"), 8)
    q, k, v = random_qkv(1, 2, 8 * 4, 4)
    with pytest.raises(ConfigError, match="SequenceInfo.cameras is None"):
        memory(q, k, v, None, None, SequenceInfo(grid=(8, 2, 2), context_frames=6))
    with pytest.raises(ConfigError, match="B F 4 4"):
        sequence = SequenceInfo((8, 2, 2), 6, cameras=CAMERAS[:, :5], intrinsics=INTRINSICS)
        memory(q, k, v, None, None, sequence)


@pytest.mark.parametrize("num_frames", [1, 4, 9])
def test_window_memory_equals_masked_attention_at_sequence_ends(num_frames):
    memory = build_memory(MemoryConfig(kind="window", window=5, query_chunk=2), 8)
    q, k, v = random_qkv(2, 2, num_frames * 6, 4)
    out = memory(q, k, v, None, None, SequenceInfo(grid=(num_frames, 2, 3), context_frames=1))
    allowed = torch.zeros(num_frames, num_frames, dtype=torch.bool)
    for i in range(num_frames):  # written out: 5 wide, centred, shifted inside the sequence
        start = min(max(i - 2, 0), max(num_frames - 5, 0))
        allowed[i, start : start + 5] = True
    expected = masked_attention(q, k, v, allowed.expand(2, -1, -1), 6)
    assert torch.allclose(out, expected, atol=1e-5)
