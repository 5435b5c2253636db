"""Tiny randomly initialised CLIP / DINO / LPIPS weights in the documented folder layout."""

import pytest
import torch

from hybridmem.eval.features import CLIP_FOLDER, DINO_FOLDER
from hybridmem.eval.lpips import LPIPS, lpips_files
from tiny import save_tiny_clip


def write_tiny_weights(weights_dir, lpips_backbones=("alex",)):
    from transformers import ViTConfig, ViTModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    save_tiny_clip(weights_dir / CLIP_FOLDER, image_size=32, vocab_size=64, seed=0)
    dino_config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(dino_config, add_pooling_layer=False).save_pretrained(weights_dir / DINO_FOLDER)
    for backbone in lpips_backbones:
        model = LPIPS(backbone)
        head_path, backbone_path = lpips_files(weights_dir, backbone)
        head_path.parent.mkdir(parents=True, exist_ok=True)
        # torchvision layout: features.* plus classifier.* that the loader must ignore
        backbone_state = {f"features.{key}": value for key, value in model.features.state_dict().items()}
        backbone_state["classifier.1.weight"] = torch.zeros(2, 2)
        torch.save(backbone_state, backbone_path)
        heads = {key: value.abs() for key, value in model.state_dict().items() if key.startswith("lin")}
        torch.save(heads, head_path)
    return weights_dir


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))
