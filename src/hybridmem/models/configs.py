"""Config dataclasses from JSON: the one reader every model config uses (no torch, imported by the models).

config = dataclass_from_dict(VAEConfig, json_dict, "VAEConfig")   # unknown or ill-typed fields raise
"""

from __future__ import annotations

import dataclasses
import types
import typing

from hybridmem.errors import ConfigError


def dataclass_from_dict(cls, data: dict, what: str):
    """Build dataclass `cls` from a JSON-style dict: lists become tuples where the field is a tuple.

    Unknown keys raise ConfigError naming them and listing the valid fields (`what` names the config).
    Nested dataclasses are the caller's job (convert them before calling).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a mapping of field names to values, got {type(data).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        if isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            value = tuple(value)
        if not _matches(value, hints[name]):
            raise ConfigError(f"{what}.{name} must be {_described(hints[name])}, got {value!r}"[:300])
        values[name] = value
    return cls(**values)


def _matches(value, hint) -> bool:
    """Whether a JSON value fits a field's type (int, float, str, bool, None, tuples and unions of them;
    nested dataclasses and other types are the caller's to check)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float, str):
        allowed = (int, float) if hint is float else (hint,)
        return isinstance(value, allowed) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(_matches, value, args))
    return True


def _described(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return " or ".join(_described(arg) for arg in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_described(args[0])}"
        return f"a list of {', '.join(map(_described, args))}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
