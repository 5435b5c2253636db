"""Generator -> VAE training -> latent cache -> hydra world model training -> sampling, via the CLI."""

from hybridmem.cli import main
from hybridmem.data.cache import LatentCacheDataset
from hybridmem.data.hmworld import read_video
from hybridmem.train.logging import read_metrics
from hybridmem.world.config import WorldConfig
from hybridmem.world.generate import generate


def test_generate_train_encode_train_sample(tmp_path):
    data, vae_run, cache, world_run = (tmp_path / name for name in ("data", "vae", "cache", "world"))
    world_config = WorldConfig(
        width=32,
        height=32,
        context_frames=9,
        target_frames=9,
        require_reentry=False,
        min_hidden_frames=1,
        supersample=1,
        max_subjects=1,
    )
    summary = generate(world_config, data, num_clips=3, split="train", workers=1, progress=False)
    assert summary.accepted == 3

    common = ["--steps", "2", "--batch-size", "1", "--warmup", "1", "--save-every", "0", "--device", "cpu"]
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                str(data),
                "--preset",
                "tiny",
                "--out",
                str(vae_run),
                "--frames",
                "9",
                "--val-every",
                "2",
                "--norm-windows",
                "3",
                *common,
            ]
        )
        == 0
    )
    assert len(read_metrics(vae_run, "val_psnr")) == 1

    assert main(["encode", "--data", str(data), "--vae", str(vae_run), "--out", str(cache)]) == 0
    dataset = LatentCacheDataset(cache)
    assert len(dataset) == 3
    item = dataset[0]
    assert item["context_latents"].shape == (3, 4, 4, 4) and item["cameras"].shape == (6, 4, 4)

    assert (
        main(
            [
                "train",
                "world",
                "--cache",
                str(cache),
                "--memory",
                "hydra",
                "--preset",
                "tiny",
                "--out",
                str(world_run),
                "--val-every",
                "2",
                *common,
            ]
        )
        == 0
    )
    assert len(read_metrics(world_run, "val_loss")) == 1

    out = tmp_path / "samples" / "000000.mp4"
    assert (
        main(
            [
                "sample",
                "--clip",
                str(data / "train" / "000000"),
                "--checkpoint",
                str(world_run),
                "--vae",
                str(vae_run),
                "--out",
                str(out),
                "--steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert read_video(out).shape == (9, 32, 32, 3)
    assert read_video(out.with_name("000000_side_by_side.mp4")).shape == (9, 32, 96, 3)
