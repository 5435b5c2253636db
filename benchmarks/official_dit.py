"""The official HyDRA DiT (Wan2.1-T2V-1.3B + HyDRA, random weights) on this machine, and the paper's size.

    .venv/bin/python benchmarks/official_dit.py --json benchmarks/results/official_dit.json

1. Measured: one forward of the `hydra-official` preset (2057M parameters, random weights) at 160x96 video
   (20x12 latents, 10x6 tokens a latent frame), 17 + 17 frames (5 + 5 latent frames), 512 caption tokens,
   batch 1, in float32 and in bfloat16; each dtype in its own subprocess: wall time of the forward (median of
   --repeats after one warm-up), the process's peak resident memory (ru_maxrss, weights included) and the
   weights' bytes. FLOPs of that forward by torch.utils.flop_counter.
2. Estimated: the paper's size, 832x480, 77 + 77 frames (40 latent frames of 30x52 tokens), 512 caption
   tokens: FLOPs of one DiT forward counted from the architecture (every matmul; attention over each query
   frame's 5 window frames and 10 retrieved slices), of a 50-step CFG sampling (100 forwards), and the
   memory of inference in bf16 (weights + the largest live activations of one block).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

PRESET = "hydra-official"


def forward_flops(tokens_per_frame: int, frames: int, caption_tokens: int, config) -> float:
    """FLOPs (2 per multiply-add) of one official DiT forward over `frames` latent frames (context ++
    target) of `tokens_per_frame` tokens, from the architecture."""
    dim, ffn, layers = config.dim, config.ffn_dim, config.num_layers
    memory = config.memory
    tokens = tokens_per_frame * frames
    kernel_f, kernel_h, kernel_w = memory.tokenizer_kernel
    memory_tokens = tokens // (kernel_f * kernel_h * kernel_w)
    slice_tokens = tokens_per_frame // (kernel_h * kernel_w)
    slices = frames // kernel_f
    window = min(memory.window, frames)
    retrieved = min(memory.top_k, max(slices - 1, 0))
    keys_per_query = window * tokens_per_frame + retrieved * slice_tokens
    per_block = 0.0
    per_block += 2 * tokens * dim * dim * 5  # self-attn q, k, v, o and the camera projector
    per_block += 2 * tokens * dim * dim  # q again without RoPE for the affinity (hydra, before RoPE)
    per_block += 2 * memory_tokens * dim * dim * (kernel_f * kernel_h * kernel_w)  # memory tokenizer conv
    per_block += 2 * memory_tokens * dim * dim * 2  # memory keys and values
    per_block += 2 * 2 * tokens * keys_per_query * dim  # q k^T and attention @ v
    per_block += 2 * tokens * dim * dim * 2 + 2 * caption_tokens * dim * dim * 2  # cross-attn projections
    per_block += 2 * 2 * tokens * caption_tokens * dim  # cross-attention
    per_block += 2 * tokens * dim * ffn * 2  # feed-forward
    patch = 2 * tokens * dim * config.latent_channels * 4 * 2  # patch embedding and head
    return layers * per_block + patch


def inference_memory_bytes(tokens: int, caption_tokens: int, config, bytes_per_value: int = 2) -> dict:
    """Weights and the largest live activations of one block in inference (no autograd), bf16."""
    import torch

    from hybridmem.models.world import WorldModel

    with torch.device("meta"):
        model = WorldModel(config)
    parameters = sum(p.numel() for p in model.parameters())
    dim, ffn = config.dim, config.ffn_dim
    # the residual stream, the block input, q, k, v (rope'd and the unrotated q), the attention output and
    # the feed-forward hidden layer; chunked attention keeps its score matrices small (query_chunk frames)
    activations = tokens * (7 * dim + ffn) * bytes_per_value
    return {
        "parameters": parameters,
        "weights_bytes": parameters * bytes_per_value,
        "activation_bytes": activations,
        "total_bytes": parameters * bytes_per_value + activations,
    }


def measure(dtype_name: str, repeats: int) -> dict:
    """Runs in a subprocess: build the model with random weights, time forwards, read the peak RSS."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hybridmem.models.world import WorldModel, dit_config

    torch.manual_seed(0)
    dtype = getattr(torch, dtype_name)
    config = dit_config(PRESET)
    with torch.device("meta"):
        model = WorldModel(config).to(dtype)
    model = model.to_empty(device="cpu")  # allocated in `dtype`: the peak is what inference needs
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.02)
    model = model.eval()
    weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    generator = torch.Generator().manual_seed(0)
    context = torch.randn(1, 5, 16, 12, 20, generator=generator).to(dtype)
    target = torch.randn(1, 5, 16, 12, 20, generator=generator).to(dtype)
    cameras = torch.eye(4).repeat(1, 10, 1, 1)
    caption = torch.randn(1, 512, 4096, generator=generator).to(dtype)
    t = torch.tensor([0.9])
    times = []
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(context, target, t, cameras, caption=caption)  # warm-up, counted
        for _ in range(repeats):
            start = time.perf_counter()
            output = model(context, target, t, cameras, caption=caption)
            times.append(time.perf_counter() - start)
    assert torch.isfinite(output.float()).all()
    return {
        "dtype": dtype_name,
        "forward_s": statistics.median(times),
        "forward_s_all": times,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "weights_gib": weights_bytes / 2**30,
        "gflop": counter.get_total_flops() / 1e9,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.repeats)))
        return

    from hybridmem.models.world import dit_config

    config = dit_config(PRESET)
    measured = []
    for dtype_name in args.dtypes.split(","):
        result = subprocess.run(
            [sys.executable, __file__, "--child", dtype_name, "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(result.stdout.strip().splitlines()[-1])
        measured.append(row)
        print(
            f"{dtype_name:>9}: forward {row['forward_s']:.2f} s (median of {args.repeats}), peak RSS "
            f"{row['peak_rss_gib']:.2f} GiB (weights {row['weights_gib']:.2f} GiB), {row['gflop']:.0f} GFLOP"
        )
    small = forward_flops(6 * 10, 10, 512, config)
    paper_forward = forward_flops(30 * 52, 40, 512, config)
    memory = inference_memory_bytes(30 * 52 * 40, 512, config)
    estimate = {
        "size": "832x480, 77 + 77 frames (40 latent frames x 30x52 tokens), 512 caption tokens",
        "forward_tflop": paper_forward / 1e12,
        "sampling_50_steps_cfg_tflop": 100 * paper_forward / 1e12,
        "counted_small_gflop": small / 1e9,
        **{key: value for key, value in memory.items()},
    }
    print(
        f"paper size: {estimate['forward_tflop']:.1f} TFLOP a forward, "
        f"{estimate['sampling_50_steps_cfg_tflop']:.0f} TFLOP for 50 steps with CFG; bf16 inference "
        f"memory {memory['total_bytes'] / 2**30:.1f} GiB (weights {memory['weights_bytes'] / 2**30:.1f}, "
        f"activations of one block {memory['activation_bytes'] / 2**30:.1f}); the architecture count gives "
        f"{small / 1e9:.0f} GFLOP at 160x96 (FlopCounterMode: {measured[0]['gflop']:.0f})"
    )
    record = {
        "preset": PRESET,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "measured_160x96_17+17": measured,
        "estimate_832x480_77+77": estimate,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()
