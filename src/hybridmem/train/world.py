"""Flow-matching training of the world model on a latent cache.

    hybridmem train world --cache runs/cache/train --memory hydra --preset tiny --out runs/world_hydra \
        --steps 2000 --batch-size 4 --lr 1e-4 --warmup 200 --save-every 500
    hybridmem train world ... --out runs/world_hydra --resume          # continue from the newest checkpoint
    torchrun --nproc_per_node 8 -m hybridmem.cli train world ... --precision bf16    # DDP, one GPU a rank

Each step: draw t (shifted, `--shift`), noise the target latents x_t = (1 - t) x_0 + t noise, keep the
context clean, predict the velocity and regress it onto noise - x_0 on the target only (diffusion/flow.py).
AdamW with linear warm-up, gradient clipping, EMA of the weights, optional autocast (bf16/fp16).

Reproducibility: the model is initialised from `--seed`; the data order is a pure function of (seed, step,
rank) (train/common.py); the noise and timesteps come from one generator per rank whose state is saved in
every checkpoint with the global RNG states, so `--resume` continues the exact loss curve on CPU.

Outputs: RUN/checkpoints/step_N (train/state.py), RUN/final (EMA weights, a model folder for sampling),
RUN/metrics.csv, RUN/tensorboard/, RUN/train_config.json, RUN/run.json (the run's identity: its flags, the
steps asked for, the VAE and the contents of the cache trained on).

One run at a time: rank 0 locks RUN (hybridmem.runlock), so a second `train world --out RUN` is refused
while the first lives, and `--resume` with other flags (--steps may grow), or a --cache of other contents
or of another VAE, is refused naming each difference (train/state.py resume_or_refuse).
A step whose activations cannot fit in memory is refused before the model is built (validation.py).

The paper's model (`--official DIR`, hybridmem.official): fine-tuning HyDRA as the official train_hydra.py
does, on a cache made by `hybridmem encode --official DIR` (the release's Wan2.1 VAE and umT5 captions):

    hybridmem encode --official ckpts --data runs/world --out runs/cache_wan/train --split train
    hybridmem train world --official ckpts --cache runs/cache_wan/train --out runs/hydra_ft \
        --steps 10000 --batch-size 1 --lr 1e-5 --warmup 0 --precision bf16 --grad-checkpointing
    torchrun --nproc_per_node 8 -m hybridmem.cli train world --official ckpts ...      # DDP

The model is the release's DiT (Wan2.1 with new HyDRA modules, or hydra.* to continue), in float32 with the
official trainable set marked (official/finetune.py: every self-attention with its memory tokenizer, the
camera encoders, the projector; the rest frozen). Each clip's cached caption embedding is the caption; its
timestep is drawn from the official 1000-step shift-5 grid (--shift) and its loss is the MSE of the target
velocity times the grid's training weight. AdamW is handed every parameter but keeps state only for those
with gradients (the trainable set); the EMA is a full copy of the model. RUN/final records the release and
its VAE (models.checkpoint `trained_with`), which `sample --official DIR --checkpoint RUN` and `eval` check.

Shape glossary: B batch, Fc/Ft context/target latent frames, C latent channels, h/w latent grid.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from hybridmem import runlock
from hybridmem.device import check_memory
from hybridmem.diffusion import flow
from hybridmem.errors import ConfigError, HybridmemError
from hybridmem.train import common
from hybridmem.train.config import WorldTrainConfig
from hybridmem.train.loop import training_run


def build_model(config: WorldTrainConfig, latent_channels: int):
    from hybridmem.models.world import build_world_model

    return build_world_model(
        config.preset,
        latent_channels=latent_channels,
        memory=config.memory_config(),
        gradient_checkpointing=config.grad_checkpointing,
        sample_shift=config.shift,  # sampling defaults to the shift the model was trained with
        camera_rays=config.camera_rays,
        objective=config.objective,
        warp_condition=config.warp_condition,
        warp_residual=config.warp_residual,
        warp_source=config.warp_source,
    )


def build_official_model(config: WorldTrainConfig, latent_channels: int):
    """--official: the release's DiT with the official trainable set marked (official/finetune.py)."""
    from hybridmem.official.finetune import build_finetuning_model

    model, _ = build_finetuning_model(config.official, config.grad_checkpointing)
    if model.config.latent_channels != latent_channels:
        raise ConfigError(
            f"--cache {config.cache}: holds {latent_channels}-channel latents; the release's DiT reads "
            f"{model.config.latent_channels}: encode it with `hybridmem encode --official {config.official}`"
        )
    return model


def caption_input(model, batch: dict, device: torch.device) -> torch.Tensor | None:
    """The caption of a batch: the cached caption embeddings "B L Dc" (a cache of `encode --official`), or,
    for a model with cross-attention on a cache without them (no text encoder is bundled with our models),
    the all-zero caption embedding, which the model documents as 'no caption'."""
    caption_dim = _unwrap(model).config.caption_dim
    if "caption_embedding" in batch and caption_dim:
        return batch["caption_embedding"].to(device)
    size = batch["target_latents"].shape[0]
    return torch.zeros(size, 1, caption_dim, device=device) if caption_dim else None


def flow_loss(model, batch: dict, t: torch.Tensor, noise: torch.Tensor, caption) -> torch.Tensor:
    """The training objective on one batch: MSE between predicted and true velocity on the target,
    weighted per latent cell by batch["target_weights"] "B Ft h w" when present (--subject-weight)."""
    target_latents = batch["target_latents"]  # B Ft C h w
    noisy_target = flow.add_noise(target_latents, noise, t)  # B Ft C h w
    # only a warp-conditioned model takes the keyword
    warp = getattr(getattr(_unwrap(model), "config", None), "warp_condition", False)
    condition = {"target_condition": batch["target_warp_latents"]} if warp else {}
    velocity = model(
        batch["context_latents"], noisy_target, t, batch["cameras"], batch["intrinsics"], caption, **condition
    )  # B Ft C h w
    if "sample_weights" in batch:  # --official: each clip's loss times its timestep's training weight "B"
        per_sample = flow.per_sample_loss(velocity, target_latents, noise)  # B
        return (per_sample * batch["sample_weights"]).mean()
    weights = batch.get("target_weights")
    if weights is None:
        return flow.flow_matching_loss(velocity, target_latents, noise)
    squared = (velocity - flow.velocity_target(target_latents, noise)).pow(2).mean(2)  # B Ft h w
    # normalised by the weights' sum, so the loss stays on the plain loss's scale
    return (squared * weights).sum() / weights.sum()


def _unwrap(model):
    """The module under a DDP wrapper (its config says which inputs it takes)."""
    return getattr(model, "module", model)


def training_timesteps(config: WorldTrainConfig, size: int, generator: torch.Generator) -> torch.Tensor:
    """ "B" timesteps of one training batch: t = 1 for the mean objective, else drawn and shifted."""
    if config.objective == "mean":
        return torch.ones(size)
    return flow.sample_timesteps(size, generator, config.shift, config.timestep_distribution)


def subject_cell_weights(entry: dict, weight: float, temporal_stride: int) -> torch.Tensor:
    """ "Ft h w" loss weights of one cached clip: `weight` on latent cells that a subject covers in any
    video frame of the cell's latent frame, 1 elsewhere. Read from the clip's source folder (ids.npz).

    Latent frame 0 of a segment stands for its first video frame, latent frame k >= 1 for video frames
    stride*(k-1)+1 .. stride*k (the VAE's causal grouping)."""
    from hybridmem.data.hmworld import load_clip

    source = entry.get("source", "")
    try:
        clip = load_clip(source, load_frames=False)
    except (OSError, HybridmemError) as error:
        raise ConfigError(
            f"--subject-weight reads the subject masks from each cached clip's source folder; {source!r} "
            f"cannot be read ({error}). Keep the dataset the cache was encoded from, or drop --subject-weight"
        ) from error
    if clip.instance_ids is None:
        raise ConfigError(f"--subject-weight: {source} has no instance ids (ids.npz); drop --subject-weight")
    latent_frames, _, height, width = entry["target_latents"].shape  # Ft C h w
    covered = torch.from_numpy(clip.instance_ids[clip.target] > 0)  # Tt H W
    # any subject pixel inside a cell (adaptive max pooling maps the frame onto the h x w latent grid)
    cells = torch.nn.functional.adaptive_max_pool2d(covered[None].float(), (height, width))[0]  # Tt h w
    groups = [cells[:1]] + [
        cells[temporal_stride * (k - 1) + 1 : temporal_stride * k + 1] for k in range(1, latent_frames)
    ]
    per_latent = torch.stack([group.amax(0) for group in groups])  # Ft h w
    return 1.0 + (weight - 1.0) * per_latent


def sample_posterior(batch: dict, generator: torch.Generator) -> dict:
    """Replace the cached posterior means by samples mean + exp(logvar / 2) * eps (VAE latent noise)."""
    batch = dict(batch)
    for name in ("context", "target"):
        mean, logvar = batch[f"{name}_latents"], batch[f"{name}_logvar"]
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)
        batch[f"{name}_latents"] = mean + torch.exp(0.5 * logvar) * eps
    return batch


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()
    }


@torch.no_grad()
def validation_loss(model, items: list[dict], config: WorldTrainConfig, device: torch.device) -> float:
    """Loss at fixed, evenly spaced timesteps with fixed noise: comparable from one evaluation to the next."""
    from hybridmem.data.cache import collate_latents

    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 99_991)
    total, count = 0.0, 0
    for start in range(0, len(items), config.batch_size):
        batch = to_device(collate_latents(items[start : start + config.batch_size]), device)
        size = batch["target_latents"].shape[0]
        # midpoints of `size` equal bins, shifted like the training distribution (mean objective: t = 1)
        t = flow.shift_timesteps((torch.arange(size, dtype=torch.float32) + 0.5) / size, config.shift)
        if config.objective == "mean":
            t = torch.ones(size)
        noise = torch.randn(batch["target_latents"].shape, generator=generator)
        with common.autocast(config.precision, device):
            loss = flow_loss(
                model, batch, t.to(device), noise.to(device), caption_input(model, batch, device)
            )
        total += float(loss) * size
        count += size
    model.train(was_training)
    return total / count


def train_world(config: WorldTrainConfig, build_model_fn=build_model) -> dict:
    """Train; returns {"step", "losses" (this rank's per-step losses), "seconds", "model" (unwrapped)}."""
    from hybridmem.data.cache import LatentCacheDataset, collate_latents, contents_sha256
    from hybridmem.models.checkpoint import save_model
    from hybridmem.train.ema import EMA

    with training_run(config, "train world") as run:
        device = run.device
        # 1. data (refused while `encode` is still writing it), and a step's memory checked before anything
        # is allocated
        for flag, cache in (("--cache", config.cache), ("--val-cache", config.val_cache)):
            if cache:
                runlock.refuse_being_written(cache, flag, "wait for `hybridmem encode` to finish, then train")
        dataset = LatentCacheDataset(config.cache)
        first = dataset[0]
        latent_channels = first["target_latents"].shape[1]
        if config.official is None:
            check_step_memory(config, first, device)
        else:
            build_model_fn = build_official_model
            check_official_cache(config, dataset.index, first)
        if config.warp_condition and "target_warp_latents" not in first:
            raise ConfigError(
                f"--warp-condition: {config.cache} holds no warped-context latents; encode it again with "
                "`hybridmem encode --store-warp` (and the --val-cache too) or drop --warp-condition"
            )
        if config.warp_condition:
            for cache in (config.cache, config.val_cache):
                check_cache_warp_source(cache, config.warp_source)
        if config.sample_latents and "target_logvar" not in first:
            raise ConfigError(
                f"--sample-latents: {config.cache} holds posterior means only; encode it again with "
                "`hybridmem encode --store-logvar` or drop --sample-latents"
            )
        if config.val_cache:
            val_dataset = LatentCacheDataset(config.val_cache)
            if val_dataset.index.get("vae_config") != dataset.index.get("vae_config"):
                raise ConfigError(
                    f"--val-cache {config.val_cache}: encoded with another VAE than --cache {config.cache}; "
                    "encode both splits with the same --vae"
                )
            val_items = list(val_dataset)
        else:
            val_items = [dataset[i] for i in range(min(config.val_clips, len(dataset)))]

        subject_weights = None
        if config.subject_weight != 1.0:
            stride = int(dataset.index.get("temporal_stride", 4))
            subject_weights = {}
            for i, clip_id in enumerate(dataset.clip_ids):
                check_mask_source(config.cache, clip_id)
                subject_weights[clip_id] = subject_cell_weights(dataset[i], config.subject_weight, stride)

        # 2. model and EMA (same init on every rank; DDP also broadcasts rank 0's weights)
        torch.manual_seed(config.seed)
        model = build_model_fn(config, latent_channels)
        if config.official is not None:  # before the weights move: they are part of what must fit
            check_official_step_memory(config, model, first, device)
        model = model.to(device).train()
        ema = EMA(model, config.ema_decay)

        # 3-4. optimizer, lock, resume or refuse (the run's flags, its cache's VAE and contents recorded in
        # run.json at the start and compared on every --resume), DDP, logging (train/loop.py). Every saved
        # model records the VAE whose latents it learns (sample/eval refuse another VAE).
        vae_sha256 = dataset.index.get("vae_sha256")
        trained_with = (
            {"vae": {"sha256": vae_sha256, "path": dataset.index.get("vae")}} if vae_sha256 else None
        )
        if config.official is not None:
            from hybridmem.official.finetune import finetune_record
            from hybridmem.official.release import find_release

            trained_with = finetune_record(find_release(config.official), vae_sha256)
        title = f"world model '{config.preset}' memory '{config.memory}'"
        if config.official is not None:
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            title = f"the release's DiT from {config.official} ({trainable / 1e6:.2f}M trainable)"
        ddp_model = run.start(
            model,
            generator_device="cpu",
            save_model_fn=functools.partial(save_model, trained_with=trained_with),
            title=title,
            clips=len(dataset),
            ema=ema,
            inputs={
                "cache_vae_config": dataset.index.get("vae_config"),
                "cache_vae_sha256": vae_sha256,
                "cache_contents": contents_sha256(config.cache),
            },
        )

        # 5. the loop: flow matching on the target latents; validation loss of the live and EMA weights
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=common.StepBatchSampler(
                run.start_step,
                config.steps,
                config.batch_size,
                len(dataset),
                config.seed,
                run.rank,
                run.distributed.world_size,
            ),
            collate_fn=collate_latents,
            num_workers=config.num_workers,
        )

        def step_loss(batch: dict, step: int) -> tuple[torch.Tensor, dict]:
            batch = to_device(batch, device)
            size = batch["target_latents"].shape[0]
            # noise the target only; the context stays clean
            if config.sample_latents:
                batch = sample_posterior(batch, run.generator)
            if config.official is not None:
                from hybridmem.official.finetune import official_training_timesteps

                t, weights = official_training_timesteps(size, run.generator, config.shift)
                batch["sample_weights"] = weights.to(device)
                t = t.to(device)
            else:
                t = training_timesteps(config, size, run.generator).to(device)
            if subject_weights is not None:
                batch["target_weights"] = torch.stack([subject_weights[c] for c in batch["clip_id"]]).to(
                    device
                )
            noise = torch.randn(batch["target_latents"].shape, generator=run.generator).to(device)
            with common.autocast(config.precision, device):
                loss = flow_loss(ddp_model, batch, t, noise, caption_input(model, batch, device))
            return loss, {}

        def validate(done: int) -> dict:
            val_loss = validation_loss(model, val_items, config, device)
            val_loss_ema = validation_loss(ema.model, val_items, config, device)
            run.logger.message(
                f"step {done}: validation loss {val_loss:.4f} (EMA weights {val_loss_ema:.4f})"
            )
            return {"val_loss": val_loss, "val_loss_ema": val_loss_ema}

        run.train(loader, step_loss, validate)

        # 6. the EMA weights as a plain model folder, for sampling
        run.finish(ema.model, f"done: step {run.step}, final EMA weights in {run.out / 'final'}")
        return {"step": run.step, "losses": run.losses, "seconds": run.seconds, "model": model}


def check_step_memory(config: WorldTrainConfig, item: dict, device: torch.device) -> None:
    """Refuse a --batch-size whose activations cannot fit (a lower bound, models.world.world_step_bytes)."""
    from hybridmem.models.world import world_step_bytes

    frames = item["context_latents"].shape[0] + item["target_latents"].shape[0]
    height, width = item["target_latents"].shape[-2:]
    needed = world_step_bytes(
        config.preset, config.batch_size, frames, height, width, config.grad_checkpointing
    )
    check_memory(
        needed,
        f"train world: a step of --batch-size {config.batch_size} on clips of {frames} latent frames of "
        f"{height}x{width} with preset '{config.preset}'",
        "lower --batch-size (or add --grad-checkpointing, or use more ranks)",
        device,
    )


def check_official_cache(config: WorldTrainConfig, index: dict, item: dict) -> None:
    """--official: the cache must be the release's (`encode --official DIR`): its VAE the release's VAE file,
    its clips with caption embeddings."""
    from hybridmem.official.encode import release_vae_sha256
    from hybridmem.official.release import find_release

    release = find_release(config.official)
    fix = f"encode it with `hybridmem encode --official {config.official} --data DATA --out CACHE`"
    if index.get("vae_sha256") != release_vae_sha256(release):
        made = index.get("vae") or "another VAE"
        raise ConfigError(
            f"--cache {config.cache}: encoded by {made}, not the release's VAE {release.vae_file}; {fix}"
        )
    if "caption_embedding" not in item:
        raise ConfigError(f"--cache {config.cache}: holds no caption embeddings; {fix}")


def check_official_step_memory(config: WorldTrainConfig, model, item: dict, device: torch.device) -> None:
    """--official: refuse a step whose weights, EMA, optimizer state and activations cannot fit."""
    from hybridmem.official.finetune import finetune_memory_bytes

    frames = item["context_latents"].shape[0] + item["target_latents"].shape[0]
    height, width = item["target_latents"].shape[-2:]
    pt, ph, pw = model.config.patch_size
    tokens = -(-frames // pt) * -(-height // ph) * -(-width // pw)
    check_memory(
        finetune_memory_bytes(model, config.batch_size, tokens, config.grad_checkpointing),
        f"train world --official: fine-tuning with --batch-size {config.batch_size} on clips of {frames} "
        f"latent frames of {height}x{width}",
        "lower --batch-size, add --grad-checkpointing, or use a device with more memory",
        device,
    )


def check_cache_warp_source(cache: str | None, warp_source: str) -> None:
    """ConfigError when a cache's warped-context latents were made from other context frames than
    --warp-source asks for (cache.json records warp_source only when it is not "context")."""
    if not cache:
        return
    from hybridmem.data.cache import read_index

    stored = read_index(cache).get("warp_source", "context")
    if stored != warp_source:
        raise ConfigError(
            f"--warp-source {warp_source}: {cache} holds the warp of the {stored!r} context frames; encode "
            f"it again with `hybridmem encode --store-warp --warp-source {warp_source}` or pass "
            f"--warp-source {stored}"
        )


def check_mask_source(cache_dir: str, clip_id: str) -> None:
    """ConfigError when the clip folder a cached clip's subject masks are read from (--subject-weight) is
    no longer the one its latents were encoded from: masks of new data on latents of the old."""
    from hybridmem.data.cache import CLIPS_DIR, entry_made_from, read_entry_metadata

    path = Path(cache_dir) / CLIPS_DIR / f"{clip_id}.safetensors"
    made_from = entry_made_from(path) or {}
    source = (read_entry_metadata(path) or {}).get("source", "")
    if not made_from.get("clip_sha256") or not source or not Path(source).is_dir():
        return  # an entry without a record (nothing to compare), or a missing folder (named when read)
    if runlock.clip_sha256(source) != made_from["clip_sha256"]:
        raise ConfigError(
            f"--subject-weight: {source} changed since {cache_dir} encoded clip {clip_id} from it (its "
            "contents differ), so its masks would not match the cached latents; encode the cache again "
            "(`hybridmem encode --overwrite`), or drop --subject-weight"
        )
