"""Tiny models and weights shared by the tests: built on CPU in about a second, from a fixed seed.

tests/ is on sys.path (tests/conftest.py is a rootdir conftest), so a test imports these as
`from tiny import save_tiny_world`; tests/conftest.py serves the common ones as fixtures.
"""

from pathlib import Path

import torch


def save_tiny_world(folder: Path, seed: int = 0) -> Path:
    """A tiny hydra-memory world model, its weights perturbed, saved as a model folder.

    A new model predicts zero velocity (its final layer starts at zero), so the weights are nudged by
    0.05 * N(0, 1) for its outputs to depend on its inputs.
    """
    from hybridmem.models.checkpoint import save_model
    from hybridmem.models.memory import MemoryConfig
    from hybridmem.models.world import build_world_model

    torch.manual_seed(seed)
    world = build_world_model("tiny", memory=MemoryConfig(kind="hydra"))
    with torch.no_grad():
        for parameter in world.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    save_model(world, folder)
    return folder


def save_tiny_models(root: Path) -> Path:
    """root/world (save_tiny_world, seed 0) and root/vae (an untrained tiny VAE drawn right after it)."""
    from hybridmem.models.checkpoint import save_model
    from hybridmem.models.vae import build_vae

    save_tiny_world(root / "world")
    save_model(build_vae("tiny"), root / "vae")
    return root


def save_tiny_clip(
    folder: Path,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    heads: int = 2,
    vocab_size: int = 64,
    seed: int = 0,
) -> Path:
    """A randomly initialised CLIP saved as a transformers folder: a 1-layer text tower and a 2-layer ViT of
    `width` channels (MLP 2 x width) on `image_size` px in `patch_size` px patches."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=image_size,
            patch_size=patch_size,
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=heads,
        ),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    return folder
