"""train/common.py optimizer_step: the update both trainers and benchmarks/train.py make."""

from __future__ import annotations

import torch

from hybridmem.train import common


def _one_step(grad_clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(returned norm, the gradient the optimizer saw, the new weight) for loss = 10 * sum(w), w of 4."""
    weight = torch.nn.Parameter(torch.zeros(4))
    model = torch.nn.Module()
    model.weight = weight
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = common.grad_scaler("fp32", torch.device("cpu"))
    norm = common.optimizer_step(10 * weight.sum(), model, optimizer, scaler, grad_clip)
    return norm, weight.grad.clone(), weight.detach().clone()


def test_optimizer_step_clips_to_the_norm_and_reports_the_norm_before_clipping():
    norm, grad, weight = _one_step(grad_clip=1.0)
    assert float(norm) == 20.0  # |(10, 10, 10, 10)|
    torch.testing.assert_close(grad, torch.full((4,), 0.5))  # rescaled to norm 1
    torch.testing.assert_close(weight, torch.full((4,), -0.5))  # SGD, lr 1


def test_optimizer_step_without_clipping():
    norm, grad, weight = _one_step(grad_clip=0.0)
    assert float(norm) == 20.0
    torch.testing.assert_close(grad, torch.full((4,), 10.0))
    torch.testing.assert_close(weight, torch.full((4,), -10.0))
