"""configs/*.toml read once into frozen dataclasses: a typo is exit 2 naming the file and key.

`load(Cls, path)` checks every key against the dataclass's fields (unknown and missing keys
are refused), and every value against its annotation: str, int, float, bool, tuple[X, ...],
dict[str, X] and nested dataclasses. Nothing downstream reads a raw dict.
"""
from __future__ import annotations

import dataclasses
import functools
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from kbuild.core.errors import BadInput

T = TypeVar("T")


class ConfigError(BadInput):
    """A settings file that does not match its schema."""


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such settings file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(tp: Any, value: Any, where: str) -> Any:
    """`value` as type `tp`, or ConfigError naming `where` (file: key.path)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        vt = args[1] if len(args) > 1 else Any
        return types.MappingProxyType({k: convert(vt, v, f"{where}.{k}") for k, v in value.items()})
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def build(cls: type[T], data: dict, where: str) -> T:
    """Construct dataclass `cls` from a TOML table, strictly."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    keys = {f.metadata.get("key", name): name for name, f in fields.items()}
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise ConfigError(f"{_at(where)} unknown key(s) {', '.join(map(_show, unknown))}; known: {', '.join(sorted(keys))}")
    missing = sorted(k for k, name in keys.items() if k not in data
                     and fields[name].default is dataclasses.MISSING
                     and fields[name].default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{_at(where)} missing key(s) {', '.join(missing)}")
    kwargs = {keys[k]: convert(hints[keys[k]], v, f"{where} {k}" if where.endswith(":") else f"{where}.{k}")
              for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, BadInput) as e:   # the dataclass's own checks (__post_init__)
        raise ConfigError(f"{_at(where)} {e}".replace("\n", "\\n").replace("\r", "\\r")) from None


def _show(key: str) -> str:
    """A key as printed in a one-line message: repr-escaped unless it is plain."""
    return key if key.isprintable() and key.isascii() and " " not in key else repr(key)


def _at(where: str) -> str:
    """`file:` stays as is; `file: a.b` becomes `file: a.b:` before a message."""
    return where if where.endswith(":") else where + ":"


def load(cls: type[T], path: Path, data: dict | None = None) -> T:
    """Read `path` (or use `data` already read from it) into `cls`."""
    return build(cls, read_toml(path) if data is None else data, f"{path}:")


@functools.lru_cache(maxsize=None)
def cached(cls: type[T], path: Path) -> T:
    """`load`, once per process: configs/ does not change while a task runs."""
    return load(cls, path)
