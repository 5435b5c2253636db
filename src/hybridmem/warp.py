"""Warping the context into a target view by the camera's rotation: what a camera alone can predict.

For a target pixel p the ray in the target camera is K^-1 p; in context camera c it is R_c^T R_t K^-1 p (the
translation is dropped: every point is taken at infinite depth, the homography of a pure rotation). The pixel
takes the colour of the most recent context frame that sees that ray in front of it and inside its image
(bilinear), and the last context frame's pixel where none does. Exact for a camera that only turns (pans and
tilts, most of HM-World's trajectories); for a moving camera near things move more than the warp says.

It is the non-learned baseline beside copy-last ("warp" in `hybridmem eval --baseline`): a world model
that loses to it has learned less about the scene than the camera poses already say. It also warps whatever
was in view, moving subjects included, so a subject that left the view comes back frozen where it was last
seen.

Shape letters: Tc context frames, Tt target frames, H/W pixels.
"""

from __future__ import annotations

import numpy as np

from hybridmem.geometry import WARP_SOURCES, intrinsics_matrix
from hybridmem.validation import check_choice


def _bilinear(image: "H W 3", u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """ "N 3" colours at "N" pixel coordinates (u right, v down; pixel centres at integer + 0.5), edges
    clamped."""
    height, width = image.shape[:2]
    x, y = u - 0.5, v - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0c, x1c = np.clip(x0, 0, width - 1), np.clip(x0 + 1, 0, width - 1)
    y0c, y1c = np.clip(y0, 0, height - 1), np.clip(y0 + 1, 0, height - 1)
    top = image[y0c, x0c] * (1 - fx) + image[y0c, x1c] * fx
    bottom = image[y1c, x0c] * (1 - fx) + image[y1c, x1c] * fx
    return top * (1 - fy) + bottom * fy


def rotation_warp(
    context_frames: "Tc H W 3",
    context_cameras: "Tc 4 4",
    target_cameras: "Tt 4 4",
    intrinsics: "4",
    source: str = "context",
) -> tuple["Tt H W 3", "Tt H W"]:
    """Each target view predicted from the context by the cameras' rotations; and which pixels some context
    frame saw (the rest are the last context frame's pixels). Frames uint8, mask bool. source: which
    context frames are read (WARP_SOURCES)."""
    check_choice(source, WARP_SOURCES, "warp source")
    context_frames = np.asarray(context_frames)
    if source == "last":
        context_frames, context_cameras = context_frames[-1:], np.asarray(context_cameras)[-1:]
    num_context, height, width = context_frames.shape[:3]
    K = intrinsics_matrix(intrinsics)  # 3 3
    K_inverse = np.linalg.inv(K)
    # 1. the target pixels' rays in camera coordinates
    v, u = np.mgrid[0:height, 0:width].reshape(2, -1) + 0.5  # N, N
    rays = K_inverse @ np.stack([u, v, np.ones_like(u)])  # 3 N
    colours = context_frames.astype(np.float64)
    fallback = colours[-1].reshape(-1, 3)  # N 3
    rotations_c = np.asarray(context_cameras, dtype=np.float64)[:, :3, :3]  # Tc 3 3
    warped, seen = [], []
    for target_camera in np.asarray(target_cameras, dtype=np.float64):
        out, filled = fallback.copy(), np.zeros(u.shape, dtype=bool)
        world_rays = target_camera[:3, :3] @ rays  # 3 N
        # 2. the most recent context frame that sees the ray wins: walk back from the last one
        for c in range(num_context - 1, -1, -1):
            todo = np.flatnonzero(~filled)
            if len(todo) == 0:
                break
            projected = K @ (rotations_c[c].T @ world_rays[:, todo])  # 3 n
            z = projected[2]
            ahead = z > 1e-9
            pu = np.where(ahead, projected[0] / np.where(ahead, z, 1.0), -1.0)
            pv = np.where(ahead, projected[1] / np.where(ahead, z, 1.0), -1.0)
            inside = ahead & (pu >= 0) & (pu <= width) & (pv >= 0) & (pv <= height)
            hit = todo[inside]
            out[hit] = _bilinear(colours[c], pu[inside], pv[inside])
            filled[hit] = True
        warped.append(out.reshape(height, width, 3))
        seen.append(filled.reshape(height, width))
    frames = np.clip(np.rint(np.stack(warped)), 0, 255).astype(np.uint8)
    return frames, np.stack(seen)
