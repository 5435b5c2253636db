"""Exponential moving average of a model's weights, kept as a full shadow model.

The shadow is a deep copy of the model, so it can be saved with `models.checkpoint.save_model` and sampled
from like any model. Buffers are copied, not averaged (running statistics follow the live model).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from hybridmem.errors import ConfigError


class EMA:
    """shadow <- d * shadow + (1 - d) * live after every optimizer step, d = min(decay, (1 + t) / (10 + t)).

    t counts the optimizer steps taken before this update (0 for the first). The warm-up term (the
    num_updates rule of TensorFlow's ExponentialMovingAverage) keeps a short run's average from being
    dominated by its initial weights: with a plain 0.999 the shadow of a 2000-step run still holds
    0.999**2000 = 13.5% of the initialisation, and its validation loss was 3.5x the live model's in the
    reference run's first attempt. With the warm-up, d reaches 0.99 at t = 890 and 0.999 at t = 8990.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used by the update after `step` earlier optimizer steps."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1.0 - self.decay_at(step)
        live = dict(model.named_parameters())
        for name, shadow in self.model.named_parameters():
            # lerp_ in float keeps the average exact enough in low-precision copies too.
            shadow.lerp_(live[name].detach().to(shadow.dtype), weight)
        live_buffers = dict(model.named_buffers())
        for name, shadow in self.model.named_buffers():
            shadow.copy_(live_buffers[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
