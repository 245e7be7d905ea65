"""Configs from files and `--set key=value` overrides, for any config dataclass.

A benchmark variant or a whole pipeline is a config file, not code:
`configs/amazon_beauty.toml` holds the fields that differ from the defaults
(`GenerativeTrainConfig`), nested as in `config.json` (`[model]`, `[train]`), and
`--set model.dropout=0.2` changes one more on the command line. TOML, YAML or
JSON, chosen by the suffix; a trained model's `config.json` reads back too, so
"train this again" is `--config RUN/train/generative/config.json`.

A `--set` value is read as the type of the field it sets (`--set
model.latest_in_summary=true` is a bool, `--set sid.prefix=category,brand` a
tuple). Everything is then checked at once by `genrec.config_check.build_config`:
a misspelt key at any depth, a wrong type and a value the config refuses are
all listed, each by its dotted path, in one error.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")

SUFFIXES: tuple[str, ...] = (".toml", ".yaml", ".yml", ".json")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                defaults: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None) -> T:
    """`cls`'s defaults (updated by `defaults`, e.g. a command's own starting point), then the file at
    `path` (TOML, YAML or JSON), then each `key=value`, then `options` (a command's own flags, typed
    already); built with `cls.from_dict` where it has one (every config here builds through
    `build_config`), so a problem anywhere is reported with all the others."""
    from genrec.config_check import build_config

    values = _merged(dict(defaults or {}), read_config_file(path) if path is not None else {})
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not key.strip() or not sep:
            raise ValueError(f"--set expects key=value (e.g. model.d_model=64), got {override!r}")
        _assign(values, key.strip(), _typed(cls, key.strip(), raw.strip()))
    values = _merged(values, dict(options or {}))
    from_dict = getattr(cls, "from_dict", None)
    return from_dict(values) if from_dict is not None else build_config(cls, values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested dict a config file holds; ValueError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"config file {path}: expected one of {list(SUFFIXES)}, got {path.suffix or 'no suffix'!r}")
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            values = _yaml(text)
    except Exception as error:  # each parser has its own error class; all mean "not this format"
        raise ValueError(f"cannot parse config file {path}: {error}") from error
    if values is None:  # an empty YAML file
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected a mapping of settings at the top, got {type(values).__name__}")
    return values


def _yaml(text: str) -> Any:
    """YAML with YAML 1.2's numbers: PyYAML follows 1.1, where `2e-3` (no dot) is a string."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(  # copies SafeLoader's resolvers first; SafeLoader itself is untouched
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return yaml.load(text, Loader=Loader)  # a SafeLoader subclass: plain values only, never objects


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update`'s values, section by section (a nested dict merges, a value replaces)."""
    out = dict(base)
    for key, value in update.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def _assign(values: dict[str, Any], key: str, value: Any) -> None:
    *path, last = key.split(".")
    for part in path:
        section = values.setdefault(part, {})
        if not isinstance(section, dict):
            raise ValueError(f"--set {key}: {part!r} is a value in the config, not a section")
        values = section
    values[last] = value


def _typed(cls: Any, key: str, raw: str) -> Any:
    """`raw` read as the type of the field `key` names (dotted through nested dataclasses). A key
    that names no field, or text that is not of the field's type, stays a string: `build_config`
    then reports it beside every other problem."""
    head, _, rest = key.partition(".")
    if not is_dataclass(cls) or head not in {f.name for f in fields(cls)}:
        return raw
    kind = typing.get_type_hints(cls)[head]
    if rest:
        return _typed(kind, rest, raw)
    return _parse(raw, kind)


def _parse(raw: str, kind: Any) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(raw.lower(), raw)
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            return raw
    if origin is tuple:
        items = [v.strip() for v in raw.strip("()[]").split(",") if v.strip()]
        kinds = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args) or [str] * len(items)
        return tuple(_parse(item, k) for item, k in zip(items, kinds)) if len(kinds) == len(items) else tuple(items)
    if type(None) in args and raw.lower() in ("none", "null"):
        return None
    if origin in (typing.Union, types.UnionType):  # X | None: the first type that reads it
        for option in (a for a in args if a is not type(None)):
            value = _parse(raw, option)
            if not isinstance(value, str) or option is str:
                return value
    return raw  # strings and literals; the dataclass validates them
