"""Every reader of the project, driven through the real CLI with generated malformed inputs (issue 19).

Each JSON file a command reads is replaced by mutations generated from a good copy: syntax and encoding
(truncated, empty, not UTF-8, nested too deeply, another top-level type), a key repeated in one object (at
the top and inside), numbers out of range (2^64, 5000 digits, 1e999, NaN, -Infinity) and every top-level
field given a value of the wrong type. The command must exit 2 naming the file and print no traceback; a
wrong-typed field the command does not use may also be accepted (exit 0). The same for .npz arrays whose
header lies, videos whose header says they cannot fit, folders where files belong, and the issue's other
reading cases as regression tests.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hybridmem import jsonio, npyio
from hybridmem.errors import DataError
from train.helpers import make_latent_cache

from .helpers import fake_renderer, run_cli, snapshot, tiny_dataset, tiny_vae

CLIP = "data/train/000000"
GENERATE_FLAGS = [
    "--width",
    32,
    "--height",
    32,
    "--context-frames",
    9,
    "--target-frames",
    9,
    "--min-hidden-frames",
    3,
    "--supersample",
    1,
    "--max-subjects",
    2,
    "--seed",
    0,
    "--split",
    "train",
    "--no-progress",
]  # fmt: skip  (the settings of helpers.tiny_dataset: a rerun resumes)


# --- inputs --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One good copy of everything the commands read; each case copies what it mutates."""
    import torch

    from hybridmem.models.checkpoint import save_model
    from hybridmem.models.world import build_world_model
    from hybridmem.recipe.export import MANIFEST_FORMAT
    from hybridmem.recipe.recipe import RECIPE_FORMAT

    root = tmp_path_factory.mktemp("readers")
    tiny_dataset(root / "data", num_clips=1)
    tiny_vae(root / "vae")
    torch.manual_seed(0)
    save_model(build_world_model("tiny"), root / "world")
    make_latent_cache(root / "cache", clips=2)
    code, err = run_cli(_eval_argv(root, root / "eval"))
    assert code == 0, err
    _official_formats().write_released_sample(root / "released" / "sample1")
    clip = json.loads((root / CLIP / "camera.json").read_text())
    poses = [*clip["cond_cam"].values(), *clip["tgt_cam"].values()]
    (root / "video").mkdir()
    shutil.copy(root / CLIP / "cond.mp4", root / "video" / "ctx.mp4")
    cameras = {"intrinsics": clip["intrinsics"], "context": poses[:9], "target": poses[9:]}
    (root / "video" / "cams.json").write_text(json.dumps(cameras))
    from hybridmem.demo import DEMO_MODELS

    for name in {"hydra", *DEMO_MODELS}:
        shutil.copytree(root / "world", root / "export" / name)
    shutil.copytree(root / "vae", root / "export" / "vae")
    manifest = {"format": MANIFEST_FORMAT, "data": {"width": 32, "height": 32}, "models": {}}
    (root / "export" / "manifest.json").write_text(json.dumps(manifest))
    (root / "recipe").mkdir()
    recipe = {"format": RECIPE_FORMAT, "budget": {"name": "smoke"}, "stages": {}, "invocations": []}
    (root / "recipe" / "recipe.json").write_text(json.dumps(recipe))
    return root


def _official_formats():
    import importlib.util

    path = Path(__file__).parents[1] / "data" / "official_formats.py"
    spec = importlib.util.spec_from_file_location("official_formats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval_argv(root, out, *flags):
    return ["eval", "--baseline", "copy-last", "--data", root / "data", "--split", "train", "--out", out,
            "--weights-dir", root / "no_weights", "--side-by-side-clips", 0, *flags]  # fmt: skip


def _sample(root, work, *source):
    return ["sample", *source, "--out", work / "out" / "s.mp4", "--steps", 1, "--device", "cpu"]


# name -> (folder of `inputs` copied into the case's folder, the file in it, argv(inputs, case folder))
READERS = {
    "clip metadata.json": ("data", "train/000000/metadata.json", lambda i, w: _preview(w)),
    "clip camera.json": ("data", "train/000000/camera.json", lambda i, w: _preview(w)),
    "clip character.json": ("data", "train/000000/character.json", lambda i, w: _preview(w)),
    "clip check.json": ("data", "train/000000/check.json", lambda i, w: _preview(w)),
    "dataset.json (generate resumes)": (
        "data",
        "dataset.json",
        lambda i, w: ["world", "generate", "--num-clips", 1, "--out", w / "data", *GENERATE_FLAGS],
    ),
    "finished clip metadata.json (generate resumes)": (
        "data",
        "train/000000/metadata.json",
        lambda i, w: ["world", "generate", "--num-clips", 1, "--out", w / "data", *GENERATE_FLAGS],
    ),
    "cache.json (train world)": (
        "cache",
        "cache.json",
        lambda i, w: [
            "train",
            "world",
            "--cache",
            w / "cache",
            "--out",
            w / "run",
            "--steps",
            1,
            "--device",
            "cpu",
        ],  # fmt: skip
    ),
    "vae config.json (encode)": (
        "vae",
        "config.json",
        lambda i, w: ["encode", "--data", i / "data", "--vae", w / "vae", "--out", w / "latents"],
    ),
    "world config.json (sample)": (
        "world",
        "config.json",
        lambda i, w: _sample(i, w, "--clip", i / CLIP, "--checkpoint", w / "world", "--vae", i / "vae"),
    ),
    "export manifest.json (sample)": (
        "export",
        "manifest.json",
        lambda i, w: _sample(
            i, w, "--clip", i / CLIP, "--checkpoint", w / "export" / "hydra", "--vae", w / "export" / "vae"
        ),  # fmt: skip
    ),
    "released camera.json (sample --clip)": (
        "released",
        "sample1/camera.json",
        lambda i, w: _sample(
            i,
            w,
            "--clip",
            w / "released" / "sample1",
            "--checkpoint",
            i / "world",
            "--vae",
            i / "vae",
            "--size",
            "32x32",
        ),  # fmt: skip
    ),
    "cameras JSON (sample --video)": (
        "video",
        "cams.json",
        lambda i, w: _sample(
            i,
            w,
            "--video",
            w / "video" / "ctx.mp4",
            "--cameras",
            w / "video" / "cams.json",
            "--checkpoint",
            i / "world",
            "--vae",
            i / "vae",
        ),  # fmt: skip
    ),
    "run.json (eval resumes)": ("eval", "run.json", lambda i, w: _eval_argv(i, w / "eval")),
    "aggregate.json (eval report)": ("eval", "aggregate.json", lambda i, w: ["eval", "report", w / "eval"]),
    "recipe.json (recipe summary)": (
        "recipe",
        "recipe.json",
        lambda i, w: ["recipe", "summary", w / "recipe"],
    ),
}
# readers whose command, given a good file, goes on to heavy work: only the parse-level mutations
PARSE_ONLY = {"export manifest.json (demo)": ("export", "manifest.json", lambda i, w: _demo(w))}


def _preview(work):
    return ["world", "preview", work / "data" / "train" / "000000", "--out", work / "out" / "p.png"]


def _demo(work):
    return ["demo", "--assets", work / "export", "--out", work / "demo", "--clips", 1, "--device", "cpu"]


# --- generated mutations -------------------------------------------------------------------------------


class Raw(str):
    """A token written into the JSON text as it is (numbers JSON allows but Python reads wrongly)."""


class Pairs(list):
    """An object written from (key, value) pairs, so a key may repeat."""


def render(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs | dict):
        items = value if isinstance(value, Pairs) else value.items()
        return "{" + ", ".join(f"{json.dumps(key)}: {render(item)}" for key, item in items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(item) for item in value) + "]"
    return json.dumps(value)


def _paths(value, path=()):
    """Every (path, value) in document order."""
    yield path, value
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        yield from _paths(child, (*path, key))


def _replaced(document, path, new):
    document = copy.deepcopy(document)
    if not path:
        return new
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return document


def _duplicated(document, path):
    """`document` with the first key of the object at `path` repeated (its value written twice)."""
    target = document
    for key in path:
        target = target[key]
    first = next(iter(target))
    return _replaced(document, path, Pairs([*target.items(), (first, target[first])]))


def _wrong_type(value):
    if isinstance(value, dict):
        return [1, 2]
    if isinstance(value, list):
        return {"a": 1}
    if isinstance(value, str):
        return 7
    if value is None:
        return {"a": 1}
    return "seven"  # numbers and booleans


def parse_mutations(original: bytes) -> dict[str, bytes]:
    """Mutations every reader must refuse, naming the file."""
    document = json.loads(original)
    objects = [path for path, value in _paths(document) if isinstance(value, dict) and value]
    numbers = [
        path
        for path, value in _paths(document)
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    number_at = numbers[0] if numbers else (next(iter(document)),)
    inner = next((path for path in objects if path), objects[0])
    mutations = {
        "truncated": original[: len(original) // 2],
        "empty": b"",
        "not utf-8": b"\xff\xfe" + original,
        "not utf-8 inside a string": original.replace(b'"', b'"\xc3\x28', 1),
        "nested too deeply": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "an array at the top": render([document]).encode(),
        "duplicate key at the top": render(_duplicated(document, ())).encode(),
        "duplicate key inside": render(_duplicated(document, inner)).encode(),
    }
    for name, token in (("2^64", str(2**64)), ("5000 digits", "9" * 5000), ("1e999", "1e999"),
                        ("NaN", "NaN"), ("-Infinity", "-Infinity")):  # fmt: skip
        mutations[f"number {name}"] = render(_replaced(document, number_at, Raw(token))).encode()
    return mutations


def type_mutations(original: bytes) -> dict[str, bytes]:
    """Every top-level field (and every field of the first object inside) given a value of the wrong type."""
    document = json.loads(original)
    inner = next(
        (path for path, value in _paths(document) if path and isinstance(value, dict) and value), None
    )
    paths = [(key,) for key in document] + ([(*inner, key) for key in _at(document, inner)] if inner else [])
    return {
        f"wrong type at {'.'.join(map(str, path))}": render(
            _replaced(document, path, _wrong_type(_at(document, path)))
        ).encode()
        for path in paths
    }


def _at(document, path):
    for key in path:
        document = document[key]
    return document


# --- running a case ------------------------------------------------------------------------------------


def _case(inputs, tmp_path, reader, content: bytes | None):
    """Copy the reader's folder, write `content` over its file (None: make the file a folder), run."""
    folder, file, argv = reader
    shutil.copytree(inputs / folder, tmp_path / folder, symlinks=True)
    path = tmp_path / folder / file
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with fake_renderer():
        try:
            code, err = run_cli(argv(inputs, tmp_path))
        except Exception as error:  # noqa: BLE001 (the test's point: name what escaped)
            import traceback

            pytest.fail(f"{path.name}: a traceback escaped:\n{traceback.format_exc()}\n{error!r}")
    assert "Traceback" not in err, err
    return path, code, err


def _good(inputs, reader) -> bytes:
    folder, file, _ = reader
    return (inputs / folder / file).read_bytes()


PARSE_CASES = [
    (reader, mutation)
    for reader in sorted(READERS) + sorted(PARSE_ONLY)
    for mutation in [
        "truncated", "empty", "not utf-8", "not utf-8 inside a string", "nested too deeply",
        "an array at the top", "duplicate key at the top", "duplicate key inside", "number 2^64",
        "number 5000 digits", "number 1e999", "number NaN", "number -Infinity", "a folder",
    ]
]  # fmt: skip


@pytest.mark.parametrize("reader, mutation", PARSE_CASES)
def test_malformed_json_exits_2_naming_the_file(reader, mutation, inputs, tmp_path):
    entry = READERS.get(reader) or PARSE_ONLY[reader]
    content = None if mutation == "a folder" else parse_mutations(_good(inputs, entry))[mutation]
    path, code, err = _case(inputs, tmp_path, entry, content)
    assert code == 2, err
    assert path.name in err, err


def _check_wrong_types(reader, inputs, tmp_path, count: int | None) -> None:
    entry = READERS[reader]
    mutations = sorted(type_mutations(_good(inputs, entry)).items())
    if count is not None:  # a fixed sample (seeded by the reader's name): the whole set runs with -m slow
        mutations = random.Random(reader).sample(mutations, min(count, len(mutations)))
    for index, (mutation, content) in enumerate(mutations):
        work = tmp_path / str(index)
        work.mkdir()
        path, code, err = _case(inputs, work, entry, content)
        assert code in (0, 2), f"{mutation}: exit {code}\n{err}"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_wrong_types_exit_2_or_are_not_used(reader, inputs, tmp_path):
    _check_wrong_types(reader, inputs, tmp_path, count=3)


@pytest.mark.slow
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_wrong_type_exits_2_or_is_not_used(reader, inputs, tmp_path):
    _check_wrong_types(reader, inputs, tmp_path, count=None)


# --- the JSON reader itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, field",
    [
        (b'{"a": 1, "a": 2}', "'a' appears twice"),
        (b'{"m": {"x": [1, {"k": 1, "k": 2}]}}', "'m.x[1].k' appears twice"),
        (b'{"a": [1e999]}', "'a[0]' holds 1e999"),
        (b'{"a": {"b": NaN}}', "'a.b' holds NaN"),
        (b'{"a": 18446744073709551616}', "'a' holds 18446744073709551616"),
        (b'{"a": ' + b"1" * 5000 + b"}", "'a' holds an integer of 5000 digits"),
    ],
)
def test_json_reader_names_the_field(content, field, tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match="f.json: field " + field.replace("[", r"\[").replace("]", r"\]")):
        jsonio.read_json(path)


def test_json_reader_keeps_what_json_means(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": [1, -9223372036854775808, 18446744073709551615, 1.5e-999, null]}')
    assert jsonio.read_json(path) == {"a": [1, -(2**63), 2**64 - 1, 0.0, None]}


# --- npz and npy: headers before allocation ------------------------------------------------------------


def _lying_npy(shape, dtype=np.uint8) -> bytes:
    """An .npy header claiming `shape`, with no data behind it."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def test_ids_npz_claiming_a_huge_array_exits_2(inputs, tmp_path):
    """Issue 19: a .npz whose header claims a huge array ended in MemoryError."""
    shutil.copytree(inputs / "data", tmp_path / "data")
    with zipfile.ZipFile(tmp_path / CLIP / "ids.npz", "w") as archive:
        archive.writestr("ids.npy", _lying_npy((200_000, 30_000, 30_000)))
    code, err = run_cli(_preview(tmp_path))
    assert code == 2 and "ids.npz" in err and "claims" in err, err


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04 truncated", b"not a zip", "object"],
    ids=["empty", "truncated zip", "not a zip", "object dtype"],
)
def test_ids_npz_malformed_exits_2(content, inputs, tmp_path):
    shutil.copytree(inputs / "data", tmp_path / "data")
    if content == "object":
        with zipfile.ZipFile(tmp_path / CLIP / "ids.npz", "w") as archive:
            archive.writestr("ids.npy", _lying_npy((2,), object))
    else:
        (tmp_path / CLIP / "ids.npz").write_bytes(content)
    code, err = run_cli(_preview(tmp_path))
    assert code == 2 and "ids.npz" in err, err


def test_cached_generation_claiming_a_huge_array_is_generated_again(inputs, tmp_path):
    """eval's cached generations: an unreadable cache file is made again, a lying header included."""
    shutil.copytree(inputs / "eval", tmp_path / "eval")
    (cached,) = sorted((tmp_path / "eval" / "generations" / "copy-last").glob("*.npz"))
    good = np.load(cached)["frames"]
    with zipfile.ZipFile(cached, "w") as archive:
        archive.writestr("frames.npy", _lying_npy((10**6, 10**4, 10**4, 3)))
    code, err = run_cli(_eval_argv(inputs, tmp_path / "eval"))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(cached)["frames"], good)


def test_counterfactuals_npz_claiming_a_huge_array_is_a_data_error(tmp_path):
    from hybridmem.data.counterfactual import load_counterfactuals

    path = tmp_path / "counterfactuals.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("subject_id", "last_seen_frame", "entry_frame"):
            buffer = io.BytesIO()
            np.save(buffer, np.int64(1))
            archive.writestr(f"{name}.npy", buffer.getvalue())
        for name in ("erased_frames", "frozen_frames", "erased_ids", "frozen_ids"):
            archive.writestr(f"{name}.npy", _lying_npy((10**5, 10**4, 10**4, 3)))
    with pytest.raises(DataError, match="counterfactuals.npz array 'erased_frames': its header claims"):
        load_counterfactuals(path, 9, 32, 32)


def test_npy_reader_refuses_before_allocating(tmp_path):
    path = tmp_path / "a.npy"
    path.write_bytes(_lying_npy((10**6, 10**6)))
    with pytest.raises(DataError, match="a.npy: its header claims"):
        npyio.read_npy(path)
    np.save(path, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(npyio.read_npy(path), np.arange(6.0).reshape(2, 3))


# --- videos: sized from the header before decoding -----------------------------------------------------


def test_video_too_large_for_memory_is_refused_before_decoding(inputs, tmp_path, monkeypatch):
    """Issue 19: a 5000x5000 input was decoded (3.2 GB) before the printed estimate (1.87 GiB) was checked.
    Here the machine "has" 1 MB: decoding 9 frames of 32x32 fits, of 5000x5000 would not; the header says
    which before a frame is decoded."""
    from hybridmem import device
    from hybridmem.data import hmworld

    decoded = []
    monkeypatch.setattr(device, "available_memory", lambda device=None: 1_000_000)
    monkeypatch.setattr(hmworld, "_decode_video", lambda *args: decoded.append(args))
    header = hmworld.video_header(inputs / CLIP / "cond.mp4")
    assert (header.frames, header.height, header.width) == (9, 32, 32)
    monkeypatch.setattr(
        hmworld,
        "video_header",
        lambda path: hmworld.VideoHeader(frames=77, height=5000, width=5000, fps=15.0),
    )
    video = inputs / "video"
    argv = ["sample", "--video", video / "ctx.mp4", "--cameras", video / "cams.json", "--checkpoint",
            inputs / "world", "--vae", inputs / "vae", "--out", tmp_path / "s.mp4"]  # fmt: skip
    code, err = run_cli(argv)
    assert code == 2 and "ctx.mp4" in err and "77 frames of 5000x5000" in err, err
    assert decoded == []


def test_resize_working_memory_is_bounded_and_counted(inputs, monkeypatch):
    """The float copy a resize works on is bounded (it was 8 frames whatever their size: 2.4 GB at
    5000x5000, which the printed estimate left out), the sampling estimate counts it, and chunking does not
    change the frames."""
    from hybridmem.data import inputs as inputs_module
    from hybridmem.sample import plan

    working = inputs_module.resize_working_bytes(5000, 5000, 128, 128, frames=77)
    one_frame = inputs_module.resize_working_bytes(5000, 5000, 128, 128, frames=1)
    assert working <= max(inputs_module.RESIZE_WORKING_BYTES, one_frame) < 8 * 4 * 3 * 5000 * 5000
    info = plan.read_model_info(inputs / "world", inputs / "vae")
    need = plan.estimate_peak_bytes(info, (77, 5000, 5000), 77, 77, 128, 128)
    assert need >= 2 * 77 * 5000 * 5000 * 3 + working
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 40, 60, 3), dtype=np.uint8)
    whole = inputs_module.resize_crop_frames(frames, 16, 24)
    monkeypatch.setattr(inputs_module, "RESIZE_WORKING_BYTES", 1)  # one frame a chunk
    np.testing.assert_array_equal(inputs_module.resize_crop_frames(frames, 16, 24), whole)


# --- folders, links, locks: the tracebacks -----------------------------------------------------


@pytest.mark.parametrize("content", [b"\xff\xfe{}", None], ids=["not utf-8", "a folder"])
def test_aggregate_json_not_utf8_or_a_folder_exits_2(content, inputs, tmp_path):
    path, code, err = _case(inputs, tmp_path, READERS["aggregate.json (eval report)"], content)
    assert code == 2 and "aggregate.json" in err, err


def test_manifest_json_not_utf8_exits_2(inputs, tmp_path):
    path, code, err = _case(inputs, tmp_path, PARSE_ONLY["export manifest.json (demo)"], b"\xff{}")
    assert code == 2 and "manifest.json" in err, err


def test_lock_path_that_is_a_folder_exits_2(inputs, tmp_path):
    shutil.copytree(inputs / "eval", tmp_path / "eval")
    (tmp_path / "eval" / ".hybridmem.lock").unlink(missing_ok=True)  # a released lock leaves its file
    (tmp_path / "eval" / ".hybridmem.lock").mkdir()
    code, err = run_cli(_eval_argv(inputs, tmp_path / "eval"))
    assert code == 2 and ".hybridmem.lock" in err and "folder" in err, err


def test_eval_data_on_a_symlink_loop_exits_2(inputs, tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    argv = _eval_argv(inputs, tmp_path / "eval")
    argv[argv.index("--data") + 1] = tmp_path / "a"
    code, err = run_cli(argv)
    assert code == 2 and str(tmp_path / "a") in err, err


def test_generate_resume_with_a_truncated_finished_clip_exits_2(inputs, tmp_path):
    content = (inputs / CLIP / "metadata.json").read_bytes()[:100]
    reader = READERS["finished clip metadata.json (generate resumes)"]
    path, code, err = _case(inputs, tmp_path, reader, content)
    assert code == 2 and "metadata.json" in err and "truncated" in err, err


# --- eval: a failed run, --reference, methods without per-clip values ----------------------------------


def test_failed_eval_does_not_lock_out_the_corrected_command(inputs, tmp_path):
    """Issue 19: an eval that failed before any result left run.json, and the corrected command was refused
    as "holds results made from other inputs"."""
    out = tmp_path / "eval"
    wrong = _eval_argv(inputs, out)
    wrong[wrong.index("--split") + 1] = "test"  # the tiny dataset has train clips only
    code, err = run_cli(wrong)
    assert code == 2 and "split" in err, err
    code, err = run_cli(_eval_argv(inputs, out))
    assert code == 0, err
    results = snapshot(out)
    code, err = run_cli(wrong)  # results exist now: refused, and they stay as they are
    assert code == 2 and (out / "run.json").is_file() and snapshot(out) == results, err


def test_eval_report_reference_with_one_method_is_refused(inputs, tmp_path):
    shutil.copytree(inputs / "eval", tmp_path / "eval")
    code, err = run_cli(["eval", "report", tmp_path / "eval", "--reference", "copy-last"])
    assert code == 2 and "--reference" in err and "one method" in err, err


def test_method_missing_from_per_clip_is_named(inputs, tmp_path):
    shutil.copytree(inputs / "eval", tmp_path / "eval")
    path = tmp_path / "eval" / "aggregate.json"
    aggregate = json.loads(path.read_text())
    aggregate["methods"]["other"] = aggregate["methods"]["copy-last"]
    path.write_text(json.dumps(aggregate))
    code, err = run_cli(["eval", "report", tmp_path / "eval"])
    assert code == 2 and "per_clip.other" in err, err


def test_paired_comparisons_name_a_method_without_per_clip_values():
    from hybridmem.eval.report import paired_lines

    per_clip = {"hydra": {"0": {"psnr": 20.0}, "1": {"psnr": 21.0}}, "full": {}}
    lines = "\n".join(paired_lines(per_clip, methods=["hydra", "full"]))
    assert "full" in lines and "no per-clip values" in lines
