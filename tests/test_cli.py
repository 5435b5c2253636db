import argparse
import subprocess
import sys

import pytest

from hybridmem import cli


def registered_commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def test_every_documented_command_is_registered():
    assert {"world", "encode", "train", "sample", "eval"} <= set(registered_commands())


@pytest.mark.parametrize("command", ["world", "encode", "train", "sample", "eval"])
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: hybridmem " + command in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_console_entry_point_runs_in_a_fresh_process():
    result = subprocess.run(
        [sys.executable, "-m", "hybridmem.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert result.stdout.startswith("hybridmem ")
