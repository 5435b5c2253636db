"""Bounds that mean something (issue 19): every numeric flag of every command has a rule in
hybridmem.validation, values beyond it are refused before any work with the flag named, and the bounds
stop the failures they are there for (a hang at --fps 0.001, ffmpeg failing at --fps 1e-9 after sampling)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from hybridmem import validation
from hybridmem.cli import build_parser

from .helpers import run_cli


def numeric_flags() -> list[tuple[str, str, str, type]]:
    """(command, option, destination, type) of every int/float flag of every command."""
    return build_parser().numeric_flags()


FLAGS = numeric_flags()


def test_every_numeric_flag_has_a_rule():
    missing = [
        f"{command} {option}" for command, option, dest, _ in FLAGS if not validation.rule_for(dest, command)
    ]
    assert not missing, f"numeric flags without a bound in hybridmem.validation.RULES: {missing}"


def _outside(rule: validation.Range, kind: type) -> list:
    """Values just outside each finite end of `rule`."""
    values = []
    if math.isfinite(rule.low):
        values.append(rule.low if rule.low_open else (rule.low - 1 if kind is int else rule.low / 2 - 1e-3))
    if math.isfinite(rule.high):
        values.append(rule.high if rule.high_open else (rule.high + 1 if kind is int else rule.high * 2 + 1))
    return values


@pytest.mark.parametrize("command, option, dest, kind", FLAGS, ids=[f"{c} {o}" for c, o, _, _ in FLAGS])
def test_values_beyond_a_rule_are_refused_naming_the_flag(command, option, dest, kind, tmp_path):
    rule = validation.rule_for(dest, command)
    for value in _outside(rule, kind):
        text = str(int(value)) if kind is int else repr(float(value))
        code, err = run_cli([*command.split(), option, text])  # parsing stops here: nothing else is needed
        assert code == 2 and option in err and "out of range" in err, (text, err)


def test_generate_at_the_fps_that_hung_exits_2_at_once(tmp_path):
    """Issue 19: `world generate --num-clips 1 --out runs/f --fps 0.001` spun in the speed-profile loop."""
    command = [sys.executable, "-m", "hybridmem.cli", "world", "generate", "--num-clips", "1", "--out",
               str(tmp_path / "f"), "--fps", "0.001"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--fps" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "f").exists()


def test_the_slowest_world_clip_plans_its_motion_in_a_bounded_loop():
    """At the lowest fps the stop-and-go profile covers frames/fps seconds: a few hundred phases, not the
    hundreds of thousands of phases 0.001 fps asked for."""
    from hybridmem.world import config as world_config
    from hybridmem.world.motion import speed_profile

    class CountingGenerator:
        def __init__(self):
            self.rng, self.draws = np.random.default_rng(0), 0

        def integers(self, *args):
            return self.rng.integers(*args)

        def uniform(self, *args):
            self.draws += 1
            return self.rng.uniform(*args)

    rng = CountingGenerator()
    frames = 2 * world_config.MAX_SEGMENT_FRAMES
    speeds = speed_profile(rng, "stop_and_go", 1.4, frames, world_config.MIN_FPS)
    assert speeds.shape == (frames,) and rng.draws <= frames / world_config.MIN_FPS / 0.6 + 2


def test_sample_fps_that_failed_in_ffmpeg_is_refused_before_reading(tmp_path):
    """Issue 19: `sample --fps 1e-9` passed validation and failed in ffmpeg after all the sampling."""
    code, err = run_cli(["sample", "--video", tmp_path / "missing.mp4", "--cameras", tmp_path / "c.json",
                         "--out", tmp_path / "s.mp4", "--fps", "1e-9"])  # fmt: skip
    assert code == 2 and "--fps" in err and "missing.mp4" not in err, err


@pytest.mark.parametrize("end", ["low", "high"])
def test_video_fps_bounds_survive_a_round_trip(end, tmp_path):
    """The ends of the --fps rule write a video that ffmpeg accepts and that states its rate when read back
    (1e-5 fps fails in ffmpeg's muxer; 1000 fps reads back as no rate)."""
    from hybridmem import publish
    from hybridmem.data.hmworld import video_fps

    rule = validation.rule_for("fps", "sample")
    fps = rule.low if end == "low" else rule.high
    path = publish.write_video(tmp_path / "v.mp4", np.zeros((5, 16, 16, 3), np.uint8), fps)
    assert video_fps(path) == pytest.approx(fps)


def test_generate_refuses_clip_numbers_past_six_digits(tmp_path):
    code, err = run_cli(["world", "generate", "--num-clips", str(10**6 + 1), "--out", tmp_path / "w"])
    assert code == 2 and "--num-clips" in err and not (tmp_path / "w").exists(), err
