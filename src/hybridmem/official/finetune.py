"""Fine-tuning HyDRA from Wan2.1 as the official code does: what trains and what stays frozen.

The official trainer (train_hydra.py, `_freeze_and_mark_trainables`) freezes the whole pipeline, then
trains every DiT parameter whose name contains `cam_encoder_con`, `cam_encoder_tgt`, `projector` or
`self_attn`: in every block the self-attention (q, k, v, o, its q/k norms and the memory tokenizer, which
lives under it), the two camera encoders and the projector. The patch embedding, the time and caption
embeddings, cross-attention, feed-forward, norms and the head keep Wan2.1's weights. The names here are
ours; the rule reads them through the official key map (hybridmem.official.dit.official_key).

    trainable, total = freeze_for_finetuning(model)      # hydra-official: 921.7 M of 2057.3 M train
"""

from __future__ import annotations

# substrings of the official parameter names that train (train_hydra.py)
OFFICIAL_TRAINABLE = ("cam_encoder_con", "cam_encoder_tgt", "projector", "self_attn")


def is_official_trainable(name: str) -> bool:
    """Whether our parameter `name` trains in the official fine-tuning."""
    from hybridmem.official.dit import official_key

    official = official_key(name)
    return any(part in official for part in OFFICIAL_TRAINABLE)


def freeze_for_finetuning(model) -> tuple[int, int]:
    """Set requires_grad by the official rule on a WorldModel; returns (trainable, total) parameter counts."""
    trainable = total = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(is_official_trainable(name))
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total
