"""The parser the recipe runs its stages through: the stage commands' own parsers, checked like the CLI's.

A stage is the `hybridmem` command line it prints (`hybridmem train vae ...`), run in this process through
the commands that make a run (world generate, train, encode, eval); hybridmem.cli, the top of the package,
is not needed for that.
"""

from __future__ import annotations

from hybridmem.data import encode
from hybridmem.eval import cli as eval_cli
from hybridmem.train import cli as train_cli
from hybridmem.validation import CheckedParser, command_parser
from hybridmem.world import cli as world_cli

STAGE_COMMANDS = (world_cli, encode, train_cli, eval_cli)


def build_parser() -> CheckedParser:
    return command_parser(STAGE_COMMANDS)
