"""`hybridmem sample`: generate the target video of a clip (or of a video plus a camera file).

    hybridmem sample --clip runs/world/test/000000 --checkpoint runs/world_hydra --vae runs/vae \
        --out runs/samples/000000.mp4 --steps 50 --seed 0
    hybridmem sample --video ctx.mp4 --cameras cams.json --checkpoint runs/world_hydra --vae runs/vae \
        --out out.mp4 --segment-frames 17          # long rollout: chained 17-frame segments

--clip reads our layout or the released HM-World layout (hybridmem.data.hmworld.load_clip); its target
cameras drive the generation and, since the clip has ground truth, OUT_side_by_side.mp4 shows
context | ground truth | generated (the context plays, then holds its last frame).

cams.json for --video: {"intrinsics": [fx, fy, cx, cy] (pixels of the video), "context": [4x4 per video
frame], "target": [4x4 per frame to generate]}; camera-to-world, OpenCV axes (x right, y down, z forward),
metres. Outputs are written to a temp file and renamed: a failed run leaves existing files untouched.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from hybridmem.errors import ConfigError, DataError


def read_camera_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(context "Tc 4 4", target "Tt 4 4", intrinsics "4") from a cams.json (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: camera file not found")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected an object with keys 'intrinsics', 'context', 'target'")
    arrays = []
    for key, tail in (("context", (4, 4)), ("target", (4, 4)), ("intrinsics", ())):
        if key not in document:
            raise DataError(f"{path}: missing key '{key}' (expected 'intrinsics', 'context', 'target')")
        try:
            array = np.asarray(document[key], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataError(f"{path}: '{key}' is not a numeric array ({error})") from error
        if tail and (array.ndim != 3 or array.shape[1:] != tail):
            raise DataError(f"{path}: '{key}' must be a list of 4x4 matrices, got shape {array.shape}")
        if not tail and array.shape != (4,):
            raise DataError(f"{path}: 'intrinsics' must be [fx, fy, cx, cy], got shape {array.shape}")
        arrays.append(array)
    return arrays[0], arrays[1], arrays[2]


def write_video_atomically(path: Path, frames: "T H W 3", fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.stem}.tmp{path.suffix}"
    try:
        writer = imageio.get_writer(
            str(temp),
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            quality=None,
            output_params=["-crf", "18"],
            pixelformat="yuv420p",
            macro_block_size=1,
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def side_by_side(context: "Tc H W 3", truth: "Tt H W 3", generated: "Tt H W 3") -> "Tt H 3W 3":
    """One row per target frame: context (playing, then held on its last frame) | ground truth | generated."""
    held = context[np.minimum(np.arange(len(generated)), len(context) - 1)]
    return np.concatenate([held, truth, generated], axis=2)


def run(args: argparse.Namespace) -> int:
    from hybridmem.diffusion.rollout import generate_long
    from hybridmem.sample.pipeline import WorldPipeline

    # 1. check every input before loading models or writing anything
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"--out {out}: must end in .mp4")
    if (args.clip is None) == (args.video is None):
        raise ConfigError("pass exactly one of --clip CLIP_DIR or --video CTX.mp4 (with --cameras)")
    truth = None
    if args.clip is not None:
        from hybridmem.data.hmworld import load_clip

        if args.cameras is not None:
            raise ConfigError("--cameras goes with --video; a --clip folder has its own cameras")
        fov = args.horizontal_fov
        clip = load_clip(args.clip, **({"horizontal_fov_deg": fov} if fov is not None else {}))
        context_frames, truth = clip.frames[clip.context], clip.frames[clip.target]
        context_cameras, target_cameras = clip.cameras[clip.context], clip.cameras[clip.target]
        intrinsics, fps = clip.intrinsics, args.fps or clip.fps
    else:
        from hybridmem.data.hmworld import read_video

        if args.cameras is None:
            raise ConfigError("--video needs --cameras CAMS.json (intrinsics, context and target cameras)")
        context_frames = read_video(Path(args.video))
        context_cameras, target_cameras, intrinsics = read_camera_file(args.cameras)
        fps = args.fps or 8.0
    caption = np.load(args.caption_embedding) if args.caption_embedding else None

    # 2. generate
    pipeline = WorldPipeline.from_checkpoint(
        args.checkpoint, args.vae, device=args.device, ema=args.weights == "ema"
    )
    if args.segment_frames:
        if caption is not None or args.guidance != 1.0:
            raise ConfigError("--segment-frames rollouts do not take captions or --guidance yet")
        generated = generate_long(
            pipeline,
            context_frames,
            context_cameras,
            target_cameras,
            intrinsics,
            args.segment_frames,
            seed=args.seed,
            steps=args.steps,
            shift=args.shift,
        )
    else:
        generated = pipeline.generate(
            context_frames,
            context_cameras,
            target_cameras,
            intrinsics,
            seed=args.seed,
            steps=args.steps,
            shift=args.shift,
            guidance=args.guidance,
            caption_embedding=caption,
        )

    # 3. write
    write_video_atomically(out, generated, fps)
    print(f"sample: {len(generated)} frames -> {out}")
    if truth is not None:
        comparison = out.with_name(f"{out.stem}_side_by_side.mp4")
        write_video_atomically(comparison, side_by_side(context_frames, truth, generated), fps)
        print(f"sample: context | ground truth | generated -> {comparison}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="generate a target video from context frames and cameras",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clip", default=None, help="clip folder (our layout or the released one)")
    parser.add_argument("--video", default=None, help="context video (mp4), with --cameras")
    parser.add_argument("--cameras", default=None, help="cams.json for --video (see above)")
    parser.add_argument("--checkpoint", required=True, help="world model: run, checkpoint or model folder")
    parser.add_argument("--vae", required=True, help="VAE: run or model folder")
    parser.add_argument("--out", required=True, help="output OUT.mp4")
    parser.add_argument("--steps", type=int, default=50, help="Euler steps")
    parser.add_argument("--shift", type=float, default=5.0, help="sampling timestep shift")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="classifier-free guidance scale; != 1 needs --caption-embedding",
    )
    parser.add_argument("--caption-embedding", default=None, help="caption embedding .npy of shape (L, Dc)")
    parser.add_argument(
        "--segment-frames",
        type=int,
        default=None,
        help="long rollout: chain segments of this many frames (4k+1)",
    )
    parser.add_argument("--weights", choices=("ema", "live"), default="ema", help="which weights of a run")
    parser.add_argument(
        "--horizontal-fov",
        type=float,
        default=None,
        help="released-layout clips only: horizontal field of view in degrees (default 90)",
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="output frame rate (default: the clip's, or 8)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.set_defaults(func=run)
