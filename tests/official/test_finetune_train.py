"""Fine-tuning HyDRA from a tiny official-format release (plain Wan2.1, no hydra.pth): `encode --official`,
`train world --official` (the official trainable set, bit-identical resume), then the fine-tuned DiT
sampled and evaluated with the release's VAE and text encoder, end to end on CPU."""

import json

import pytest
import torch

from hybridmem.cli import main
from hybridmem.data.cache import LatentCacheDataset
from hybridmem.errors import ConfigError
from hybridmem.models.checkpoint import load_model
from hybridmem.official.finetune import build_finetuning_model, is_official_trainable, training_grid
from hybridmem.official.text import TEXT_LENGTH
from hybridmem.train.config import WorldTrainConfig
from hybridmem.train.world import train_world

from .tiny_release import write_tiny_release

GEOMETRY = ["--width", "64", "--height", "48", "--context-frames", "9", "--target-frames", "9"]
GEOMETRY += ["--min-hidden-frames", "3", "--supersample", "1", "--workers", "1", "--no-progress"]


def generate(data, split: str, clips: int) -> None:
    args = ["world", "generate", "--num-clips", str(clips), "--split", split, "--out", str(data), *GEOMETRY]
    assert main(args) == 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(release, data, cache): 2 train clips and 1 test clip encoded by the release; Wan2.1 without HyDRA."""
    root = tmp_path_factory.mktemp("finetune")
    release = write_tiny_release(root / "ckpts", hydra=False)
    data = root / "data"
    generate(data, "train", 2)
    generate(data, "test", 1)
    cache = root / "cache"
    args = ["encode", "--official", str(release), "--data", str(data), "--out", str(cache), "--device", "cpu"]
    assert main([*args, "--split", "train"]) == 0
    return release, data, cache


def finetune_config(setup, out, **overrides) -> WorldTrainConfig:
    release, _, cache = setup
    values = dict(
        official=str(release),
        cache=str(cache),
        out=str(out),
        steps=4,
        batch_size=1,
        lr=1e-3,
        warmup=1,
        save_every=2,
        ema_decay=0.9,
        device="cpu",
        progress=False,
        tensorboard=False,
    )
    return WorldTrainConfig(**{**values, **overrides})


def test_the_cache_holds_the_release_latents_and_padded_captions(setup):
    _, _, cache = setup
    dataset = LatentCacheDataset(cache)
    item = dataset[0]
    assert item["context_latents"].shape == (3, 16, 6, 8) and item["target_latents"].shape == (3, 16, 6, 8)
    caption = item["caption_embedding"]  # stored with the prompt's rows only, read back as 512
    assert caption.shape == (TEXT_LENGTH, 32)
    stored = caption.abs().sum(1).gt(0).sum()
    assert 0 < stored < TEXT_LENGTH and caption[stored:].abs().sum() == 0
    assert dataset.index["vae_sha256"] and dataset.index["caption_length"] == TEXT_LENGTH


def test_the_built_model_trains_exactly_the_official_set(setup):
    release, _, _ = setup
    model, _ = build_finetuning_model(release)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters() if is_official_trainable(name)}
    counts = (
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        sum(p.numel() for p in model.parameters()),
    )
    dim = 48  # the tiny release: 2 blocks of width 48
    per_block = (
        4 * (dim * dim + dim)
        + 2 * dim  # self_attn q, k, v, o and its q/k norms
        + (dim * dim * 8 + dim)  # self_attn.tokenizer (Conv3d 2x2x2)
        + 2 * (12 * dim + dim)
        + (dim * dim + dim)  # the camera encoders and the projector
    )
    assert counts == (2 * per_block, 134_544) and 2 * per_block == 63_168
    assert "blocks.0.memory.tokenizer.conv.weight" in trainable and "blocks.0.ffn.0.weight" not in trainable


def test_the_official_grid_and_its_weights():
    sigmas, weights = training_grid()
    assert sigmas.shape == weights.shape == (1000,) and sigmas[0] == 1.0
    assert abs(float(weights.sum()) - 1000.0) < 1e-2 and float(weights.min()) == 0.0


def test_resume_is_bit_identical_and_only_the_trainable_set_moves(setup, tmp_path):
    straight = train_world(finetune_config(setup, tmp_path / "straight"))
    train_world(finetune_config(setup, tmp_path / "resumed", steps=2))
    resumed = train_world(finetune_config(setup, tmp_path / "resumed", resume=True))
    assert straight["losses"][2:] == resumed["losses"]
    a, b = straight["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    start, _ = build_finetuning_model(setup[0])
    moved = {name for name, parameter in start.named_parameters() if not torch.equal(parameter, a[name])}
    assert moved and all(is_official_trainable(name) for name in moved)  # the frozen set never moves
    final = json.loads((tmp_path / "straight" / "final" / "config.json").read_text())
    assert final["trained_with"]["official"]["started_from"] == "Wan2.1 + new HyDRA modules"
    assert load_model(tmp_path / "straight" / "final").config.caption_dim == 32


def test_official_fixes_the_model_flags(setup, tmp_path):
    with pytest.raises(ConfigError, match="--memory goes without --official"):
        finetune_config(setup, tmp_path / "x", memory="full").validate()


def test_generate_encode_train_sample_eval_end_to_end(setup, tmp_path, capsys):
    release, data, cache = setup
    run = tmp_path / "run"
    train = ["train", "world", "--official", str(release), "--cache", str(cache), "--out", str(run)]
    assert main([*train, "--steps", "2", "--batch-size", "1", "--lr", "1e-5", "--device", "cpu"]) == 0
    official = [
        "--official",
        str(release),
        "--checkpoint",
        str(run),
        "--precision",
        "fp32",
        "--device",
        "cpu",
    ]
    clip = data / "test" / "000000"
    out = tmp_path / "sample.mp4"
    sample = ["sample", *official, "--clip", str(clip), "--out", str(out), "--size", "64x48", "--steps", "1"]
    assert main(sample) == 0, capsys.readouterr().err
    assert out.is_file()
    evaluation = tmp_path / "eval"
    args = ["eval", *official, "--baseline", "erased", "--baseline", "frozen", "--data", str(data)]
    args += ["--out", str(evaluation), "--steps", "1", "--weights-dir", str(tmp_path / "none")]
    assert main([*args, "--side-by-side-clips", "0"]) == 0, capsys.readouterr().err
    row = json.loads((evaluation / "aggregate.json").read_text())["methods"]["run"]
    assert row["counts"]["presence_gain"] == 1 and row["counts"]["motion_score"] == 1
    assert isinstance(row["metrics"]["presence_gain"], float)
    assert isinstance(row["metrics"]["motion_score"], float)


def test_bf16_encoding_is_recorded_close_to_fp32_and_a_mix_is_refused(setup, tmp_path, capsys):
    release, data, cache = setup
    half = tmp_path / "cache_bf16"
    args = ["encode", "--official", str(release), "--data", str(data), "--split", "train", "--device", "cpu"]
    assert main([*args, "--out", str(half), "--precision", "bf16"]) == 0
    full, reduced = LatentCacheDataset(cache), LatentCacheDataset(half)
    assert reduced.index["precision"] == "bf16" and full.index["precision"] == "fp32"
    for name in ("context_latents", "caption_embedding"):
        ours, theirs = full[0][name], reduced[0][name]
        assert ours.dtype == theirs.dtype == torch.float32 and not torch.equal(ours, theirs)
        assert (ours - theirs).abs().max() < 0.1 * ours.abs().max()  # bf16 rounding, not another model
    # encoding more clips into the bf16 cache in fp32 would mix two precisions: refused, named
    assert main([*args, "--out", str(half), "--precision", "fp32"]) == 2
    assert "precision" in capsys.readouterr().err
    # --precision belongs to --official
    assert (
        main(
            [
                "encode",
                "--data",
                str(data),
                "--vae",
                str(release),
                "--out",
                str(tmp_path / "x"),
                "--precision",
                "bf16",
            ]
        )
        == 2
    )
    assert "--precision goes with --official" in capsys.readouterr().err
