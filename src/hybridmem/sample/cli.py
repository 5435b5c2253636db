"""`hybridmem sample`: generate the future of a video from its context and the cameras to follow.

    hybridmem sample --video examples/1.mp4 --cameras examples/cam1.json --out out/1.mp4   # official pair
    hybridmem sample --clip HM-World/sample12 --out out/sample12.mp4                     # released sample
    hybridmem sample --clip runs/world/test/000000 --checkpoint runs/world_hydra --vae runs/vae --out s.mp4
    hybridmem sample --video ctx.mp4 --cameras cams.json --out out.mp4 --segment-frames 17   # long rollout
    hybridmem sample --official ckpts --video examples/1.mp4 --cameras examples/cam1.json --out o.mp4  # paper
    hybridmem sample --official ckpts --checkpoint runs/hydra_ft --clip runs/world/test/000000 --out f.mp4

Inputs (hybridmem.data.inputs; detected, and every decision printed before any model is loaded):
  --clip DIR     a clip folder of our layout, or a released HM-World sample (tgt.mp4 and masks optional)
  --video --cameras   the official HyDRA pair N.mp4 + camN.json ({"cond_cam": {"0": 4x4, ...}, "tgt_cam":
                 {...}}: Unreal camera-to-world, cm, column-vector; line N of caption.txt beside it), or any
                 mp4 + a JSON of our schema {"intrinsics": [fx, fy, cx, cy], "context": [4x4 per video
                 frame], "target": [4x4 per frame to generate]}: camera-to-world, OpenCV axes (x right, y
                 down, z forward), metres.
Released and official data store no intrinsics: the default is a 36.3 degree horizontal field of view
(measured on the official examples); --hfov or --intrinsics override it. Ambiguous cameras are refused with
the flag that settles them (--matrix-form, --camera-units).

The frames are resized and centre-cropped to --size (default: the size the world model was trained at;
the intrinsics follow), and each segment must have 4k+1 frames (--pad-last or --trim fix other counts).
Shapes, lengths, cameras, sizes and the memory needed are checked before any model is loaded or anything is
written. --checkpoint and --vae default to the shipped models (hydra and its VAE); a world model that
records the VAE it was trained with refuses another (--allow-other-vae to use it anyway), one saved before
such records existed is used with a warning. The output plays at the input's frame rate unless --fps is given.
With ground truth (a clip with a target video), OUT_side_by_side.mp4 shows context | ground truth | generated.

Outputs: an existing output (or side-by-side) is never replaced without --overwrite, and --out may not be
inside an input. Before any model is loaded, the output folder must accept a file and have about the space
the videos need. While it runs, `sample` holds a lock beside the output (DIR/.hybridmem-sample-NAME.lock,
removed at the end), so a second `sample` into the same --out is refused. Both videos are written under temp
names, checked (ffmpeg's status, the frame count in the file) and only then renamed into place together, so
a failed run leaves existing files untouched and no temp file behind.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hybridmem import validation
from hybridmem.errors import ConfigError, DataError


def read_camera_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(context "Tc 4 4", target "Tt 4 4", intrinsics "4") from a JSON of our schema (module docstring)."""
    from hybridmem.data.hmworld import _array, read_json

    path = Path(path)
    document = read_json(path)
    arrays = []
    for key, tail in (("context", (4, 4)), ("target", (4, 4)), ("intrinsics", ())):
        if key not in document:
            raise DataError(f"{path}: missing key '{key}' (expected 'intrinsics', 'context', 'target')")
        array = _array(document[key], path, key)
        if tail and (array.ndim != 3 or array.shape[1:] != tail):
            raise DataError(f"{path}: '{key}' must be a list of 4x4 matrices, got shape {array.shape}")
        if not tail and array.shape != (4,):
            raise DataError(f"{path}: 'intrinsics' must be [fx, fy, cx, cy], got shape {array.shape}")
        arrays.append(array)
    return arrays[0], arrays[1], arrays[2]


def side_by_side(context: "Tc H W 3", truth: "Tt H W 3", generated: "Tt H W 3") -> "Tt H 3W 3":
    """One row per target frame: context (playing, then held on its last frame) | ground truth | generated."""
    held = context[np.minimum(np.arange(len(generated)), len(context) - 1)]
    return np.concatenate([held, truth, generated], axis=2)


def side_by_side_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_side_by_side.mp4")


def output_bytes(frames: int, width: int, height: int, with_truth: bool) -> int:
    """About the space the outputs need: H.264 at crf 18 stores these frames in well under a sixteenth of
    their raw RGB bytes; the side-by-side is three frames wide."""
    raw = frames * width * height * 3 * (4 if with_truth else 1)
    return raw // 16 + (1 << 20)


def lock_name(out: Path) -> str:
    """The name of the lock beside `out`: the output's name, or a hash of it when that would not fit."""
    import hashlib

    name = f"sample-{out.name}"
    return (
        name if len(name.encode()) <= 200 else f"sample-{hashlib.sha256(out.name.encode()).hexdigest()[:16]}"
    )


# 1. argument checks before anything is read


def check_numbers(args: argparse.Namespace) -> None:
    """The numeric flags against their rules (hybridmem.validation.RULES): the parser checked them already,
    this is for callers that build the namespace themselves."""
    for name in ("steps", "seed", "shift", "guidance", "fps", "hfov", "segment_frames"):
        if getattr(args, name) is not None:
            validation.check_value(name, getattr(args, name), "sample")


def check_arguments(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"--out {out}: must end in .mp4")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name an .mp4 file")
    if (args.clip is None) == (args.video is None):
        raise ConfigError("pass exactly one of --clip CLIP_DIR or --video CTX.mp4 (with --cameras)")
    if args.clip is not None and args.cameras is not None:
        raise ConfigError("--cameras goes with --video; a --clip folder has its own cameras")
    if args.video is not None and args.cameras is None:
        raise ConfigError("--video needs --cameras CAMS.json (see `hybridmem sample --help`)")
    check_numbers(args)
    if args.segment_frames and (args.caption_embedding is not None or args.guidance != 1.0):
        raise ConfigError("--segment-frames rollouts do not take --caption-embedding or --guidance yet")
    check_not_overwritten(out, args.overwrite)
    return out


def check_not_overwritten(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out}: exists; pass --overwrite to replace it, or name another file")


def read_caption_embedding(path: str, caption_dim: int) -> np.ndarray:
    """A finite float array (L, caption_dim) from an .npy file, without unpickling anything."""
    if not caption_dim:
        raise ConfigError(
            f"--caption-embedding {path}: this world model has no cross-attention (caption_dim 0); "
            "drop the flag"
        )
    from hybridmem import npyio

    fix = f"pass a NumPy .npy array of shape (L, {caption_dim}) to --caption-embedding"
    embedding = npyio.read_npy(path, fix=fix)  # its header is checked before anything is allocated
    if not isinstance(embedding, np.ndarray) or embedding.dtype.kind not in "fiu":
        raise DataError(
            f"--caption-embedding {path}: expected a numeric .npy array of shape (L, {caption_dim})"
        )
    if embedding.ndim != 2 or embedding.shape[1] != caption_dim or embedding.shape[0] < 1:
        raise DataError(
            f"--caption-embedding {path}: shape {embedding.shape}, expected (L, {caption_dim}) with L >= 1"
        )
    if not np.all(np.isfinite(embedding)):
        raise DataError(f"--caption-embedding {path}: contains NaN or infinity")
    return embedding.astype(np.float32)


# 2. the run


def run(args: argparse.Namespace) -> int:
    from hybridmem import publish, runlock

    started = time.monotonic()

    def say(line: str) -> None:
        print(f"sample [{time.monotonic() - started:6.1f}s] {line}", flush=True)

    # 1. check every input before loading models or writing anything
    out = check_arguments(args)
    inputs = {
        "--clip": args.clip,
        "--video": args.video,
        "--cameras": args.cameras,
        "--checkpoint": args.checkpoint,
        "--vae": args.vae,
        "--caption-embedding": args.caption_embedding,
        "--official": args.official,
    }
    publish.check_not_inside(out, inputs)
    prepared = checked_plan(args, out, say)
    publish.check_output_folder(
        out.parent,
        prepared["need_bytes"],
        [out.name, side_by_side_path(out).name, f".hybridmem-{lock_name(out)}.lock"],
    )
    # 2. one sample at a time into this --out: a second is refused while this one runs
    try:
        lock = runlock.acquire(out.parent, "sample", name=lock_name(out), ephemeral=True)
    except runlock.RunLockedError as error:
        raise runlock.RunLockedError(
            f"--out {out}: another `hybridmem sample` is writing it ({error})"
        ) from None
    with lock:
        check_not_overwritten(out, args.overwrite)  # written by a run that finished while this one read
        if prepared["comparison"] is not None:
            check_not_overwritten(prepared["comparison"], args.overwrite)
        return generate_and_publish(args, out, prepared, say)


def checked_plan(args: argparse.Namespace, out: Path, say) -> dict:
    """Every input read and checked (models' configs only, not their weights): what generation needs."""
    from hybridmem.data import inputs
    from hybridmem.sample import plan
    from hybridmem.sample.pipeline import check_vae_pairing

    size = inputs.parse_size(args.size) if args.size is not None else None
    intrinsics = inputs.parse_intrinsics(args.intrinsics) if args.intrinsics is not None else None
    say(f"reading {args.clip or args.video}")
    flags = dict(
        hfov=args.hfov, intrinsics=intrinsics, matrix_form=args.matrix_form, camera_units=args.camera_units
    )
    if args.clip is not None:
        given = inputs.read_clip_input(args.clip, **flags)
    else:
        given = inputs.read_video_input(args.video, args.cameras, **flags)
    input_shape = given.context_frames.shape[:3]
    comparison = side_by_side_path(out)
    if given.truth is not None and comparison.exists() and not args.overwrite:
        raise ConfigError(
            f"{comparison}: exists (the side-by-side with ground truth); pass --overwrite to replace it"
        )
    if args.official is not None:
        return official_plan(args, out, given, comparison, say)
    info = plan.read_model_info(args.checkpoint, args.vae, ema=args.weights == "ema")
    check_vae_pairing(args.checkpoint, args.vae, args.allow_other_vae, ema=args.weights == "ema")
    given = inputs.fit_length(given, info.temporal_stride, args.length_mode, args.segment_frames)
    if args.segment_frames:
        from hybridmem.sample.rollout import segment_lengths

        segment_lengths(len(given.target_cameras), args.segment_frames, info.temporal_stride)
    if size is not None:
        plan.check_size(info, *size, "--size")
        width, height, why = *size, "--size"
    elif info.training_size is not None:
        plan.check_size(info, *info.training_size, f"the training size from {info.training_size_source}:")
        width, height = info.training_size
        why = f"the world model's training size, from {info.training_size_source}; --size to change"
    else:
        width, height = given.size
        why = f"the input's; the world model's training size is {info.training_size_source}; --size to change"
        plan.check_size(info, width, height, "the input size (pass --size WxH)")
    caption = None
    if args.caption_embedding is not None:
        caption = read_caption_embedding(args.caption_embedding, int(info.world.get("caption_dim", 0)))
    if args.guidance != 1.0 and caption is None:
        raise ConfigError("--guidance != 1 needs --caption-embedding (a caption to guide with)")
    from hybridmem.device import check_memory, resolve_device

    device = str(resolve_device(args.device))
    need = plan.estimate_peak_bytes(
        info,
        input_shape,
        len(given.context_frames),
        len(given.target_cameras),
        width,
        height,
        args.segment_frames,
        given.truth is not None,
    )
    memory = check_memory(
        need,
        f"sampling at {width}x{height}",
        "pass a smaller --size, fewer target cameras, or --segment-frames N for a long rollout",
        device,
        estimated=True,
    )
    given = inputs.fit_size(given, width, height, why)
    fps = args.fps if args.fps is not None else given.fps
    problem = validation.rule_for("fps", "sample").check(fps)
    if problem:  # the input's rate: --fps's rule holds for it too, before any sampling
        raise ConfigError(f"output frame rate {fps:g} (the input's): {problem}; pass --fps")
    for line in given.report():
        say(line)
    count = len(given.target_cameras) if given.output_frames is None else given.output_frames
    say(
        f"output: {count} frames at {fps:g} fps ({'--fps' if args.fps is not None else 'the input rate'}) "
        f"-> {out}; estimated peak memory {memory}"
    )
    return {
        "given": given,
        "info": info,
        "device": device,
        "fps": fps,
        "caption": caption,
        "comparison": comparison if given.truth is not None else None,
        "need_bytes": output_bytes(count, width, height, given.truth is not None),
        "official": None,
    }


def official_plan(args, out: Path, given, comparison: Path, say) -> dict:
    """checked_plan for --official: the released files found, sizes fitted, memory estimated; no weights."""
    from hybridmem.data import inputs
    from hybridmem.device import check_memory, resolve_device
    from hybridmem.official.pipeline import (
        PAPER_SIZE,
        PATCH,
        SPATIAL_FACTOR,
        TEMPORAL_STRIDE,
        estimate_peak_bytes,
    )
    from hybridmem.official.release import find_release

    release = find_release(args.official)
    for line in release.describe():
        say(line)
    if args.checkpoint is not None:  # a DiT fine-tuned from this release replaces its own
        from hybridmem.official.finetune import finetuned_folder

        say(f"  DiT fine-tuned from it: {finetuned_folder(args.checkpoint, release, args.weights == 'ema')}")
    given = inputs.fit_length(given, TEMPORAL_STRIDE, args.length_mode, None)
    multiple = SPATIAL_FACTOR * PATCH
    if args.size is not None:
        width, height = inputs.parse_size(args.size)
        why = "--size"
    else:
        (width, height), why = PAPER_SIZE, "the paper's model's size; --size to change"
    if width % multiple or height % multiple:
        raise ConfigError(
            f"--size {width}x{height}: width and height must be multiples of {multiple} (Wan2.1's VAE "
            f"factor 8 times the DiT patch 2); for example --size "
            f"{max(multiple, width // multiple * multiple)}x{max(multiple, height // multiple * multiple)}"
        )
    device = str(resolve_device(args.device))
    dtype_bytes = 2 if args.precision == "bf16" else 4
    estimate = estimate_peak_bytes(
        release, width, height, len(given.context_frames), len(given.target_cameras), dtype_bytes
    )
    memory = check_memory(
        int(estimate["peak"]),
        f"the paper's model at {width}x{height} in {args.precision}",
        "pass --precision bf16 (half the weights' bytes), a smaller --size or fewer target cameras, or run "
        "on a GPU with that memory (--device cuda)",
        device,
        estimated=True,
    )
    given = inputs.fit_size(given, width, height, why)
    caption = args.caption if args.caption is not None else given.caption
    fps = args.fps if args.fps is not None else given.fps
    problem = validation.rule_for("fps", "sample").check(fps)
    if problem:
        raise ConfigError(f"output frame rate {fps:g} (the input's): {problem}; pass --fps")
    for line in given.report():
        say(line)
    say(f"caption: {caption!r}" + (" (--caption)" if args.caption is not None else ""))
    count = len(given.target_cameras) if given.output_frames is None else given.output_frames
    say(
        f"output: {count} frames at {fps:g} fps -> {out}; {args.steps} steps, CFG {args.guidance:g}, "
        f"{args.precision}; estimated peak memory {memory}"
    )
    return {
        "given": given,
        "info": None,
        "device": device,
        "fps": fps,
        "caption": caption,
        "comparison": comparison if given.truth is not None else None,
        "need_bytes": output_bytes(count, width, height, given.truth is not None),
        "official": release,
    }


def generate_and_publish(args: argparse.Namespace, out: Path, prepared: dict, say) -> int:
    """Load the models, generate, and publish the output (and side-by-side); the caller holds the lock."""
    from hybridmem import publish
    from hybridmem.sample.pipeline import WorldPipeline

    given, info, device, fps, caption = (prepared[k] for k in ("given", "info", "device", "fps", "caption"))
    comparison = prepared["comparison"]
    # 3. load, then generate: the paper's model (--official) or ours, one call for both
    if prepared["official"] is not None:
        import torch

        from hybridmem.official.pipeline import OfficialPipeline

        say(f"loading the released model from {args.official} on {device} ({args.precision})")
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        pipeline = OfficialPipeline.from_release(  # the release the plan found, not looked up again
            prepared["official"],
            device=device,
            dtype=dtype,
            checkpoint=args.checkpoint,
            ema=args.weights == "ema",
        )
        conditioning = {"caption": caption, "guidance": args.guidance}
    else:
        say(f"loading {info.world_folder} and {info.vae_folder} on {device}")
        pipeline = WorldPipeline.from_checkpoint(
            args.checkpoint,
            args.vae,
            device=device,
            ema=args.weights == "ema",
            allow_other_vae=args.allow_other_vae,
        )
        conditioning = {"caption_embedding": caption, "guidance": args.guidance}
    inputs = (given.context_frames, given.context_cameras, given.target_cameras, given.intrinsics)
    if args.segment_frames:
        say(f"long rollout in segments of {args.segment_frames} frames, {args.steps} steps each")
        generated = pipeline.generate_long(
            *inputs, args.segment_frames, seed=args.seed, steps=args.steps, shift=args.shift
        )
    else:
        generated = pipeline.generate(
            *inputs, seed=args.seed, steps=args.steps, shift=args.shift, log=say, **conditioning
        )
    if given.output_frames is not None:
        generated = generated[: given.output_frames]

    # 4. write both videos, check them, then publish them together
    say(f"writing {out}")
    staged = [publish.stage_video(out, generated, fps, overwrite=args.overwrite)]
    try:
        if comparison is not None:
            strip = side_by_side(given.context_frames, given.truth[: len(generated)], generated)
            staged.append(publish.stage_video(comparison, strip, fps, overwrite=args.overwrite))
    except BaseException:
        staged[0].discard()
        raise
    publish.publish_together(staged)
    print(f"sample: {len(generated)} frames -> {out}", flush=True)
    if comparison is not None:
        print(f"sample: context | ground truth | generated -> {comparison}", flush=True)
    say("done")
    return 0


def _shipped(name: str) -> str:
    from hybridmem.runfolder import default_assets_dir

    return str(default_assets_dir() / name)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="generate a target video from context frames and cameras",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("input")
    source.add_argument("--clip", default=None, help="clip folder: our layout or a released HM-World sample")
    source.add_argument("--video", default=None, help="context video (mp4), with --cameras")
    source.add_argument(
        "--cameras", default=None, help="cameras JSON for --video: official camN.json or ours"
    )
    source.add_argument(
        "--hfov",
        "--horizontal-fov",
        type=float,
        default=None,
        dest="hfov",
        help="released/official data: horizontal field of view in degrees (default 36.3, measured)",
    )
    source.add_argument(
        "--intrinsics", default=None, help="FX,FY,CX,CY in pixels of the input video (instead of --hfov)"
    )
    source.add_argument(
        "--matrix-form",
        choices=("column", "row"),
        default=None,
        help="Unreal matrices: translation in the last column or row; needed only when every camera is at "
        "the origin (otherwise detected)",
    )
    source.add_argument(
        "--camera-units",
        choices=("m", "cm"),
        default=None,
        help="our cameras JSON schema: settle translations that look like centimetres",
    )
    fit = parser.add_argument_group("fitting the input to the model")
    fit.add_argument(
        "--size",
        default=None,
        metavar="WxH",
        help="generate at this size: resize + centre-crop, intrinsics adjusted (default: the training size)",
    )
    length = fit.add_mutually_exclusive_group()
    length.add_argument(
        "--pad-last",
        dest="length_mode",
        action="store_const",
        const="pad-last",
        default=None,
        help="segments that are not 4k+1 frames: repeat the last frame/camera (output keeps the count asked)",
    )
    length.add_argument(
        "--trim",
        dest="length_mode",
        action="store_const",
        const="trim",
        help="segments that are not 4k+1 frames: drop the context's first / the target's last frames",
    )
    model = parser.add_argument_group("model and sampler")
    model.add_argument(
        "--checkpoint",
        default=None,
        help="world model: run, checkpoint or model folder (default: the shipped hydra model); with "
        "--official, a run fine-tuned from that release (`train world --official`)",
    )
    model.add_argument("--vae", default=None, help="VAE: run or model folder (default: the shipped VAE)")
    model.add_argument(
        "--official",
        default=None,
        metavar="DIR",
        help="the paper's model: the folder of the released files (hydra.pth + Wan2.1-T2V-1.3B/), instead of "
        "--checkpoint/--vae; defaults become the paper's: 832x480, 50 steps, CFG 5, bf16",
    )
    model.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default=None,
        help="--official: the models' dtype (default bf16, as the official inference)",
    )
    model.add_argument(
        "--caption",
        default=None,
        help="--official: the caption text (default: the input's caption, e.g. line N of caption.txt)",
    )
    model.add_argument("--steps", type=int, default=50, help="Euler steps (1..10000, default 50)")
    model.add_argument(
        "--shift",
        type=float,
        default=None,
        help="sampling timestep shift (> 0; default: the shift the world model was trained with)",
    )
    model.add_argument("--seed", type=int, default=0)
    model.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (default 1; 5 with --official); != 1 needs --caption-embedding "
        "or --official",
    )
    model.add_argument("--caption-embedding", default=None, help="caption embedding .npy of shape (L, Dc)")
    model.add_argument(
        "--segment-frames",
        type=int,
        default=None,
        help="long rollout: chain segments of this many frames (4k+1)",
    )
    model.add_argument("--weights", choices=("ema", "live"), default="ema", help="which weights of a run")
    model.add_argument(
        "--allow-other-vae",
        action="store_true",
        help="use --vae although the world model records that it was trained with another VAE "
        "(default: refuse, naming both)",
    )
    model.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, help="output OUT.mp4")
    output.add_argument("--fps", type=float, default=None, help="output frame rate (default: the input's)")
    output.add_argument(
        "--overwrite", action="store_true", help="replace an existing OUT.mp4 (and OUT_side_by_side.mp4)"
    )
    parser.set_defaults(func=_run_with_defaults)


def _run_with_defaults(args: argparse.Namespace) -> int:
    if args.official is not None:
        given = [
            flag
            for flag, value in (
                ("--vae", args.vae),
                ("--caption-embedding", args.caption_embedding),
                ("--segment-frames", args.segment_frames),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(
                f"--official DIR brings its own VAE and text encoder (and its DiT, or a fine-tuned one's "
                f"with --checkpoint); drop {', '.join(given)}"
            )
        args.guidance = 5.0 if args.guidance is None else args.guidance
        args.precision = args.precision or "bf16"
        return run(args)
    for flag, value in (("--precision", args.precision), ("--caption", args.caption)):
        if value is not None:
            raise ConfigError(f"{flag} goes with --official (the paper's model); drop it")
    args.guidance = 1.0 if args.guidance is None else args.guidance
    if (args.checkpoint is None) != (args.vae is None):
        raise ConfigError(
            "pass --checkpoint and --vae together (a world model needs the VAE it was trained "
            "with), or neither for the shipped models"
        )
    if args.checkpoint is None:
        args.checkpoint, args.vae = _shipped("hydra"), _shipped("vae")
    return run(args)
