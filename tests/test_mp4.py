"""hybridmem.mp4: the box walk that tells a whole mp4 from one cut short, and its video track's frames."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from hybridmem import mp4
from hybridmem.errors import DataError


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def track(handler: bytes, frames: int | None) -> bytes:
    hdlr = box(b"hdlr", bytes(8) + handler + bytes(12))  # version/flags, pre_defined, handler type, reserved
    stsz = box(b"stsz", bytes(4) + struct.pack(">II", 0, frames)) if frames is not None else b""
    return box(b"trak", box(b"mdia", hdlr + box(b"minf", box(b"stbl", stsz))))


def movie(*tracks: bytes) -> bytes:
    return box(b"ftyp", b"isom") + box(b"moov", b"".join(tracks)) + box(b"mdat", bytes(32))


def test_frames_are_read_from_the_first_video_track(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(movie(track(b"soun", 99), track(b"vide", 7), track(b"vide", 5)))
    assert mp4.frame_count(path) == 7


def test_large_and_to_the_end_sizes_are_read(tmp_path):
    """size 1: a 64-bit size after the type; size 0: the box runs to the end of the file."""
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 4) + bytes(4)
    last = struct.pack(">I4s", 0, b"free") + bytes(5)
    path = tmp_path / "a.mp4"
    path.write_bytes(box(b"moov", track(b"vide", 3)) + mdat + last)
    assert mp4.frame_count(path) == 3


def test_a_written_video_is_read(tmp_path):
    from hybridmem import publish

    frames = np.random.default_rng(0).integers(0, 256, (9, 16, 24, 3), dtype=np.uint8)
    assert mp4.frame_count(publish.write_video(tmp_path / "a.mp4", frames, 8.0)) == 9


@pytest.mark.parametrize(
    "content, reason",
    [
        (movie(track(b"vide", 4))[:-5], "mp4 cut short: box 'mdat' at byte .* needs 40 bytes, 35 are left"),
        (movie(track(b"vide", 4)) + b"\0\0", "mp4 cut short: a box header at byte .* is incomplete"),
        (box(b"ftyp") + box(b"mdat"), "mp4 lacks moov \\(not finished\\)"),
        (box(b"moov", track(b"vide", 4)), "mp4 lacks mdat \\(not finished\\)"),
        (movie(track(b"soun", 4)), "mp4 has no video track"),
        (movie(track(b"vide", None)), "mp4 video track has no sample-size table \\(stsz\\)"),
        (
            struct.pack(">I4s", 4, b"moov"),
            "mp4 cut short: box 'moov' at byte 0 needs 4 bytes, 8 are left",
        ),  # smaller than its header
    ],
    ids=["cut-short", "half-a-header", "no-moov", "no-mdat", "no-video", "no-stsz", "under-header"],
)
def test_a_broken_mp4_names_the_file_and_what_is_wrong(tmp_path, content, reason):
    path = tmp_path / "a.mp4"
    path.write_bytes(content)
    with pytest.raises(mp4.Mp4Error, match=f"^{re.escape(str(path))}: {reason}$") as caught:
        mp4.frame_count(path)
    assert isinstance(caught.value, DataError) and caught.value.reason in str(caught.value)
