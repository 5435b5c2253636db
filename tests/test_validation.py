"""One range table in truth: for every numeric flag, a value just outside each end of its rule is refused by
the flag (argparse, exit 2), by the config behind the flag (validate()) and by the namespace check of
`sample`, all with the rule's own text; and every rule of the table is some flag's."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math

import pytest

from hybridmem import validation
from hybridmem.cli import build_parser
from hybridmem.errors import ConfigError
from hybridmem.sample import cli as sample_cli
from hybridmem.train.config import VaeTrainConfig, WorldTrainConfig
from hybridmem.world.config import WorldConfig

PARSER = build_parser()
FLAGS = PARSER.numeric_flags()

# the config each command's flags fill in (its required paths given)
CONFIGS = {
    "world generate": WorldConfig,
    "train world": lambda **values: WorldTrainConfig(cache="c", out="o", **values),
    "train vae": lambda **values: VaeTrainConfig(data="d", out="o", **values),
}
CONFIG_FIELDS = {
    "world generate": {field.name for field in dataclasses.fields(WorldConfig)},
    "train world": {field.name for field in dataclasses.fields(WorldTrainConfig)},
    "train vae": {field.name for field in dataclasses.fields(VaeTrainConfig)},
}
SAMPLE_NUMBERS = ("steps", "seed", "shift", "guidance", "fps", "hfov", "segment_frames")


def outside(rule: validation.Range, kind: type) -> list:
    """A value just outside each finite end of `rule` (an open end: the end itself)."""
    values = []
    if math.isfinite(rule.low):
        step = 1 if kind is int else max(abs(rule.low), 1.0) * 1e-3
        values.append(rule.low if rule.low_open else rule.low - step)
    if math.isfinite(rule.high):
        step = 1 if kind is int else max(abs(rule.high), 1.0) * 1e-3
        values.append(rule.high if rule.high_open else rule.high + step)
    return [kind(value) for value in values]


def parse_error(argv: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stop:
        PARSER.parse_args(argv)
    assert stop.value.code == 2, argv
    return err.getvalue()


@pytest.mark.parametrize("command, option, dest, kind", FLAGS, ids=[f"{c} {o}" for c, o, _, _ in FLAGS])
def test_flag_config_and_message_agree(command, option, dest, kind):
    rule = validation.rule_for(dest, command)
    assert rule is not None, f"{command} {option}: no rule in hybridmem.validation.RULES"
    values = outside(rule, kind)
    assert values, f"{command} {option}: a rule without a finite end bounds nothing"
    for value in values:
        problem = rule.check(value)
        assert problem and "out of range" in problem, (value, problem)
        # 1. the flag, while parsing: argparse's usage error with the rule's text
        err = parse_error([*command.split(), option, repr(value)])
        assert option in err and f": {problem}" in err, err
        # 2. the config behind the flag: the same text, naming the flag
        flag = "--" + dest.replace("_", "-")
        if dest in CONFIG_FIELDS.get(command, ()):
            with pytest.raises(ConfigError) as error:
                CONFIGS[command](**{dest: value}).validate()
            assert str(error.value) == f"{flag}: {problem}"
        # 3. sample's check of a namespace built in code
        if command == "sample":
            assert dest in SAMPLE_NUMBERS
            namespace = argparse.Namespace(**{name: None for name in SAMPLE_NUMBERS})
            setattr(namespace, dest, value)
            with pytest.raises(ConfigError) as error:
                sample_cli.check_numbers(namespace)
            assert str(error.value) == f"{flag}: {problem}"


def test_every_rule_bounds_a_flag():
    used = {f"{command}:{dest}" for command, _, dest, _ in FLAGS} | {dest for _, _, dest, _ in FLAGS}
    unused = sorted(set(validation.RULES) - used)
    assert not unused, f"rules no flag reads (delete them, or scope them to a command): {unused}"


def test_scoped_rules_name_a_command_that_has_the_flag():
    flags = {(command, dest) for command, _, dest, _ in FLAGS}
    for key in validation.RULES:
        if ":" in key:
            command, dest = key.split(":")
            assert (command, dest) in flags, f"RULES['{key}']: `hybridmem {command}` has no such flag"


def test_flags_in_groups_and_exclusive_groups_are_checked():
    """`sample` declares its flags in argument groups: those are wrapped too (sample --steps 0 refused)."""
    assert ("sample", "--steps", "steps", int) in FLAGS
    assert "--steps: 0 is out of range" in parse_error(["sample", "--steps", "0"]).replace("argument ", "")


def test_api_values_read_the_same_rules():
    """A released clip's FOV and the sampler's shift are checked by their flags' rules."""
    from hybridmem.data.hmworld import released_intrinsics

    with pytest.raises(ConfigError, match=r"--hfov: 179.5 is out of range: must be in \[1, 179\]"):
        released_intrinsics(832, 480, horizontal_fov_deg=179.5)
    with pytest.raises(ConfigError, match=r"shift: 2000 is out of range: must be in \(0, 1000\]"):
        validation.check_value("shift", 2000.0, "sample", flag="shift")
