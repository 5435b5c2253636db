"""`hybridmem sample` on a faulty machine and with mismatched models (issue 19): a full disk while the videos
are written, a read-only or full output folder and an over-long name found before any sampling, two samples
into one --out at once, and a world model with a VAE it was not trained with."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

from hybridmem import runlock
from hybridmem.errors import CheckpointError
from hybridmem.sample import pipeline as sample_pipeline
from tiny import save_tiny_world

from .helpers import hybridmem, lock_held_elsewhere, run_cli, tiny_dataset, tiny_vae

SIDE = "s_side_by_side.mp4"


def _world(folder, trained_with=None):
    """A tiny world model (tests/tiny.py); `trained_with` written into its config.json as models.checkpoint
    records it (by hand, so these tests also run against code from before the record existed)."""
    save_tiny_world(folder)
    if trained_with is not None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "trained_with": trained_with}, indent=2))
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample_faults")
    vae = tiny_vae(root / "vae")
    record = {"vae": {"sha256": runlock.model_sha256(vae), "path": str(vae)}}
    return {
        "clip": tiny_dataset(root / "data", num_clips=1) / "train" / "000000",
        "vae": vae,
        "other_vae": tiny_vae(root / "other_vae", seed=1),
        "world": _world(root / "world", trained_with=record),
        "old_world": _world(root / "old_world"),  # saved before models recorded their VAE
    }


def _sample(inputs, out, *extra, world="world", vae="vae"):
    return run_cli(
        ["sample", "--clip", inputs["clip"], "--checkpoint", inputs[world], "--vae", inputs[vae],
         "--out", out, "--steps", "2", "--device", "cpu", *extra]
    )  # fmt: skip


def _contents(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def good_outputs(inputs, tmp_path):
    out = tmp_path / "s.mp4"
    code, err = _sample(inputs, out)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4", SIDE]  # the lock file is gone too
    return out


def _never_sample(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("sampling started although the output cannot be written")

    monkeypatch.setattr(sample_pipeline.WorldPipeline, "from_checkpoint", refuse)


def test_overwrite_on_a_full_disk_keeps_the_good_outputs(inputs, good_outputs, monkeypatch):
    """Issue 19: `sample --overwrite` on a full disk replaced both outputs by a 0-byte mp4 and a truncated
    side-by-side, printed "done" and exited 0."""

    before = _contents(good_outputs.parent)
    real_run = subprocess.run

    def ffmpeg_on_a_full_disk(command, **kwargs):
        if "libx264" not in command:
            return real_run(command, **kwargs)
        return subprocess.CompletedProcess(
            command, 228, b"", b"Could not write header: No space left on device"
        )

    monkeypatch.setattr(subprocess, "run", ffmpeg_on_a_full_disk)
    code, err = _sample(inputs, good_outputs, "--overwrite", "--seed", "5")
    assert code == 1 and "No space left on device (ENOSPC)" in err and str(good_outputs) in err, err
    assert "Traceback" not in err and err.count("hybridmem: error:") == 1  # one line (after the progress bar)
    assert _contents(good_outputs.parent) == before  # no 0-byte file, no temp file


def test_a_cut_side_by_side_from_a_writer_that_exited_0_publishes_neither(inputs, good_outputs, monkeypatch):
    """Issue 19: a truncated side-by-side was published next to a new video (a pair from two runs)."""
    from hybridmem import publish

    before = _contents(good_outputs.parent)
    real_ffmpeg = publish._run_ffmpeg

    def cuts_the_side_by_side(command, payload, path):
        real_ffmpeg(command, payload, path)
        if path.name.endswith(SIDE):
            path.write_bytes(path.read_bytes()[:-200])

    monkeypatch.setattr(publish, "_run_ffmpeg", cuts_the_side_by_side)
    code, err = _sample(inputs, good_outputs, "--overwrite", "--seed", "5")
    assert code == 1 and SIDE in err and "cut short" in err and "Traceback" not in err, err
    assert _contents(good_outputs.parent) == before


def test_new_out_on_a_full_disk_publishes_nothing_and_the_rerun_works(inputs, tmp_path, monkeypatch):
    """Issue 19: with a new --out the corrupt file was published, then a traceback; the rerun then refused
    because the output 'exists'."""
    from hybridmem import publish

    out = tmp_path / "new" / "s.mp4"
    real_ffmpeg = publish._run_ffmpeg

    def empty_file_exit_0(command, payload, path):
        path.write_bytes(b"")

    monkeypatch.setattr(publish, "_run_ffmpeg", empty_file_exit_0)
    code, err = _sample(inputs, out)
    assert code == 1 and "empty file" in err and str(out) in err and "Traceback" not in err, err
    assert list(out.parent.iterdir()) == []
    monkeypatch.setattr(publish, "_run_ffmpeg", real_ffmpeg)
    assert _sample(inputs, out)[0] == 0
    from hybridmem.data.hmworld import read_video

    assert read_video(out).shape == (9, 32, 32, 3)


def test_read_only_out_fails_before_sampling(inputs, tmp_path, monkeypatch):
    """Issue 19: a read-only --out: sample did all its work before failing (with a traceback)."""
    from hybridmem import publish

    _never_sample(monkeypatch)

    def read_only(folder, prefix, suffix):
        raise OSError(30, "Read-only file system", str(folder / f"{prefix}x{suffix}"))

    monkeypatch.setattr(publish, "_create_temp", read_only)
    code, err = _sample(inputs, tmp_path / "s.mp4")
    assert code == 1 and "Read-only file system (EROFS)" in err and str(tmp_path) in err, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_full_out_folder_fails_before_sampling(inputs, tmp_path, monkeypatch):
    from hybridmem import publish

    _never_sample(monkeypatch)
    monkeypatch.setattr(publish, "_free_bytes", lambda folder: 1000)
    code, err = _sample(inputs, tmp_path / "s.mp4")
    assert code == 1 and "(ENOSPC)" in err and "MiB free" in err and "Traceback" not in err, err


def test_over_long_out_name_exits_1_without_a_traceback(inputs, tmp_path, monkeypatch):
    """Issue 19: over-long file names ended in a traceback."""
    _never_sample(monkeypatch)
    code, err = _sample(inputs, tmp_path / ("x" * 300 + ".mp4"))
    assert code == 1 and "(ENAMETOOLONG)" in err and "Traceback" not in err, err


def test_out_through_a_file_exits_1_before_sampling(inputs, tmp_path, monkeypatch):
    _never_sample(monkeypatch)
    (tmp_path / "notes.txt").write_text("keep")
    code, err = _sample(inputs, tmp_path / "notes.txt" / "s.mp4")
    assert code == 1 and "(ENOTDIR)" in err and "notes.txt" in err and "Traceback" not in err, err
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_second_sample_into_one_out_is_refused_while_the_first_runs(inputs, tmp_path, monkeypatch):
    from hybridmem.sample.cli import lock_name

    out = tmp_path / "s.mp4"
    with lock_held_elsewhere(tmp_path, name=lock_name(out)):
        _never_sample(monkeypatch)
        code, err = _sample(inputs, out)
    assert code == 2 and "another `hybridmem sample` is writing it" in err and "a test holder" in err, err
    assert not out.exists()


def test_concurrent_samples_into_one_out(inputs, tmp_path):
    """Issue 19: two `sample --out same.mp4` at once shared one temp name; one exit-0 run's video was the
    other's, video and side-by-side came from different runs, one overwrote the other without --overwrite.
    Now: one publishes, the other is refused (locked, or the output exists), and the pair is one run's."""
    out = tmp_path / "s.mp4"
    argv = ["sample", "--clip", inputs["clip"], "--checkpoint", inputs["world"], "--vae", inputs["vae"],
            "--out", out, "--steps", "2", "--device", "cpu"]  # fmt: skip
    runs = [hybridmem(*argv, "--seed", str(seed)) for seed in (1, 2)]
    deadline = time.monotonic() + 300
    codes = [run.wait(timeout=max(1.0, deadline - time.monotonic())) for run in runs]
    errors = [run.stderr.read().decode() for run in runs]
    assert sorted(codes) == [0, 2], errors
    loser = errors[codes.index(2)]
    assert "another `hybridmem sample` is writing it" in loser or "exists" in loser, loser
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4", SIDE]  # no temp or lock file left
    from hybridmem.data.hmworld import read_video

    video, strip = read_video(out), read_video(tmp_path / SIDE)
    assert video.shape == (9, 32, 32, 3)
    # the side-by-side's generated third is this video (both encoded from the same frames)
    assert np.abs(strip[:, :, 64:].astype(int) - video.astype(int)).mean() < 3


# --- a world model and the VAE it was trained with ---------------------------------------------------------


def test_world_model_refuses_a_vae_it_was_not_trained_with(inputs, tmp_path):
    """Issue 19: sample accepted a world model with another VAE (the shipped VAE with a smoke world model)."""
    code, err = _sample(inputs, tmp_path / "s.mp4", vae="other_vae")
    assert code == 2 and str(inputs["world"]) in err and str(inputs["other_vae"]) in err, err
    assert runlock.model_sha256(inputs["vae"])[:12] in err and "--allow-other-vae" in err
    assert list(tmp_path.iterdir()) == []
    code, err = _sample(inputs, tmp_path / "s.mp4", "--allow-other-vae", vae="other_vae")
    assert code == 0 and "using it anyway (--allow-other-vae)" in err, err


def test_checkpoint_without_a_vae_record_is_used_with_a_warning(inputs, tmp_path):
    code, err = _sample(inputs, tmp_path / "s.mp4", world="old_world")
    assert code == 0 and "does not record the VAE it was trained with" in err, err


def test_shipped_models_pair_without_a_warning(capsys):
    from hybridmem.runfolder import default_assets_dir

    assets = default_assets_dir()
    sample_pipeline.check_vae_pairing(assets / "hydra", assets / "vae")
    assert capsys.readouterr().err == ""


def test_eval_refuses_another_vae_before_recording_its_inputs(inputs, tmp_path):
    from hybridmem.eval.protocol import EvalConfig, run_evaluation

    config = EvalConfig(
        data=str(inputs["clip"].parent.parent), split="train", out=str(tmp_path / "eval"),
        checkpoints=[str(inputs["world"])], vae=str(inputs["other_vae"]), side_by_side_clips=0,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="--allow-other-vae"):
        run_evaluation(config, progress=False)
    assert not (tmp_path / "eval" / "run.json").exists()  # the corrected command is not refused later


def test_train_world_records_the_vae_of_its_cache(tmp_path):
    from hybridmem.data import cache
    from hybridmem.models.checkpoint import read_trained_with
    from hybridmem.train.world import train_world
    from train.helpers import make_latent_cache, tiny_world_config  # tests/ is on sys.path

    latents = make_latent_cache(tmp_path / "cache", clips=2)
    index = cache.read_index(latents)
    cache.write_index(latents, {**index, "vae": "/runs/vae/final", "vae_sha256": "ab" * 32})
    config = tiny_world_config(
        latents, tmp_path / "run", steps=1, batch_size=1, lr=1e-4, warmup=0, save_every=1, ema_decay=0.999
    )
    train_world(config)
    expected = {"vae": {"sha256": "ab" * 32, "path": "/runs/vae/final"}}
    assert read_trained_with(tmp_path / "run" / "final") == expected
    assert read_trained_with(tmp_path / "run" / "checkpoints" / "step_00000001" / "ema") == expected
