"""The range table: what each numeric flag, and the config field behind it, may hold, declared once.

`RULES` maps a flag's destination name (`--lr` -> "lr") to its bounds; an entry "COMMAND:name" holds the
bound of one command where two commands share a name (`sample --steps` and `train world --steps`). Every
check of a numeric field reads it, so the bound and its message exist once:

- the flags: every int/float flag of a parser made by `CheckedParser` is checked while parsing, so a bad
  value ends in argparse's usage error (exit 2, the flag named) before any work starts;
- the configs: `check_fields(config, command)` applies the same rules to a config built in code (the
  recipe's budgets, tests, `WorldConfig`, the training configs), naming the flag;
- single values given to an API: `check_value(name, value)` (the sampler's shift, a released clip's FOV).

    hybridmem train world ... --lr 1e30         ->  argument --lr: 1e+30 is out of range: must be in (0, 1]
    WorldTrainConfig(..., lr=1e30).validate()  ->  ConfigError: --lr: 1e+30 is out of range: must be in (0, 1]

Each bound says what breaks beyond it: a value that would hang (a frame rate so low the world planner loops
over hours of clip), fail after the work (a frame rate ffmpeg refuses, a clip number past the six-digit
folder names) or exhaust the machine (workers, side-by-side clips held in memory) is refused. What one
field's bounds cannot say (4k+1 frame counts, min <= max, a split that must keep one scene) stays in the
config's validate(). Every numeric flag of every command has a rule (tests/reliability/test_bounds.py), and
the flag, the config and the message agree for each (tests/test_validation.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

from hybridmem.errors import ConfigError

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Range:
    """low <= value <= high (strict at an open end); `why` is appended to the message."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def describe(self) -> str:
        if self.high == math.inf:
            return f"must be {'>' if self.low_open else '>='} {_number(self.low)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"must be in {left}{_number(self.low)}, {_number(self.high)}{right}"

    def check(self, value) -> str | None:
        """None when `value` is allowed, else the reason."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number"
        too_low = value < self.low or (self.low_open and value == self.low)
        too_high = value > self.high or (self.high_open and value == self.high)
        if too_low or too_high:
            return f"{_number(value)} is out of range: {self.describe()}" + (
                f" ({self.why})" if self.why else ""
            )
        return None


def _number(value) -> str:
    if value == INT64_MAX:
        return "2^63-1"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


ANY_INT = Range(-INT64_MAX - 1, INT64_MAX, why="a 64-bit integer")
ANY_FLOAT = Range()  # finite

SEEDS = Range(0, INT64_MAX, why="seeds are 0 .. 2^63-1")

RULES: dict[str, Range] = {
    # seeds: torch and numpy take 0 <= seed < 2^64; trainers add the step to it, so keep a margin
    "seed": SEEDS,
    "split_seed": SEEDS,
    # optimisation
    "lr": Range(0.0, 1.0, low_open=True, why="AdamW learning rates are around 1e-4"),
    "weight_decay": Range(0.0, 10.0),
    "grad_clip": Range(0.0, 1e6, why="0 disables clipping"),
    "ema_decay": Range(0.0, 1.0, high_open=True),
    # the timestep shift t' = s t / (1 + (s - 1) t), of training and of sampling alike (the paper: 5); past
    # 1000 every step but the last sits at t ~ 1
    "shift": Range(0.0, 1000.0, low_open=True, why="timestep shift; the paper's is 5"),
    "kl_weight": Range(0.0, 1e6),
    "subject_weight": Range(1.0, 1e4, why="1 = plain flow loss; W > 1 weights subject cells W times"),
    "edge_weight": Range(0.0, 1e6),
    "steps": Range(1, 10**9),
    # sampling: the flow-matching sampler's steps (50 by default; beyond 10,000 the samples no longer change)
    "sample:steps": Range(1, 10**4, why="denoising steps"),
    "eval:steps": Range(1, 10**4, why="denoising steps"),
    "guidance": Range(0.0, 1000.0, why="classifier-free guidance scale; 1 = none"),
    "segment_frames": Range(1, 10**5, why="frames a rollout segment generates at once (4k+1)"),
    # a pinhole camera's view of released or given video; the tangent of half of it blows up near 180
    "hfov": Range(1.0, 179.0, why="horizontal field of view in degrees"),
    "warmup": Range(0, 10**9),
    "batch_size": Range(1, 10**6),
    "frames": Range(1, 10**5),
    "norm_windows": Range(1, 4096, why="segments encoded (and held) to fit the latent normalisation"),
    "save_every": Range(0, 10**9),
    "val_every": Range(0, 10**9),
    "log_every": Range(1, 10**9),
    "keep": Range(1, 10**6),
    "val_clips": Range(1, 10**8),
    "num_workers": Range(0, 256, why="data-loading processes"),
    # the memory knobs' bounds are declared beside the knobs (hybridmem.models.memory.config), which joins
    # them here with add_rules
    # data generation: the paper's geometry is the limit (832x480 pixels, 77 + 77 frames at 15 fps, 1-3
    # subjects a clip); WorldConfig.validate adds what one field cannot say (pixels, 4k+1, min <= max)
    "num_clips": Range(1, 10**9),
    "world generate:num_clips": Range(1, 10**6, why="clip folders are numbered with six digits"),
    "workers": Range(1, 256, why="render processes, one renderer each"),
    "width": Range(8, 832, why="pixels; the paper's frames are 832x480"),
    "height": Range(8, 832, why="pixels; the paper's frames are 832x480"),
    "context_frames": Range(1, 77, why="the paper's 77 frames a segment"),
    "target_frames": Range(1, 77, why="the paper's 77 frames a segment"),
    # a video's frame rate: ffmpeg refuses rates near 0 (after all the sampling), and a video written at
    # 1000 fps or more reads back as stating no frame rate
    "fps": Range(1.0, 240.0, why="frames per second of the video"),
    # the generated world moves at this rate: below 1 fps a clip lasts minutes of world time and the motion
    # planner loops over every second of it (0.001 fps hung); 15 fps is the paper's
    "world generate:fps": Range(1.0, 15.0, why="frames per second of the generated clips"),
    # the generator's camera: its scenes and camera distances are laid out for 36-70 degrees
    "horizontal_fov_deg": Range(10.0, 150.0, why="degrees"),
    # the renderer draws supersample^2 samples a pixel: 16 at 4 already anti-alias, memory grows as the square
    "supersample": Range(1, 4, why="samples per pixel side"),
    "min_subjects": Range(1, 3, why="the paper's clips hold 1-3 subjects"),
    "max_subjects": Range(1, 3, why="the paper's clips hold 1-3 subjects"),
    "visible_threshold": Range(0.0, 1.0, low_open=True, why="a fraction of the subject's pixels"),
    "hidden_threshold": Range(0.0, 1.0, low_open=True, why="a fraction of the subject's pixels"),
    "min_hidden_frames": Range(1, 2 * 77 - 1, why="below the clip's frames"),
    "max_attempts": Range(1, 10**4, why="candidates rendered per clip before giving up on it"),
    "held_out_scenes": Range(0, 10**4, why="then at most the taxonomy allows (WorldConfig.validate)"),
    "held_out_subjects": Range(0, 10**4, why="then at most the taxonomy allows (WorldConfig.validate)"),
    # a fraction of 1 would leave the train split empty
    "val_fraction": Range(0.0, 1.0, high_open=True),
    "test_fraction": Range(0.0, 1.0, high_open=True),
    "video_crf": Range(0, 51, why="x264's quality scale"),
    # preview
    "columns": Range(1, 1000),
    "every": Range(1, 10**6),
    "scale": Range(1, 64, why="pixel upscaling of each frame"),
    # eval
    "side_by_side_clips": Range(0, 100, why="each is held in memory until the end of the run"),
    # demo
    "clips": Range(1, 10**4, why="test clips the demo renders and scores"),
}


def check_choice(value, choices, what: str, plural: str = "") -> None:
    """ConfigError "WHAT 'VALUE' is unknown; valid [PLURAL]: A, B" unless `value` is one of `choices` (what
    names the flag or field: "--objective", "VAEConfig.design"; the choices are listed in their order)."""
    if value not in choices:
        valid = f"valid {plural}" if plural else "valid"
        raise ConfigError(f"{what} '{value}' is unknown; {valid}: {', '.join(str(c) for c in choices)}")


def add_rules(rules: dict[str, Range]) -> None:
    """Join rules declared beside their fields elsewhere (the memory knobs: models.memory.config) to the
    table; a name may be declared once."""
    twice = sorted(set(rules) & set(RULES))
    if twice:
        raise ConfigError(f"bounds declared twice: {', '.join(twice)}")
    RULES.update(rules)


def rule_for(name: str, command: str = "") -> Range | None:
    return RULES.get(f"{command}:{name}", RULES.get(name))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_value(name: str, value, command: str = "", flag: str | None = None) -> None:
    """ConfigError naming the flag (default --NAME) when `value` breaks the rule of `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{flag or _flag(name)}: expected a number, got {value!r}")
    rule = rule_for(name, command) or (ANY_INT if isinstance(value, int) else ANY_FLOAT)
    problem = rule.check(value)
    if problem:
        raise ConfigError(f"{flag or _flag(name)}: {problem}")


def check_fields(config, command: str = "") -> None:
    """ConfigError naming the flag when a numeric field of a dataclass config breaks its rule."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        check_value(field.name, value, command)


# --- argparse ------------------------------------------------------------------------------------------


def _checked_type(kind: type, rule: Range):
    def parse(text: str):
        value = kind(text)  # ValueError -> argparse's "invalid int value: 'x'"
        problem = rule.check(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid ... value" message
    return parse


class CheckedParser(argparse.ArgumentParser):
    """An ArgumentParser whose int and float flags are checked against RULES while they are parsed.

    Each `add_argument(..., type=int|float)` (on the parser, its argument groups and its sub-commands'
    parsers, which argparse makes of the same class) gets its type wrapped with the rule of its
    destination under this parser's command ("world generate"); a flag without a rule must still be
    finite (floats) and fit in 64 bits (ints). `numeric_flags()` lists what was wrapped.
    """

    def __init__(self, *args, **kwargs):
        self.command = ""  # "" for the program, "world generate" for that sub-command's parser
        self.checked_flags: list[tuple[str, str, type]] = []  # (option, dest, type) of numeric flags
        self.commands: dict[str, CheckedParser] = {}  # sub-command name -> its parser
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        return self._checked(super().add_argument(*args, **kwargs))

    def add_argument_group(self, *args, **kwargs):
        return self._checking(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, *args, **kwargs):
        return self._checking(super().add_mutually_exclusive_group(*args, **kwargs))

    def add_subparsers(self, *args, **kwargs):
        action = super().add_subparsers(*args, **kwargs)
        add_parser = action.add_parser

        def add_command(name: str, *parser_args, **parser_kwargs):
            parser = add_parser(name, *parser_args, **parser_kwargs)
            parser.command = f"{self.command} {name}".strip()
            self.commands[name] = parser
            return parser

        action.add_parser = add_command
        return action

    def numeric_flags(self) -> list[tuple[str, str, str, type]]:
        """(command, option, dest, type) of every int/float flag here and in every sub-command."""
        found = [(self.command, option, dest, kind) for option, dest, kind in self.checked_flags]
        for parser in self.commands.values():
            found += parser.numeric_flags()
        return found

    def _checked(self, action: argparse.Action) -> argparse.Action:
        if action.type in (int, float):
            kind = action.type
            rule = rule_for(action.dest, self.command) or (ANY_INT if kind is int else ANY_FLOAT)
            action.type = _checked_type(kind, rule)
            option = action.option_strings[0] if action.option_strings else action.dest
            self.checked_flags.append((option, action.dest, kind))
        return action

    def _checking(self, group):
        """An argument group whose flags (and nested exclusive groups' flags) are checked like ours."""
        add_argument, add_exclusive = group.add_argument, group.add_mutually_exclusive_group
        group.add_argument = lambda *args, **kwargs: self._checked(add_argument(*args, **kwargs))
        group.add_mutually_exclusive_group = lambda *args, **kwargs: self._checking(
            add_exclusive(*args, **kwargs)
        )
        return group


def command_parser(commands, **parser_args) -> CheckedParser:
    """The `hybridmem` parser of the given command modules (each exposes `register(subparsers)`)."""
    parser = CheckedParser(prog="hybridmem", **parser_args)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in commands:
        module.register(subparsers)
    return parser
