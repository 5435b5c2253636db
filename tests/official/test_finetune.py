"""The official fine-tuning's trainable set, counted against the official rule written out per block, and its
memory estimate."""

import torch

from hybridmem.models.world import WorldModel, build_world_model, dit_config, world_step_bytes
from hybridmem.official.finetune import finetune_memory_bytes, freeze_for_finetuning, is_official_trainable


def test_trainable_parameters_are_the_official_set_at_the_real_size():
    with torch.device("meta"):
        model = WorldModel(dit_config("hydra-official"))
    trainable, total = freeze_for_finetuning(model)
    dim, layers = 1536, 30
    per_block = (
        4 * (dim * dim + dim)  # self_attn q, k, v, o
        + 2 * dim  # self_attn norm_q, norm_k
        + (dim * dim * 8 + dim)  # self_attn.tokenizer (Conv3d 2x2x2)
        + 2 * (12 * dim + dim)  # cam_encoder_con, cam_encoder_tgt
        + (dim * dim + dim)  # projector
    )
    assert trainable == layers * per_block
    assert total == sum(p.numel() for p in model.parameters()) and round(total / 1e6) == 2057
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert "blocks.0.cross_attn.q.weight" in frozen and "blocks.0.ffn.0.weight" in frozen
    assert "final_layer.linear.weight" in frozen and "patch_embedding.weight" in frozen
    assert "caption_embedding.0.weight" in frozen and "time_projection.1.weight" in frozen
    for name in (
        "blocks.3.memory.tokenizer.conv.weight",
        "blocks.3.self_attn.norm_k.weight",
        "blocks.3.context_camera_encoder.bias",
        "blocks.3.camera_projector.weight",
    ):
        assert is_official_trainable(name), name


def test_finetune_memory_counts_activations_as_world_step_bytes_does():
    # the numbers each formula gave before both read models.world.activation_bytes
    assert world_step_bytes("tiny", 2, 5, 7, 9) == 921600.0  # 100 tokens, 576 floats a token and block
    assert world_step_bytes("tiny", 2, 5, 7, 9, grad_checkpointing=True) == 102400.0
    model = build_world_model("tiny")
    freeze_for_finetuning(model)
    assert finetune_memory_bytes(model, 2, 37, grad_checkpointing=False) == 1964160.0
    assert finetune_memory_bytes(model, 2, 37, grad_checkpointing=True) == 1661056.0
    # one count: a fine-tuning step of a preset's model over a preset's clip adds only its weights' state
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for checkpointing in (False, True):
        assert finetune_memory_bytes(model, 2, 100, checkpointing) == 4.0 * (
            2 * total + 3 * trainable
        ) + world_step_bytes("tiny", 2, 5, 7, 9, checkpointing)
