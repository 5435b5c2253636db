"""Training under faults: a metrics.csv cut by a kill, --resume with another VAE's cache, batches that
cannot fit refused before allocating, absurd numbers in configs built in code."""

from __future__ import annotations

import pytest
import torch

from hybridmem import device as machine
from hybridmem.data import cache
from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.train.config import VaeTrainConfig, WorldTrainConfig
from hybridmem.train.logging import CSV_NAME, read_metrics
from hybridmem.train.world import train_world
from train.helpers import make_latent_cache, tiny_world_config

from .helpers import run_cli, tiny_dataset


@pytest.fixture(scope="module")
def latent_cache(tmp_path_factory):
    return make_latent_cache(tmp_path_factory.mktemp("cache"), clips=3)


def test_resume_after_a_partial_last_metrics_row(latent_cache, tmp_path):
    """Issue 12 case 7: a kill mid-write left '4,lo' and --resume died on it with a traceback."""
    straight = train_world(tiny_world_config(latent_cache, tmp_path / "straight"))
    train_world(tiny_world_config(latent_cache, tmp_path / "run", steps=2))
    with open(tmp_path / "run" / CSV_NAME, "a") as handle:
        handle.write("3,lo")  # the row of step 3 cut short (the kill came before the step-4 checkpoint)
    resumed = train_world(tiny_world_config(latent_cache, tmp_path / "run", resume=True))
    assert resumed["step"] == 4
    torch.testing.assert_close(
        torch.tensor([v for _, _, v in read_metrics(tmp_path / "run", "loss")]),
        torch.tensor(straight["losses"]), rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_malformed_metrics_row_is_named(latent_cache, tmp_path):
    train_world(tiny_world_config(latent_cache, tmp_path / "run", steps=2))
    path = tmp_path / "run" / CSV_NAME
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2] + ["x,loss,1.0\r\n"] + lines[2:]))
    argv = ["train", "world", "--cache", latent_cache, "--out", tmp_path / "run", "--steps", 4, "--resume",
            "--device", "cpu", "--preset", "tiny", "--batch-size", 2, "--lr", "1e-3", "--warmup", 1,
            "--save-every", 2, "--ema-decay", 0.9]  # fmt: skip
    code, err = run_cli(argv)
    assert code == 2 and f"{path}: line 3" in err and "Traceback" not in err, err
    with pytest.raises(DataError, match="line 3"):
        read_metrics(tmp_path / "run")


def test_resume_with_a_cache_of_another_vae_is_refused(tmp_path):
    """Issue 12 case 8: the run resumed silently on latents of another VAE."""
    first = make_latent_cache(tmp_path / "a", clips=3)
    cache.write_index(first, {**cache.read_index(first), "vae_sha256": "a" * 64})
    other = make_latent_cache(tmp_path / "b", clips=3)
    cache.write_index(other, {**cache.read_index(other), "vae_sha256": "b" * 64})
    train_world(tiny_world_config(first, tmp_path / "run", steps=2))
    with pytest.raises(CheckpointError, match="cache_vae_sha256"):
        train_world(tiny_world_config(other, tmp_path / "run", resume=True))
    train_world(tiny_world_config(first, tmp_path / "run", resume=True))  # the same VAE's cache resumes


@pytest.fixture
def small_machine(monkeypatch):
    """A machine with 4 GB free, so the refusal does not depend on the machine running the tests."""
    monkeypatch.setattr(machine, "available_memory", lambda device=None: 4 * 2**30)


def test_huge_world_batch_is_refused_before_allocation(latent_cache, tmp_path, small_machine):
    """Issue 12 case 9: --batch-size 100000 ran out of file mappings and blamed a good cache file."""
    argv = ["train", "world", "--cache", latent_cache, "--out", tmp_path / "run", "--batch-size", 100000,
            "--device", "cpu"]  # fmt: skip
    code, err = run_cli(argv)
    assert code == 2 and "--batch-size" in err and "needs at least" in err and "Traceback" not in err, err
    assert "safetensors" not in err and not (tmp_path / "run").exists()


def test_huge_vae_batch_is_refused_before_allocation(tmp_path, small_machine):
    data = tiny_dataset(tmp_path / "data", num_clips=1)
    argv = [
        "train",
        "vae",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--batch-size",
        100000,
        "--device",
        "cpu",
    ]
    code, err = run_cli(argv)
    assert code == 2 and "--batch-size" in err and "needs at least" in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_cache_read_out_of_memory_does_not_blame_the_file(latent_cache, monkeypatch):
    import safetensors

    def exhausted(*args, **kwargs):
        raise OSError("unable to mmap 1640 bytes: Cannot allocate memory (12)")

    monkeypatch.setattr(safetensors, "safe_open", exhausted)
    with pytest.raises(DataError, match="the file is not at fault: lower --batch-size"):
        cache.read_clip_entry(latent_cache / "clips" / "000000.safetensors")


def test_entries_do_not_keep_the_file_mapped(latent_cache):
    """A batch holds many entries: each owns its tensors instead of a mapping of its file."""
    entry = cache.read_clip_entry(latent_cache / "clips" / "000000.safetensors")
    again = cache.read_clip_entry(latent_cache / "clips" / "000000.safetensors")
    again["context_latents"].add_(1)  # no shared storage between reads
    assert not torch.equal(entry["context_latents"], again["context_latents"])


@pytest.mark.parametrize(
    "config, flag",
    [
        (WorldTrainConfig(cache="c", out="o", lr=1e30), "--lr"),
        (WorldTrainConfig(cache="c", out="o", grad_clip=float("nan")), "--grad-clip"),
        (WorldTrainConfig(cache="c", out="o", seed=2**64 + 1), "--seed"),
        (VaeTrainConfig(data="d", out="o", lr=float("inf")), "--lr"),
        (VaeTrainConfig(data="d", out="o", kl_weight=-1.0), "--kl-weight"),
    ],
)
def test_configs_built_in_code_get_the_same_rules(config, flag):
    with pytest.raises(ConfigError, match=flag):
        config.validate()


def test_a_nan_in_one_cached_latent_is_named_not_blamed_on_the_lr(tmp_path):
    """Issue 26: a NaN in one cached latent ended training in 'loss is nan; lower --lr' (a wrong cause)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    latents = make_latent_cache(tmp_path / "cache", clips=3)
    entry = latents / "clips" / "000001.safetensors"
    with safe_open(str(entry), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    tensors["target_latents"][0, 0, 0, 0] = float("nan")
    save_file(tensors, str(entry), metadata=metadata)
    with pytest.raises(
        DataError, match=r"000001.safetensors: cache entry's 'target_latents' holds 1 non-finite"
    ):
        train_world(tiny_world_config(latents, tmp_path / "run", steps=2, batch_size=3))
