"""Tiny randomly initialised CLIP / DINO / LPIPS weights in the documented folder layout."""

import pytest
import torch

from hybridmem.eval.features import CLIP_FOLDER, DINO_FOLDER
from hybridmem.eval.lpips import LPIPS, lpips_files


def write_tiny_weights(weights_dir, lpips_backbones=("alex",)):
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.manual_seed(0)
    clip_config = CLIPConfig(
        text_config=dict(
            vocab_size=64,
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
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    CLIPModel(clip_config).save_pretrained(weights_dir / CLIP_FOLDER)
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
