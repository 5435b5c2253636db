"""Our default (official) DSC against the slow re-implementation of the official eval_dsc.py, on rendered
held-out clips.

    python benchmarks/dsc_official_check.py --data runs/world/test --clips 8
    python benchmarks/dsc_official_check.py --render 4 --width 224 --height 128 --out /tmp/dsc_world

The reference is the one in tests/eval/test_dsc_official.py (boxes from every subject pixel, transformers'
CLIPImageProcessor, a scalar-loop RoIAlign with torchvision's semantics). No CLIP weights can be downloaded,
so both run on one randomly initialised CLIP with ViT-B/16's input geometry (224 px input, 16 px patches,
a 14 x 14 grid, so large boxes take several samples per bin) and a narrow, shallow tower. Each clip is
scored as `hybridmem eval --boxes gt` scores a perfect prediction and a copy-last prediction; the script
prints each clip's |ours - reference| for DSC_ctx and DSC_GT and the largest over all clips.

Measured 2026-11 on the 2-core CPU: 4 held-out 128x128 clips (seed 13): largest difference 2.2e-9;
4 held-out 224x128 clips (`--render 4 --width 224 --height 128`, seed 7): 3.4e-9.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import tempfile
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
REFERENCE = TESTS / "eval" / "test_dsc_official.py"


def load_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_reference():
    return load_file("dsc_reference", REFERENCE)


def random_clip_folder(folder: Path) -> Path:
    """A random CLIP with ViT-B/16's input size and patch size (tests/tiny.py), as a transformers folder."""
    tiny = load_file("tiny", TESTS / "tiny.py")
    return tiny.save_tiny_clip(
        folder, image_size=224, patch_size=16, width=64, heads=4, vocab_size=32, seed=0
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="a split folder of rendered clips")
    parser.add_argument("--clips", type=int, help="first N clips of --data (default: all)")
    parser.add_argument("--render", type=int, help="render this many held-out test clips into --out first")
    parser.add_argument("--out", type=Path, help="dataset folder for --render")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.render:
        from hybridmem.world.config import WorldConfig
        from hybridmem.world.generate import generate

        world = WorldConfig(width=args.width, height=args.height, seed=args.seed)
        generate(world, args.out, num_clips=args.render, split="test", workers=1)
        args.data = args.out / "test"
    if args.data is None:
        parser.error("give --data or --render")

    from transformers import CLIPModel

    from hybridmem.data.hmworld import load_clip
    from hybridmem.eval.dsc import dsc_scores
    from hybridmem.eval.features import ClipEncoder
    from hybridmem.eval.protocol import subject_boxes

    reference = load_reference()
    with tempfile.TemporaryDirectory() as scratch:
        folder = random_clip_folder(Path(scratch) / "clip")
        encoder, model = ClipEncoder(folder), CLIPModel.from_pretrained(folder).eval()
        worst = 0.0
        for clip_folder in sorted(path for path in args.data.iterdir() if path.is_dir())[: args.clips]:
            clip = load_clip(clip_folder)
            context, truth = clip.frames[clip.context], clip.frames[clip.target]
            copy_last = np.repeat(context[-1:], truth.shape[0], axis=0)
            context_ids, target_ids = clip.instance_ids[clip.context], clip.instance_ids[clip.target]
            target_boxes, context_boxes = subject_boxes(clip, clip.target), subject_boxes(clip, clip.context)
            cells = []
            for name, predicted in (("perfect", truth), ("copy-last", copy_last)):
                ours = dsc_scores(
                    encoder, predicted, truth, context, target_boxes, target_boxes, context_boxes
                )
                try:
                    theirs = reference.reference_dsc(
                        model, context, predicted, truth, context_ids, target_ids
                    )
                except ValueError as error:  # the official script's behaviour without a visible subject
                    if "No valid subject boxes" not in str(error):
                        raise
                    cells.append(f"{name}: official raises ({error}); ours NaN: {math.isnan(ours['dsc_gt'])}")
                    continue
                gaps = [abs(ours[key] - theirs[key]) for key in ("dsc_ctx", "dsc_gt")]
                worst = max(worst, *gaps)
                cells.append(
                    f"{name}: DSC_ctx {ours['dsc_ctx']:.5f} (|diff| {gaps[0]:.1e}), "
                    f"DSC_GT {ours['dsc_gt']:.5f} (|diff| {gaps[1]:.1e})"
                )
            height, width = truth.shape[1:3]
            print(f"{clip_folder.name} {width}x{height}: " + "; ".join(cells))
        print(f"largest |ours - reference| over all clips: {worst:.2e}")


if __name__ == "__main__":
    main()
