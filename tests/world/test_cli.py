import json

import pytest

from hybridmem.cli import main
from hybridmem.world import generate as gen

from .test_generate import FakeRenderer, fake_plan_clip

TINY_FLAGS = ["--width", "32", "--height", "32", "--context-frames", "9", "--target-frames", "9",
              "--min-hidden-frames", "3", "--supersample", "1", "--max-subjects", "2"]  # fmt: skip


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setattr(gen, "_planner", lambda: fake_plan_clip)
    monkeypatch.setattr(gen, "_make_renderer", lambda config: FakeRenderer(config.width, config.height))


def test_generate_then_preview(tmp_path, fake_backend, capsys):
    out = tmp_path / "world"
    code = main(["world", "generate", "--num-clips", "2", "--out", str(out), "--split", "val", "--seed", "5",
                 "--no-progress", *TINY_FLAGS])  # fmt: skip
    assert code == 0
    assert "2 clip(s) written" in capsys.readouterr().err
    manifest = gen.read_manifest(out)
    assert [entry["clip"] for entry in manifest] == ["val/000000", "val/000001"]
    assert json.loads((out / "val" / "000000" / "metadata.json").read_text())["config"]["seed"] == 5
    assert main(["world", "preview", str(out / "val" / "000000"), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--width", "0"], "--width"),
        (["--context-frames", "8"], "context_frames=8"),
        (["--scenes", "moon_base"], "valid names"),
        (["--max-subjects", "4"], "--max-subjects: 4 is out of range"),
        (["--shard", "3/2"], "--shard"),
    ],
)
def test_bad_configuration_exits_2_and_writes_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "world"
    try:  # a flag out of its range is refused by argparse (SystemExit), a bad combination by the config
        code = main(["world", "generate", "--num-clips", "2", "--out", str(out), "--no-progress", *flags])
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
