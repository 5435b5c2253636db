"""The official examples' camera files (camN.json) as the official model's camera input.

A camN.json holds `cond_cam` and `tgt_cam`, each {"0": 4x4, ...} of Unreal camera-to-world matrices in
centimetres (column-vector form). hybridmem reads them as every released-layout file
(hybridmem.data.hmworld: OpenCV axes, metres, float64), takes each latent frame's camera (frames 0, 4, 8, ...
of each segment) relative to the first target latent frame, and flattens [R | t] row-major: the 12 numbers
the official camera encoders read. This equals the official infer_hydra.py loader to about 2e-5 (it computes
in float32 with a general matrix inverse; ours in float64 with the rigid inverse).
"""

from __future__ import annotations

from pathlib import Path


def latent_frame_cameras(context: "Tc 4 4", target: "Tt 4 4") -> "Fc+Ft 4 4":
    """Each latent frame's camera (frames 0, 4, 8, ... of each segment: Wan2.1's VAE stands latent frame k
    for video frames 4k-3..4k), relative to the first target latent frame: what the official model's camera
    encoders read, as 4x4 camera-to-world matrices (float32)."""
    from hybridmem.data.encode import segment_latent_cameras
    from hybridmem.official.vae import TEMPORAL_FACTOR

    return segment_latent_cameras(context, target, TEMPORAL_FACTOR)


def official_camera_poses(path: str | Path) -> tuple:
    """Latent-frame cameras of a camN.json: (context "Fc 4 4", target "Ft 4 4") float32, relative to the
    first target latent frame (OpenCV axes, metres)."""
    import numpy as np

    from hybridmem.data.encode import latent_cameras
    from hybridmem.data.hmworld import read_json, read_unreal_cameras
    from hybridmem.official.vae import TEMPORAL_FACTOR

    path = Path(path)
    context, target, _ = read_unreal_cameras(path, read_json(path), None, None, None)
    relative, context_latent_frames, _ = latent_cameras(
        np.concatenate([context, target]), len(context), TEMPORAL_FACTOR
    )
    return relative[:context_latent_frames], relative[context_latent_frames:]


def official_camera_vectors(path: str | Path) -> tuple:
    """(context "Fc 12", target "Ft 12") float32: row-major [R | t] of `official_camera_poses`."""
    from hybridmem.geometry import pose_to_12

    context, target = official_camera_poses(path)
    return pose_to_12(context), pose_to_12(target)
