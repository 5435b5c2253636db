"""Long rollouts: a target trajectory of any length, generated as a chain of segments (the sampling
pipeline's `WorldPipeline.generate_long`).

Segment k is denoised with everything known so far as its clean context: the context latents and the
latents of segments 0..k-1 (generated, never re-encoded), each with its camera relative to segment k's
first latent frame. The memory (full, window, fov, hydra) then decides what each query frame reads from
that growing context, exactly as during training. Each segment has 4k+1 frames, so it is decoded on its
own by the causal VAE and the frames simply concatenate.

    frames = pipeline.generate_long(context_frames, context_cameras, target_cameras, intrinsics,
                                    segment_frames=17, seed=0)

Shape glossary: Tc/Tt context/target frames, F latent frames, C latent channels, h/w latent grid.
"""

from __future__ import annotations

import numpy as np
import torch

from hybridmem.errors import ConfigError, DataError
from hybridmem.geometry import check_poses, latent_frame_indices, normalised_intrinsics, relative_poses


def segment_lengths(num_frames: int, segment_frames: int, temporal_stride: int) -> list[int]:
    """Split `num_frames` (any count >= 1) into segments of `segment_frames` (s*k+1) and a shorter last one.

    The last segment may have any length; generate_long pads it to the next s*k+1 frames and drops the
    padding afterwards.
    """
    if segment_frames < 1 or (segment_frames - 1) % temporal_stride:
        raise ConfigError(
            f"segment_frames={segment_frames} must be of the form {temporal_stride}k+1 (e.g. "
            f"{temporal_stride * 4 + 1})"
        )
    if num_frames < 1:
        raise DataError("target_cameras: need at least one target camera")
    full, remainder = divmod(num_frames, segment_frames)
    return [segment_frames] * full + ([remainder] if remainder else [])


def padded_length(length: int, temporal_stride: int) -> int:
    """The smallest s*k+1 >= length: what the causal VAE can decode."""
    return length + (-(length - 1)) % temporal_stride


def segment_seed(seed: int, index: int) -> int:
    """Segment 0 uses `seed` itself (a one-segment rollout equals pipeline.generate); later ones derive."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def generate_long(
    pipeline,
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
) -> "Tt H W 3":
    """Generate `len(target_cameras)` frames segment by segment (see the module docstring).

    max_memory_latents: keep at most this many most recent latent frames as context (bounds compute on
    very long rollouts); None keeps everything.
    """
    if getattr(pipeline.world_model.config, "warp_condition", False):
        raise ConfigError(
            "long rollouts of a model trained with --warp-condition are not supported yet (each segment "
            "would need the warp of the frames generated before it); generate one segment at a time"
        )
    # 1. checks and the initial memory: the context's latents and their world-frame cameras
    context_frames, context_cameras, intrinsics = pipeline.check_context(
        context_frames, context_cameras, intrinsics
    )
    target_cameras = check_poses(target_cameras, "target_cameras")
    stride = pipeline.temporal_stride
    lengths = segment_lengths(len(target_cameras), segment_frames, stride)
    if max_memory_latents is not None and max_memory_latents < 1:
        raise ConfigError(f"max_memory_latents must be >= 1 or None, got {max_memory_latents}")
    height, width = context_frames.shape[1:3]
    intrinsics_normalised = normalised_intrinsics(intrinsics, width, height)
    memory_latents = pipeline.encode(context_frames)  # 1 Fc C h w
    memory_cameras = context_cameras[latent_frame_indices(len(context_frames), stride)]  # Fc 4 4

    # 2. segments
    outputs, start = [], 0
    for index, length in enumerate(lengths):
        segment_cameras = target_cameras[start : start + length]
        # a last segment of another length is padded with its last camera, and the padding dropped below
        padding = padded_length(length, stride) - length
        segment_cameras = np.concatenate([segment_cameras, np.repeat(segment_cameras[-1:], padding, axis=0)])
        segment_latent_cameras = segment_cameras[latent_frame_indices(len(segment_cameras), stride)]  # Ft 4 4
        if max_memory_latents is not None:
            memory_latents = memory_latents[:, -max_memory_latents:]
            memory_cameras = memory_cameras[-max_memory_latents:]
        cameras = relative_poses(
            np.concatenate([memory_cameras, segment_latent_cameras]), segment_latent_cameras[0]
        ).astype(np.float32)  # F 4 4
        latents = pipeline.denoise(
            memory_latents,
            cameras,
            intrinsics_normalised,
            len(segment_latent_cameras),
            segment_seed(seed, index),
            steps,
            shift,
            progress=progress,
        )  # 1 Ft C h w
        outputs.append(pipeline.decode(latents)[:length])
        memory_latents = torch.cat([memory_latents, latents], dim=1)  # 1 F+Ft C h w
        memory_cameras = np.concatenate([memory_cameras, segment_latent_cameras])
        start += length
    return np.concatenate(outputs)
