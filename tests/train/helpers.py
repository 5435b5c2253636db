"""Tiny training runs for the training, sampling and reliability tests: a random latent cache and the
configs of CPU runs of a few steps (`from train.helpers import ...` outside tests/train)."""

import numpy as np
import torch

from hybridmem.data import cache
from hybridmem.geometry import look_at, relative_poses
from hybridmem.train.config import VaeTrainConfig, WorldTrainConfig

# every tiny run: the tiny presets on CPU, no progress bar, no TensorBoard; 4 steps, a checkpoint every 2
TINY_RUN = dict(preset="tiny", device="cpu", progress=False, tensorboard=False)
FOUR_STEPS = dict(steps=4, batch_size=2, lr=1e-3, warmup=1, save_every=2)


def tiny_world_config(cache_dir, out, **overrides) -> WorldTrainConfig:
    """A world-model run on the latent cache `cache_dir`: hydra memory, EMA decay 0.9, FOUR_STEPS."""
    values = dict(cache=str(cache_dir), out=str(out), memory="hydra", ema_decay=0.9, **TINY_RUN, **FOUR_STEPS)
    return WorldTrainConfig(**{**values, **overrides})


def tiny_vae_config(data, out, **overrides) -> VaeTrainConfig:
    """A VAE run on the clip folders under `data`: 5-frame windows, 4 segments for the normalisation."""
    values = dict(data=str(data), out=str(out), frames=5, norm_windows=4, **TINY_RUN, **FOUR_STEPS)
    return VaeTrainConfig(**{**values, **overrides})


def make_latent_cache(folder, clips=4, context=2, target=2, channels=4, size=(4, 4), seed=0, logvar=False):
    generator = torch.Generator().manual_seed(seed)
    cache.write_index(folder, {"split": "train", "vae_config": {}, "store_logvar": False})
    for index in range(clips):
        poses = np.stack(
            [look_at((0.3 * f, 0.1 * index, 1.0), (0.3 * f + 1.0, 5.0, 1.0)) for f in range(context + target)]
        )
        tensors = {
            "context_latents": torch.randn(context, channels, *size, generator=generator),
            "target_latents": torch.randn(target, channels, *size, generator=generator),
            "cameras": torch.from_numpy(relative_poses(poses, poses[context]).astype(np.float32)),
            "intrinsics": torch.tensor([0.8, 0.8, 0.5, 0.5]),
        }
        if logvar:
            tensors["context_logvar"] = torch.full((context, channels, *size), -2.0)
            tensors["target_logvar"] = torch.full((target, channels, *size), -2.0)
        cache.write_clip_entry(folder, f"{index:06d}", tensors, {"caption": "", "events": []})
    return folder
