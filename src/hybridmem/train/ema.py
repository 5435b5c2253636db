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
    """shadow <- decay * shadow + (1 - decay) * live, after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = dict(model.named_parameters())
        for name, shadow in self.model.named_parameters():
            # lerp_ in float keeps the average exact enough in low-precision copies too.
            shadow.lerp_(live[name].detach().to(shadow.dtype), 1.0 - self.decay)
        live_buffers = dict(model.named_buffers())
        for name, shadow in self.model.named_buffers():
            shadow.copy_(live_buffers[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
