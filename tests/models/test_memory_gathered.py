"""The gathered-attention kernel alone: frame_attention against per-frame attention, forward and backward.

test_memory_hydra.py checks it through HydraMemory against the loop reference; here the kernel gets
selections the policy would rarely produce (the same slice in many rows, whole rows of invalid slots,
batch elements that disagree), and gradients are compared for every input, memory keys and values included.
"""

import pytest
import torch
import torch.nn.functional as F

from hybridmem.models.memory import gathered
from hybridmem.models.memory.gathered import frame_attention
from hybridmem.models.memory.retrieval import window_indices


def per_frame_attention(q, k, v, window_idx, memory_keys, memory_values, indices, valid):
    """One scaled_dot_product_attention per (batch element, query frame), valid slots only: "B a Q P d"."""
    batch, _, num_queries, _, _ = q.shape
    outputs = []
    for b in range(batch):
        frames = []
        for i in range(num_queries):
            chosen = indices[b, i][valid[b, i]]
            keys = torch.cat(
                [k[b][:, window_idx[i]].flatten(1, 2), memory_keys[b][:, chosen].flatten(1, 2)], 1
            )
            values = torch.cat(
                [v[b][:, window_idx[i]].flatten(1, 2), memory_values[b][:, chosen].flatten(1, 2)], 1
            )
            frames.append(F.scaled_dot_product_attention(q[b][:, i], keys, values))  # a P d
        outputs.append(torch.stack(frames, 1))  # a Q P d
    return torch.stack(outputs)


def case(seed=0, batch=2, heads=2, frames=7, tokens=6, slices=4, slice_tokens=3, dim=8, top_k=3):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    tensors = (
        randn(batch, heads, frames, tokens, dim),  # q
        randn(batch, heads, frames, tokens, dim),  # k
        randn(batch, heads, frames, tokens, dim),  # v
        randn(batch, heads, slices, slice_tokens, dim),  # memory keys
        randn(batch, heads, slices, slice_tokens, dim),  # memory values
    )
    indices = torch.randint(0, slices, (batch, frames, top_k), generator=generator)
    indices[0, :, 0] = 1  # every query frame of batch element 0 reads slice 1: its gradients add up
    valid = torch.rand(batch, frames, top_k, generator=generator) > 0.3
    valid[1, 2] = False  # a row with no valid slot reads its window only
    return tensors, indices, valid


@pytest.mark.parametrize("cpu_flash", [True, False])
@pytest.mark.parametrize("query_chunk, window", [(0, 3), (3, 3), (2, 4), (0, 9)])
def test_forward_and_every_gradient_equal_per_frame_attention(query_chunk, window, cpu_flash, monkeypatch):
    monkeypatch.setattr(gathered, "USE_CPU_FLASH", cpu_flash and gathered.USE_CPU_FLASH)
    tensors, indices, valid = case()
    window_idx = window_indices(7, window)
    upstream = torch.randn(tensors[0].shape, generator=torch.Generator().manual_seed(9))
    results = []
    for function in (per_frame_attention, frame_attention):
        inputs = [t.clone().requires_grad_() for t in tensors]
        extra = (query_chunk,) if function is frame_attention else ()
        out = function(*inputs[:3], window_idx, *inputs[3:], indices, valid, *extra)
        out.backward(upstream)
        results.append([out.detach()] + [t.grad for t in inputs])
    names = ("out", "q", "k", "v", "memory_keys", "memory_values")
    for name, expected, got in zip(names, *results, strict=True):
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), name


def test_window_only_equals_per_frame_attention():
    (q, k, v, _, _), _, _ = case(seed=1)
    window_idx = window_indices(7, 3)
    expected = torch.stack(
        [
            F.scaled_dot_product_attention(
                q[:, :, i], k[:, :, rows].flatten(2, 3), v[:, :, rows].flatten(2, 3)
            )
            for i, rows in enumerate(window_idx)
        ],
        2,
    )
    assert torch.allclose(frame_attention(q, k, v, window_idx, query_chunk=2), expected, atol=1e-6)
