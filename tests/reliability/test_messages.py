"""One clear line for each failure (issue 26): what differs named to the field and not cut to the same text,
ffmpeg missing, memory limits, zip bombs, audio-only videos, dangling --out symlinks."""

from __future__ import annotations

import re

import pytest

from hybridmem import runlock


def test_differences_name_the_nested_field_and_keep_where_values_differ():
    """Issue 26: eval rerun after retraining printed both checkpoints cut to the same '.../hydra/fina...'."""
    path = "/work/some/long/folder/of/runs/" + "x" * 40 + "/world/hydra/final"
    old = {"methods": {"hydra": {"path": path, "sha256": "a" * 64}}, "split": "test"}
    new = {"methods": {"hydra": {"path": path, "sha256": "a" * 60 + "bbbb"}}, "split": "test"}
    (line,) = runlock.differences(old, new)
    assert line.startswith("methods.hydra.sha256: ")
    there, now = line.split(": ", 1)[1].split(" there, ")
    assert there != now and there.endswith('aaaa"') and now.endswith('bbbb" now')


def _npz_of(path, array, name="ids"):
    import io
    import zipfile

    import numpy as np

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


def _never_expanded(monkeypatch):
    import numpy as np

    def expand(*args, **kwargs):
        raise AssertionError("the archive was expanded before it was refused")

    monkeypatch.setattr(np.lib.format, "read_array", expand)


def test_a_zip_bomb_ids_npz_is_refused_by_its_header_before_expanding(tmp_path, monkeypatch):
    """Issue 26: a 2.9 MB ids.npz declaring 3.2 GB was refused only after 21 s and 3.2 GB. An honest
    deflate bomb (zeros, ~1000:1) is refused by the shape the clip's metadata says it must have."""
    import shutil

    import numpy as np

    from hybridmem.data.hmworld import load_clip
    from hybridmem.errors import DataError

    from .helpers import tiny_dataset

    clip = tiny_dataset(tmp_path / "data", num_clips=1) / "train" / "000000"
    expected = np.load(clip / "ids.npz")["ids"].shape
    bomb = _npz_of(tmp_path / "ids.npz", np.zeros((expected[0], 1500, 1500), np.uint8))  # 40 MB, ~40 KB
    assert bomb.stat().st_size < 100_000
    shutil.copy(bomb, clip / "ids.npz")
    _never_expanded(monkeypatch)
    with pytest.raises(
        DataError,
        match=rf"claims a uint8 array of shape .*1500, 1500\), expected uint8 {re.escape(str(expected))}",
    ):
        load_clip(clip, load_frames=False)


def test_an_archive_declaring_more_than_deflate_can_expand_is_refused(tmp_path, monkeypatch):
    """A member whose declared size no compression reaches (a forged directory) is refused from the zip's
    directory alone, whatever reads it."""
    import struct

    import numpy as np

    from hybridmem import npyio
    from hybridmem.errors import DataError

    path = _npz_of(tmp_path / "a.npz", np.zeros((64, 64), np.uint8), name="frames")
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 3_200_000_000)  # the uncompressed size it declares
    path.write_bytes(bytes(data))
    _never_expanded(monkeypatch)
    with pytest.raises(DataError, match=r"declares 3200000000 bytes from \d+ stored .*zip bomb"):
        npyio.read_npz(path)


@pytest.fixture(scope="module")
def clip_data(tmp_path_factory):
    from tiny import save_tiny_world

    from .helpers import tiny_dataset, tiny_vae

    root = tmp_path_factory.mktemp("messages")
    return {"data": tiny_dataset(root / "data", num_clips=1), "vae": tiny_vae(root / "vae"),
            "world": save_tiny_world(root / "world")}  # fmt: skip


def test_ffmpeg_missing_is_one_line_in_every_command(clip_data, tmp_path, monkeypatch):
    """Issue 26: with IMAGEIO_FFMPEG_EXE pointing nowhere, generate ended in a traceback and sample and encode
    blamed the input video's header."""
    from .helpers import TINY_WORLD_FLAGS, fake_renderer, run_cli

    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no" / "ffmpeg"))
    clip = clip_data["data"] / "train" / "000000"
    commands = {
        "generate": ["world", "generate", "--out", tmp_path / "w", "--num-clips", 1, *TINY_WORLD_FLAGS],
        "encode": ["encode", "--data", clip_data["data"], "--vae", clip_data["vae"], "--out", tmp_path / "c"],
        "sample": ["sample", "--clip", clip, "--checkpoint", clip_data["vae"], "--vae", clip_data["vae"],
                   "--out", tmp_path / "s.mp4", "--device", "cpu"],
    }  # fmt: skip
    for name, argv in commands.items():
        with fake_renderer():
            code, err = run_cli(argv)
        assert code == 1 and "Traceback" not in err, (name, code, err)  # the machine's fault: exit 1
        (line,) = [line for line in err.splitlines() if line.startswith("hybridmem")]
        assert "ffmpeg not found: IMAGEIO_FFMPEG_EXE=" in line and "header" not in line, (name, line)
    assert not (tmp_path / "w" / "train").exists() and not (tmp_path / "s.mp4").exists()


def test_an_audio_only_mp4_is_named_in_one_line(tmp_path):
    """Issue 26: an audio-only mp4 given as a video printed a 30-line ffmpeg dump."""
    import subprocess

    from hybridmem.data.hmworld import video_header
    from hybridmem.errors import DataError
    from hybridmem.publish import ffmpeg_exe

    audio = tmp_path / "audio.mp4"
    sine = ["-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "aac"]
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *sine, str(audio)], check=True)
    with pytest.raises(DataError) as caught:
        video_header(audio)
    assert str(caught.value) == f"{audio}: holds no video stream (only audio); pass a video file"


def test_a_dangling_symlink_as_out_is_refused_before_work(clip_data, tmp_path, monkeypatch):
    """Issue 26: `sample --out LINK.mp4` with LINK dangling was refused only after sampling, as 'written by
    another process'. Every output path, file or folder, is checked before the work."""
    from hybridmem.sample import pipeline

    from .helpers import run_cli

    def no_work(*args, **kwargs):
        raise AssertionError("the command started its work")

    monkeypatch.setattr(pipeline.WorldPipeline, "from_checkpoint", no_work)
    (tmp_path / "s.mp4").symlink_to(tmp_path / "gone" / "s.mp4")
    (tmp_path / "evaldir").symlink_to(tmp_path / "gone")
    clip = clip_data["data"] / "train" / "000000"
    for argv in (
        ["sample", "--clip", clip, "--checkpoint", clip_data["world"], "--vae", clip_data["vae"], "--out",
         tmp_path / "s.mp4", "--device", "cpu", "--allow-other-vae"],
        ["eval", "--baseline", "copy-last", "--data", clip_data["data"], "--split", "train", "--out",
         tmp_path / "evaldir"],
        ["train", "vae", "--data", clip_data["data"], "--out", tmp_path / "evaldir", "--device", "cpu"],
    ):  # fmt: skip
        code, err = run_cli(argv)
        assert code == 2 and "is a symbolic link to" in err and "which does not exist" in err, err
        assert "Traceback" not in err and not (tmp_path / "gone").exists()


MEMORY_PROBE = """
import resource, sys
limit = 8 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
from hybridmem.device import address_space_room, available_memory
room, available = address_space_room(), available_memory()
assert room is not None and 0 < room < limit and available <= room, (room, available)
print("ok")
"""


def test_memory_estimates_count_the_address_space_limit(clip_data, monkeypatch):
    """Issue 26: under `ulimit -v 4 GB` a 401-frame 1080p video failed in read_video with a traceback; its
    6.0 GiB estimate was printed only after decoding. The room under RLIMIT_AS now bounds every estimate,
    so the video is refused from its header."""
    import subprocess
    import sys

    from hybridmem import device
    from hybridmem.data import hmworld
    from hybridmem.errors import ConfigError

    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True)
    assert probe.stdout.strip() == "ok", probe.stderr  # a real RLIMIT_AS bounds what is available
    with open("/proc/self/status") as status:
        vm_size = 1024 * int(next(line for line in status if line.startswith("VmSize")).split()[1])
    monkeypatch.setattr(device, "address_space_limit", lambda: vm_size + 4096)  # 4 KB left to map

    def decode(*args):
        raise AssertionError("decoded before the estimate was checked")

    monkeypatch.setattr(hmworld, "_decode_video", decode)
    with pytest.raises(ConfigError, match="decoding 9 frames of 32x32 needs at least .* more than the"):
        hmworld.read_video(clip_data["data"] / "train" / "000000" / "cond.mp4")


def test_out_of_memory_faults_are_described_in_one_line(monkeypatch):
    """What the CLI prints (exit 1) for `ulimit -v 500000`: an ImportError traceback from torch before."""
    from hybridmem import device

    monkeypatch.setattr(device, "address_space_limit", lambda: 500_000 * 1024)
    error = ImportError("libtorch_cpu.so: failed to map segment from shared object")
    line = device.describe_memory_fault(error)
    assert line.startswith("out of memory under the address-space limit of 488.3 MiB (ulimit -v)"), line
    assert device.describe_memory_fault(RuntimeError("wrapped")) is None
    wrapped = RuntimeError("load failed")
    wrapped.__cause__ = MemoryError()
    assert "out of memory" in device.describe_memory_fault(wrapped)


def test_generate_under_a_memory_limit_is_one_line(tmp_path):
    """Issue 26: `ulimit -v 500000` made `world generate` end in a moderngl traceback."""
    import resource
    import subprocess
    import sys

    from .helpers import TINY_WORLD_FLAGS

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (500_000 * 1024, resource.getrlimit(resource.RLIMIT_AS)[1]))

    argv = [sys.executable, "-m", "hybridmem.cli", "world", "generate", "--out", str(tmp_path / "w"),
            "--num-clips", "1", *TINY_WORLD_FLAGS]  # fmt: skip
    done = subprocess.run(argv, preexec_fn=limit, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert "ulimit -v" in line and ("renderer could not start" in line or "out of memory" in line), line


def test_an_out_of_memory_import_in_a_command_exits_1_in_one_line(monkeypatch, capsys):
    """torch is imported inside each command, so only the CLI's top can turn its failure under a memory
    limit into one line (exit 1) instead of a traceback."""
    from hybridmem import cli

    def failing(args):
        raise ImportError("libtorch_cpu.so: failed to map segment from shared object")

    parser = cli.build_parser()
    args = parser.parse_args(["world", "preview", "x", "--out", "y.png"])
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    args.func = failing
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    assert cli.main([]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("hybridmem: error: out of memory") and "failed to map segment" in line
