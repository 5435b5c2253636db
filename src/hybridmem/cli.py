"""The `hybridmem` command line.

This module is the top of the package: it imports every command, and nothing imports it (the layers are in
docs/ARCHITECTURE.md). Each top-level command lives in its own module that exposes `register(subparsers)`;
the module adds its parser(s) and sets `func` to a function taking the parsed arguments. Modules import
their heavy dependencies (torch, the renderer) inside those functions, so `hybridmem --help` stays fast.

Every numeric flag is checked against hybridmem.validation's range table while parsing, and every command
that writes a run folder locks it and records its inputs through hybridmem.runlock. Results already in an
output folder are never replaced without `--overwrite`, every file is written through hybridmem.publish,
and no command writes into one of its inputs (`--out`/`--to` equal to or inside an input path is refused).

Exit status: 0 done; 2 the command line or an input file is wrong (a HybridmemError, named in one line);
1 the machine failed the command: a missing tool (ffmpeg) or memory (MachineError, out of memory),
no space, a read-only or unwritable folder, a name too long, a path
through a file, a writer that failed (named in one line with the path; fix the machine and rerun the same
command: finished work is kept); 130 interrupted. Any other exception is a bug and keeps its traceback.

    hybridmem world generate --num-clips 8 --out runs/world
    hybridmem world preview runs/world/train/000000 --out preview.png
"""

from __future__ import annotations

import argparse
import errno
import sys

from hybridmem import __version__, demo
from hybridmem.errors import HybridmemError, MachineError
from hybridmem.eval import cli as eval_cli
from hybridmem.official import cli as official_cli
from hybridmem.official import encode
from hybridmem.recipe import cli as recipe_cli
from hybridmem.sample import cli as sample_cli
from hybridmem.train import cli as train_cli
from hybridmem.validation import command_parser
from hybridmem.world import cli as world_cli

# the modules with `register(subparsers)`, in the order --help shows their commands
COMMANDS = (world_cli, encode, train_cli, sample_cli, eval_cli, official_cli, recipe_cli, demo)


# operating-system faults the CLI reports in one line (exit 1), with what to do about each
OS_FAULTS = {
    errno.ENOSPC: "free some space, or choose an output folder on another file system",
    errno.EDQUOT: "free some space, or choose an output folder on another file system",
    errno.EROFS: "choose an output folder on a writable file system",
    errno.EACCES: "choose a folder you may write (or a file you may read)",
    errno.EPERM: "choose a folder you may write (or a file you may read)",
    errno.ENAMETOOLONG: "shorten the name (file systems allow about 255 bytes a name)",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EISDIR: "a folder is where a file was expected; fix the path",
    errno.ELOOP: "the path runs through a loop of symbolic links; fix the links",
    errno.EIO: "nothing was published; check the device and the writer",
}
# flags that name what a command reads, and those that name where it writes
INPUT_FLAGS = ("data", "cache", "val_cache", "vae", "checkpoint", "clip", "video", "cameras",
               "caption_embedding", "assets", "run_dir", "weights_dir", "official")  # fmt: skip
OUTPUT_FLAGS = ("out", "to")


def os_fault(error: BaseException) -> OSError | None:
    """The operating-system fault behind `error` (itself, or what it was raised from), None for others."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in OS_FAULTS:
            return error
        error = error.__cause__
    return None


def describe_os_fault(fault: OSError, args: argparse.Namespace) -> str:
    """One line naming the path (the output flag's when the fault does not carry one) and what to do."""
    paths = [str(name) for name in (fault.filename, fault.filename2) if name is not None]
    if not paths:
        paths = [f"--{flag} {getattr(args, flag)}" for flag in OUTPUT_FLAGS if getattr(args, flag, None)]
    where = " -> ".join(paths) or "(no path given)"
    detail = fault.strerror or str(fault)
    name = errno.errorcode.get(fault.errno, str(fault.errno))
    return f"{where}: {detail} ({name}); {OS_FAULTS[fault.errno]}; finished work is kept, then rerun"


def check_outputs_outside_inputs(args: argparse.Namespace) -> None:
    """ConfigError when `--out`/`--to` is one of the command's inputs or inside one."""
    from hybridmem.publish import check_not_inside

    inputs = {
        f"--{flag.replace('_', '-')}": getattr(args, flag) for flag in INPUT_FLAGS if hasattr(args, flag)
    }
    if hasattr(args, "run_dir"):
        inputs["RUN_DIR"] = inputs.pop("--run-dir")
    for flag in OUTPUT_FLAGS:
        if getattr(args, flag, None):
            check_not_inside(getattr(args, flag), inputs, f"--{flag}")


def build_parser() -> argparse.ArgumentParser:
    # every numeric flag of every command is checked against one range table (hybridmem.validation)
    parser = command_parser(COMMANDS, description="Hybrid memory for dynamic video world models.")
    parser.add_argument("--version", action="version", version=f"hybridmem {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        check_outputs_outside_inputs(args)
        result = args.func(args)
    except MachineError as error:  # the machine lacks a tool or memory: not the input's fault
        print(f"hybridmem: error: {error}", file=sys.stderr)
        return 1
    except HybridmemError as error:
        print(f"hybridmem: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hybridmem: interrupted; finished work is kept, rerun the command to resume", file=sys.stderr)
        return 130
    except Exception as error:
        from hybridmem.device import describe_memory_fault

        memory = describe_memory_fault(error)
        if memory is not None:
            print(f"hybridmem: error: {memory}", file=sys.stderr)
            return 1
        fault = os_fault(error)
        if fault is None:
            raise  # a bug: keep its traceback
        print(f"hybridmem: error: {describe_os_fault(fault, args)}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
