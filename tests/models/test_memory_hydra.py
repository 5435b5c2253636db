"""HyDRA memory: fast gathered path against brute-force masked attention and the per-frame loop."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hybridmem.errors import ConfigError
from hybridmem.geometry import look_at
from hybridmem.models.memory import MemoryConfig, gathered
from hybridmem.models.memory.base import SequenceInfo, build_memory
from hybridmem.models.memory.retrieval import inside_window, window_indices
from hydra_reference import HydraLoopReference


class TinyHandle(nn.Module):
    """Stand-in for the block's self-attention: linear q/k/v and a fixed-frequency 3D rope."""

    def __init__(self, dim: int, num_heads: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.register_buffer("frequencies", torch.randn(3, self.head_dim // 2))

    def rope(self, t, positions):
        angle = positions @ self.frequencies  # M d/2
        first, second = t[..., 0::2], t[..., 1::2]
        cos, sin = angle.cos(), angle.sin()
        return torch.stack([first * cos - second * sin, first * sin + second * cos], -1).flatten(-2)

    def heads(self, t):
        return rearrange(t, "b m (a d) -> b a m d", a=self.num_heads)

    def unrotated_q(self, tokens):
        return self.heads(self.q(tokens))

    def unrotated_kv(self, tokens):
        return self.heads(self.k(tokens)), self.heads(self.v(tokens))

    def rotate(self, t, positions):
        return self.rope(t, positions)

    def project_kv(self, tokens, positions):
        keys, values = self.unrotated_kv(tokens)
        return self.rope(keys, positions), values

    def qkv(self, x):
        """x "B F H W D" -> q, k, v "B a N d" at integer (f, h, w) positions."""
        grid = x.shape[1:4]
        positions = torch.stack(
            torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in grid), indexing="ij"), -1
        ).reshape(-1, 3)
        tokens = rearrange(x, "b f h w d -> b (f h w) d")
        q = self.rope(self.heads(self.q(tokens)), positions)
        k, v = self.project_kv(tokens, positions)
        return q, k, v


def make_case(grid=(8, 2, 3), batch=2, dim=16, heads=2, seed=0, context_frames=3, **config):
    config = MemoryConfig(kind="hydra", **config)
    torch.manual_seed(seed)
    memory = build_memory(config, dim)
    handle = TinyHandle(dim, heads, seed)
    x = torch.randn(batch, *grid, dim, generator=torch.Generator().manual_seed(seed + 1))
    q, k, v = handle.qkv(x)
    sequence = SequenceInfo(grid=grid, context_frames=context_frames)
    return memory, handle, x, (q, k, v), sequence


def loop_twin(memory):
    twin = HydraLoopReference(memory.config, memory.tokenizer.conv.in_channels)
    twin.load_state_dict(memory.state_dict())
    return twin


def brute_force(q, k, v, memory_keys, memory_values, allowed_frames, allowed_slices, grid):
    """Dense attention over [all frames' keys; all slices' keys] with a frame/slice-level mask.

    allowed_frames: "B F F" (query frame, key frame); allowed_slices: "B F S".
    """
    num_frames, height, width = grid
    tokens = height * width
    slice_tokens = memory_keys.shape[3]
    keys = torch.cat([k, rearrange(memory_keys, "b a s p d -> b a (s p) d")], dim=2)
    values = torch.cat([v, rearrange(memory_values, "b a s p d -> b a (s p) d")], dim=2)
    mask = torch.cat(
        [
            allowed_frames.repeat_interleave(tokens, 1).repeat_interleave(tokens, 2),
            allowed_slices.repeat_interleave(tokens, 1).repeat_interleave(slice_tokens, 2),
        ],
        dim=2,
    )  # B N (N + S P')
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None])


def window_mask(num_frames, window, batch):
    rows = window_indices(num_frames, window)
    allowed = torch.zeros(num_frames, num_frames, dtype=torch.bool)
    allowed.scatter_(1, rows, True)
    return allowed.expand(batch, -1, -1)


def test_window_and_k_covering_everything_is_full_attention():
    memory, handle, x, (q, k, v), sequence = make_case(window=8, top_k=100)
    out = memory(q, k, v, x, handle, sequence)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5)


@pytest.mark.parametrize("memory_scope", ["all", "context"])
def test_k_covering_every_slice_equals_brute_force_masked_attention(memory_scope):
    memory, handle, x, (q, k, v), sequence = make_case(window=3, top_k=100, memory_scope=memory_scope)
    out = memory(q, k, v, x, handle, sequence)
    retrieved = memory.retrieve(q, x, handle, sequence)
    allowed_slices = ~inside_window(window_indices(8, 3), retrieved.spans)  # F S
    expected = brute_force(
        q,
        k,
        v,
        retrieved.memory_keys,
        retrieved.memory_values,
        window_mask(8, 3, 2),
        allowed_slices.expand(2, -1, -1),
        sequence.grid,
    )
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        dict(affinity="mean"),
        dict(affinity="eq4"),
        dict(affinity="mean", memory_scope="context"),
        dict(affinity="eq4", tokenizer_kernel=(1, 2, 2)),
        dict(affinity="mean", tokenizer_kernel=(2, 4, 4), window=2),
        # the choices of every model saved before affinity_rope and token_positions existed
        dict(affinity="mean", affinity_rope="after", token_positions="centre"),
        dict(affinity="eq4", affinity_rope="after", token_positions="centre"),
    ],
)
def test_vectorised_equals_per_frame_loop(options):
    memory, handle, x, (q, k, v), sequence = make_case(grid=(9, 3, 5), **{"window": 3, "top_k": 2, **options})
    out = memory(q, k, v, x, handle, sequence)
    twin = loop_twin(memory)
    expected = twin(q, k, v, x, handle, sequence)
    assert torch.allclose(out, expected, atol=1e-5)
    retrieved = memory.retrieve(q, x, handle, sequence)
    for b in range(2):
        for i in range(9):
            chosen = retrieved.indices[b, i][retrieved.valid[b, i]].tolist()
            assert chosen == twin.last_selection[b][i]


def test_fewer_eligible_slices_than_k_never_attends_a_masked_slice():
    # F=6, kernel_f=2 -> slices (0,1) (2,3) (4,5); window 3: frames 0 and 1 see [0, 1, 2], so slice 0 is
    # inside their window and only 2 of K=3 slices are eligible.
    memory, handle, x, (q, k, v), sequence = make_case(grid=(6, 2, 2), window=3, top_k=3)
    retrieved = memory.retrieve(q, x, handle, sequence)
    assert retrieved.valid[:, :2].sum(-1).eq(2).all()
    assert (retrieved.indices[:, :2][~retrieved.valid[:, :2]] == 0).all()  # the masked slot is slice 0
    out = memory(q, k, v, x, handle, sequence)
    # make slice 0's memory values enormous: frames 0 and 1 must not change, frame 2 (which retrieves it) must
    original_project = handle.unrotated_kv

    def poisoned(tokens):
        keys, values = original_project(tokens)
        first_slice = torch.arange(tokens.shape[1]) < 1  # memory tokens in (slice, row, column) order, 1x1
        return keys, values + 1e3 * first_slice[None, None, :, None]

    handle.unrotated_kv = poisoned
    poisoned_out = memory(q, k, v, x, handle, sequence)
    tokens = 4
    assert torch.allclose(out[:, :, : 2 * tokens], poisoned_out[:, :, : 2 * tokens], atol=1e-5)
    assert not torch.allclose(out[:, :, 2 * tokens : 3 * tokens], poisoned_out[:, :, 2 * tokens : 3 * tokens])


@pytest.mark.parametrize("cpu_flash", [True, False])
@pytest.mark.parametrize("query_chunk, top_k", [(0, 2), (2, 2), (3, 4)])  # top_k 4: some slots masked
def test_gradients_equal_the_per_frame_loop(query_chunk, top_k, cpu_flash, monkeypatch):
    monkeypatch.setattr(gathered, "USE_CPU_FLASH", cpu_flash and gathered.USE_CPU_FLASH)
    memory, handle, x, _, sequence = make_case(grid=(7, 3, 5), window=3, top_k=top_k, query_chunk=query_chunk)
    twin = loop_twin(memory)
    gradients = []
    for module in (memory, twin):
        inputs = x.clone().requires_grad_()
        handle.zero_grad()
        module(*handle.qkv(inputs), inputs, handle, sequence).square().sum().backward()
        weight = next(p for n, p in module.named_parameters() if n == "tokenizer.conv.weight")
        gradients.append((inputs.grad, weight.grad, handle.k.weight.grad.clone()))
    for fast, slow in zip(*gradients, strict=True):
        assert torch.allclose(fast, slow, atol=1e-4, rtol=1e-4)


def test_odd_grid_with_kernel_222():
    memory, handle, x, (q, k, v), sequence = make_case(grid=(7, 3, 5), window=3, top_k=2)
    tokens = memory.tokenizer(x)
    assert tokens.shape == (2, 4, 2, 3, 16)
    # average-pooling init: an interior patch is exactly the mean of the 2x2x2 tokens it covers
    assert torch.allclose(tokens[:, 0, 0, 0], x[:, 0:2, 0:2, 0:2].mean(dim=(1, 2, 3)), atol=1e-5)
    # replicate padding: the last slice covers frame 6 only, row 2 only, column 4 only
    assert torch.allclose(tokens[:, 3, 1, 2], x[:, 6, 2, 4], atol=1e-5)
    positions = memory.tokenizer.positions((7, 3, 5))
    assert positions.shape == (4 * 2 * 3, 3)
    assert positions[-1].tolist() == [6.0, 2.0, 4.0]
    out = memory(q, k, v, x, handle, sequence)
    assert out.shape == q.shape and torch.isfinite(out).all()
    assert torch.allclose(out, loop_twin(memory)(q, k, v, x, handle, sequence), atol=1e-5)


def test_chunked_equals_unchunked_with_gradients():
    memory, handle, x, _, sequence = make_case(grid=(9, 2, 3), window=3, top_k=2)
    x = x.requires_grad_()
    results = []
    for chunk in (0, 1, 4, 50):  # chunks > 0 also recompute each chunk in backward
        memory.config.query_chunk = chunk
        memory.zero_grad()
        x.grad = None
        out = memory(*handle.qkv(x), x, handle, sequence)
        out.square().sum().backward()
        results.append((out.detach(), x.grad.clone(), memory.tokenizer.conv.weight.grad.clone()))
    for out, x_grad, weight_grad in results[1:]:
        assert torch.allclose(out, results[0][0], atol=1e-6)
        assert torch.allclose(x_grad, results[0][1], atol=1e-5)
        assert torch.allclose(weight_grad, results[0][2], atol=1e-5)


def test_backward_reaches_the_tokenizer_and_inputs():
    memory, handle, x, _, sequence = make_case(window=3, top_k=2)
    x = x.requires_grad_()
    q, k, v = handle.qkv(x)
    memory(q, k, v, x, handle, sequence).square().sum().backward()
    assert memory.tokenizer.conv.weight.grad is not None
    assert memory.tokenizer.conv.weight.grad.abs().sum() > 0
    assert memory.tokenizer.conv.bias.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_deterministic_under_a_seed():
    first = make_case(window=3, top_k=2, seed=4)
    second = make_case(window=3, top_k=2, seed=4)
    outputs = []
    for memory, handle, x, (q, k, v), sequence in (first, second):
        outputs.append(memory(q, k, v, x, handle, sequence))
    assert torch.equal(outputs[0], outputs[1])


def test_no_context_with_context_scope_is_window_attention():
    memory, handle, x, (q, k, v), sequence = make_case(
        window=3, top_k=2, memory_scope="context", context_frames=0
    )
    window = build_memory(MemoryConfig(kind="window", window=3), 16)
    assert torch.allclose(
        memory(q, k, v, x, handle, sequence), window(q, k, v, x, handle, sequence), atol=1e-6
    )


def test_fov_retrieval_matches_loop_and_needs_cameras():
    memory, handle, x, (q, k, v), sequence = make_case(grid=(8, 2, 2), window=3, top_k=2, slice_ranking="fov")
    with pytest.raises(ConfigError, match="cameras"):
        memory(q, k, v, x, handle, sequence)
    # camera sweeping around a circle: frames far apart in time face different ways
    poses = [
        look_at([0, 0, 1], [torch.cos(t).item(), torch.sin(t).item(), 1]) for t in torch.linspace(0, 6, 8)
    ]
    sequence.cameras = torch.tensor(np.stack(poses), dtype=torch.float32)[None].expand(2, -1, -1, -1)
    sequence.intrinsics = torch.tensor([[0.5, 0.5, 0.5, 0.5]]).expand(2, -1)
    out = memory(q, k, v, x, handle, sequence)
    twin = loop_twin(memory)
    assert torch.allclose(out, twin(q, k, v, x, handle, sequence), atol=1e-5)
    retrieved = memory.retrieve(q, x, handle, sequence)
    picked = torch.gather(retrieved.scores, -1, retrieved.indices)[retrieved.valid]
    assert (picked > 0).all()


def test_unknown_kind_and_bad_options_list_valid_names():
    with pytest.raises(ConfigError, match="valid kinds: full, window, fov, hydra"):
        build_memory(MemoryConfig(kind="hydrant"), 16)
    with pytest.raises(ConfigError, match="valid: mean, eq4"):
        build_memory(MemoryConfig(kind="hydra", affinity="max"), 16)
    with pytest.raises(ConfigError, match="--tokenizer-kernel must be three positive ints"):
        build_memory(MemoryConfig(kind="hydra", tokenizer_kernel=(2, 0, 2)), 16)


def test_config_from_json_lists_becomes_tuples():
    memory = build_memory(MemoryConfig(kind="hydra", tokenizer_kernel=[1, 2, 2]), 16)
    assert memory.config.tokenizer_kernel == (1, 2, 2)
    assert memory.tokenizer.conv.kernel_size == (1, 2, 2)


def graph_nodes(root):
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen


@pytest.mark.parametrize("cpu_flash", [True, False])
def test_gathered_attention_keeps_tensors_only_through_save_for_backward(cpu_flash, monkeypatch):
    # Activation checkpointing frees and recomputes only what goes through save_for_backward: a tensor
    # stashed as a plain attribute of the autograd node would stay alive in every checkpointed block.
    monkeypatch.setattr(gathered, "USE_CPU_FLASH", cpu_flash and gathered.USE_CPU_FLASH)
    memory, handle, x, _, sequence = make_case(grid=(7, 3, 5), window=3, top_k=2, query_chunk=3)
    x = x.requires_grad_()
    out = memory(*handle.qkv(x), x, handle, sequence)
    nodes = [node for node in graph_nodes(out.grad_fn) if "GatheredAttention" in type(node).__name__]
    assert nodes, "the fast path did not run"

    def holds_tensors(value):
        if isinstance(value, torch.Tensor):
            return True
        return isinstance(value, list | tuple) and any(holds_tensors(item) for item in value)

    for node in nodes:
        assert not [name for name, value in vars(node).items() if holds_tensors(value)]


def test_hydra_needs_at_least_one_retrieved_slice():
    # top_k 0 would leave the tokenizer without gradient (DDP fails on unused parameters): that is `window`
    with pytest.raises(ConfigError, match="--memory-top-k: 0 is out of range: must be in"):
        build_memory(MemoryConfig(kind="hydra", top_k=0), 16)
