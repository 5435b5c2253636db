"""The `hybridmem` command line.

Each top-level command lives in its own module that exposes `register(subparsers)`; the module adds its
parser(s) and sets `func` to a function taking the parsed arguments. Modules import their heavy
dependencies (torch, the renderer) inside those functions, so `hybridmem --help` stays fast.

Every numeric flag is checked by hybridmem.validation (range, finiteness) while parsing, and every command
that writes a run folder locks it and records its inputs through hybridmem.runlock. Results already in an
output folder are never replaced without `--overwrite`.

    hybridmem world generate --num-clips 8 --out runs/world
    hybridmem world preview runs/world/train/000000 --out preview.png
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hybridmem import __version__, validation
from hybridmem.errors import HybridmemError

# command name -> module with `register(subparsers)`; order is the order shown in --help.
COMMAND_MODULES = [
    "hybridmem.world.cli",
    "hybridmem.data.encode",
    "hybridmem.train.cli",
    "hybridmem.sample.cli",
    "hybridmem.eval.cli",
    "hybridmem.recipe.cli",
    "hybridmem.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridmem", description="Hybrid memory for dynamic video world models."
    )
    parser.add_argument("--version", action="version", version=f"hybridmem {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    # one validation layer for every numeric flag of every command (ranges, finiteness): hybridmem.validation
    validation.install(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except HybridmemError as error:
        print(f"hybridmem: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hybridmem: interrupted; finished work is kept, rerun the command to resume", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
