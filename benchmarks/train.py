"""Training and sampling throughput of the world model, per memory variant.

    .venv/bin/python benchmarks/train.py --json runs/bench_train.json
    .venv/bin/python benchmarks/train.py --preset base --device cuda --precision bf16 --batch-size 8 \
        --latent-size 32 --json runs/bench_train_gpu.json
    .venv/bin/python benchmarks/train.py --vae-training --vae-batch-size 8 --vae-frames 17 --latent-size 16 \
        --memories --skip-sampling --device cuda --precision bf16 --json runs/bench_vae_gpu.json  # VAE only
    bash benchmarks/gpu_rates.sh      # both recipe budgets' geometries on one GPU

Training: one optimizer step = flow-matching loss (train/world.py flow_loss) + the trainers' update
(train/common.py optimizer_step: backward, clip to norm 1, AdamW), on random latents of the given geometry;
steps/s and tokens/s (B * latent frames * tokens per latent frame, per second) over `--steps` timed steps
after `--warmup-steps` untimed ones. VAE training (`--vae-training`): the same with train/vae.py's loss on
random frames of `--vae-frames` frames at the pixel size the latent size decodes to. Sampling: seconds per
generated video frame of WorldPipeline.generate (VAE encode, `--sample-steps` Euler steps, decode) with
random weights.
Numbers from a shared or busy machine are noisy: rerun on an idle one before quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hybridmem.device import resolve_device
from hybridmem.geometry import look_at
from hybridmem.models.memory import MEMORY_KINDS, MemoryConfig
from hybridmem.models.vae import build_vae
from hybridmem.models.world import build_world_model
from hybridmem.sample.pipeline import WorldPipeline
from hybridmem.train import common
from hybridmem.train.config import VaeTrainConfig
from hybridmem.train.vae import vae_loss
from hybridmem.train.world import caption_input, flow_loss


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def camera_path(count: int) -> np.ndarray:
    return np.stack([look_at((0.25 * i, 0.0, 1.5), (0.25 * i + 1.0, 6.0, 1.0)) for i in range(count)])


def random_batch(args, channels: int, generator: torch.Generator) -> dict:
    """Random latents "B F C h w" and a straight camera path relative to the first target latent frame."""
    size, context, target = args.latent_size, args.context_latents, args.target_latents
    poses = camera_path(context + target)
    relative = np.linalg.inv(poses[context]) @ poses
    return {
        "context_latents": torch.randn(args.batch_size, context, channels, size, size, generator=generator),
        "target_latents": torch.randn(args.batch_size, target, channels, size, size, generator=generator),
        "cameras": torch.from_numpy(relative.astype(np.float32)).expand(args.batch_size, -1, -1, -1).clone(),
        "intrinsics": torch.tensor([[0.8, 0.8, 0.5, 0.5]]).expand(args.batch_size, -1).clone(),
    }


def memory_config(args, memory: str) -> MemoryConfig:
    return MemoryConfig(kind=memory, window=args.memory_window, top_k=args.memory_top_k)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def timed_steps(step, args, device: torch.device) -> float:
    """Seconds per call of `step` over args.steps calls, after args.warmup_steps untimed ones."""
    for _ in range(args.warmup_steps):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    return (time.perf_counter() - started) / args.steps


def bench_vae_training(args, device: torch.device) -> dict:
    torch.manual_seed(0)
    reset_peak_memory(device)
    vae = build_vae(args.vae_preset).to(device)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-4)
    scaler = common.grad_scaler(args.precision, device)
    config = VaeTrainConfig(data="", out="", preset=args.vae_preset, precision=args.precision)
    pixels = args.latent_size * vae.config.spatial_factor
    generator = torch.Generator().manual_seed(0)
    shape = (args.vae_batch_size, args.vae_frames, 3, pixels, pixels)
    frames = (torch.rand(shape, generator=generator) * 2 - 1).to(device)
    sample_generator = torch.Generator(device).manual_seed(0)

    def step() -> None:
        with common.autocast(args.precision, device):
            reconstruction, posterior = vae(frames, sample_generator)
        loss = vae_loss(reconstruction, posterior, frames, config)["loss"]
        common.optimizer_step(loss, vae, optimizer, scaler, grad_clip=1.0)

    seconds = timed_steps(step, args, device)
    return {
        "vae_preset": args.vae_preset,
        "parameters": common.parameter_count(vae),
        "batch_size": args.vae_batch_size,
        "frames": args.vae_frames,
        "resolution": pixels,
        "seconds_per_step": seconds,
        "steps_per_second": 1.0 / seconds,
        "peak_memory_gb": peak_memory_gb(device),
    }


def bench_training(args, memory: str, device: torch.device) -> dict:
    torch.manual_seed(0)
    reset_peak_memory(device)
    model = build_world_model(
        args.preset, memory=memory_config(args, memory), gradient_checkpointing=args.grad_checkpointing
    ).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = common.grad_scaler(args.precision, device)
    generator = torch.Generator().manual_seed(0)
    batch = random_batch(args, model.config.latent_channels, generator)
    batch = {key: value.to(device) for key, value in batch.items()}
    size = args.batch_size

    def step() -> None:
        t = torch.rand(size, generator=generator).to(device)
        noise = torch.randn(batch["target_latents"].shape, generator=generator).to(device)
        with common.autocast(args.precision, device):
            loss = flow_loss(model, batch, t, noise, caption_input(model, size, device))
        common.optimizer_step(loss, model, optimizer, scaler, grad_clip=1.0)

    seconds = timed_steps(step, args, device)
    _, rows, cols = model.config.patch_size
    tokens_per_latent_frame = (args.latent_size // rows) * (args.latent_size // cols)
    tokens = size * (args.context_latents + args.target_latents) * tokens_per_latent_frame
    return {
        "memory": memory,
        "parameters": common.parameter_count(model),
        "seconds_per_step": seconds,
        "steps_per_second": 1.0 / seconds,
        "tokens_per_step": tokens,
        "tokens_per_second": tokens / seconds,
        "peak_memory_gb": peak_memory_gb(device),
    }


def bench_sampling(args, memory: str, device: torch.device) -> dict:
    torch.manual_seed(0)
    world = build_world_model(args.preset, memory=memory_config(args, memory))
    vae = build_vae(args.vae_preset, latent_channels=world.config.latent_channels)
    pipeline = WorldPipeline(world, vae, device, steps=args.sample_steps)
    stride = vae.config.temporal_factor
    pixels = args.latent_size * vae.config.spatial_factor
    context_frames = (args.context_latents - 1) * stride + 1
    target_frames = (args.target_latents - 1) * stride + 1
    cameras = camera_path(context_frames + target_frames)
    frames = np.random.default_rng(0).integers(0, 256, (context_frames, pixels, pixels, 3), dtype=np.uint8)
    intrinsics = np.array([0.8 * pixels, 0.8 * pixels, pixels / 2, pixels / 2])

    def run() -> None:
        pipeline.generate(
            frames, cameras[:context_frames], cameras[context_frames:], intrinsics, seed=0, progress=False
        )

    run()  # warm-up
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "memory": memory,
        "frames": target_frames,
        "resolution": pixels,
        "sample_steps": args.sample_steps,
        "seconds": seconds,
        "seconds_per_frame": seconds / target_frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", required=True, help="output JSON file")
    parser.add_argument("--preset", default="small", help="world model preset")
    parser.add_argument("--vae-preset", default="small", help="VAE preset (sampling)")
    parser.add_argument(
        "--memories",
        nargs="*",
        default=list(MEMORY_KINDS),
        help="memory variants (none: skip the world model)",
    )
    parser.add_argument("--memory-window", type=int, default=MemoryConfig.window, help="local window")
    parser.add_argument("--memory-top-k", type=int, default=MemoryConfig.top_k, help="fov/hydra top-k")
    parser.add_argument("--vae-training", action="store_true", help="also time the VAE's training step")
    parser.add_argument("--vae-batch-size", type=int, default=2)
    parser.add_argument("--vae-frames", type=int, default=9, help="frames per VAE training window (4k+1)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--context-latents", type=int, default=3, help="context latent frames")
    parser.add_argument("--target-latents", type=int, default=3, help="target latent frames")
    parser.add_argument("--latent-size", type=int, default=8, help="latent height = width")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--sample-steps", type=int, default=10, help="Euler steps when sampling")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--skip-sampling", action="store_true")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    common.check_precision(args.precision, device)
    results = {
        "settings": vars(args),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "training": [],
        "sampling": [],
        "vae_training": None,
    }
    if args.vae_training:
        results["vae_training"] = bench_vae_training(args, device)
        print(json.dumps(results["vae_training"]), flush=True)
    for memory in args.memories:
        results["training"].append(bench_training(args, memory, device))
        print(json.dumps(results["training"][-1]), flush=True)
        if not args.skip_sampling:
            results["sampling"].append(bench_sampling(args, memory, device))
            print(json.dumps(results["sampling"][-1]), flush=True)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(results, indent=2))
    os.replace(temp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
