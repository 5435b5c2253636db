"""Table-driven fuzz of CLI flags and of the files the run commands read (cache.json, cache entries,
dataset.json, metrics.csv, run.json, aggregate.json): each case exits 2 with a message naming the flag or
file and field, prints no traceback, and changes no existing file."""

from __future__ import annotations

import json

import pytest

from train.helpers import make_latent_cache

from .helpers import run_cli, snapshot, tiny_dataset, tiny_vae

BIG = str(2**64 + 1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    return {
        "data": tiny_dataset(root / "data", num_clips=1),
        "cache": make_latent_cache(root / "cache", clips=2),
        "vae": tiny_vae(root / "vae"),
        "root": root,
    }


def _train_world(i, out, *flags):
    return ["train", "world", "--cache", i["cache"], "--out", out, "--steps", 1, "--device", "cpu", *flags]


def _train_vae(i, out, *flags):
    return ["train", "vae", "--data", i["data"], "--out", out, "--steps", 1, "--device", "cpu", *flags]


def _generate(i, out, *flags):
    return ["world", "generate", "--num-clips", 1, "--out", out, *flags]


def _eval(i, out, *flags):
    return ["eval", "--baseline", "copy-last", "--data", i["data"], "--split", "train", "--out", out, *flags]


# name -> (argv given inputs and an output path, text the message must contain)
FLAG_CASES = {
    "train world --lr 1e30": (lambda i, o: _train_world(i, o, "--lr", "1e30"), "--lr"),
    "train world --lr nan": (lambda i, o: _train_world(i, o, "--lr", "nan"), "--lr"),
    "train world --lr inf": (lambda i, o: _train_world(i, o, "--lr", "inf"), "--lr"),
    "train world --lr -1": (lambda i, o: _train_world(i, o, "--lr", "-1"), "--lr"),
    "train world --seed 2^64+1": (lambda i, o: _train_world(i, o, "--seed", BIG), "--seed"),
    "train world --seed -1": (lambda i, o: _train_world(i, o, "--seed", "-1"), "--seed"),
    "train world --batch-size 0": (lambda i, o: _train_world(i, o, "--batch-size", "0"), "--batch-size"),
    "train world --batch-size 1e3": (lambda i, o: _train_world(i, o, "--batch-size", "1e3"), "--batch-size"),
    "train world --ema-decay 1": (lambda i, o: _train_world(i, o, "--ema-decay", "1"), "--ema-decay"),
    "train world --grad-clip nan": (lambda i, o: _train_world(i, o, "--grad-clip", "nan"), "--grad-clip"),
    "train world --shift inf": (lambda i, o: _train_world(i, o, "--shift", "inf"), "--shift"),
    "train world --weight-decay -inf": (
        lambda i, o: _train_world(i, o, "--weight-decay", "-inf"),
        "--weight-decay",
    ),
    "train world --warmup -1": (lambda i, o: _train_world(i, o, "--warmup", "-1"), "--warmup"),
    "train world --steps 10^30": (lambda i, o: _train_world(i, o, "--steps", "1" + "0" * 30), "--steps"),
    "train vae --lr 1e30": (lambda i, o: _train_vae(i, o, "--lr", "1e30"), "--lr"),
    "train vae --seed 2^64+1": (lambda i, o: _train_vae(i, o, "--seed", BIG), "--seed"),
    "train vae --kl-weight nan": (lambda i, o: _train_vae(i, o, "--kl-weight", "nan"), "--kl-weight"),
    "train vae --frames 0": (lambda i, o: _train_vae(i, o, "--frames", "0"), "--frames"),
    "world generate --fps -8": (lambda i, o: _generate(i, o, "--fps", "-8"), "--fps"),
    "world generate --fps nan": (lambda i, o: _generate(i, o, "--fps", "nan"), "--fps"),
    "world generate --seed 2^64+1": (lambda i, o: _generate(i, o, "--seed", BIG), "--seed"),
    "world generate --width 100000": (lambda i, o: _generate(i, o, "--width", "100000"), "--width"),
    "world generate --workers 0": (lambda i, o: _generate(i, o, "--workers", "0"), "--workers"),
    "world generate --video-crf 99": (lambda i, o: _generate(i, o, "--video-crf", "99"), "--video-crf"),
    "world generate --visible-threshold 2": (
        lambda i, o: _generate(i, o, "--visible-threshold", "2"),
        "--visible-threshold",
    ),
    "world generate --shard 3/2": (lambda i, o: _generate(i, o, "--shard", "3/2"), "--shard"),
    "world preview --scale 100000": (
        lambda i, o: [
            "world",
            "preview",
            i["data"] / "train" / "000000",
            "--out",
            o / "p.png",
            "--scale",
            "100000",
        ],
        "--scale",
    ),  # fmt: skip
    "world preview --columns 0": (
        lambda i, o: [
            "world",
            "preview",
            i["data"] / "train" / "000000",
            "--out",
            o / "p.png",
            "--columns",
            "0",
        ],
        "--columns",
    ),  # fmt: skip
    "encode --shard 2/2": (
        lambda i, o: ["encode", "--data", i["data"], "--vae", i["vae"], "--out", o, "--shard", "2/2"],
        "--shard",
    ),
    "eval --seed -1": (lambda i, o: _eval(i, o, "--seed", "-1"), "--seed"),
    "eval --num-clips 0": (lambda i, o: _eval(i, o, "--num-clips", "0"), "--num-clips"),
    "eval --steps 0": (lambda i, o: _eval(i, o, "--steps", "0"), "--steps"),
    "eval --side-by-side-clips -1": (
        lambda i, o: _eval(i, o, "--side-by-side-clips", "-1"),
        "--side-by-side",
    ),
    "sample --shift nan": (
        lambda i, o: ["sample", "--checkpoint", o, "--vae", i["vae"], "--out", o / "s.mp4", "--shift", "nan"],
        "--shift",
    ),
    "sample --seed 2^64+1": (
        lambda i, o: ["sample", "--checkpoint", o, "--vae", i["vae"], "--out", o / "s.mp4", "--seed", BIG],
        "--seed",
    ),
}

# --out naming an existing file, for every command that writes a folder
FILE_OUT_CASES = {
    "world generate": lambda i, f: _generate(i, f),
    "encode": lambda i, f: ["encode", "--data", i["data"], "--vae", i["vae"], "--out", f],
    "train world": lambda i, f: _train_world(i, f),
    "train vae": lambda i, f: _train_vae(i, f),
    "eval": lambda i, f: _eval(i, f),
    "recipe": lambda i, f: ["recipe", "--budget", "smoke", "--out", f],
    "world preview (a folder)": lambda i, f: [
        "world",
        "preview",
        i["data"] / "train" / "000000",
        "--out",
        f.parent / "folder.png",
    ],  # fmt: skip
}


def _check_refused(argv, inputs, tmp_path, message):
    watched = tmp_path / "watched"
    before = snapshot(watched) | {"inputs": str(snapshot(inputs["root"]))}
    code, err = run_cli(argv)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert snapshot(watched) | {"inputs": str(snapshot(inputs["root"]))} == before


@pytest.fixture
def watched(tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "results.txt").write_text("earlier results")
    (folder / "existing.txt").write_text("a file, not a folder")
    (folder / "folder.png").mkdir()
    return folder


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flag_exits_2_naming_it(case, inputs, watched, tmp_path):
    argv, message = FLAG_CASES[case]
    _check_refused(argv(inputs, watched), inputs, tmp_path, message)


@pytest.mark.parametrize("command", sorted(FILE_OUT_CASES))
def test_out_naming_an_existing_file(command, inputs, watched, tmp_path):
    _check_refused(FILE_OUT_CASES[command](inputs, watched / "existing.txt"), inputs, tmp_path, "--out")


# --- files ---------------------------------------------------------------------------------------------

CACHE_INDEX_CASES = {
    "not json": (b"{not json", "cache.json"),
    "not utf-8": (b"\xff\xfe{}", "cache.json"),
    "a list": (b"[]", "cache.json"),
    "another format": (b'{"format": 99}', "cache format 99"),
}


@pytest.mark.parametrize("case", sorted(CACHE_INDEX_CASES))
def test_bad_cache_index(case, inputs, watched, tmp_path):
    content, message = CACHE_INDEX_CASES[case]
    cache = make_latent_cache(watched / "cache", clips=2)
    (cache / "cache.json").write_bytes(content)
    argv = ["train", "world", "--cache", cache, "--out", tmp_path / "run", "--steps", 1, "--device", "cpu"]
    _check_refused(argv, inputs, tmp_path, message)


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_bad_cache_entry(content, inputs, watched, tmp_path):
    cache = make_latent_cache(watched / "cache", clips=2)
    (cache / "clips" / "000000.safetensors").write_bytes(content)
    argv = ["train", "world", "--cache", cache, "--out", tmp_path / "run", "--steps", 1, "--device", "cpu"]
    _check_refused(argv, inputs, tmp_path, "000000.safetensors")


@pytest.mark.parametrize(
    "content, message",
    [(b"{not json", "dataset.json"), (b"[1, 2]", "dataset.json"), (b"\xff\xfe", "dataset.json")],
)
def test_bad_dataset_record(content, message, inputs, watched, tmp_path):
    (watched / "dataset.json").write_bytes(content)
    _check_refused(_generate(inputs, watched), inputs, tmp_path, message)


AGGREGATE_CASES = {
    "no methods": ({"data": "x", "num_clips": 1}, "'methods'"),
    "methods a list": ({"methods": []}, "'methods'"),
    "method without metrics": ({"methods": {"hydra": {"count": 1}}}, "methods.hydra.metrics"),
    "a list": ([1, 2], "JSON object"),
    "not json": (b"{", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(AGGREGATE_CASES))
def test_bad_aggregate_then_eval_report(case, inputs, watched, tmp_path):
    content, message = AGGREGATE_CASES[case]
    path = watched / "aggregate.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    _check_refused(["eval", "report", watched], inputs, tmp_path, message)


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"inputs": 3}', b"\xff"])
def test_bad_run_record(content, inputs, watched, tmp_path):
    (watched / "run.json").write_bytes(content)
    _check_refused(_eval(inputs, watched), inputs, tmp_path, "run.json")
