"""A tiny random latent cache for the training and sampling tests."""

import numpy as np
import torch

from hybridmem.data import cache
from hybridmem.geometry import look_at, relative_poses


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
