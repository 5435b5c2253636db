"""Make a DiT parity fixture at any size by running the official HyDRA code, then check ours against it.

    git clone https://github.com/H-EmbodVis/HyDRA /path/HyDRA     # commit 3855dd4, the fixture's
    python benchmarks/official_fixture.py --official-repo /path/HyDRA --out /tmp/parity_a \
        --dim 96 --heads 3 --layers 3 --ffn-dim 160 --text-dim 24 --channels 8 --seed 7 --timestep 412.5
    hybridmem official check /tmp/parity_a

The public fixture (tests/fixtures/official_hydra) is one size: 64 wide, 2 heads, 2 layers, 4 channels,
timestep 952.38, seed 0. This script makes the DiT part of such a folder at other sizes, seeds, timesteps
and cameras, so a check that happened to depend on the public fixture's numbers would fail here. It builds
the official `WanModel` (diffsynth/models/wan_video_dit.py) with the HyDRA modules of infer_hydra.py's
build_pipeline at its hard-coded 40 x 30 x 52 token grid. Weights are random (norms 1 + 0.1 N, modulations
0.5 N, camera encoders 0.1 N, biases 0.1 N, other matrices N / sqrt(fan in)). The cameras are random
rotations and translations relative to the first target frame. Top-k picks are recorded from the
official torch.topk calls. The script writes dit_config.json, dit.pth, dit_inputs.safetensors and
dit_expected.safetensors, and prints the smallest margin between the 10th and 11th affinity: a margin
near 1e-5 would make a pick depend on rounding, so redraw with another seed.

Measured 2026-12-04 on the 2-core CPU (torch 2.13.0+cpu, official commit 3855dd4, ~30 s a fixture):

| size | seed, timestep | DiT output | block 0 | top-k picks | top-k values |
| --- | --- | --- | --- | --- | --- |
| dim 96, 3 heads, 3 layers, 8 channels | 7, 412.5 | 3.3e-6 | 2.4e-6 | identical (120 of 120) | 7.6e-6 |
| dim 120, 4 heads, 2 layers, 16 channels | 123, 37.25 | 3.8e-6 | 2.9e-6 | identical (80 of 80) | 1.1e-5 |
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

FRAMES, TOKEN_ROWS, TOKEN_COLUMNS = 40, 30, 52  # the official code's hard-coded token grid
CONTEXT_FRAMES = 20


def official_model(module, args):
    """The official WanModel with every block's HyDRA modules attached as build_pipeline attaches them."""
    kwargs = dict(
        has_image_input=False, patch_size=[1, 2, 2], in_dim=args.channels, dim=args.dim, ffn_dim=args.ffn_dim,
        freq_dim=256, text_dim=args.text_dim, out_dim=args.channels, num_heads=args.heads,
        num_layers=args.layers, eps=1e-6,
    )  # fmt: skip
    model = module.WanModel(**kwargs)
    for block in model.blocks:
        block.self_attn.tokenizer = module.MemoryTokenizer(args.dim)
        block.cam_encoder_con = torch.nn.Linear(12, args.dim)
        block.cam_encoder_tgt = torch.nn.Linear(12, args.dim)
        block.projector = torch.nn.Linear(args.dim, args.dim)
        block.self_attn.hydra = True
        block.self_attn.change_sparse = True
        block.self_attn.attention_type = "sparse_frame"
        block.self_attn.attn = module.DynamicRetrievalAttention(
            num_heads=args.heads, num_frames=FRAMES, frame_hw=TOKEN_ROWS * TOKEN_COLUMNS, top_k=10,
            frame_chunk_size=None,
        )  # fmt: skip
    return model.eval(), kwargs


def randomise(model, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight")):
                value = 1 + 0.1 * torch.randn(parameter.shape, generator=generator)
            elif name.endswith("modulation"):
                value = 0.5 * torch.randn(parameter.shape, generator=generator)
            elif "cam_encoder" in name and name.endswith("weight"):
                value = 0.1 * torch.randn(parameter.shape, generator=generator)
            elif name.endswith("bias"):
                value = 0.1 * torch.randn(parameter.shape, generator=generator)
            else:
                fan_in = parameter[0].numel() if parameter.ndim > 1 else parameter.numel()
                value = torch.randn(parameter.shape, generator=generator) / math.sqrt(fan_in)
            parameter.copy_(value)


def rotation(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: a 3x3 rotation about axis_angle's direction by its length (radians)."""
    angle = float(axis_angle.norm())
    x, y, z = (axis_angle / angle).tolist()
    cross = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return torch.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def camera_vectors(generator: torch.Generator) -> torch.Tensor:
    """ "1 F 12": row-major [R | t] of random cameras, the first target frame's the identity."""
    rows = []
    for frame in range(FRAMES):
        turn = rotation(0.3 * torch.randn(3, generator=generator) + 1e-3)
        shift = 2 * torch.randn(3, generator=generator)
        if frame == CONTEXT_FRAMES:
            turn, shift = torch.eye(3), torch.zeros(3)
        rows.append(torch.cat([turn, shift[:, None]], dim=1).reshape(12))
    return torch.stack(rows)[None].float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-repo", required=True, help="a checkout of H-EmbodVis/HyDRA")
    parser.add_argument("--out", required=True, help="fixture folder to write")
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--ffn-dim", type=int, default=160)
    parser.add_argument("--text-dim", type=int, default=24)
    parser.add_argument("--channels", type=int, default=8, help="latent channels (in = out)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timestep", type=float, default=412.5, help="official timestep, 1000 sigma")
    args = parser.parse_args()

    torch.set_num_threads(2)
    sys.path.insert(0, str(Path(args.official_repo).resolve()))
    from diffsynth.models import wan_video_dit as official  # the official code, run as it is

    generator = torch.Generator().manual_seed(args.seed)
    model, kwargs = official_model(official, args)
    randomise(model, generator)
    cameras = camera_vectors(generator)  # 1 F 12
    latents = torch.randn(1, args.channels, FRAMES, 2 * TOKEN_ROWS, 2 * TOKEN_COLUMNS, generator=generator)
    latents[:, :, :CONTEXT_FRAMES] += torch.randn(1, args.channels, CONTEXT_FRAMES, 1, 1, generator=generator)
    caption = torch.randn(1, 20, args.text_dim, generator=generator)
    timestep = torch.tensor([args.timestep], dtype=torch.float32)

    # the official top-k calls, recorded (one a block), with the 11th value for the margin
    picks, topk = [], torch.topk

    def recording_topk(scores, k, dim=-1, **options):
        values, indices = topk(scores, k, dim=dim, **options)
        picks.append((values, indices, topk(scores, k + 1, dim=dim).values[..., -1]))
        return values, indices

    block_outputs = []
    model.blocks[0].register_forward_hook(lambda module, inputs, output: block_outputs.append(output))
    torch.topk = recording_topk
    try:
        with torch.no_grad():
            output = model(
                latents, timestep, cameras[:, CONTEXT_FRAMES:], cameras[:, :CONTEXT_FRAMES], caption
            )
    finally:
        torch.topk = topk
    margin = min(float((values[..., -1] - eleventh).min()) for values, _, eleventh in picks)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(dict(model.state_dict()), out / "dit.pth")
    record = {
        "wan_model_kwargs": kwargs,
        "hydra": {"dynamic_retrieval_attention": {"top_k": 10, "window_size": 5},
                  "memory_tokenizer": {"kernel_size": [2, 2, 2]}},
        "seed": args.seed,
        "timestep": args.timestep,
        "made_by": "benchmarks/official_fixture.py",
    }  # fmt: skip
    (out / "dit_config.json").write_text(json.dumps(record, indent=1))
    inputs = {
        "x": latents, "timestep": timestep, "cam_emb_tgt": cameras[:, CONTEXT_FRAMES:].contiguous(),
        "cam_emb_con": cameras[:, :CONTEXT_FRAMES].contiguous(), "context": caption,
    }  # fmt: skip
    save_file(inputs, str(out / "dit_inputs.safetensors"))
    expected = {
        "output": output.contiguous(),
        "block0_output": block_outputs[0].contiguous(),
        "topk_indices": torch.stack([indices for _, indices, _ in picks]),
        "topk_values": torch.stack([values for values, _, _ in picks]),
    }
    save_file(expected, str(out / "dit_expected.safetensors"))
    print(f"wrote {out}: output std {float(output.std()):.4f}, smallest top-k margin {margin:.2e}")
    print(f"now: hybridmem official check {out}")


if __name__ == "__main__":
    main()
