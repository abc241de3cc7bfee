"""Helpers shared by every typed config.

Configs in impax are frozen dataclasses whose defaults reproduce the papers; presets are
module-level instances or ``dataclasses.replace`` of them. These helpers turn any (nested)
config into plain JSON data and back, so runs record exactly what they used.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) frozen dataclass config; tuples become lists."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{cfg!r} is not a dataclass config")
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config of type ``cls`` from :func:`to_dict` output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(_coerce(a, v) for a, v in zip(args, value))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value)
        return value
    return value


def save_json(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def load_json(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, json.loads(Path(path).read_text()))


# ------------------------------------------------------------------------------ overrides and help


def _type_ok(tp: Any, value: Any) -> bool:
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list) or tp in (tuple, list):
        return isinstance(value, list)
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return True  # a type this check does not know: the config's own validation decides


def _describe(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and type(None) in typing.get_args(tp):
        return f"{_describe(args[0])} or null"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp)).replace("<class 'NoneType'>", "null")
    return "a JSON list" if typing.get_origin(tp) in (tuple, list) else str(tp)


def _field_type(obj: Any, tp: Any, part: str, key: str) -> tuple[Any, Any]:
    """The value and declared type of ``part`` inside ``obj`` (a dataclass, dict or sequence)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if part not in {f.name for f in dataclasses.fields(obj)}:
            raise ValueError(f"unknown config key {key!r}")
        return getattr(obj, part), typing.get_type_hints(type(obj)).get(part, Any)
    if isinstance(obj, dict) and part in obj:
        args = typing.get_args(tp)
        return obj[part], (args[1] if len(args) == 2 else Any)
    if isinstance(obj, (tuple, list)) and part.isdigit() and int(part) < len(obj):
        args = typing.get_args(tp)
        homogeneous = args and (len(args) == 2 and args[1] is Ellipsis or len(args) == 1)
        return obj[int(part)], (args[0] if homogeneous else (args[int(part)] if int(part) < len(args) else Any))
    raise ValueError(f"unknown config key {key!r}")


def check_override(cfg: Any, key: str, value: Any) -> None:
    """``ValueError`` unless the dotted ``key`` names a field of ``cfg`` (list items by index,
    ``"stages.2.epochs"``) and ``value`` (JSON data) has the field's type."""
    obj, tp = cfg, type(cfg)
    for part in key.split("."):
        obj, tp = _field_type(obj, tp, part, key)
    if not _type_ok(tp, value):
        raise ValueError(f"{key}={json.dumps(value)}: expected {_describe(tp)}")


def override(cfg: T, overrides: dict[str, Any] | None) -> T:
    """A copy of the (nested, frozen) config ``cfg`` with each dotted ``key: value`` of ``overrides``
    set — keys and value types checked first (:func:`check_override`), the result rebuilt through
    :func:`from_dict` so every dataclass validates itself."""
    if not overrides:
        return cfg
    for key, value in overrides.items():
        check_override(cfg, key, value)
    d = to_dict(cfg)
    for key, value in overrides.items():
        node: Any = d
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return from_dict(type(cfg), d)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values): the dotted keys of a config dict."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Dotted overrides from a JSON or TOML file (``--config FILE``): the file holds a (partial) nested
    config, e.g. ``{"train": {"learning_rate": 1e-4}, "epochs": 3}`` or TOML ``epochs = 3`` /
    ``[train] learning_rate = 1e-4``."""
    p = Path(path)
    text = p.read_text()
    if p.suffix.lower() == ".toml":
        import tomllib

        data = tomllib.loads(text)
    elif p.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"--config {p}: use a .json or .toml file")
    if not isinstance(data, dict):
        raise ValueError(f"--config {p}: the file must hold a table of config fields")
    return flatten(data)


def resumable_paths(cls: type, prefix: str = "") -> set[str]:
    """Dotted paths of the fields marked ``field(metadata={"resumable": True})`` in ``cls`` and its
    nested dataclass fields: settings a resumed run may change (they do not change the maths)."""
    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if f.metadata.get("resumable"):
            out.add(path)
        tp = hints.get(f.name)
        if dataclasses.is_dataclass(tp):
            out |= resumable_paths(tp, path + ".")
    return out


def field_help(cls: type) -> dict[str, str]:
    """One line of help per field of ``cls``: ``field(metadata={"help": ...})``, else its bullet in the
    class docstring (``- ``name``: text``), else the comment at the end of its line in the source."""
    import inspect
    import re

    out: dict[str, str] = {}
    doc = inspect.getdoc(cls) or ""
    for m in re.finditer(r"^\s*- ``(\w+)``(?:\s*/\s*``\w+``)*:\s*(.+?)(?=^\s*- ``|\Z)", doc, re.S | re.M):
        out.setdefault(m.group(1), " ".join(m.group(2).split()))
    for m in re.finditer(r"^\s{4}(\w+):\s+(.+?)(?=^\s{4}\w+:|\Z)", doc.split("Attributes:", 1)[-1]
                         if "Attributes:" in doc else "", re.S | re.M):
        out.setdefault(m.group(1), " ".join(m.group(2).split()))
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        src = ""
    for m in re.finditer(r"^\s+(\w+):[^\n=]*=[^\n#]*#\s*(.+)$", src, re.M):
        out.setdefault(m.group(1), m.group(2).strip())
    for f in dataclasses.fields(cls):
        if f.metadata.get("help"):
            out[f.name] = str(f.metadata["help"])
    return out


def describe(cfg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(dotted key, value, help)`` for every leaf field of a config (``--show-config``)."""
    rows: list[tuple[str, Any, str]] = []
    helps = field_help(type(cfg))
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            rows += describe(v, key + ".")
        elif isinstance(v, tuple) and v and all(dataclasses.is_dataclass(x) for x in v):
            for i, x in enumerate(v):
                rows += describe(x, f"{key}.{i}.")
        else:
            rows.append((key, v, helps.get(f.name, "")))
    return rows

