"""The one JSON reader of the project: every JSON file a command reads goes through `read_json`.

    record = read_json(folder / "metadata.json")                          # a JSON object, else DataError
    record = read_json(path, error=ConfigError, fix="delete it and rerun with --overwrite")
    entries = read_json(path, expect=list)

What Python's `json` accepts silently and this reader refuses, each with the file and the field named:
- a key repeated in one object (`json` keeps the last value: which one was meant is not known);
- a number out of range: an integer beyond 64 bits (Python refuses more than 4300 digits with a bare
  ValueError), a float that overflows to infinity (`1e999`), and the non-standard `NaN`, `Infinity` and
  `-Infinity` (fields of this project hold finite numbers; a missing value is `null`);
- bytes that are not UTF-8 (a UTF-8 byte-order mark is allowed), a file cut short (truncated), nesting deep
  enough to exhaust Python's recursion, a path that is a folder, a file that cannot be read.
Each problem raises `error` (DataError by default; run records pass ConfigError, model configs
CheckpointError): all are HybridmemErrors, so the CLI exits 2 with the message and no traceback. `fix` is
appended to every message: what the user should do about this file.

Field names are written as paths from the top: `methods.hydra.metrics`, `subjects[0].id`. `read_text` reads
the UTF-8 text files beside them (JSON lines, captions) with the same errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hybridmem.errors import DataError

INT_LOW, INT_HIGH = -(2**63), 2**64 - 1  # int64 and uint64 together
_LONGEST_INT = len(str(INT_HIGH)) + 1  # digits (and a sign) beyond which no int fits: checked before int()
_BOM = b"\xef\xbb\xbf"


class _Refused:
    """A value the parser met but this reader refuses; replaced by an error naming its field."""

    def __init__(self, problem: str):
        self.problem = problem


class _Duplicated(dict):
    """An object with a repeated key (`key`); the parser goes on, the error names the field afterwards."""

    key = ""


def _parse_int(text: str):
    if len(text.lstrip("-")) > _LONGEST_INT or not INT_LOW <= int(text) <= INT_HIGH:
        shown = text if len(text) <= 24 else f"an integer of {len(text.lstrip('-'))} digits"
        return _Refused(f"holds {shown}, out of range (integers must fit in 64 bits)")
    return int(text)


def _parse_float(text: str):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        shown = text if len(text) <= 24 else text[:21] + "..."
        return _Refused(f"holds {shown}, out of range (overflows a 64-bit float to infinity)")
    return value


def _parse_constant(text: str):
    return _Refused(
        f"holds {text}, not a finite number (JSON has no {text}; write a number, or null for no value)"
    )


def _object(pairs: list) -> dict:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    seen = set()
    duplicated = _Duplicated(record)
    for key, _ in pairs:
        if key in seen:
            duplicated.key = key
            break
        seen.add(key)
    return duplicated


def _child(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _first_problem(value) -> tuple[str, str] | None:
    """(field path, problem) of the first refused value or repeated key, in document order; iterative, so a
    document nested as deep as the parser allows is walked too."""
    stack = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _Refused):
            return path, item.problem
        if isinstance(item, _Duplicated):
            name = _child(path, item.key)
            return name, (
                f"appears twice (key {item.key!r} repeated in one object): keys must be unique, and which "
                "value was meant is not known"
            )
        if isinstance(item, dict):
            stack.extend(reversed([(_child(path, key), child) for key, child in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(_child(path, index), child) for index, child in enumerate(item)]))
    return None


def _message(source: str, problem: str, fix: str) -> str:
    return f"{source}: {problem}" + (f"; {fix}" if fix else "")


def _type_name(value) -> str:
    return {dict: "a JSON object", list: "a JSON array", str: "a string", bool: "true/false"}.get(
        type(value), "null" if value is None else "a number"
    )


def loads(
    content: str | bytes,
    source: str,
    *,
    expect: type | None = dict,
    error: type[Exception] = DataError,
    fix: str = "",
):
    """Parse `content`, the text of `source` (named in every error), with the module docstring's checks."""
    if isinstance(content, bytes):
        try:
            content = content.removeprefix(_BOM).decode("utf-8")
        except UnicodeDecodeError as problem:
            byte = content[problem.start : problem.start + 1].hex()
            raise error(
                _message(source, f"not UTF-8 text (byte 0x{byte} at offset {problem.start})", fix)
            ) from None
    flagged = []

    def flag(parse):
        def parse_and_flag(text):
            value = parse(text)
            if isinstance(value, _Refused | _Duplicated):
                flagged.append(value)
            return value

        return parse_and_flag

    try:
        value = json.loads(
            content,
            object_pairs_hook=flag(_object),
            parse_int=flag(_parse_int),
            parse_float=flag(_parse_float),
            parse_constant=flag(_parse_constant),
        )
    except json.JSONDecodeError as problem:
        ends = problem.pos >= len(content.rstrip())
        where = f"{problem.msg} at line {problem.lineno} column {problem.colno}"
        detail = " (the text ends there: the file is truncated)" if ends and content.strip() else ""
        if not content.strip():
            where, detail = "empty", " (the file holds no JSON value)"
        raise error(_message(source, f"not valid JSON: {where}{detail}", fix)) from None
    except RecursionError:
        raise error(_message(source, "not readable: its JSON is nested too deeply", fix)) from None
    if flagged:
        found = _first_problem(value)
        if found is not None:
            field, problem = found
            where = f"field '{field}'" if field else "the top-level value"
            raise error(_message(source, f"{where} {problem}", fix))
    if expect is not None and not isinstance(value, expect):
        wanted = _type_name(expect())
        raise error(_message(source, f"expected {wanted} at the top level, got {_type_name(value)}", fix))
    return value


def _read_bytes(path: Path, error: type[Exception], fix: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise error(_message(str(path), f"is a folder, not {what}", fix)) from None
    except FileNotFoundError:
        raise error(_message(str(path), "missing file", fix)) from None
    except OSError as problem:
        raise error(_message(str(path), f"cannot be read ({problem.strerror or problem})", fix)) from None


def read_text(path: str | os.PathLike, *, error: type[Exception] = DataError, fix: str = "") -> str:
    """A UTF-8 text file (JSON lines, captions), with the same errors as `read_json`."""
    path = Path(path)
    content = _read_bytes(path, error, fix, "a text file")
    try:
        return content.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as problem:
        byte = content[problem.start : problem.start + 1].hex()
        raise error(
            _message(str(path), f"not UTF-8 text (byte 0x{byte} at offset {problem.start})", fix)
        ) from None


def read_json(
    path: str | os.PathLike,
    *,
    expect: type | None = dict,
    error: type[Exception] = DataError,
    fix: str = "",
):
    """The JSON value in the file at `path` (a dict unless `expect` says otherwise; None: any value)."""
    path = Path(path)
    content = _read_bytes(path, error, fix, "a JSON file")
    return loads(content, str(path), expect=expect, error=error, fix=fix)
