"""Reading an mp4's box structure (ISO-BMFF), without decoding it: enough to know the file is whole and how
many frames its video track holds.

    frame_count(path)             # frames of the first video track, from its sample table (stsz)

An mp4 is a sequence of boxes, each a 32-bit big-endian size (1: a 64-bit size follows the type; 0: the box
runs to the end of the file), a four-byte type, then its payload; container boxes (moov, trak, mdia, minf,
stbl) hold boxes in turn. A file cut short leaves a box that claims more bytes than remain, which is how
hybridmem.publish knows ffmpeg's output is whole before it publishes it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hybridmem.errors import DataError


class Mp4Error(DataError):
    """An mp4 whose boxes do not tile it, or that lacks the box looked for; `reason` is the message without
    the path (publish reports it against its temp file)."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def boxes(handle: BinaryIO, start: int, end: int, path: str | Path) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes tiling [start, end) of an open file; Mp4Error on a box
    that does not fit."""
    offset = start
    while offset < end:
        handle.seek(offset)
        head = handle.read(16)
        if len(head) < 8:
            raise Mp4Error(path, f"mp4 cut short: a box header at byte {offset} is incomplete")
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1:
            if len(head) < 16:
                raise Mp4Error(path, f"mp4 cut short at byte {offset}")
            (size,) = struct.unpack(">Q", head[8:16])
            header = 16
        elif size == 0:  # the last box runs to the end of the file
            size = end - offset
        if size < header or offset + size > end:
            raise Mp4Error(
                path, f"mp4 cut short: box '{kind.decode(errors='replace')}' at byte {offset} needs "
                f"{size} bytes, {end - offset} are left"
            )  # fmt: skip
        yield kind, offset + header, offset + size
        offset += size


def child(handle: BinaryIO, start: int, end: int, kind: bytes, path: str | Path) -> tuple[int, int] | None:
    """(payload start, end) of the first box of type `kind` in [start, end), None when there is none."""
    for found, payload, box_end in boxes(handle, start, end, path):
        if found == kind:
            return payload, box_end
    return None


def frame_count(path: str | Path) -> int:
    """Frames of the first video track of an mp4, read from its sample table (stsz); Mp4Error when the
    file's boxes do not tile it (cut short), it has no moov or mdat (not finished), or no video track."""
    size = Path(path).stat().st_size
    with open(path, "rb") as handle:
        top = {kind: (payload, end) for kind, payload, end in boxes(handle, 0, size, path)}
        if b"moov" not in top or b"mdat" not in top:
            raise Mp4Error(path, f"mp4 lacks {'moov' if b'moov' not in top else 'mdat'} (not finished)")
        moov_start, moov_end = top[b"moov"]
        for kind, trak_start, trak_end in boxes(handle, moov_start, moov_end, path):
            if kind != b"trak":
                continue
            mdia = child(handle, trak_start, trak_end, b"mdia", path)
            hdlr = mdia and child(handle, *mdia, b"hdlr", path)
            if not hdlr:
                continue
            handle.seek(hdlr[0] + 8)  # version/flags, pre_defined, then the handler type
            if handle.read(4) != b"vide":
                continue
            minf = child(handle, *mdia, b"minf", path)
            stbl = minf and child(handle, *minf, b"stbl", path)
            stsz = stbl and child(handle, *stbl, b"stsz", path)
            if not stsz:
                raise Mp4Error(path, "mp4 video track has no sample-size table (stsz)")
            handle.seek(stsz[0] + 8)  # version/flags, sample_size, then sample_count
            return struct.unpack(">I", handle.read(4))[0]
    raise Mp4Error(path, "mp4 has no video track")
