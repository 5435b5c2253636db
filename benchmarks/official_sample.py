"""`hybridmem sample --official` with the real Wan2.1-T2V-1.3B + HyDRA layout (random weights) on this CPU.

    .venv/bin/python benchmarks/official_sample.py --folder runs/official_random \
        --json benchmarks/results/official_sample.json

1. Writes (once; reused when present) a release folder in the official layout with random weights at the
   real sizes: hydra.pth (the 2057 M-parameter DiT, bf16), Wan2.1_VAE.pth (base width 96, official keys),
   models_t5_umt5-xxl-enc-bf16.pth (umT5-xxl's 5.68 B-parameter encoder, official keys, bf16: 11 GB) and a
   word-level tokenizer (the real google/umt5-xxl tokenizer is not on this machine; token ids are all that
   reaches the encoder). The key names come from the parity fixture's files, which the official code wrote:
   they do not depend on the width, so the real shapes are taken from the models they map to.
2. Writes an official-format example pair (832x480, 77 context frames, 77 target cameras, a caption) and
   runs `hybridmem sample --official FOLDER --video 1.mp4 --cameras cam1.json --size 160x96 --steps 1` in a
   subprocess under /usr/bin/time -v: wall time and peak resident memory, and the command's own timeline.
3. The same command at 832x480 (the default size): refused before any weight is loaded, naming the estimate,
   when the machine lacks the memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "official_hydra"


def _official_formats():
    spec = importlib.util.spec_from_file_location("official_formats", ROOT / "tests/data/official_formats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_random_release(folder: Path) -> None:
    import torch

    from hybridmem.models.world import WorldModel, dit_config
    from hybridmem.official.dit import to_official_state
    from hybridmem.official.text import UMT5_XXL_CONFIG, t5_key_map
    from hybridmem.official.vae import WAN21_VAE_CONFIG, build_autoencoder, vae_key_map

    sys.path.insert(0, str(ROOT / "tests"))
    from official.tiny_release import write_tokenizer

    wan = folder / "Wan2.1-T2V-1.3B"
    wan.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)

    def random_like(shape) -> torch.Tensor:
        return (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)

    if not (folder / "hydra.pth").exists():
        with torch.device("meta"):
            model = WorldModel(dit_config("hydra-official"))
        official = to_official_state(model.state_dict())
        torch.save({key: random_like(tensor.shape) for key, tensor in official.items()}, folder / "hydra.pth")
        print(f"wrote {folder / 'hydra.pth'}", flush=True)
    if not (wan / "Wan2.1_VAE.pth").exists():
        fixture_keys = [
            key.removeprefix("model.") for key in torch.load(FIXTURE / "vae.pth", weights_only=True)
        ]
        autoencoder = build_autoencoder(WAN21_VAE_CONFIG, device="meta")
        shapes = {name: tensor.shape for name, tensor in autoencoder.state_dict().items()}
        key_map = vae_key_map(fixture_keys)  # diffusers key -> official key
        state = {official: random_like(shapes[ours]).float() for ours, official in key_map.items()}
        torch.save(state, wan / "Wan2.1_VAE.pth")
        print(f"wrote {wan / 'Wan2.1_VAE.pth'}", flush=True)
    if not (wan / "models_t5_umt5-xxl-enc-bf16.pth").exists():
        from transformers import UMT5EncoderModel

        fixture_keys = list(torch.load(FIXTURE / "t5.pth", weights_only=True))
        layers = UMT5_XXL_CONFIG.num_layers
        keys = [key for key in fixture_keys if not key.startswith("blocks.")]
        block_keys = [key.split(".", 2)[2] for key in fixture_keys if key.startswith("blocks.0.")]
        keys += [f"blocks.{n}.{rest}" for n in range(layers) for rest in block_keys]
        with torch.device("meta"):
            encoder = UMT5EncoderModel(UMT5_XXL_CONFIG.to_transformers())
        shapes = {name: tensor.shape for name, tensor in encoder.state_dict().items()}
        key_map = t5_key_map(keys, layers)  # transformers key -> official key
        state = {}
        for ours, official in key_map.items():
            if official not in state:
                state[official] = random_like(shapes[ours])
        torch.save(state, wan / "models_t5_umt5-xxl-enc-bf16.pth")
        print(f"wrote {wan / 'models_t5_umt5-xxl-enc-bf16.pth'}", flush=True)
    if not (wan / "google" / "umt5-xxl").exists():
        write_tokenizer(wan / "google" / "umt5-xxl", vocab_size=UMT5_XXL_CONFIG.vocab)


def timed(command: list[str]) -> dict:
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    return {
        "command": " ".join(command),
        "exit": result.returncode,
        "wall_s": wall,
        "peak_rss_gib": int(peak.group(1)) / 2**20 if peak else None,
        "stdout_tail": result.stdout[-3000:],
        "stderr_tail": result.stderr[-1500:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", default="runs/official_random")
    parser.add_argument("--json", default=None)
    parser.add_argument("--size", default="160x96")
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    folder = Path(args.folder)
    write_random_release(folder)
    examples = folder / "examples"
    if not (examples / "1.mp4").exists():
        _official_formats().write_official_pair(
            examples, 1, frames_count=77, width=832, height=480, captions=["a man walks in the park ."]
        )
    outputs = folder.with_name(folder.name + "_out")  # --out may not lie inside the --official input
    outputs.mkdir(exist_ok=True)
    hybridmem = str(Path(sys.executable).parent / "hybridmem")
    common = [hybridmem, "sample", "--official", str(folder), "--video", str(examples / "1.mp4"),
              "--cameras", str(examples / "cam1.json")]  # fmt: skip
    small = timed([*common, "--size", args.size, "--steps", "1", "--precision", args.precision,
                   "--out", str(outputs / "small.mp4"), "--overwrite"])  # fmt: skip
    print(small["stdout_tail"][-1500:], small["stderr_tail"][-600:], sep="\n")
    print(f"{args.size}, 1 step, {args.precision}: exit {small['exit']}, {small['wall_s']:.0f} s, "
          f"peak RSS {small['peak_rss_gib']:.2f} GiB")  # fmt: skip
    paper = timed([*common, "--precision", "fp32", "--out", str(outputs / "paper.mp4"), "--overwrite"])
    print(f"832x480, fp32: exit {paper['exit']} in {paper['wall_s']:.0f} s: {paper['stderr_tail'][-400:]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"small": small, "paper_size_fp32": paper}, indent=1))


if __name__ == "__main__":
    main()
