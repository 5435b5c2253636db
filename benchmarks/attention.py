"""Time one attention layer (q/k/v projections + one memory) for every memory variant.

    .venv/bin/python benchmarks/attention.py --json runs/bench/attention.json            # full grid
    .venv/bin/python benchmarks/attention.py --json runs/bench/attention_quick.json --quick
    .venv/bin/python benchmarks/attention.py --json runs/bench/attention_paired.json --skip-grid  # ratio only

Variants: full, window, fov, hydra (gathered fast path) and hydra-loop (per-frame loop reference), at
16/40/80/160 latent frames of 64 (8x8) and 256 (16x16) tokens, dim 256, 4 heads, batch 1, half the frames
context; MemoryConfig defaults otherwise (window 5, top-K 10, kernel (2, 2, 2), affinity "mean"), fov on
a camera panning back and forth, query chunk 8 latent frames. Each row runs in its own subprocess (a fresh
heap and high-water mark per row, an address-space limit), and:
- peak_mb is the peak of live tensor bytes during one forward+backward, from torch.profiler's memory
  events (see `peak_tensor_bytes`); rss_mb is the growth of the process's peak resident memory
  (resource.getrusage ru_maxrss) over the warm-up forward and forward+backward, allocator slack, thread
  pools and profiler included: coarser, reported beside it;
- fwd_ms / fwdbwd_ms are medians over up to `--repeats` runs (fewer past --row-budget-s) after one
  warm-up each (forward under no_grad, forward+backward with a sum loss into the input and every parameter);
- gflop is counted by torch.utils.flop_counter.FlopCounterMode over the warm-up forward (gflop_fwdbwd: the
  warm-up forward+backward, recomputation included). FlopCounterMode has no formula for the CPU
  flash-attention kernel, so this script registers the standard SDPA formulas for it.
Rows whose estimated forward+backward time exceeds --max-seconds are reported as skipped with the reason.

Then, per token count, the speed goal in paired runs (`run_pair`, one subprocess per token count): at the
largest frame count, hydra and hydra-loop with the same weights and input, forward+backward, `--paired`
times each, alternating which goes first; the ratio reported is the median of the per-pair ratios
(loop / hydra), so a shared machine's load, which drifts over minutes, weighs on both sides of each pair.
Each repeat also times the floor: the attention alone, one SDPA call over all query frames on keys and values
already gathered (window frames + top-K slices), forward+backward; loop / floor bounds the ratio any kernel
doing the same attention could reach (it still has the projections, tokenizer and retrieval to do).
The same run checks that the two agree (largest output and input-gradient difference), and reports the
process CPU time ratio beside the wall-clock one (CPU time counts threads' busy-waiting too, so it is a
second view, not a better one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hybridmem.models.memory.config import MEMORY_KINDS

# the per-frame loop oracle (tests/hydra_reference.py) lives with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

VARIANTS = (*MEMORY_KINDS, "hydra-loop")
FRAMES = (16, 40, 80, 160)
TOKENS = (64, 256)
QUICK_FRAMES = (16, 160)
QUICK_TOKENS = (64,)
ASSUMED_GFLOPS = 40.0  # throughput assumed when estimating a row's time to decide whether to skip it


def estimated_attention_gflop(variant: str, frames: int, tokens: int, dim: int, args) -> float:
    """Forward attention GFLOP (4 N L D), the term that decides whether a row fits the time budget."""
    if variant == "full":
        keys = frames * tokens
    elif variant == "window":
        keys = min(args.window, frames) * tokens
    elif variant == "fov":
        keys = (min(args.window, frames) + args.top_k) * tokens
    else:
        kernel = args.tokenizer_kernel
        keys = min(args.window, frames) * tokens + args.top_k * tokens // (kernel[1] * kernel[2])
    return 4.0 * frames * tokens * keys * dim / 1e9


# ------------------------------------------------------------------------------------ one row (child)


def build_handle(dim: int, heads: int):
    from einops import rearrange
    from torch import nn

    class Handle(nn.Module):
        """The block's attention, reduced to what a memory needs: linear q/k/v, no rope, no norm."""

        def __init__(self):
            super().__init__()
            self.num_heads, self.head_dim = heads, dim // heads
            self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))

        def split(self, t):
            return rearrange(t, "b m (a d) -> b a m d", a=heads)

        def project_kv(self, tokens, positions):
            return self.split(self.k(tokens)), self.split(self.v(tokens))

    return Handle()


def memory_config(variant: str, args):
    from hybridmem.models.memory import MemoryConfig

    return MemoryConfig(
        kind="hydra" if variant == "hydra-loop" else variant,
        window=args.window,
        top_k=args.top_k,
        tokenizer_kernel=tuple(args.tokenizer_kernel),
        query_chunk=args.query_chunk,
    )


def as_layer(memory, handle):
    """One attention layer: project x to q, k, v with `handle`, attend through `memory`."""
    from einops import rearrange

    def layer(x, ctx):
        tokens = rearrange(x, "b f h w d -> b (f h w) d")
        q = handle.split(handle.q(tokens))
        k, v = handle.project_kv(tokens, None)
        return memory(q, k, v, x, handle, ctx)

    return layer, list(handle.parameters()) + list(memory.parameters())


def build_layer(variant: str, dim: int, heads: int, args):
    from hybridmem.models.memory.base import build_memory
    from hydra_reference import HydraLoopReference

    config = memory_config(variant, args)
    memory = build_memory(config, dim)
    if variant == "hydra-loop":
        memory = HydraLoopReference(config.validate(), dim)
    return as_layer(memory, build_handle(dim, heads))


def orbit_cameras(frames: int):
    """A camera panning back and forth (two sweeps), so later frames look again at what earlier ones saw."""
    import numpy as np
    import torch

    from hybridmem.geometry import look_at

    angles = 1.2 * np.sin(np.linspace(0, 2 * np.pi, frames))
    poses = [look_at([0, 0, 1.5], [np.cos(a), np.sin(a), 1.5]) for a in angles]
    cameras = torch.tensor(np.stack(poses), dtype=torch.float32)[None]  # 1 F 4 4
    return cameras, torch.tensor([[0.5, 0.5, 0.5, 0.5]])


def register_cpu_sdpa_flops():
    """FlopCounterMode knows the CUDA SDPA kernels, not the CPU flash kernel: give it the same formulas."""
    import torch
    from torch.utils import flop_counter

    forward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    backward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward_op in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(forward_op)
    def _forward(query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query, key, value)

    @flop_counter.register_flop_formula(backward_op)
    def _backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def peak_tensor_bytes(profiler) -> int:
    """Peak of live tensor bytes over a profiled run: running sum of each op's net allocation, in order.

    Nets allocations and frees inside one op, so a temporary an op frees before returning is not seen;
    everything kept between ops (activations, gathered keys, gradients) is.
    """
    running = peak = 0
    for event in sorted(profiler.events(), key=lambda event: event.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def timed(function, repeats: int, budget_s: float) -> float:
    """Median milliseconds of `function` over up to `repeats` runs, stopping early past `budget_s`."""
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        times.append((time.perf_counter() - begin) * 1e3)
        if time.perf_counter() - start > budget_s:
            break
    return statistics.median(times)


def run_row(spec: dict) -> dict:
    import torch
    from torch.profiler import profile
    from torch.utils.flop_counter import FlopCounterMode

    from hybridmem.models.memory.base import SequenceInfo

    args = argparse.Namespace(**spec["args"])
    # a row that needs more fails alone (reported as skipped) instead of starving a shared machine
    limit = int(args.max_memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    variant, frames, tokens, dim = spec["variant"], spec["frames"], spec["tokens_per_frame"], spec["dim"]
    side = math.isqrt(tokens)
    torch.manual_seed(0)
    register_cpu_sdpa_flops()
    layer, parameters = build_layer(variant, dim, args.heads, args)
    cameras, intrinsics = orbit_cameras(frames)
    ctx = SequenceInfo(
        grid=(frames, side, side), context_frames=frames // 2, cameras=cameras, intrinsics=intrinsics
    )
    x = torch.randn(1, frames, side, side, dim, generator=torch.Generator().manual_seed(1))
    x_grad = x.clone().requires_grad_()

    def forward():
        with torch.no_grad():
            layer(x, ctx)

    def forward_backward():
        for parameter in parameters:
            parameter.grad = None
        x_grad.grad = None
        layer(x_grad, ctx).sum().backward()

    # 1. warm-ups, which also count FLOPs and measure memory
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with FlopCounterMode(display=False) as counter:
        forward()
    gflop = counter.get_total_flops() / 1e9
    with FlopCounterMode(display=False) as counter, profile(profile_memory=True) as profiler:
        forward_backward()
    gflop_fwdbwd = counter.get_total_flops() / 1e9
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024
    peak_mb = peak_tensor_bytes(profiler) / 2**20
    # 2. time
    fwd_ms = timed(forward, args.repeats, args.row_budget_s)
    fwdbwd_ms = timed(forward_backward, args.repeats, args.row_budget_s)
    return {
        "variant": variant,
        "frames": frames,
        "tokens_per_frame": tokens,
        "dim": dim,
        "fwd_ms": round(fwd_ms, 2),
        "fwdbwd_ms": round(fwdbwd_ms, 2),
        "peak_mb": round(peak_mb, 1),
        "rss_mb": round(rss_mb, 1),
        "gflop": round(gflop, 3),
        "gflop_fwdbwd": round(gflop_fwdbwd, 3),
    }


def run_pair(spec: dict) -> dict:
    """hydra (gathered kernel) against hydra-loop (per-frame loop), forward+backward, in paired runs.

    Both layers share one handle and one set of memory weights, read the same input, and alternate which
    runs first in each repeat, so load from other processes on a shared machine weighs on both sides of a
    pair alike. Returns each pair's times and ratio (loop / kernel), and the largest difference between
    the two layers' outputs and input gradients (they must agree: same math, different execution).
    """
    import torch

    from hybridmem.models.memory.base import SequenceInfo, build_memory
    from hydra_reference import HydraLoopReference

    args = argparse.Namespace(**spec["args"])
    limit = int(args.max_memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    frames, tokens, dim = spec["frames"], spec["tokens_per_frame"], spec["dim"]
    side = math.isqrt(tokens)
    torch.manual_seed(0)
    config = memory_config("hydra", args)
    kernel_memory = build_memory(config, dim)
    loop_memory = HydraLoopReference(config.validate(), dim)
    loop_memory.load_state_dict(kernel_memory.state_dict())
    handle = build_handle(dim, args.heads)
    layers = {"hydra": as_layer(kernel_memory, handle), "hydra-loop": as_layer(loop_memory, handle)}
    ctx = SequenceInfo(grid=(frames, side, side), context_frames=frames // 2)
    x = torch.randn(1, frames, side, side, dim, generator=torch.Generator().manual_seed(1))

    def forward_backward(variant):
        layer, parameters = layers[variant]
        for parameter in parameters:
            parameter.grad = None
        inputs = x.clone().requires_grad_()
        out = layer(inputs, ctx)
        out.sum().backward()
        return out.detach(), inputs.grad

    # The floor: the attention alone, as one SDPA call over all query frames with every frame's keys and
    # values already gathered (window frames + top-K memory slices), forward+backward. Any implementation of
    # this layer does at least this work plus the projections, the tokenizer and the retrieval, so
    # loop / floor bounds the ratio any kernel can reach against the loop.
    heads, head_dim = args.heads, dim // args.heads
    tokens_per_slice = tokens // (config.tokenizer_kernel[1] * config.tokenizer_kernel[2])
    keys_per_frame = config.window * tokens + config.top_k * tokens_per_slice
    floor_generator = torch.Generator().manual_seed(2)
    floor_q, floor_k, floor_v = (
        torch.randn(frames, heads, length, head_dim, generator=floor_generator)
        for length in (tokens, keys_per_frame, keys_per_frame)
    )

    def floor_backward():
        leaves = [t.clone().requires_grad_() for t in (floor_q, floor_k, floor_v)]
        torch.nn.functional.scaled_dot_product_attention(*leaves).sum().backward()

    def run(variant):
        return floor_backward() if variant == "floor" else forward_backward(variant)

    # 1. warm-up, which also checks that both layers compute the same thing
    (kernel_out, kernel_grad), (loop_out, loop_grad) = (forward_backward(v) for v in ("hydra", "hydra-loop"))
    floor_backward()
    out_diff = (kernel_out - loop_out).abs().max().item()
    grad_diff = (kernel_grad - loop_grad).abs().max().item()
    # 2. paired runs, alternating the order
    pairs = []
    for repeat in range(args.paired):
        order = ("hydra", "hydra-loop", "floor")
        order = order[repeat % 3 :] + order[: repeat % 3]  # each goes first, second and third in turn
        times, cpu_times = {}, {}
        for variant in order:
            begin, cpu_begin = time.perf_counter(), time.process_time()
            run(variant)
            times[variant] = (time.perf_counter() - begin) * 1e3
            cpu_times[variant] = (time.process_time() - cpu_begin) * 1e3
        pairs.append(
            {
                "hydra_ms": round(times["hydra"], 1),
                "loop_ms": round(times["hydra-loop"], 1),
                "ratio": round(times["hydra-loop"] / times["hydra"], 3),
                "hydra_cpu_ms": round(cpu_times["hydra"], 1),
                "loop_cpu_ms": round(cpu_times["hydra-loop"], 1),
                "cpu_ratio": round(cpu_times["hydra-loop"] / cpu_times["hydra"], 3),
                "floor_ms": round(times["floor"], 1),
                "loop_over_floor": round(times["hydra-loop"] / times["floor"], 3),
            }
        )
    return {
        "frames": frames,
        "tokens_per_frame": tokens,
        "dim": dim,
        "pairs": pairs,
        "median_ratio": round(statistics.median(p["ratio"] for p in pairs), 3),
        "median_hydra_ms": round(statistics.median(p["hydra_ms"] for p in pairs), 1),
        "median_loop_ms": round(statistics.median(p["loop_ms"] for p in pairs), 1),
        "median_cpu_ratio": round(statistics.median(p["cpu_ratio"] for p in pairs), 3),
        "keys_per_frame": keys_per_frame,
        "median_floor_ms": round(statistics.median(p["floor_ms"] for p in pairs), 1),
        "median_loop_over_floor": round(statistics.median(p["loop_over_floor"] for p in pairs), 3),
        "threads": torch.get_num_threads(),
        "max_abs_diff_out": out_diff,
        "max_abs_diff_input_grad": grad_diff,
    }


# ----------------------------------------------------------------------------------------- driver


def summarise(rows: list[dict], frames: int) -> list[str]:
    """The goals at `frames` latent frames, per token count: speedups, FLOP ratio, memory ratio."""
    lines = []
    by_key = {(r["variant"], r["frames"], r["tokens_per_frame"]): r for r in rows if "fwd_ms" in r}
    for tokens in sorted({r["tokens_per_frame"] for r in rows}):
        hydra, full = by_key.get(("hydra", frames, tokens)), by_key.get(("full", frames, tokens))
        loop = by_key.get(("hydra-loop", frames, tokens))
        if hydra is None:
            continue
        parts = [f"{frames} frames x {tokens} tokens:"]
        if full is not None:
            flop_ratio = full["gflop"] / hydra["gflop"]
            flop_ratio_bwd = full["gflop_fwdbwd"] / hydra["gflop_fwdbwd"]
            parts.append(
                f"hydra vs full fwd {full['fwd_ms'] / hydra['fwd_ms']:.1f}x (FLOP ratio {flop_ratio:.1f}x), "
                f"fwd+bwd {full['fwdbwd_ms'] / hydra['fwdbwd_ms']:.1f}x (FLOP ratio {flop_ratio_bwd:.1f}x), "
                f"peak memory {hydra['peak_mb'] / max(full['peak_mb'], 1e-3):.2f}x full's;"
            )
        if loop is not None:
            parts.append(
                f"hydra vs loop fwd {loop['fwd_ms'] / hydra['fwd_ms']:.1f}x, "
                f"fwd+bwd {loop['fwdbwd_ms'] / hydra['fwdbwd_ms']:.1f}x"
            )
        lines.append(" ".join(parts))
    return lines


def write_json_atomic(path: str, payload: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(payload, stream, indent=2)
    os.chmod(temporary, 0o644)  # mkstemp creates 0600
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write the rows here (atomically)")
    parser.add_argument("--quick", action="store_true", help="16 and 160 frames of 64 tokens, 5 s a row")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--tokenizer-kernel", type=int, nargs=3, default=[2, 2, 2])
    parser.add_argument("--query-chunk", type=int, default=8, help="latent frames per attention chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median reported)")
    parser.add_argument("--row-budget-s", type=float, default=20.0, help="stop repeating a row past this")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=400.0,
        help=f"skip rows whose estimated fwd+bwd time (at {ASSUMED_GFLOPS:.0f} GFLOP/s) exceeds this",
    )
    parser.add_argument(
        "--max-memory-gb", type=float, default=12.0, help="address-space limit of each row's process"
    )
    parser.add_argument(
        "--paired",
        type=int,
        default=5,
        help="paired hydra/hydra-loop fwd+bwd runs at the largest frame count, per token count (0: none)",
    )
    parser.add_argument("--skip-grid", action="store_true", help="run only the paired comparison")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row, print its JSON
    parser.add_argument("--pair", help=argparse.SUPPRESS)  # internal: run one paired comparison
    args = parser.parse_args(argv)
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))))
        return 0
    if args.pair:
        print(json.dumps(run_pair(json.loads(args.pair))))
        return 0
    if args.quick:
        args.row_budget_s = min(args.row_budget_s, 5.0)
        args.max_seconds = min(args.max_seconds, 30.0)
    frames_list = QUICK_FRAMES if args.quick else FRAMES
    tokens_list = QUICK_TOKENS if args.quick else TOKENS
    row_args = {
        key: getattr(args, key)
        for key in (
            "heads",
            "window",
            "top_k",
            "tokenizer_kernel",
            "query_chunk",
            "repeats",
            "row_budget_s",
            "max_memory_gb",
            "paired",
        )
    }
    rows = []
    for tokens in tokens_list if not args.skip_grid else ():
        for frames in frames_list:
            for variant in args.variants:
                row = {"variant": variant, "frames": frames, "tokens_per_frame": tokens, "dim": args.dim}
                estimate_s = 3.5 * estimated_attention_gflop(variant, frames, tokens, args.dim, args)
                estimate_s /= ASSUMED_GFLOPS
                if estimate_s > args.max_seconds:
                    row["skipped"] = (
                        f"estimated fwd+bwd {estimate_s:.0f} s > --max-seconds {args.max_seconds:.0f}"
                    )
                else:
                    spec = dict(row, args=row_args)
                    result = subprocess.run(
                        [sys.executable, os.path.abspath(__file__), "--row", json.dumps(spec)],
                        capture_output=True,
                        text=True,
                    )
                    if result.returncode != 0:
                        row["skipped"] = f"failed (exit {result.returncode}): {result.stderr.strip()[-400:]}"
                    else:
                        row = json.loads(result.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = summarise(rows, max(frames_list))
    pairs = []
    for tokens in tokens_list if args.paired > 0 else ():
        spec = {"frames": max(frames_list), "tokens_per_frame": tokens, "dim": args.dim, "args": row_args}
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--pair", json.dumps(spec)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pair = dict(spec, failed=f"exit {result.returncode}: {result.stderr.strip()[-400:]}")
            pair.pop("args")
        else:
            pair = json.loads(result.stdout.strip().splitlines()[-1])
            summary.append(
                f"{pair['frames']} frames x {tokens} tokens, paired fwd+bwd: hydra vs loop "
                f"{pair['median_ratio']:.2f}x (median of {len(pair['pairs'])} paired ratios; hydra "
                f"{pair['median_hydra_ms']:.0f} ms, loop {pair['median_loop_ms']:.0f} ms; process CPU time "
                f"ratio {pair['median_cpu_ratio']:.2f}x over {pair['threads']} threads; max |difference| "
                f"output {pair['max_abs_diff_out']:.1e}, "
                f"input gradient {pair['max_abs_diff_input_grad']:.1e}); the attention alone on "
                f"pre-gathered keys ({pair['keys_per_frame']} a query frame) takes "
                f"{pair['median_floor_ms']:.0f} ms, so no kernel can beat the loop by more than "
                f"{pair['median_loop_over_floor']:.2f}x"
            )
        pairs.append(pair)
        print(json.dumps(pair), flush=True)
    for line in summary:
        print(line)
    if args.json:
        import torch

        write_json_atomic(
            args.json,
            {
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "cpus": os.cpu_count(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                },
                "settings": {k: v for k, v in vars(args).items() if k not in ("json", "row")},
                "peak_mb": "peak live tensor bytes over a forward+backward (torch.profiler memory events)",
                "rss_mb": "growth of ru_maxrss over the warm-up forward and forward+backward",
                "rows": rows,
                "pairs": pairs,
                "summary": summary,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
