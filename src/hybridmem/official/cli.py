"""`hybridmem official`: the paper's own model (Wan2.1-T2V-1.3B + HyDRA) through hybridmem.

    hybridmem official check tests/fixtures/official_hydra     # parity with the official code, per part

`check DIR` recomputes, through the code sample/train/eval use, what the official HyDRA code computed on
the tiny random weights and inputs in DIR (the layout of tests/fixtures/official_hydra, whose README
documents every tensor) and prints the largest difference per part (DiT output, block 0, top-k picks, the
sampler, the VAE, the text encoder, the cameras). Exit 0 when every part present is within tolerance, 1 when
one is not (named), 2 when DIR is not such a folder. It is also how to verify an install: it needs no GPU
and nothing is downloaded.
"""

from __future__ import annotations

import argparse


def check_command(args: argparse.Namespace) -> int:
    import torch

    from hybridmem.official.check import check_folder, format_report, report_passed

    # The fixture was computed in float32; TF32 matmuls (~1e-3 relative) could change a top-k pick.
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    report = check_folder(args.folder)
    print(format_report(report))
    return 0 if report_passed(report) else 1


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "official",
        help="the paper's own model (Wan2.1 + HyDRA): parity check against the official code",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="official_command", metavar="{check}", required=True)
    check = commands.add_parser(
        "check", help="our code against the official code's outputs in DIR; max |difference| per part"
    )
    check.add_argument(
        "folder", metavar="DIR", help="a folder in the layout of tests/fixtures/official_hydra"
    )
    check.set_defaults(func=check_command)
