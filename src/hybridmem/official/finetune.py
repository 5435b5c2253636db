"""Fine-tuning HyDRA from Wan2.1 as the official code does: what trains and what stays frozen.

The official trainer (train_hydra.py, `_freeze_and_mark_trainables`) freezes the whole pipeline, then
trains every DiT parameter whose name contains `cam_encoder_con`, `cam_encoder_tgt`, `projector` or
`self_attn`: in every block the self-attention (q, k, v, o, its q/k norms and the memory tokenizer, which
lives under it), the two camera encoders and the projector. The patch embedding, the time and caption
embeddings, cross-attention, feed-forward, norms and the head keep Wan2.1's weights. The names here are
ours; the rule reads them through the official key map (hybridmem.official.dit.official_key).

    trainable, total = freeze_for_finetuning(model)      # hydra-official: 921.7 M of 2057.3 M train
    model, release = build_finetuning_model("ckpts", gradient_checkpointing=True)   # `train world --official`
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


# ----------------------------------------------------------------------------------------------------------
# The official training step's timesteps, the model to fine-tune, and the record a fine-tuned model keeps

TRAIN_TIMESTEPS = 1000  # train_hydra.py: scheduler.set_timesteps(1000, training=True)


def training_grid(shift: float = 5.0):
    """(sigmas "1000", weights "1000") of the official training scheduler: FlowMatchScheduler(shift 5,
    sigma_min 0, extra_one_step).set_timesteps(1000, training=True), float32 as there. The weight of a
    timestep is its `training_weight`: a Gaussian bump over 1000 sigma around 500, minus its minimum,
    scaled so the 1000 weights sum to 1000 (mean 1)."""
    import torch

    from hybridmem.diffusion.flow import sampling_timesteps

    sigmas = sampling_timesteps(TRAIN_TIMESTEPS, shift, torch.float32)[:TRAIN_TIMESTEPS]  # 1000
    timesteps = sigmas * TRAIN_TIMESTEPS
    bump = torch.exp(-2 * ((timesteps - TRAIN_TIMESTEPS / 2) / TRAIN_TIMESTEPS) ** 2)
    shifted = bump - bump.min()
    return sigmas, shifted * (TRAIN_TIMESTEPS / shifted.sum())


def official_training_timesteps(size: int, generator, shift: float = 5.0):
    """(t "B", weights "B"): each sample's sigma drawn uniformly from the 1000-step training grid, with its
    loss weight. The official step draws one index per batch (its batch is one clip a GPU); here one per
    clip. t is the grid's float32 sigma, used both to noise and to embed (fp32 weights; the official bf16
    model embeds 1000 sigma rounded to bfloat16)."""
    import torch

    sigmas, weights = training_grid(shift)
    index = torch.randint(0, TRAIN_TIMESTEPS, (size,), generator=generator)  # B
    return sigmas[index], weights[index]


def build_finetuning_model(folder, gradient_checkpointing: bool = False):
    """(model, release): the release's DiT as a WorldModel in float32 with HyDRA's memory, the official
    trainable set marked (requires_grad) and the rest frozen. Plain Wan2.1 gets new HyDRA modules (the start
    of fine-tuning, official/release.py); a release with hydra.* continues the paper's model."""
    from hybridmem.official.release import find_release, load_release_dit

    release = find_release(folder)
    model = load_release_dit(release, hydra=True)
    # recomputation in backward is a setting of the model (saved with it: it changes no value)
    model.config.gradient_checkpointing = gradient_checkpointing
    freeze_for_finetuning(model)
    return model.train(), release


def finetune_record(release, vae_sha256: str) -> dict:
    """What a fine-tuned model records (models.checkpoint `trained_with`): the release's VAE (its file's
    hash, as the cache recorded it) and the release the model started from."""
    return {
        "vae": {"sha256": vae_sha256, "path": str(release.vae_file.resolve())},
        "official": {
            "release": str(release.folder.resolve()),
            "started_from": "hydra" if release.hydra else "Wan2.1 + new HyDRA modules",
            "dit_files": [str(path.resolve()) for path in release.dit_files()],
        },
    }


def finetuned_from(folder) -> dict | None:
    """The `official` record of a model folder fine-tuned from a release (finetune_record), None for
    others (our models, unreadable folders: the loader names those)."""
    from hybridmem.models.checkpoint import read_trained_with

    record = read_trained_with(folder) or {}
    official = record.get("official")
    return official if isinstance(official, dict) else None


def finetune_memory_bytes(model, batch_size: int, tokens: int, grad_checkpointing: bool) -> float:
    """Lower bound of a fine-tuning step's memory in float32: the weights, the EMA copy, the trainable
    set's gradient and AdamW moments (AdamW keeps no state for frozen parameters), and what backward keeps
    (models.world.activation_bytes, the count world_step_bytes makes for a preset)."""
    from hybridmem.models.world import activation_bytes

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    activations = activation_bytes(model.config, batch_size, tokens, grad_checkpointing)
    return 4.0 * (2 * total + 3 * trainable) + activations


def finetuned_folder(checkpoint, release, ema: bool = True):
    """The model folder of a run fine-tuned from `release` (a run, checkpoint or model folder; its EMA
    weights unless ema=False), its weights not read. Refused when it was not fine-tuned from a release, or
    on latents of another VAE than the release's (its record names the VAE's file hash)."""
    from hybridmem.errors import CheckpointError
    from hybridmem.models.checkpoint import read_trained_with
    from hybridmem.official.encode import release_vae_sha256
    from hybridmem.runfolder import resolve_model_folder

    folder = resolve_model_folder(checkpoint, ema=ema)
    origin = finetuned_from(folder)
    if origin is None:
        raise CheckpointError(
            f"--checkpoint {checkpoint}: {folder} was not fine-tuned from an official release (its "
            "config.json records none); with --official pass a run of `train world --official`, or drop "
            "--official"
        )
    trained = read_trained_with(folder)["vae"]
    if trained["sha256"] != release_vae_sha256(release):
        raise CheckpointError(
            f"--checkpoint {checkpoint}: was fine-tuned on latents of the VAE {trained.get('path')} (sha256 "
            f"{trained['sha256'][:12]}), not this release's {release.vae_file}; pass the release it was "
            f"fine-tuned from ({origin.get('release')})"
        )
    return folder


def load_finetuned_dit(checkpoint, release, dtype=None, device="cpu", ema: bool = True):
    """The DiT of `finetuned_folder(checkpoint, release, ema)` in `dtype` on `device`."""
    import torch

    from hybridmem.models.checkpoint import load_model

    model = load_model(finetuned_folder(checkpoint, release, ema))
    return model.to(device=device, dtype=dtype or torch.float32).eval()
