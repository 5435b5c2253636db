"""A tiny official-format release folder (random weights at small sizes), laid out as the released files:

    DIR/hydra.pth, DIR/Wan2.1-T2V-1.3B/{config.json, diffusion_pytorch_model.safetensors, Wan2.1_VAE.pth,
    models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/tokenizer.json, vae_config.json, t5_config.json}

The VAE and the text encoder are the parity fixture's (tests/fixtures/official_hydra: base width 8, umT5 of
width 32); the DiT is random at width 48 with 2 heads of 24, reading 16 latent channels and 32-wide captions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from hybridmem.official.dit import WAN_T2V_1_3B

FIXTURE = Path(__file__).parents[1] / "fixtures" / "official_hydra"
# Wan2.1-T2V-1.3B's arguments at small sizes (same latent channels, patch and frequency width)
TINY_DIT = {**WAN_T2V_1_3B, "dim": 48, "ffn_dim": 64, "text_dim": 32, "num_heads": 2, "num_layers": 2}


def write_tokenizer(folder: Path, vocab_size: int = 128) -> None:
    """A word-level tokenizer in umT5's conventions (pad 0, eos 1 appended, unk 2), saved as transformers
    saves one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "a man woman walks runs dog cat camera turns left right street park , . the in".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {word: 3 + index for index, word in enumerate(words)}
    assert len(vocab) <= vocab_size
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)


def write_tiny_release(folder: Path, seed: int = 0, hydra: bool = True) -> Path:
    """The folder (created); hydra=False leaves out hydra.pth (plain Wan2.1)."""
    from hybridmem.models.world import WorldModel
    from hybridmem.official.dit import official_dit_config, to_official_state

    wan = folder / "Wan2.1-T2V-1.3B"
    wan.mkdir(parents=True, exist_ok=True)
    (wan / "config.json").write_text(json.dumps({"_class_name": "WanModel", "model_type": "t2v", **TINY_DIT}))
    model = WorldModel(official_dit_config(**TINY_DIT))
    generator = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(t.shape, generator=generator) * 0.05 for name, t in model.state_dict().items()}
    official = to_official_state(state)
    hydra_parts = ("self_attn.tokenizer.", "cam_encoder_con.", "cam_encoder_tgt.", "projector.")
    wan_state = {k: t.contiguous() for k, t in official.items() if not any(p in k for p in hydra_parts)}
    save_file(wan_state, str(wan / "diffusion_pytorch_model.safetensors"))
    if hydra:
        torch.save({k: t.to(torch.bfloat16) for k, t in official.items()}, folder / "hydra.pth")
    shutil.copy(FIXTURE / "vae.pth", wan / "Wan2.1_VAE.pth")
    shutil.copy(FIXTURE / "vae_config.json", wan / "vae_config.json")
    shutil.copy(FIXTURE / "t5.pth", wan / "models_t5_umt5-xxl-enc-bf16.pth")
    shutil.copy(FIXTURE / "t5_config.json", wan / "t5_config.json")
    write_tokenizer(wan / "google" / "umt5-xxl")
    return folder
