"""The one reader of NumPy files (.npz archives, .npy arrays): headers checked before anything is allocated.

    arrays = read_npz(folder / "ids.npz", ["ids"])   # {"ids": array}, or DataError naming file and array
    embedding = read_npy(path)

An .npy header states the array's dtype and shape, and NumPy allocates that much before reading the data: a
header claiming a huge shape (a corrupt or hostile file) ends in MemoryError, a header claiming more than
the file holds in a late EOF. Here every header is read first and refused, with the file and the array
named, when its dtype holds Python objects (never unpickled), when the bytes it claims differ from the bytes
stored (truncated or corrupt), or when the arrays together need more memory than the machine has; only then
is the data read. An archive member is refused by its declared sizes before it is expanded: one that
declares more than deflate can expand (MAX_DEFLATE_RATIO) is a zip bomb or corrupt, and a caller that knows
the shape an array must have (`expected`) refuses any other from its header (a 2.9 MB ids.npz declaring
3.2 GB took 21 s and 3.2 GB to be refused after expanding). Errors are DataError (or `error`), so the CLI
exits 2 without a traceback.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from hybridmem.errors import DataError

# Deflate expands a stream at most about 1032-fold (258-byte matches coded in 2 bits); a member declaring
# more is lying about its size (a zip bomb, or a corrupt directory). 1100 leaves room for headers.
MAX_DEFLATE_RATIO = 1100


def _header(handle, where: str, error, fix: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the .npy header at the start of `handle`; the handle is left at the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error) as problem:
        raise error(f"{where}: not a readable .npy array header ({problem}){fix}") from None
    if dtype.hasobject:
        raise error(f"{where}: holds Python objects (dtype {dtype}), which are never unpickled{fix}")
    return tuple(shape), dtype


def _check_size(shape: tuple, dtype: np.dtype, stored: int, where: str, error, fix: str) -> int:
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != stored:
        raise error(
            f"{where}: its header claims a {dtype} array of shape {shape} ({claimed} bytes), but the file "
            f"holds {stored} bytes of data: truncated or corrupt{fix}"
        )
    return claimed


def _check_memory(claimed: int, where: str) -> None:
    from hybridmem.device import check_memory

    check_memory(claimed, f"reading {where}", "free memory, or regenerate the file smaller")


def _check_declared_sizes(info: zipfile.ZipInfo, where: str, error, fix: str) -> None:
    """Refuse a member whose declared expanded size no compressed size can hold, before expanding it."""
    if info.compress_type == zipfile.ZIP_STORED:
        honest = info.file_size == info.compress_size
    else:
        honest = info.file_size <= MAX_DEFLATE_RATIO * info.compress_size + 4096
    if not honest:
        raise error(
            f"{where}: declares {info.file_size} bytes from {info.compress_size} stored (more than "
            f"{MAX_DEFLATE_RATIO}:1, which no compression reaches): a zip bomb or a corrupt archive{fix}"
        )


def _suffix(fix: str) -> str:
    return f"; {fix}" if fix else ""


def read_npz(
    path: str | os.PathLike,
    names: list[str] | None = None,
    *,
    error: type[Exception] = DataError,
    fix: str = "",
    expected: dict[str, tuple[tuple, str]] | None = None,
) -> dict[str, np.ndarray]:
    """{name: array} of the arrays `names` (default: every array) of the .npz archive at `path`.

    expected: {name: (shape, dtype)} an array must have, checked from its header before it is read."""
    path, fix = Path(path), _suffix(fix)
    if path.is_dir():
        raise error(f"{path}: is a folder, not an .npz file{fix}")
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise error(f"{path}: missing file{fix}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as problem:
        raise error(
            f"{path}: not a readable .npz archive ({problem or type(problem).__name__}){fix}"
        ) from None
    with archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist() if name.endswith(".npy")}
        wanted = list(members) if names is None else names
        missing = [name for name in wanted if name not in members]
        if missing:
            raise error(
                f"{path}: has no array {', '.join(map(repr, missing))} (it holds {sorted(members)}){fix}"
            )
        # 1. every header, before any allocation
        total = 0
        for name in wanted:
            where = f"{path} array '{name}'"
            info = archive.getinfo(members[name])
            _check_declared_sizes(info, where, error, fix)
            try:
                with archive.open(info) as handle:
                    shape, dtype = _header(handle, where, error, fix)
                    header_bytes = handle.tell()
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as problem:
                raise error(f"{where}: unreadable ({problem or type(problem).__name__}){fix}") from None
            if expected is not None and name in expected:
                want_shape, want_dtype = expected[name]
                if shape != tuple(want_shape) or dtype != np.dtype(want_dtype):
                    raise error(
                        f"{where}: its header claims a {dtype} array of shape {shape}, expected "
                        f"{np.dtype(want_dtype)} {tuple(want_shape)}{fix}"
                    )
            total += _check_size(shape, dtype, info.file_size - header_bytes, where, error, fix)
        _check_memory(total, str(path))
        # 2. the data
        arrays = {}
        for name in wanted:
            try:
                with archive.open(members[name]) as handle:
                    arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as problem:
                raise error(
                    f"{path} array '{name}': unreadable ({problem or type(problem).__name__}): truncated or "
                    f"corrupt{fix}"
                ) from None
    return arrays


def read_npy(path: str | os.PathLike, *, error: type[Exception] = DataError, fix: str = "") -> np.ndarray:
    """The array in the .npy file at `path`."""
    path, fix = Path(path), _suffix(fix)
    if path.is_dir():
        raise error(f"{path}: is a folder, not an .npy file{fix}")
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise error(f"{path}: missing file{fix}") from None
    except OSError as problem:
        raise error(f"{path}: cannot be read ({problem.strerror or problem}){fix}") from None
    with handle:
        shape, dtype = _header(handle, str(path), error, fix)
        stored = os.fstat(handle.fileno()).st_size - handle.tell()
        _check_memory(_check_size(shape, dtype, stored, str(path), error, fix), str(path))
        handle.seek(0)
        try:
            return np.lib.format.read_array(handle, allow_pickle=False)
        except (OSError, EOFError, ValueError) as problem:
            raise error(f"{path}: unreadable ({problem or type(problem).__name__}){fix}") from None
