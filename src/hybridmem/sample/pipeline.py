"""Sampling from a trained world model: context video + cameras -> target video.

    pipeline = WorldPipeline.from_checkpoint("runs/world_hydra", "runs/vae", device="auto")
    frames = pipeline.generate(context_frames, context_cameras, target_cameras, intrinsics, seed=0, steps=50)

Steps: encode the context with the VAE (posterior mean, normalised latents), take each latent frame's camera
relative to the first target latent frame, draw seeded noise for the target latents, integrate the flow
from t = 1 to t = 0 with the Euler sampler (diffusion/flow.py), denormalise and decode.

Cameras are camera-to-world 4x4, OpenCV axes, metres, one per video frame; intrinsics (fx, fy, cx, cy) in
pixels of the frames. Context and target segments must each have 4k+1 frames (the causal VAE).

Shape glossary: Tc/Tt context/target video frames, H/W pixels, Fc/Ft latent frames, C latent channels,
h/w latent grid, L caption tokens, Dc caption width.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from hybridmem import validation
from hybridmem.data.encode import segment_latent_cameras
from hybridmem.diffusion import flow
from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.geometry import check_intrinsics, check_poses, normalised_intrinsics
from hybridmem.models.checkpoint import check_model_output


def check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DataError(f"{name}: expected uint8 frames of shape (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise DataError(f"{name}: expected uint8 RGB frames, got dtype {frames.dtype}")
    return frames


_WARNED: set = set()  # (world folder, VAE folder) pairs already warned about in this process


def _warn_once(key: tuple, line: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        print(f"hybridmem: warning: {line}", file=sys.stderr, flush=True)


def refuse_runs_in_training(runs: dict) -> None:
    """RunLockedError for a run folder ({flag: path}) that is still training: a run names its newest model,
    which the training is replacing (eval used its newest checkpoint and said so only in run.json). A named
    model folder or checkpoint (RUN/final, RUN/checkpoints/step_N) is a fixed file set and is used."""
    from hybridmem import runlock

    for flag, path in runs.items():
        if path is None or (Path(path) / "config.json").is_file() or (Path(path) / "state.json").is_file():
            continue
        runlock.refuse_being_written(
            path, flag, "wait for it to finish, or name one of its checkpoints (RUN/checkpoints/step_N)"
        )


def check_vae_pairing(world_run, vae_run, allow_other: bool = False, ema: bool = True) -> None:
    """Refuse a VAE other than the one the world model learnt the latents of.

    The world model's config.json records that VAE's content hash (models.checkpoint.read_trained_with,
    from the latent cache it trained on); another --vae is a CheckpointError naming both, unless
    `allow_other` (then a warning). A model saved before such records existed is used with a warning,
    except beside its VAE in an exported folder (recipe export pairs the models of one run). Paths that do
    not resolve to models are left to the loader, which names what is missing.
    """
    from hybridmem import runlock
    from hybridmem.models.checkpoint import read_trained_with
    from hybridmem.runfolder import resolve_model_folder

    try:
        world_folder = Path(resolve_model_folder(world_run, ema=ema))
        vae_folder = Path(resolve_model_folder(vae_run))
    except CheckpointError:
        return
    key = (str(world_folder.resolve()), str(vae_folder.resolve()))
    record = read_trained_with(world_folder)
    if record is None:
        exported = world_folder.parent / "manifest.json"
        if exported.is_file() and vae_folder.resolve() == (world_folder.parent / "vae").resolve():
            return
        _warn_once(
            key,
            f"{world_folder} does not record the VAE it was trained with (saved before such records "
            f"existed); cannot check that {vae_folder} is that VAE",
        )
        return
    try:
        digest = runlock.model_sha256(vae_folder)
    except OSError:
        return
    trained = record["vae"]
    if digest == trained["sha256"]:
        return
    mismatch = (
        f"{world_folder} was trained with the VAE {trained.get('path') or '?'} (sha256 "
        f"{trained['sha256'][:12]}), not {vae_folder} (sha256 {digest[:12]})"
    )
    if allow_other:
        _warn_once(key, f"{mismatch}; using it anyway (--allow-other-vae)")
        return
    raise CheckpointError(
        f"{mismatch}; pass the VAE it was trained with, or --allow-other-vae to use this one anyway"
    )


def sampling_steps(config, requested: int) -> int:
    """Denoising steps for a world model: `requested` for a flow model; exactly 1 for a model trained with
    the mean objective (it only knows t = 1, where one Euler step gives its estimate x_0 = noise - v; more
    steps would query it at t it never saw)."""
    return 1 if getattr(config, "objective", "flow") == "mean" else requested


class WorldPipeline:
    """A world model and a VAE on one device, with default sampler settings."""

    def __init__(self, world_model, vae, device="cpu", steps: int = 50, shift: float | None = None):
        """shift: the sampler's default timestep shift; None = the shift the world model was trained with
        (DiTConfig.sample_shift)."""
        if world_model.config.latent_channels != vae.config.latent_channels:
            raise CheckpointError(
                f"world model reads {world_model.config.latent_channels} latent channels but the VAE makes "
                f"{vae.config.latent_channels}; pass the VAE the world model was trained with"
            )
        self.device = torch.device(device)
        self.world_model = world_model.to(self.device).eval()
        self.vae = vae.to(self.device).eval()
        self.steps = steps
        self.shift = world_model.config.sample_shift if shift is None else shift

    @classmethod
    def from_checkpoint(
        cls,
        world_run: str | Path,
        vae_run: str | Path,
        device: str = "auto",
        ema: bool = True,
        allow_other_vae: bool = False,
        **defaults,
    ) -> WorldPipeline:
        """Load from run folders, checkpoint folders or model folders (runfolder.resolve_model_folder).

        ema: the world model's EMA weights (RUN/final); False takes the live weights of the newest checkpoint.
        allow_other_vae: use a VAE other than the one the world model records (check_vae_pairing).
        """
        refuse_runs_in_training({"--checkpoint": world_run, "--vae": vae_run})
        check_vae_pairing(world_run, vae_run, allow_other_vae, ema=ema)
        from hybridmem.device import resolve_device
        from hybridmem.models.checkpoint import load_model
        from hybridmem.models.vae import VideoVAE
        from hybridmem.models.world import WorldModel
        from hybridmem.runfolder import resolve_model_folder

        torch_device = resolve_device(device)
        world_folder = resolve_model_folder(world_run, ema=ema)
        vae_folder = resolve_model_folder(vae_run)  # final/: the VAE with its latent normalisation
        world_model = load_model(world_folder, map_location=torch_device)
        vae = load_model(vae_folder, map_location=torch_device)
        if not isinstance(world_model, WorldModel):
            raise CheckpointError(f"{world_folder}: holds a {type(world_model).__name__}, not a WorldModel")
        if not isinstance(vae, VideoVAE):
            raise CheckpointError(f"{vae_folder}: holds a {type(vae).__name__}, not a VideoVAE")
        return cls(world_model, vae, torch_device, **defaults)

    @property
    def temporal_stride(self) -> int:
        return self.vae.config.temporal_factor

    # 1. pieces (also used by long rollouts)

    @torch.no_grad()
    def encode(self, frames: "T H W 3") -> torch.Tensor:
        """uint8 frames -> normalised latents "1 F C h w" (posterior mean)."""
        video = torch.from_numpy(np.ascontiguousarray(frames)).float().to(self.device) / 127.5 - 1.0
        video = rearrange(video, "t h w c -> 1 t c h w")
        return self.vae.normalize(self.vae.encode(video).mode())  # 1 F C h w

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents "1 F C h w" -> uint8 frames "T H W 3"; a non-finite or constant generation is
        an error, not a video (clamping would turn NaN into black frames)."""
        check_model_output(latents, "generation: the denoised latents", "the world model")
        video = self.vae.decode(self.vae.denormalize(latents))  # 1 T 3 H W
        check_model_output(video, "generation: the decoded frames", "the VAE")
        video = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return rearrange(video[0], "t c h w -> t h w c").cpu().numpy()

    def caption_input(self, caption_embedding) -> torch.Tensor | None:
        """ "L Dc" embedding (or None) -> what the model takes: "1 L Dc", zeros "1 1 Dc" for no caption."""
        caption_dim = self.world_model.config.caption_dim
        if caption_embedding is None:
            return torch.zeros(1, 1, caption_dim, device=self.device) if caption_dim else None
        caption = torch.as_tensor(np.asarray(caption_embedding), dtype=torch.float32, device=self.device)
        if not torch.isfinite(caption).all():
            raise DataError("caption embedding: contains NaN or infinity")
        if not caption_dim:
            raise ConfigError("caption embedding: this world model has no cross-attention (caption_dim 0)")
        if caption.ndim != 2 or caption.shape[1] != caption_dim:
            raise DataError(
                f"caption embedding: expected shape (L, {caption_dim}), got {tuple(caption.shape)}"
            )
        return caption[None]

    @torch.no_grad()
    def denoise(
        self,
        context_latents: torch.Tensor,
        cameras: "F 4 4",
        normalised_intrinsics: "4",
        target_latent_frames: int,
        seed: int,
        steps: int | None = None,
        shift: float | None = None,
        guidance: float = 1.0,
        caption_embedding=None,
        progress: bool = False,
        target_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Target latents "1 Ft C h w" given clean context latents "1 Fc C h w" and per-latent cameras;
        target_condition "1 Ft C h w": the warped context's latents, for a model with warp_condition."""
        _, _, channels, height, width = context_latents.shape
        generator = torch.Generator().manual_seed(seed)
        # noise drawn on the CPU: the same seed gives the same video on any device
        noise = torch.randn(1, target_latent_frames, channels, height, width, generator=generator)
        noise = noise.to(self.device)
        camera_tensor = torch.as_tensor(np.asarray(cameras), dtype=torch.float32, device=self.device)[None]
        intrinsics = torch.as_tensor(
            np.asarray(normalised_intrinsics), dtype=torch.float32, device=self.device
        )
        intrinsics = intrinsics[None]  # 1 4
        caption = self.caption_input(caption_embedding)
        if guidance != 1.0 and caption_embedding is None:
            raise ConfigError("guidance != 1 needs a caption embedding to guide with; pass guidance=1")

        # only a warp-conditioned model takes the keyword
        condition = {} if target_condition is None else {"target_condition": target_condition}

        def velocity(x_t, t):
            return self.world_model(context_latents, x_t, t, camera_tensor, intrinsics, caption, **condition)

        def unconditional_velocity(x_t, t):
            return self.world_model(
                context_latents, x_t, t, camera_tensor, intrinsics, torch.zeros_like(caption), **condition
            )

        steps = self.steps if steps is None else steps
        shift = self.shift if shift is None else shift
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise ConfigError(f"steps must be an integer, got {steps!r}")
        validation.check_value("steps", steps, "sample", flag="steps")  # the flags' rules
        validation.check_value("shift", shift, "sample", flag="shift")
        steps = sampling_steps(self.world_model.config, steps)
        return flow.sample(
            velocity,
            noise,
            steps,
            shift,
            guidance,
            unconditional_velocity if guidance != 1.0 else None,
            progress=progress,
        )

    # 2. the one-call API

    def check_context(self, context_frames, context_cameras, intrinsics):
        """Validated (frames, cameras, intrinsics) of the context; DataError naming the argument otherwise."""
        context_frames = check_frames(context_frames, "context_frames")
        context_cameras = check_poses(context_cameras, "context_cameras", num_frames=len(context_frames))
        height, width = context_frames.shape[1:3]
        check_intrinsics(intrinsics, width, height, "intrinsics")  # 4 finite pixel values of a real camera
        intrinsics = np.asarray(intrinsics, dtype=np.float64)
        self.check_segment_length(len(context_frames), "context_frames")
        factor = self.vae.config.spatial_factor
        _, rows, cols = self.world_model.config.patch_size
        if height % (factor * rows) or width % (factor * cols):
            raise DataError(
                f"context_frames: size {height}x{width} must be divisible by {factor * rows}x{factor * cols} "
                "(VAE factor times DiT patch); crop or resize the video"
            )
        return context_frames, context_cameras, intrinsics

    def check_segment_length(self, count: int, name: str) -> None:
        stride = self.temporal_stride
        if count < 1 or (count - 1) % stride:
            raise DataError(
                f"{name}: {count} frames; the VAE needs {stride}k+1 frames per segment "
                f"(for example {stride * 2 + 1})"
            )

    def check_inputs(self, context_frames, context_cameras, target_cameras, intrinsics):
        context_frames, context_cameras, intrinsics = self.check_context(
            context_frames, context_cameras, intrinsics
        )
        target_cameras = check_poses(target_cameras, "target_cameras")
        self.check_segment_length(len(target_cameras), "target_cameras")
        return context_frames, context_cameras, target_cameras, intrinsics

    def generate(
        self,
        context_frames: "Tc H W 3",
        context_cameras: "Tc 4 4",
        target_cameras: "Tt 4 4",
        intrinsics: "4",
        seed: int = 0,
        steps: int | None = None,
        shift: float | None = None,
        guidance: float = 1.0,
        caption_embedding=None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> np.ndarray:
        """Generate the target video "Tt H W 3" uint8 seen from `target_cameras` (Tt = 4k+1).

        log: called with one line at the start of each stage (encode, denoise, decode), for progress.
        """
        log = log or (lambda line: None)
        context_frames, context_cameras, target_cameras, intrinsics = self.check_inputs(
            context_frames, context_cameras, target_cameras, intrinsics
        )
        height, width = context_frames.shape[1:3]
        log(f"encoding the context ({len(context_frames)} frames, {width}x{height})")
        context_latents = self.encode(context_frames)  # 1 Fc C h w
        target_condition = None
        if self.world_model.config.warp_condition:
            from hybridmem.warp import rotation_warp

            log("warping the context into the target views")
            warped, _ = rotation_warp(
                context_frames,
                context_cameras,
                target_cameras,
                intrinsics,
                source=self.world_model.config.warp_source,
            )
            target_condition = self.encode(warped)  # 1 Ft C h w
        cameras = segment_latent_cameras(context_cameras, target_cameras, self.temporal_stride)  # F 4 4
        target_latent_frames = (len(target_cameras) - 1) // self.temporal_stride + 1
        log(
            f"denoising {target_latent_frames} latent frames, "
            f"{sampling_steps(self.world_model.config, self.steps if steps is None else steps)} steps "
            f"(memory: {self.world_model.config.memory.kind})"
        )
        latents = self.denoise(
            context_latents,
            cameras,
            normalised_intrinsics(intrinsics, width, height),
            target_latent_frames,
            seed,
            steps,
            shift,
            guidance,
            caption_embedding,
            progress,
            target_condition=target_condition,
        )  # 1 Ft C h w
        log(f"decoding {len(target_cameras)} frames")
        return self.decode(latents)

    def generate_long(
        self,
        context_frames: "Tc H W 3",
        context_cameras: "Tc 4 4",
        target_cameras: "Tt 4 4",
        intrinsics: "4",
        segment_frames: int,
        seed: int = 0,
        steps: int | None = None,
        shift: float | None = None,
        max_memory_latents: int | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """A target of any length, generated as a chain of `segment_frames`-frame segments, each denoised
        with everything generated before it as its clean context (sample/rollout.py); "Tt H W 3" uint8."""
        from hybridmem.sample.rollout import generate_long

        return generate_long(
            self, context_frames, context_cameras, target_cameras, intrinsics, segment_frames, seed=seed,
            steps=steps, shift=shift, max_memory_latents=max_memory_latents, progress=progress,
        )  # fmt: skip
