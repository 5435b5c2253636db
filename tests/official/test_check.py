"""`hybridmem official check`: passes on the official fixture, fails naming the part when an official
choice is reverted, reports absent parts."""

import shutil

import pytest
import torch

from hybridmem.cli import main
from hybridmem.models import world
from hybridmem.official.check import TOLERANCES, check_dit, check_folder, format_report, report_passed

from .tiny_release import FIXTURE


@pytest.fixture(scope="module")
def full_report():
    return check_folder(FIXTURE)


def test_the_command_passes_on_the_official_fixture(capsys):
    assert main(["official", "check", str(FIXTURE)]) == 0
    printed = capsys.readouterr().out
    for part in TOLERANCES:
        assert part in printed
    assert "all parts within tolerance" in printed and "absent" not in printed


def test_every_part_is_present_and_within_its_tolerance(full_report):
    by_part = {result.part: result for result in full_report}
    assert set(by_part) == set(TOLERANCES)
    assert all(result.difference is not None for result in full_report), format_report(full_report)
    assert report_passed(full_report), format_report(full_report)
    assert by_part["top-k picks"].difference == 0  # identical sets in every block and frame
    for exact in ("scheduler sigmas", "scheduler timesteps", "scheduler euler steps"):
        assert by_part[exact].difference == 0


@pytest.mark.parametrize(
    "override",
    [
        dict(context_timestep="clean"),  # 1. the context at t = 0
        dict(affinity_rope="after"),  # 3. the affinity after RoPE
        dict(token_positions="centre"),  # 4. memory tokens at the patch centres
    ],
)
def test_reverting_an_official_choice_fails_the_dit_parts(override):
    differences = check_dit(FIXTURE, override)
    assert differences["dit output"] > TOLERANCES["dit output"]
    assert differences["dit block 0"] > TOLERANCES["dit block 0"]


def test_reverting_wans_head_fails_the_dit_output_only(monkeypatch):
    # 2. DiT's head: shift and scale pass through a SiLU of the time embedding
    original = world.FinalLayer.forward

    def dit_style(self, x, time_embedding):
        return original(self, x, torch.nn.functional.silu(time_embedding))

    monkeypatch.setattr(world.FinalLayer, "forward", dit_style)
    differences = check_dit(FIXTURE)
    assert differences["dit output"] > TOLERANCES["dit output"]
    assert differences["dit block 0"] <= TOLERANCES["dit block 0"]


def test_the_command_fails_non_zero_naming_the_part(monkeypatch, capsys):
    monkeypatch.setattr(
        world.FinalLayer, "forward", lambda self, x, t: torch.zeros(*x.shape[:-1], self.linear.out_features)
    )
    assert main(["official", "check", str(FIXTURE)]) == 1
    assert "FAILED: dit output" in capsys.readouterr().out


def test_absent_parts_are_reported_absent_and_an_empty_folder_is_an_error(tmp_path, capsys):
    folder = tmp_path / "cameras_only"
    folder.mkdir()
    for name in ("cam1.json", "cameras_expected.safetensors", "scheduler_expected.json"):
        shutil.copy(FIXTURE / name, folder / name)
    report = check_folder(folder)
    present = {result.part for result in report if result.difference is not None}
    assert present == {"cameras", "scheduler sigmas", "scheduler timesteps", "scheduler euler steps", "cfg"}
    assert report_passed(report)
    assert main(["official", "check", str(folder)]) == 0
    assert "absent" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["official", "check", str(empty)]) == 2
    assert main(["official", "check", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_the_camera_part_reads_any_official_example_number(tmp_path):
    folder = tmp_path / "cam3_fixture"
    folder.mkdir()
    shutil.copy(FIXTURE / "cameras_expected.safetensors", folder / "cameras_expected.safetensors")
    shutil.copy(FIXTURE / "cam1.json", folder / "cam3.json")
    by_part = {result.part: result for result in check_folder(folder)}
    assert by_part["cameras"].difference is not None and by_part["cameras"].passed
