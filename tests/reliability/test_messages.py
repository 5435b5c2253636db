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
