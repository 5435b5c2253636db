"""Argument validation for every command: ranges, finiteness, and memory estimates checked before allocating.

One table, `RULES`, says what each numeric flag may hold (by its destination name, so `--lr` of every
command shares one rule; an entry "COMMAND:name" overrides it for one command). Every numeric flag of every
command has a rule (tests/reliability/test_bounds.py walks the parser), and each bound says what breaks
beyond it: a value that would hang (a frame rate so low the world planner loops over hours of clip), fail
after the work (a frame rate ffmpeg refuses, a clip number past the six-digit folder names) or exhaust the
machine (workers, side-by-side clips held in memory) is refused. `install(parser)` wraps the `type=int` /
`type=float` of every flag of every sub-command, so a bad value ends in argparse's usage error (exit 2, the
flag named) before any work starts:

    hybridmem train world ... --lr 1e30      ->  argument --lr: 1e+30 is out of range: must be in (0, 1]
    hybridmem world generate ... --fps nan   ->  argument --fps: nan is not a finite number

A numeric flag without a rule must still be finite (floats) and fit in 64 bits (ints). Configs built in
code (the recipe's budgets, tests) get the same rules through `check_fields(config)`.

Memory estimates (`check_memory`) are lower bounds of what a step allocates (inputs plus the activations
it must keep), compared with the memory the device has before the first allocation; they refuse only what
cannot fit, never what might.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
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
POSITIVE = Range(1, INT64_MAX)
NON_NEGATIVE = Range(0, INT64_MAX)
FRACTION = Range(0.0, 1.0)

RULES: dict[str, Range] = {
    # seeds: torch and numpy take 0 <= seed < 2^64; trainers add the step to it, so keep a margin
    "seed": Range(0, INT64_MAX, why="seeds are 0 .. 2^63-1"),
    "split_seed": Range(0, INT64_MAX, why="seeds are 0 .. 2^63-1"),
    # optimisation
    "lr": Range(0.0, 1.0, low_open=True, why="AdamW learning rates are around 1e-4"),
    "weight_decay": Range(0.0, 10.0),
    "grad_clip": Range(0.0, 1e6, why="0 disables clipping"),
    "ema_decay": Range(0.0, 1.0, high_open=True),
    "shift": Range(0.0, 1000.0, low_open=True),
    "kl_weight": Range(0.0, 1e6),
    "subject_weight": Range(1.0, 1e4, why="1 = plain flow loss; W > 1 weights subject cells W times"),
    "edge_weight": Range(0.0, 1e6),
    "steps": Range(1, 10**9),
    # sampling: the flow-matching sampler's steps (50 by default; beyond 10,000 the samples no longer change)
    "sample:steps": Range(1, 10**4, why="denoising steps"),
    "eval:steps": Range(1, 10**4, why="denoising steps"),
    "guidance": Range(0.0, 1000.0, why="classifier-free guidance scale; 1 = none"),
    "segment_frames": Range(1, 10**5, why="frames a rollout segment generates at once (4k+1)"),
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
    "memory_window": Range(1, 10**5),
    "memory_top_k": Range(1, 10**5),
    # data generation
    "num_clips": Range(1, 10**9),
    "world generate:num_clips": Range(1, 10**6, why="clip folders are numbered with six digits"),
    "workers": Range(1, 256, why="render processes, one renderer each"),
    "width": Range(8, 8192),
    "height": Range(8, 8192),
    "context_frames": Range(1, 10**5),
    "target_frames": Range(1, 10**5),
    # a video's frame rate: ffmpeg refuses rates near 0 (after all the sampling), and a video written at
    # 1000 fps or more reads back as stating no frame rate
    "fps": Range(1.0, 240.0, why="frames per second of the video"),
    # the generated world moves at this rate: below 1 fps a clip lasts minutes of world time and the motion
    # planner loops over every second of it (0.001 fps hung); 15 fps is the paper's (hybridmem.world.config
    # MIN_FPS, MAX_FPS: tests/reliability/test_bounds.py checks they agree)
    "world generate:fps": Range(1.0, 15.0, why="frames per second of the generated clips"),
    "horizontal_fov_deg": Range(0.0, 180.0, low_open=True, high_open=True),
    "supersample": Range(1, 8),
    "min_subjects": Range(1, 255),
    "max_subjects": Range(1, 255),
    "visible_threshold": FRACTION,
    "hidden_threshold": FRACTION,
    "min_hidden_frames": Range(0, 10**5),
    "max_attempts": Range(1, 10**4, why="candidates rendered per clip before giving up on it"),
    "held_out_scenes": Range(0, 10**4, why="then at most the taxonomy allows (WorldConfig.validate)"),
    "held_out_subjects": Range(0, 10**4, why="then at most the taxonomy allows (WorldConfig.validate)"),
    "val_fraction": FRACTION,
    "test_fraction": FRACTION,
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


def rule_for(name: str, command: str = "") -> Range | None:
    return RULES.get(f"{command}:{name}", RULES.get(name))


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


def install(parser: argparse.ArgumentParser, command: str = "") -> None:
    """Wrap every int/float flag of `parser` and its sub-commands with its rule (see module docstring)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                install(subparser, f"{command} {name}".strip())
        elif action.type in (int, float):
            default = ANY_INT if action.type is int else ANY_FLOAT
            action.type = _checked_type(action.type, rule_for(action.dest, command) or default)


def check_fields(config, command: str = "") -> None:
    """ConfigError naming the flag when a numeric field of a dataclass config breaks its rule."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        rule = rule_for(field.name, command) or (ANY_INT if isinstance(value, int) else ANY_FLOAT)
        problem = rule.check(value)
        if problem:
            raise ConfigError(f"--{field.name.replace('_', '-')}: {problem}")


# --- memory --------------------------------------------------------------------------------------------


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(count) < 1024 or unit == "PB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} PB"


def available_memory(device=None) -> int | None:
    """Bytes a new allocation can get: the GPU's total memory for a CUDA device, else the RAM available
    (Linux MemAvailable; physical RAM elsewhere). None when unknown (then nothing is refused)."""
    device_text = str(device) if device is not None else "cpu"
    if device_text.startswith("cuda"):
        try:
            import torch

            return int(torch.cuda.get_device_properties(torch.device(device_text)).total_memory)
        except Exception:  # noqa: BLE001 (no CUDA here: the device error comes later, from the command)
            return None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: float, what: str, fix: str, device=None) -> None:
    """ConfigError when the lower bound `needed` (bytes) exceeds what the device has; says what to lower."""
    available = available_memory(device)
    if available is not None and needed > available:
        on_gpu = device is not None and str(device).startswith("cuda")
        where = f"on {device}" if on_gpu else "of memory available"
        raise ConfigError(
            f"{what} needs at least {format_bytes(needed)}, more than the {format_bytes(available)} "
            f"{where}; {fix}"
        )


def check_vae_step(config, window_shape: tuple, device=None) -> None:
    """Refuse a `train vae` --batch-size whose first activations alone cannot fit; window "T H W 3"."""
    frames, height, width = window_shape[:3]
    check_memory(
        vae_step_bytes(config.preset, config.batch_size, frames, height, width),
        f"train vae: a step of --batch-size {config.batch_size} windows of {frames} frames of "
        f"{width}x{height} with preset '{config.preset}'",
        "lower --batch-size (or --frames)",
        device,
    )


def vae_step_bytes(preset: str, batch_size: int, frames: int, height: int, width: int) -> float:
    """Lower bound of a VAE training step: the input batch plus the first convolution's activations at full
    resolution, kept for backward, in fp32."""
    from hybridmem.models.vae import vae_config

    config = vae_config(preset)
    return 4.0 * batch_size * frames * height * width * (config.image_channels + config.base_channels)


def world_step_bytes(
    preset: str,
    batch_size: int,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    grad_checkpointing: bool = False,
) -> float:
    """Lower bound of a world-model training step in fp32, N tokens over context and target latent frames:
    what each block keeps for backward, per token its input, q, k, v and attention output (5 D) and the
    feed-forward activation before and after the nonlinearity (2 ffn_dim); with gradient checkpointing only
    its input (D)."""
    from hybridmem.models.world import dit_config

    config = dit_config(preset)  # an unknown preset: ConfigError listing the valid ones
    frames_per_patch, rows_per_patch, columns_per_patch = config.patch_size
    tokens = (
        math.ceil(latent_frames / frames_per_patch)
        * math.ceil(latent_height / rows_per_patch)
        * math.ceil(latent_width / columns_per_patch)
    )
    per_token_layer = config.dim if grad_checkpointing else 5 * config.dim + 2 * config.ffn_dim
    return 4.0 * batch_size * tokens * per_token_layer * config.num_layers
