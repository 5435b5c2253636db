"""world generate under faults: incomplete clips are never counted as done, concurrent writers never publish
a partial clip, a dead render worker ends the run with a clear error (finished clips kept)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybridmem import publish
from hybridmem.data.hmworld import load_clip
from hybridmem.errors import DataError
from hybridmem.world import generate as gen
from hybridmem.world.config import WorldConfig

from .helpers import TINY_WORLD, TINY_WORLD_FLAGS, fake_renderer, kill9, run_cli, snapshot, wait_for

CONFIG = WorldConfig(**TINY_WORLD, max_subjects=2)


def _generate(out, shard=(0, 1), num_clips=4):
    return gen.generate(CONFIG, out, num_clips=num_clips, split="train", shard=shard, progress=False)


def test_incomplete_clip_is_refused_not_counted_as_done(tmp_path):
    """Issue 12 case 3: a clip folder with metadata.json but no tgt.mp4 was skipped as finished."""
    with fake_renderer():
        _generate(tmp_path, num_clips=2)
        (tmp_path / "train" / "000001" / "tgt.mp4").unlink()
        before = snapshot(tmp_path)
        with pytest.raises(DataError, match=r"000001: an incomplete clip \(missing tgt.mp4\)"):
            _generate(tmp_path, num_clips=2)
    assert snapshot(tmp_path) == before
    assert [e["clip"] for e in gen.rebuild_manifest(tmp_path)] == ["train/000000"]  # never listed


def test_publishing_never_replaces_a_finished_clip(tmp_path):
    final = tmp_path / "train" / "000000"
    final.mkdir(parents=True)
    (final / "metadata.json").write_text("first")
    staged = tmp_path / ".staging" / "run" / "train" / "000000"
    staged.mkdir(parents=True)
    (staged / "metadata.json").write_text("second")
    assert gen.publish_clip(staged, final) is False
    assert (final / "metadata.json").read_text() == "first" and not staged.exists()


SHARDS = ((0, 1), (0, 2), (1, 2))


def _fake_run(out, shard):
    with fake_renderer():
        _generate(out, shard=shard)


def test_overlapping_concurrent_runs_publish_only_complete_clips(tmp_path):
    """Two runs whose shards overlap (0/1 and 0/2) write the same clips at the same time."""
    with fake_renderer():
        _generate(tmp_path / "sequential")
    # separate processes (forked, so they keep the fake renderer), started together
    context = multiprocessing.get_context("fork")
    runs = [context.Process(target=_fake_run, args=(tmp_path / "concurrent", shard)) for shard in SHARDS]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=600)
    assert [run.exitcode for run in runs] == [0, 0, 0]
    for folder in sorted((tmp_path / "concurrent" / "train").iterdir()):
        assert gen.missing_clip_files(folder) == [], folder
        load_clip(folder)
    assert not list((tmp_path / "concurrent" / ".staging").iterdir())
    sequential = {k: v for k, v in snapshot(tmp_path / "sequential" / "train").items() if k.endswith(".json")}
    concurrent = {k: v for k, v in snapshot(tmp_path / "concurrent" / "train").items() if k.endswith(".json")}
    assert concurrent == sequential


def test_staging_of_a_dead_run_is_removed(tmp_path):
    with fake_renderer():
        _generate(tmp_path, num_clips=1)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        staging = tmp_path / ".staging" / f"{socket.gethostname()}-{dead.pid}-1"
        (staging / "train" / "000001").mkdir(parents=True)
        (staging / "train" / "000001" / "cond.mp4").write_bytes(b"half")
        alive = tmp_path / ".staging" / f"{socket.gethostname()}-{os.getpid()}-0"  # a live run's: kept
        alive.mkdir()
        _generate(tmp_path, num_clips=2)
    assert not staging.exists() and alive.exists()
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000000", "000001"]


def _children(pid: int, marker: bytes = b"spawn_main") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid and marker in cmdline:
                found.append(int(entry.name))
    return found


def test_dead_worker_ends_the_run_and_keeps_finished_clips(tmp_path):
    """Issue 12 case 5: with --workers 2, killing one worker left the parent waiting forever."""
    out = tmp_path / "world"
    argv = [sys.executable, "-m", "hybridmem.cli", "world", "generate", "--out", str(out), "--num-clips", "8",
            "--split", "train", "--workers", "2", *TINY_WORLD_FLAGS]  # fmt: skip
    process = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(list(out.glob("train/0*"))) >= 1, timeout=600, process=process)
        workers = _children(process.pid)
        assert workers, "no render worker found"
        os.kill(workers[0], 9)
        started = time.monotonic()
        _, err = process.communicate(timeout=300)
    finally:
        kill9(process)
    assert process.returncode == 2 and "a render worker died" in err and "Traceback" not in err, err
    assert time.monotonic() - started < 300
    finished = sorted(p.name for p in (out / "train").iterdir())
    for name in finished:
        assert gen.missing_clip_files(out / "train" / name) == []
    code, err = run_cli(argv[3:])  # resume in-process: every clip, nothing rendered twice
    assert code == 0, err
    assert sorted(p.name for p in (out / "train").iterdir()) == [f"{k:06d}" for k in range(8)]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGKILL])
def test_workers_end_with_their_parent(tmp_path, signal_number):
    """Issue 26: after SIGTERM or SIGKILL to `world generate --workers 2` (the parent only, as a job
    scheduler's kill may be), the render workers and the resource tracker stayed alive (after 20 s)."""
    out = tmp_path / "world"
    argv = [sys.executable, "-m", "hybridmem.cli", "world", "generate", "--out", str(out), "--num-clips", "8",
            "--split", "train", "--workers", "2", *TINY_WORLD_FLAGS]  # fmt: skip
    process = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(_children(process.pid)) == 2, timeout=120, process=process)
        helpers = _children(process.pid) + _children(process.pid, b"resource_tracker")
        started = {pid: publish.process_start_time(pid) for pid in helpers}
        time.sleep(1.0)  # the workers are past their start (importing, or rendering)
        os.kill(process.pid, signal_number)
        process.wait(timeout=30)
        assert wait_for(lambda: not any(publish.process_alive(p, t) for p, t in started.items()), timeout=15)
    finally:
        kill9(process)
