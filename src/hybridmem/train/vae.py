"""Training of the causal video VAE on clip folders.

    hybridmem train vae --data runs/world --preset tiny --out runs/vae --steps 2000 --val-every 250
    hybridmem train vae --data runs/world --preset tiny --out runs/vae --steps 4000 --resume
    torchrun --nproc_per_node 4 -m hybridmem.cli train vae --data runs/world --preset base --out runs/vae

Loss per window of `--frames` (4k+1) consecutive frames: reconstruction (L1 or MSE) of a posterior sample
+ kl_weight * KL(posterior || N(0, I)) + edge_weight * L1 between the spatial finite differences of the
reconstruction and the input (an edge term that sharpens without downloaded perceptual weights).
Validation reconstructs the WHOLE context and target segments of the validation clips, the lengths that
`hybridmem encode` and sampling use (posterior mean, frames clamped to [-1, 1], PSNR on [0, 1]), and
logs the mean, the per-frame-index curve (RUN/validation.json) and its worst index beside copy-last.
Validating on training-length windows hid a VAE that fell to 11 dB after its 9th frame.

At the end the latent normalisation is fitted on `--norm-windows` whole training segments (per-channel
mean and 1/std of the posterior means, models.vae.fit_latent_normalization) and stored in the VAE config of
RUN/final, so `hybridmem encode` writes zero-mean, unit-variance latents for the world model.

A run records its flags and the contents of its clips in RUN/run.json when it starts; `--resume` with other
flags (--steps may grow) or other clips is refused naming each difference (train/state.py).

Shape glossary: B batch, T frames, H/W pixels, F latent frames, C latent channels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from hybridmem import runlock
from hybridmem.errors import DataError
from hybridmem.train import common
from hybridmem.train import state as train_state
from hybridmem.train.config import VaeTrainConfig, check_vae_step
from hybridmem.train.loop import training_run

# The last whole-segment validation ({"step", **validate_segments(...)}), read by the recipe's VAE gate.
VALIDATION_FILE = "validation.json"


class ClipWindows:
    """The frames of a split's clips, loaded lazily and kept (clips are small); windows cut on request."""

    def __init__(self, folders: list[Path], frames: int):
        from hybridmem.data.hmworld import load_clip

        self.folders = folders
        self.frames = frames
        self._load = lru_cache(maxsize=256)(lambda index: load_clip(self.folders[index]))
        if self.num_frames(0) < frames:
            raise DataError(
                f"{folders[0]}: clip has {self.num_frames(0)} frames, fewer than --frames {frames}"
            )

    def __len__(self) -> int:
        return len(self.folders)

    def num_frames(self, index: int) -> int:
        return self._load(index).frames.shape[0]

    def window(self, index: int, start: int) -> np.ndarray:
        """ "T H W 3" uint8, frames [start, start + frames) of clip `index`."""
        frames = self._load(index).frames
        if frames.shape[0] < start + self.frames:
            raise DataError(f"{self.folders[index]}: clip has {frames.shape[0]} frames, fewer than --frames")
        return frames[start : start + self.frames]

    def segments(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(context, target) "T H W 3" uint8 of clip `index`: the whole segments encode caches."""
        clip = self._load(index)
        return clip.frames[clip.context], clip.frames[clip.target]


def to_model_range(windows: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 "T H W 3" windows -> "B T 3 H W" float in [-1, 1]."""
    from einops import rearrange

    video = torch.from_numpy(np.stack(windows)).float() / 127.5 - 1.0  # B T H W 3
    return rearrange(video, "b t h w c -> b t c h w").to(device)


def image_gradient_l1(reconstruction: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mean L1 between horizontal and vertical finite differences of two "B T 3 H W" videos."""
    loss = 0.0
    for axis in (-1, -2):
        loss = loss + torch.mean(
            torch.abs(torch.diff(reconstruction, dim=axis) - torch.diff(frames, dim=axis))
        )
    return loss / 2


def vae_loss(reconstruction: torch.Tensor, posterior, frames: torch.Tensor, config: VaeTrainConfig) -> dict:
    """{"loss", "recon", "kl", "edge"} of one batch: reconstruction and frames "B T 3 H W"."""
    error = reconstruction.float() - frames.float()
    recon = error.abs().mean() if config.recon == "l1" else error.pow(2).mean()
    kl = posterior.kl().mean()
    edge = (
        image_gradient_l1(reconstruction.float(), frames.float())
        if config.edge_weight
        else recon.new_zeros(())
    )
    loss = recon + config.kl_weight * kl + config.edge_weight * edge
    return {"loss": loss, "recon": recon, "kl": kl, "edge": edge}


def window_start(
    data: ClipWindows, index: int, step: int, slot: int, config: VaeTrainConfig, rank: int
) -> int:
    """First frame of a training window: a pure function of (seed, step, rank, slot), like the batch order."""
    last_start = data.num_frames(index) - config.frames
    return int(np.random.default_rng([config.seed, step, rank, slot]).integers(0, last_start + 1))


def psnr(reconstruction: torch.Tensor, frames: torch.Tensor) -> float:
    """PSNR in dB of videos in [-1, 1], measured on [0, 1] (one number over every pixel)."""
    mse = torch.mean(((reconstruction.clamp(-1, 1) - frames) / 2) ** 2)
    return float(10 * torch.log10(1.0 / mse.clamp_min(1e-10)))


def frame_psnr(reconstruction: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each frame of "B T 3 H W" videos in [-1, 1], measured on [0, 1]: "B T"."""
    mse = torch.mean(((reconstruction.clamp(-1, 1) - frames) / 2) ** 2, dim=(2, 3, 4))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def validate_segments(vae, data: ClipWindows, count: int, device: torch.device) -> dict:
    """Reconstruct the whole context and target segments of the first `count` clips (the lengths
    `hybridmem encode` uses) and score them beside copy-last (every target frame = the last context frame).

    Returns {"psnr": mean over every frame, "psnr_by_frame": {length: per-frame-index mean over segments of
    that length}, "worst_frame_psnr": lowest per-index mean, "copy_last_psnr": mean over target frames,
    "segments": how many}.
    """
    was_training = vae.training
    vae.eval()
    by_length: dict[int, list[torch.Tensor]] = {}
    copy_last = []
    for index in range(min(count, len(data))):
        context, target = data.segments(index)
        for segment in (context, target):
            frames = to_model_range([segment], device)
            by_length.setdefault(len(segment), []).append(
                frame_psnr(vae.decode(vae.encode(frames).mode()), frames)[0].cpu()
            )
        target_frames = to_model_range([target], device)
        last = to_model_range([context[-1:]], device).expand_as(target_frames)
        copy_last.append(frame_psnr(last, target_frames)[0].cpu())
    vae.train(was_training)
    curves = {length: torch.stack(values).mean(0) for length, values in by_length.items()}
    every = torch.cat([torch.stack(values).flatten() for values in by_length.values()])
    return {
        "psnr": float(every.mean()),
        "psnr_by_frame": {
            str(length): [round(float(v), 3) for v in curve] for length, curve in curves.items()
        },
        "worst_frame_psnr": float(min(curve.min() for curve in curves.values())),
        "copy_last_psnr": float(torch.cat(copy_last).mean()),
        "segments": sum(len(values) for values in by_length.values()),
    }


@torch.no_grad()
def fit_normalization(vae, data: ClipWindows, count: int, device: torch.device):
    """Per-channel (shift, scale) from the posterior means of `count` whole segments (context, target,
    alternating over the clips): the segments `hybridmem encode` caches, at their own length."""
    from hybridmem.models.vae import fit_latent_normalization

    was_training = vae.training
    vae.eval()
    latents = []
    for i in range(count):
        segment = data.segments(i % len(data))[(i // len(data)) % 2]
        latents.append(vae.encode(to_model_range([segment], device)).mode().cpu())  # 1 F C h w
    vae.train(was_training)
    return fit_latent_normalization(torch.cat([rearrange(z, "b f c h w -> (b f) 1 c h w") for z in latents]))


def vae_batches(
    data: ClipWindows, config: VaeTrainConfig, start_step: int, rank: int, world_size: int, device
) -> Iterator[torch.Tensor]:
    """ "B T 3 H W" frames of this rank's batch at each step from `start_step` (pure in seed, step, rank)."""
    for step in range(start_step, config.steps):
        indices = common.batch_indices(step, config.batch_size, len(data), config.seed, rank, world_size)
        starts = [window_start(data, i, step, slot, config, rank) for slot, i in enumerate(indices)]
        yield to_model_range([data.window(i, s) for i, s in zip(indices, starts, strict=True)], device)


def train_vae(config: VaeTrainConfig) -> dict:
    """Train; returns {"step", "losses", "seconds", "model", "val_psnr" (last, or None)}."""
    from hybridmem.data.encode import list_clip_folders
    from hybridmem.models.checkpoint import save_model
    from hybridmem.models.vae import build_vae

    with training_run(config, "train vae") as run:
        device = run.device
        # 1. data (refused while `world generate` is still writing it)
        runlock.refuse_being_written(config.data, "--data", "wait for `world generate` to finish, then train")
        data = ClipWindows(list_clip_folders(config.data, config.split), config.frames)
        check_vae_step(config, data.window(0, 0).shape, device)  # memory, before any allocation
        if config.val_split:
            val_data = ClipWindows(list_clip_folders(config.data, config.val_split), config.frames)
        else:
            val_data = data

        # 2. model
        torch.manual_seed(config.seed)
        vae = build_vae(config.preset).to(device).train()

        # 3-4. optimizer, lock, resume or refuse, DDP, logging (train/loop.py); posterior samples are
        # drawn on the device, from this rank's generator (saved in checkpoints)
        ddp_vae = run.start(
            vae,
            generator_device=device,
            save_model_fn=save_model,
            title=f"VAE '{config.preset}'",
            clips=len(data),
            inputs={"data_contents": clips_sha256(data.folders)},
        )

        # 5. the loop: reconstruct windows; validate on whole segments
        def step_loss(frames: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
            with common.autocast(config.precision, device):
                # through forward(), so DDP synchronises the gradients of encoder and decoder
                reconstruction, posterior = ddp_vae(frames, run.generator)  # B T 3 H W
            terms = vae_loss(reconstruction, posterior, frames, config)
            return terms["loss"], {name: terms[name] for name in ("recon", "kl", "edge")}

        def validate(done: int) -> dict:
            scores = validate_segments(vae, val_data, config.val_clips, device)
            train_state.write_json_atomically(run.out / VALIDATION_FILE, {"step": done, **scores})
            run.logger.message(
                f"step {done}: whole-segment reconstruction PSNR {scores['psnr']:.2f} dB (worst frame index "
                f"{scores['worst_frame_psnr']:.2f} dB; copy-last {scores['copy_last_psnr']:.2f} dB)"
            )
            return {"val_psnr": scores["psnr"], "val_worst_frame_psnr": scores["worst_frame_psnr"]}

        batches = vae_batches(data, config, run.start_step, run.rank, run.distributed.world_size, device)
        run.train(batches, step_loss, validate)

        # 6. latent normalisation from training latents, stored in the final VAE's config
        if run.is_main:
            shift, scale = fit_normalization(vae, data, config.norm_windows, device)
            vae.set_latent_normalization(shift, scale)
        run.finish(vae, f"done: step {config.steps}, VAE with latent normalisation in {run.out / 'final'}")
        return {
            "step": config.steps,
            "losses": run.losses,
            "seconds": run.seconds,
            "model": vae,
            "val_psnr": run.last_validation["val_psnr"] if run.last_validation else None,
        }


def clips_sha256(folders: list[Path]) -> str:
    """One hash of the clips a run trains on: each clip folder's name and contents (a dataset moved
    elsewhere keeps it; one regenerated or edited at the same path does not)."""
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(f"{Path(folder).name}\0{runlock.clip_sha256(folder)}\n".encode())
    return digest.hexdigest()
