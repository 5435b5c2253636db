import pytest
import torch

from hybridmem.diffusion import flow
from hybridmem.errors import ConfigError


def test_add_noise_endpoints_and_midpoint():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 5, 6, generator=generator)
    noise = torch.randn(3, 2, 4, 5, 6, generator=generator)
    assert torch.equal(flow.add_noise(x0, noise, torch.zeros(3)), x0)
    assert torch.equal(flow.add_noise(x0, noise, torch.ones(3)), noise)
    t = torch.tensor([0.0, 0.25, 1.0])
    mixed = flow.add_noise(x0, noise, t)
    torch.testing.assert_close(mixed[1], 0.75 * x0[1] + 0.25 * noise[1])


def test_velocity_is_derivative_of_path():
    x0, noise = torch.randn(2, 3), torch.randn(2, 3)
    t, dt = torch.tensor([0.3, 0.6]), 1e-3
    finite_difference = (flow.add_noise(x0, noise, t + dt) - flow.add_noise(x0, noise, t)) / dt
    torch.testing.assert_close(finite_difference, flow.velocity_target(x0, noise), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0, 5.0])
def test_shift_monotonic_with_fixed_endpoints(shift):
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    shifted = flow.shift_timesteps(t, shift)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert torch.all(shifted[1:] > shifted[:-1])
    if shift > 1:
        assert torch.all(shifted[1:-1] > t[1:-1])


def test_sampling_timesteps_descend_from_one_to_zero():
    timesteps = flow.sampling_timesteps(10, shift=5.0)
    assert timesteps.shape == (11,)
    assert timesteps[0] == 1 and timesteps[-1] == 0
    assert torch.all(timesteps[1:] < timesteps[:-1])
    with pytest.raises(ConfigError, match="steps"):
        flow.sampling_timesteps(0)


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal"])
def test_sample_timesteps_seeded_and_in_range(distribution):
    a = flow.sample_timesteps(64, torch.Generator().manual_seed(1), shift=5.0, distribution=distribution)
    b = flow.sample_timesteps(64, torch.Generator().manual_seed(1), shift=5.0, distribution=distribution)
    assert torch.equal(a, b)
    assert a.shape == (64,) and torch.all((a >= 0) & (a <= 1))
    unshifted = flow.sample_timesteps(64, torch.Generator().manual_seed(1), distribution=distribution)
    assert torch.all(a >= unshifted)


def test_unknown_distribution_lists_valid_names():
    with pytest.raises(ConfigError, match="logit_normal"):
        flow.sample_timesteps(2, None, distribution="beta")


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (7, 5.0), (30, 3.0)])
def test_euler_sampler_recovers_x0_with_exact_velocity(steps, shift):
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(2, 3, 4, 5, 5, generator=generator)
    noise = torch.randn(2, 3, 4, 5, 5, generator=generator)
    seen_t = []

    def exact_velocity(x_t, t):
        seen_t.append(t.clone())
        # On the straight path the velocity is constant; recover it from x_t to test the integrator.
        assert t.shape == (2,)
        return noise - x0

    out = flow.sample(exact_velocity, noise, steps=steps, shift=shift)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    assert len(seen_t) == steps and seen_t[0][0] == 1.0


def test_euler_sampler_with_state_dependent_velocity():
    # For the optimal velocity of a point mass at x0, v(x_t, t) = (x_t - x0) / t, Euler is exact too.
    x0 = torch.tensor([[1.5, -2.0]])
    noise = torch.tensor([[0.3, 0.7]])
    out = flow.sample(lambda x_t, t: (x_t - x0) / t[:, None], noise, steps=5, shift=2.0)
    torch.testing.assert_close(out, x0)


def test_guidance_mixes_conditional_and_unconditional():
    noise = torch.zeros(1, 2)
    cond = torch.tensor([[1.0, 0.0]])
    uncond = torch.tensor([[0.0, 1.0]])
    out = flow.sample(
        lambda x, t: cond.expand_as(x),
        noise,
        steps=1,
        shift=1.0,
        guidance=3.0,
        unconditional_velocity_fn=lambda x, t: uncond.expand_as(x),
    )
    # x_0 = noise - 1 * (uncond + 3 (cond - uncond))
    torch.testing.assert_close(out, -(uncond + 3 * (cond - uncond)))
    with pytest.raises(ConfigError, match="guidance"):
        flow.sample(lambda x, t: x, noise, steps=1, guidance=2.0)


def test_per_sample_loss_matches_mean():
    x0, noise, predicted = torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    per_sample = flow.per_sample_loss(predicted, x0, noise)
    assert per_sample.shape == (3,)
    torch.testing.assert_close(per_sample.mean(), flow.flow_matching_loss(predicted, x0, noise))
    assert flow.flow_matching_loss(noise - x0, x0, noise) == 0
