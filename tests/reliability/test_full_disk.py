"""A disk that fills up during world generate, encode, train world and eval (issue 19: each ended in a
traceback; reruns recovered). Now each ends in one line naming the file and exit status 1, and the same
command rerun once there is space again finishes the work. The disk "fills" at the publishing path: a
writer's file comes out short (what safetensors does on a full device, with no error) or its temp file
cannot be created, while hybridmem.publish sees no free space."""

from __future__ import annotations

import errno

import pytest

from hybridmem import publish
from hybridmem.data import cache

from .helpers import TINY_WORLD_FLAGS, fake_renderer, run_cli, tiny_dataset, tiny_vae


class Disk:
    """Fills up after `room` more files named like `suffix` were created through the publishing path."""

    def __init__(self, monkeypatch, suffix: str, room: int):
        self.suffix, self.room, self.full = suffix, room, False
        real_create = publish._create_temp
        real_free = publish._free_bytes

        def create(folder, prefix, name_suffix):
            if name_suffix.endswith(self.suffix):
                if self.room == 0:
                    self.full = True
                    raise OSError(
                        errno.ENOSPC, "No space left on device", str(folder / f"{prefix}x{name_suffix}")
                    )
                self.room -= 1
            return real_create(folder, prefix, name_suffix)

        monkeypatch.setattr(publish, "_create_temp", create)
        monkeypatch.setattr(publish, "_free_bytes", lambda folder: 0 if self.full else real_free(folder))
        self.monkeypatch = monkeypatch

    def free_some_space(self):
        self.monkeypatch.undo()


def _one_error_line(err: str, name: str) -> None:
    assert "Traceback" not in err and err.count("hybridmem: error:") == 1, err
    line = next(line for line in err.splitlines() if "hybridmem: error:" in line)
    assert "No space left on device (ENOSPC)" in line and name in line, line


def test_full_disk_during_world_generate(tmp_path, monkeypatch):
    out = tmp_path / "world"
    argv = ["world", "generate", "--num-clips", "3", "--out", out, "--seed", "0", "--split", "train",
            *TINY_WORLD_FLAGS]  # fmt: skip
    with fake_renderer():
        disk = Disk(monkeypatch, "-tgt.mp4", room=1)  # the second clip's target video does not fit
        code, err = run_cli(argv)
        assert code == 1
        _one_error_line(err, "tgt.mp4")
        disk.free_some_space()
        code, err = run_cli(argv)
    assert code == 0, err
    assert sorted(p.name for p in (out / "train").iterdir()) == ["000000", "000001", "000002"]


def test_full_disk_during_encode(tmp_path, monkeypatch):
    data, vae, out = (
        tiny_dataset(tmp_path / "data", num_clips=3),
        tiny_vae(tmp_path / "vae"),
        tmp_path / "cache",
    )
    argv = ["encode", "--data", data, "--vae", vae, "--out", out]
    from safetensors import torch as safetensors_torch

    real_save = safetensors_torch.save_file
    disk = Disk(monkeypatch, "never", room=0)

    def short_on_the_second_clip(tensors, path, metadata=None):  # safetensors on a full device: no error
        real_save(tensors, path, metadata=metadata)
        if str(path).endswith("000001.safetensors"):
            disk.full = True
            with open(path, "r+b") as handle:
                handle.truncate(100)

    monkeypatch.setattr(safetensors_torch, "save_file", short_on_the_second_clip)
    code, err = run_cli(argv)
    assert code == 1
    _one_error_line(err, "000001.safetensors")
    assert cache.cached_clip_ids(out) == ["000000"]
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["000000.safetensors"]  # no short file
    disk.free_some_space()
    code, err = run_cli(argv)
    assert code == 0, err
    assert cache.cached_clip_ids(out) == ["000000", "000001", "000002"]
    for clip_id in cache.cached_clip_ids(out):
        cache.read_clip_entry(out / "clips" / f"{clip_id}.safetensors")


def test_full_disk_during_train_world(tmp_path, monkeypatch):
    import torch

    from train.helpers import make_latent_cache  # tests/ is on sys.path (rootdir packages)

    latents = make_latent_cache(tmp_path / "cache", clips=2)
    run = tmp_path / "run"
    argv = ["train", "world", "--cache", latents, "--out", run, "--memory", "hydra", "--preset", "tiny",
            "--steps", "4", "--batch-size", "1", "--warmup", "0", "--save-every", "2",
            "--device", "cpu"]  # fmt: skip
    real_save = torch.save
    disk = Disk(monkeypatch, "never", room=0)
    saves = []

    def torch_on_a_full_disk(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) > 2:  # the second checkpoint's optimizer.pt: what torch raises when the disk is full
            disk.full = True
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", torch_on_a_full_disk)
    code, err = run_cli(argv)
    assert code == 1
    _one_error_line(err, "optimizer.pt")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000002"]  # no half checkpoint
    disk.free_some_space()
    code, err = run_cli([*argv, "--resume"])
    assert code == 0, err
    assert (run / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("name", ["000001.json", "aggregate.json"])
def test_full_disk_during_eval(tmp_path, monkeypatch, name):
    data = tiny_dataset(tmp_path / "data", num_clips=2)
    out = tmp_path / "eval"
    argv = ["eval", "--baseline", "copy-last", "--data", data, "--split", "train", "--out", out,
            "--weights-dir", tmp_path / "none", "--side-by-side-clips", "1"]  # fmt: skip
    disk = Disk(monkeypatch, f"-{name}", room=0)
    code, err = run_cli(argv)
    assert code == 1
    _one_error_line(err, name)
    disk.free_some_space()
    code, err = run_cli(argv)
    assert code == 0, err
    assert (out / "aggregate.json").is_file() and (out / "side_by_side" / "000000.gif").is_file()
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
