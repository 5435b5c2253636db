"""The publishing path (hybridmem.publish) under injected faults: a writer that raises, a full disk (the
write fails with ENOSPC, or a library's own error while the disk is full), a writer that exits 0 but leaves
a short file, a read-only folder, an over-long name, a file that appears meanwhile. Each time the previous
output is untouched and no temp file is left. Tests run as root, so permissions cannot stop a write: faults
are injected at the publishing path instead (publish._create_temp, publish._free_bytes, the writer)."""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest
import torch

from hybridmem import mp4, publish
from hybridmem.errors import ConfigError

FRAMES = np.random.default_rng(0).integers(0, 256, (9, 16, 24, 3), dtype=np.uint8)


def _files(folder):
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def previous(tmp_path):
    """A folder holding an earlier, good output.json."""
    publish.write_json(tmp_path / "out.json", {"good": True})
    return tmp_path / "out.json"


def test_writer_that_raises_publishes_nothing(previous):
    def failing(temp):
        temp.write_text('{"half": ')
        raise ValueError("the writer's own bug")

    with pytest.raises(ValueError, match="own bug"):  # not a disk fault: the error itself, unchanged
        publish.stage(previous, failing).publish()
    assert previous.read_text() == '{\n  "good": true\n}\n'
    assert _files(previous.parent) == ["out.json"]


def test_full_disk_while_writing_is_enospc_naming_the_output(previous):
    def full(temp):
        with open(temp, "wb") as handle:
            handle.write(b"{")
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises on a full disk

    with pytest.raises(OSError) as caught:
        publish.stage(previous, full).publish()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(previous)
    assert previous.read_text() == '{\n  "good": true\n}\n' and _files(previous.parent) == ["out.json"]


def test_a_library_error_on_a_full_disk_is_enospc(previous, monkeypatch):
    """torch.save on a full disk raises RuntimeError('... unexpected pos ...'): reported as ENOSPC."""
    monkeypatch.setattr(publish, "_free_bytes", lambda folder: 0)

    def torch_like(temp):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    with pytest.raises(OSError) as caught:
        publish.stage(previous.with_name("state.pt"), torch_like).publish()
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value.__cause__, RuntimeError)
    assert _files(previous.parent) == ["out.json"]


def test_a_short_file_from_a_writer_that_did_not_fail_is_refused(tmp_path):
    """safetensors' save_file wrote nothing and raised nothing on /dev/full (a full device): the check
    sees it."""
    from safetensors.torch import save_file

    target = tmp_path / "model.safetensors"
    with publish.staged(target, check=publish.check_safetensors) as temp:
        save_file({"w": torch.ones(64)}, temp)
    good = target.read_bytes()

    def cut(temp):
        save_file({"w": torch.zeros(64)}, temp)
        temp.write_bytes(temp.read_bytes()[:-10])

    with pytest.raises(publish.OutputError, match="header describes"):
        publish.stage(target, cut, publish.check_safetensors).publish()
    with pytest.raises(publish.OutputError, match="empty file"):
        publish.stage(target, lambda temp: None, publish.check_safetensors).publish()
    assert target.read_bytes() == good and _files(tmp_path) == ["model.safetensors"]


def test_video_is_published_with_its_frame_count(tmp_path):
    path = publish.write_video(tmp_path / "a.mp4", FRAMES, 8.0)
    assert mp4.frame_count(path) == len(FRAMES)
    assert _files(tmp_path) == ["a.mp4"]


def test_ffmpeg_failing_on_a_full_disk_keeps_the_previous_video(tmp_path, monkeypatch):
    """Issue 19: `sample --overwrite` on a full disk replaced a good video by a 0-byte one and said done."""
    good = publish.write_video(tmp_path / "a.mp4", FRAMES, 8.0).read_bytes()
    real_run = subprocess.run

    def ffmpeg_on_a_full_disk(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 228, b"", b"Error writing trailer: No space left on device\n"
        )

    monkeypatch.setattr(subprocess, "run", ffmpeg_on_a_full_disk)
    with pytest.raises(OSError) as caught:
        publish.write_video(tmp_path / "a.mp4", FRAMES[::-1], 8.0)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.endswith("a.mp4")
    monkeypatch.setattr(subprocess, "run", real_run)
    assert (tmp_path / "a.mp4").read_bytes() == good and _files(tmp_path) == ["a.mp4"]


@pytest.mark.parametrize("keep", [0, 0.5, 0.97])
def test_cut_video_from_a_writer_that_exited_0_is_refused(tmp_path, monkeypatch, keep):
    """ffmpeg (or imageio's writer) reporting success over a short file: the boxes or frame count say no."""
    good = publish.write_video(tmp_path / "a.mp4", FRAMES, 8.0).read_bytes()
    real_ffmpeg = publish._run_ffmpeg

    def cut_short(command, payload, path):
        real_ffmpeg(command, payload, path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    monkeypatch.setattr(publish, "_run_ffmpeg", cut_short)
    with pytest.raises(publish.OutputError):
        publish.write_video(tmp_path / "a.mp4", FRAMES[::-1], 8.0)
    assert (tmp_path / "a.mp4").read_bytes() == good and _files(tmp_path) == ["a.mp4"]


def test_video_missing_frames_is_refused(tmp_path, monkeypatch):
    real_ffmpeg = publish._run_ffmpeg

    def drops_the_last_frame(command, payload, path):
        frames = command.index("-frames:v") + 1
        command[frames] = str(int(command[frames]) - 1)
        real_ffmpeg(command, payload, path)

    monkeypatch.setattr(publish, "_run_ffmpeg", drops_the_last_frame)
    with pytest.raises(publish.OutputError, match="holds 8 frames, 9 were written"):
        publish.write_video(tmp_path / "a.mp4", FRAMES, 8.0)
    assert _files(tmp_path) == []


def test_gif_and_its_checks(tmp_path):
    path = publish.write_gif(tmp_path / "a.gif", FRAMES, 8.0)
    publish.gif_check(len(FRAMES))(path)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(publish.OutputError, match="trailer"):
        publish.gif_check(len(FRAMES))(path)


def test_files_published_together_are_both_checked_first(tmp_path, monkeypatch):
    """A failing second file must not leave the first one published (sample's video and side-by-side)."""
    publish.write_video(tmp_path / "a.mp4", FRAMES, 8.0)
    publish.write_gif(tmp_path / "a.gif", FRAMES, 8.0)
    before = {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)}
    video = publish.stage_video(tmp_path / "a.mp4", FRAMES[::-1], 8.0)
    monkeypatch.setattr(publish, "gif_check", lambda count: publish.mp4_check(count))  # the GIF "fails"
    with pytest.raises(publish.OutputError):
        gif = publish.stage_gif(tmp_path / "a.gif", FRAMES[::-1], 8.0)
        publish.publish_together([video, gif])
    video.discard()
    assert {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)} == before


def test_without_overwrite_a_file_that_appeared_meanwhile_is_kept(tmp_path):
    staged = publish.stage(tmp_path / "a.json", lambda temp: temp.write_text("{}"), overwrite=False)
    (tmp_path / "a.json").write_text("another writer's")
    with pytest.raises(ConfigError, match="exists"):
        publish.publish_together([staged])
    assert (tmp_path / "a.json").read_text() == "another writer's" and _files(tmp_path) == ["a.json"]


def test_concurrent_writers_never_share_a_temp_name(tmp_path):
    first, second = publish.Staged(tmp_path / "a.mp4"), publish.Staged(tmp_path / "a.mp4")
    assert first.temp != second.temp and first.temp.name.endswith("-a.mp4")
    first.discard()
    second.discard()
    assert _files(tmp_path) == []


def test_a_folder_swap_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "weights").write_text("old")
    with pytest.raises(KeyboardInterrupt), publish.staged_folder(final) as temp:
        (temp / "weights").write_text("new, half")
        raise KeyboardInterrupt
    assert (final / "weights").read_text() == "old" and _files(tmp_path) == ["final"]
    with publish.staged_folder(final) as temp:
        (temp / "weights").write_text("new")
        publish.publish_folder(temp, final)
    assert (final / "weights").read_text() == "new" and _files(tmp_path) == ["final"]


# --- before the heavy work: check_output_folder -----------------------------------------------------------


def test_read_only_folder_is_found_before_work(tmp_path, monkeypatch):
    def read_only(folder, prefix, suffix):
        raise OSError(errno.EROFS, "Read-only file system", str(folder / f"{prefix}x{suffix}"))

    monkeypatch.setattr(publish, "_create_temp", read_only)
    with pytest.raises(OSError) as caught:
        publish.check_output_folder(tmp_path)
    assert caught.value.errno == errno.EROFS
    with pytest.raises(OSError) as caught:  # a writer's temp file, too, names the output and not the temp
        publish.write_json(tmp_path / "out.json", {})
    assert caught.value.errno == errno.EROFS and caught.value.filename == str(tmp_path / "out.json")


def test_full_folder_and_long_names_are_found_before_work(tmp_path, monkeypatch):
    publish.check_output_folder(tmp_path, need_bytes=1 << 20, names=["a.mp4"])
    with pytest.raises(OSError) as caught:
        publish.check_output_folder(tmp_path, names=["x" * 300 + ".mp4"])
    assert caught.value.errno == errno.ENAMETOOLONG
    monkeypatch.setattr(publish, "_free_bytes", lambda folder: 10 << 20)
    with pytest.raises(OSError, match="10.0 MiB free") as caught:
        publish.check_output_folder(tmp_path, need_bytes=64 << 20)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path)
    assert _files(tmp_path) == []  # the probe is gone


def test_temp_names_of_long_outputs_fit(tmp_path):
    name = "y" * 240 + ".mp4"  # fits the file system (255) but not with a temp prefix added
    path = publish.write_video(tmp_path / name, FRAMES, 8.0)
    assert _files(tmp_path) == [path.name]


def test_output_inside_an_input_is_refused(tmp_path):
    publish.check_not_inside(tmp_path / "out", {"--data": tmp_path / "data"})
    with pytest.raises(ConfigError, match="is the --data input itself"):
        publish.check_not_inside(tmp_path / "data", {"--data": tmp_path / "data"})
    with pytest.raises(ConfigError, match="inside the --checkpoint input"):
        publish.check_not_inside(
            tmp_path / "run" / "x.mp4", {"--checkpoint": [tmp_path / "a", tmp_path / "run"]}
        )


def test_eval_side_by_side_is_published_whole(tmp_path, monkeypatch):
    """Issue 19: eval published a truncated side-by-side mp4 and left a `.gif.tmp` behind."""
    from hybridmem.eval import report

    truth = FRAMES[:, :, :16]
    report.write_side_by_side(truth, {"hydra": truth[::-1]}, 3, tmp_path / "000000", 8.0)
    before = {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)}
    assert sorted(before) == ["000000.gif", "000000.mp4"]
    real_ffmpeg = publish._run_ffmpeg

    def cut_short(command, payload, path):
        real_ffmpeg(command, payload, path)
        path.write_bytes(path.read_bytes()[:-300])

    monkeypatch.setattr(publish, "_run_ffmpeg", cut_short)
    with pytest.raises(publish.OutputError, match="cut short"):
        report.write_side_by_side(truth, {"hydra": truth}, None, tmp_path / "000000", 8.0)
    assert {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)} == before


KILLED_WRITER = """
import os, sys
from hybridmem import publish
with publish.staged(sys.argv[1]) as temp:
    temp.write_bytes(b"half a video")
    print(temp, flush=True)
    os.kill(os.getpid(), 9)  # kill -9 mid-publish
"""


def test_temp_files_of_a_killed_publish_are_removed_by_the_next_one(tmp_path):
    """Issue 26: `sample` killed while publishing left a hidden .tmp-PID-*.mp4 that no rerun removed."""
    import sys

    out = tmp_path / "s.mp4"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], capture_output=True, text=True)
    left = tmp_path / killed.stdout.strip().rsplit("/", 1)[-1]
    assert killed.returncode == -9 and left.is_file() and left.name.startswith(".tmp-")
    dead_folder = tmp_path / left.name.replace("s.mp4", "clip")  # a dead build of the folder `clip`
    dead_folder.mkdir()
    live = tmp_path / f".tmp-{os.getppid()}-abcdefgh-s.mp4"  # a live process's temp of the same name
    other = tmp_path / left.name.replace("s.mp4", "t.mp4")  # a dead writer's temp of another output
    aside = tmp_path / f"{left.name.split('-s.mp4')[0]}.old"  # a folder moved aside: maybe the only copy
    for path in (live, other):
        path.write_bytes(b"x")
    aside.mkdir()
    publish.write_bytes(out, b"the video")
    assert out.read_bytes() == b"the video" and not left.exists()
    assert live.exists() and other.exists() and aside.exists() and dead_folder.exists()
    with publish.staged_folder(tmp_path / "clip") as temp:
        (temp / "clip").mkdir()
        publish.publish_folder(temp / "clip", tmp_path / "clip")
    assert not dead_folder.exists()
    assert _files(tmp_path) == sorted([live.name, other.name, aside.name, "clip", "s.mp4"])
