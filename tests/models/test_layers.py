import cmath

import pytest
import torch

from hybridmem.models.layers import (
    RMSNorm,
    TimestepEmbedder,
    apply_rope,
    grid_positions,
    modulate,
    rope_angles,
    rope_axis_dims,
    timestep_embedding,
)


def reference_rope(x: torch.Tensor, positions: list[tuple[int, int, int]], theta: float) -> torch.Tensor:
    """Slow, obvious 3D rope: per token and channel pair, multiply the complex number x[2i] + i x[2i+1] by
    exp(i * position[axis] * theta^(-2j/a)), the head split (time, rows, columns) as in Wan2.1."""
    head_dim = x.shape[-1]
    spatial = 2 * (head_dim // 6)
    axis_dims = [head_dim - 2 * spatial, spatial, spatial]
    pair_frequencies = []  # (axis, frequency) of each channel pair, in order
    for axis, axis_dim in enumerate(axis_dims):
        for j in range(axis_dim // 2):
            pair_frequencies.append((axis, theta ** (-2 * j / axis_dim)))
    out = torch.empty_like(x, dtype=torch.float64)
    for b in range(x.shape[0]):
        for head in range(x.shape[1]):
            for m, position in enumerate(positions):
                for i, (axis, frequency) in enumerate(pair_frequencies):
                    value = complex(x[b, head, m, 2 * i].item(), x[b, head, m, 2 * i + 1].item())
                    rotated = value * cmath.exp(1j * position[axis] * frequency)
                    out[b, head, m, 2 * i], out[b, head, m, 2 * i + 1] = rotated.real, rotated.imag
    return out


@pytest.mark.parametrize("head_dim", [16, 22])
def test_rope_at_integer_positions_matches_reference(head_dim):
    generator = torch.Generator().manual_seed(0)
    positions = [(f, h, w) for f in range(2) for h in range(3) for w in range(2)]
    x = torch.randn(1, 2, len(positions), head_dim, generator=generator)
    angles = rope_angles(torch.tensor(positions, dtype=torch.float32), head_dim, theta=10000.0)
    fast = apply_rope(x, angles)
    slow = reference_rope(x, positions, theta=10000.0)
    torch.testing.assert_close(fast.double(), slow, atol=1e-5, rtol=1e-5)


def test_rope_axis_split_follows_wan():
    assert rope_axis_dims(128) == (44, 42, 42)
    assert sum(rope_axis_dims(16)) == 16
    with pytest.raises(ValueError):
        rope_axis_dims(7)


def test_rope_scores_depend_only_on_offset_even_at_float_positions():
    # Memory tokens sit at fractional positions; a q.k score must depend only on the position difference.
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(1, 1, 1, 24, generator=generator, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 24, generator=generator, dtype=torch.float64)

    def score(q_position, k_position):
        q_rot = apply_rope(q, rope_angles(torch.tensor([q_position]), 24).double())
        k_rot = apply_rope(k, rope_angles(torch.tensor([k_position]), 24).double())
        return (q_rot * k_rot).sum().item()

    offset = torch.tensor([0.5, 1.5, -2.5])
    first, second = torch.tensor([3.0, 2.0, 4.0]), torch.tensor([7.25, 0.5, 1.75])
    base = score(first.tolist(), (first + offset).tolist())
    shifted = score(second.tolist(), (second + offset).tolist())
    assert base == pytest.approx(shifted, abs=1e-4)
    assert score([0.0, 0.0, 0.0], [0.5, 0.0, 0.0]) != pytest.approx(score([0.0, 0.0, 0.0], [1.5, 0.0, 0.0]))


def test_grid_positions_are_in_f_h_w_order():
    positions = grid_positions(2, 3, 5)
    assert positions.shape == (30, 3)
    index = 1 * 15 + 2 * 5 + 4  # f=1, h=2, w=4
    assert positions[index].tolist() == [1.0, 2.0, 4.0]


def test_rms_norm_matches_formula():
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(8.0))
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * torch.arange(8.0)
    torch.testing.assert_close(norm(x), expected)


def test_modulate_with_zero_modulation_is_identity():
    x = torch.randn(2, 3, 4)
    assert torch.equal(modulate(x, torch.zeros(4), torch.zeros(4)), x)
    torch.testing.assert_close(modulate(x, torch.ones(4), torch.ones(4)), 2 * x + 1)


def test_timestep_embedding_values_and_shapes():
    t = torch.tensor([0.0, 0.5, 1.0])
    embedding = timestep_embedding(t, 8)
    assert embedding.shape == (3, 8)
    torch.testing.assert_close(embedding[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    # lowest frequency is 1: the first cosine is cos(1000 t)
    torch.testing.assert_close(embedding[1, 0], torch.cos(torch.tensor(500.0)))
    assert timestep_embedding(t, 7).shape == (3, 7)
    assert not torch.allclose(embedding[1], embedding[2])
    assert TimestepEmbedder(16, frequency_dim=8)(torch.rand(2, 5)).shape == (2, 5, 16)
