"""Configs from files and `--set key=value` overrides, for any config dataclass.

A benchmark variant is a config file, not code: `configs/amazon_beauty.toml`
holds the fields that differ from the defaults (`GenerativeTrainConfig`), nested
as in `config.json` (`[model]`, `[train]`), and `--set model.dropout=0.2` changes
one more on the command line. Values are typed by the dataclass field they set,
so `--set model.latest_in_summary=true` is a bool and a misspelt key is an error
that lists the known ones. TOML or JSON; a trained model's `config.json` reads
back too, so "train this again" is `--config RUN/train/generative/config.json`.
"""

from __future__ import annotations

import json
import tomllib
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """`cls`'s defaults, updated by the file at `path` (TOML or JSON), then by each `key=value`;
    built with `cls.from_dict`, which refuses unknown keys."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot parse config file {path}: {error}") from error
    for override in overrides:
        key, _, raw = override.partition("=")
        if not key or not _:
            raise ValueError(f"--set expects key=value (e.g. model.d_model=64), got {override!r}")
        _assign(values, key.strip(), _typed(cls, key.strip(), raw.strip()))
    return cls.from_dict(values)  # type: ignore[attr-defined]  # every config dataclass here has one


def check_known(cls: Any, values: dict[str, Any]) -> None:
    """Refuse keys that are not fields of the dataclass `cls`: a misspelt setting must not be ignored."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; known: {sorted(known)}")


def _assign(values: dict[str, Any], key: str, value: Any) -> None:
    *path, last = key.split(".")
    for part in path:
        values = values.setdefault(part, {})
    values[last] = value


def _typed(cls: Any, key: str, raw: str, full: str = "") -> Any:
    """`raw` converted to the type of the field `key` names (dotted through nested dataclasses)."""
    full = full or key
    head, _, rest = key.partition(".")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    if head not in names:
        raise ValueError(f"unknown config key {full!r}: {cls.__name__} has {names}")
    kind = hints[head]
    if rest:
        if not (isinstance(kind, type) and is_dataclass(kind)):
            raise ValueError(f"config key {head!r} is not a section; cannot set {full!r}")
        return _typed(kind, rest, raw, full)
    return _parse(raw, kind, full)


def _parse(raw: str, kind: Any, key: str) -> Any:
    if kind is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{key} takes true or false, got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{key} takes a {kind.__name__}, got {raw!r}") from None
    if typing.get_origin(kind) is tuple:
        return tuple(int(v) for v in raw.strip("()[]").split(",") if v.strip())
    return raw  # strings and literals; the dataclass validates them
