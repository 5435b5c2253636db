"""One writer per run folder: a second writer is refused while the first lives (every command that writes a
run folder), a dead writer's lock is taken over, and the record of a live holder is respected."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from hybridmem import publish, runlock
from hybridmem.errors import ConfigError
from train.helpers import make_latent_cache

from .helpers import (
    hybridmem,
    kill9,
    lock_held_elsewhere,
    run_cli,
    snapshot,
    tiny_dataset,
    tiny_vae,
    wait_for,
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    return {
        "data": tiny_dataset(root / "data", num_clips=1),
        "cache": make_latent_cache(root / "cache", clips=2),
        "vae": tiny_vae(root / "vae"),
    }


# command -> (argv given the inputs and --out, lock name)
COMMANDS = {
    "world generate": (lambda i, out: ["world", "generate", "--num-clips", 1, "--out", out], "generate-0of1"),
    "encode": (
        lambda i, out: ["encode", "--data", i["data"], "--vae", i["vae"], "--out", out],
        "encode-0of1",
    ),
    "train world": (
        lambda i, out: [
            "train",
            "world",
            "--cache",
            i["cache"],
            "--out",
            out,
            "--steps",
            2,
            "--device",
            "cpu",
        ],
        "",
    ),
    "train vae": (
        lambda i, out: [
            "train",
            "vae",
            "--data",
            i["data"],
            "--out",
            out,
            "--steps",
            2,
            "--device",
            "cpu",
            "--val-clips",
            1,
            "--norm-windows",
            1,
        ],
        "",
    ),  # fmt: skip
    "eval": (
        lambda i, out: [
            "eval",
            "--baseline",
            "copy-last",
            "--data",
            i["data"],
            "--split",
            "train",
            "--out",
            out,
        ],
        "",
    ),
    "recipe": (lambda i, out: ["recipe", "--budget", "smoke", "--out", out], ""),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_second_writer_is_refused_while_the_first_lives(command, inputs, tmp_path):
    argv, name = COMMANDS[command]
    out = tmp_path / "run"
    out.mkdir()
    (out / "earlier.txt").write_text("results of the first writer")
    before = snapshot(out)
    with lock_held_elsewhere(out, name) as holder:
        code, err = run_cli(argv(inputs, out))
    assert code == 2, err
    assert "another run is writing it" in err and f"pid {holder.pid}" in err
    assert "Traceback" not in err
    assert snapshot(out) == before


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    with lock_held_elsewhere(tmp_path, "") as holder:
        with pytest.raises(runlock.RunLockedError, match=f"pid {holder.pid}"):
            runlock.acquire(tmp_path, "second")
        holder.kill()  # SIGKILL: no cleanup ran, the lock file still names it
        holder.wait()
    assert json.loads(runlock.lock_path(tmp_path).read_text())["pid"] == holder.pid
    with runlock.hold(tmp_path, "second"):
        record = json.loads(runlock.lock_path(tmp_path).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["start_time"] == publish.process_start_time(os.getpid())
    assert runlock.lock_path(tmp_path).read_text() == ""  # released: a free lock holds no record


def test_record_of_a_live_process_is_respected_even_when_flock_is_free(tmp_path):
    """A filesystem that ignores flock: the pid + host + start-time record still refuses a second writer."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        record = {"pid": sleeper.pid, "host": socket.gethostname(), "command": "x",
                  "start_time": publish.process_start_time(sleeper.pid)}  # fmt: skip
        runlock.lock_path(tmp_path).write_text(json.dumps(record))
        with pytest.raises(runlock.RunLockedError, match=f"pid {sleeper.pid}"):
            runlock.acquire(tmp_path, "second")
        # the same pid with another start time is a reused pid: the record is stale
        runlock.lock_path(tmp_path).write_text(json.dumps({**record, "start_time": record["start_time"] + 1}))
        runlock.acquire(tmp_path, "second").release()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_lock_is_reentrant_in_one_process_and_refuses_a_file(tmp_path):
    first = runlock.acquire(tmp_path, "recipe")
    second = runlock.acquire(tmp_path, "train world")  # the recipe runs its stages in-process
    second.release()
    assert json.loads(runlock.lock_path(tmp_path).read_text())["command"] == "recipe"
    first.release()
    (tmp_path / "file.mp4").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        runlock.acquire(tmp_path / "file.mp4", "eval")
    assert (tmp_path / "file.mp4").read_bytes() == b"x"


@pytest.mark.slow  # two processes importing torch; the in-process case is the `train world` row above
def test_two_train_world_runs_into_one_out(inputs, tmp_path):
    """Issue 12 case 6: the second run exited 0 and the first's weights were silently lost."""
    out = tmp_path / "run"
    flags = ["--cache", inputs["cache"], "--out", out, "--device", "cpu", "--preset", "tiny"]
    first = hybridmem("train", "world", *flags, "--steps", 100000, "--save-every", 0)
    try:
        assert wait_for(lambda: (out / "train_config.json").is_file(), timeout=600, process=first)
        second = subprocess.run(
            [sys.executable, "-m", "hybridmem.cli", "train", "world", *map(str, flags), "--steps", "2"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # the first run is untouched
    finally:
        kill9(first)
