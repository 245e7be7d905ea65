"""Build a config dataclass from plain values, reporting every bad field at once.

A config file is edited by hand and a run takes minutes to reach the stage that
reads it, so one error per attempt is expensive: `build_config` walks the whole
nested dict and collects three kinds of problem into one `ConfigError`, each
under its dotted path (`train.model.dropout`):

* a key the dataclass does not have, at any depth (with the closest known name);
* a value of the wrong type for its field's annotation (`d_model = "big"`, `true`
  for an int, `1.5` for an int, a list of the wrong length for a fixed tuple);
* a value the dataclass's own `__post_init__` refuses (`dropout = 2`). A
  `__post_init__` stops at its first check, so the field its message names is
  reset to the default and the object is built again, until it builds: every
  refused field is found, each reported with the dataclass's own message.

Plain code rather than pydantic: pydantic is an optional extra of genrec (the
server's), and the checks live in the dataclasses' `__post_init__`, which a
pydantic adapter would still run one at a time.

Lists become tuples where the field is a tuple (TOML, JSON and YAML have no
tuples); ints are accepted where a float is expected.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import MISSING, fields, is_dataclass, replace
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """Every problem of one config, one line each, as `dotted.path: what is wrong`."""

    def __init__(self, name: str, problems: list[str]):
        self.problems = list(problems)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        super().__init__(f"{count} in the {name} config:\n" + "\n".join(f"  - {p}" for p in problems))


def build_config(cls: type[T], values: dict[str, Any]) -> T:
    """`cls`'s defaults updated by `values` (nested dicts for nested dataclasses);
    raises `ConfigError` listing every unknown key, wrong type and refused value."""
    built, problems = _build(cls, values, None, "")
    if problems or built is None:
        raise ConfigError(cls.__name__, problems or [f"{cls.__name__} could not be built"])
    return built


def _build(cls: Any, values: Any, base: Any, prefix: str) -> tuple[Any, list[str]]:
    """(the instance or None, problems): `base` (else `cls()`) with `values` replaced."""
    where = prefix.rstrip(".") or cls.__name__
    if not isinstance(values, dict):
        return None, [f"{where}: expected a section of {cls.__name__} fields, got {_shown(values)}"]
    if base is None:
        base = _default(cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    problems: list[str] = []
    chosen: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            problems.append(f"{path}: unknown key{_suggestion(str(key), names)}; {cls.__name__} has {names}")
            continue
        kind = hints[key]
        if _is_section(kind):
            child, found = _build(kind, value, getattr(base, key) if base is not None else None, f"{path}.")
            problems += found
            if child is not None and not found:
                chosen[key] = child
            continue
        converted, problem = _typed(kind, value)
        if problem:
            problems.append(f"{path}: {problem}")
        else:
            chosen[key] = converted
    built, refused = _construct(cls, base, chosen, prefix)
    return built, problems + refused


def _construct(cls: Any, base: Any, chosen: dict[str, Any], prefix: str) -> tuple[Any, list[str]]:
    """Build, resetting each field a `__post_init__` message names until the object builds."""
    problems: list[str] = []
    chosen = dict(chosen)
    while True:
        try:
            return (replace(base, **chosen) if base is not None else cls(**chosen)), problems
        except (ValueError, TypeError) as error:
            message = str(error)
            named = sorted((m.start(), key) for key in chosen
                           if (m := re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", message)))
            if not named:
                return None, problems + [f"{prefix.rstrip('.') or cls.__name__}: {message}"]
            problems.append(f"{prefix}{named[0][1]}: {message}")
            for _, key in named:
                del chosen[key]


def _default(cls: Any) -> Any:
    """`cls()`, or None when a field has no default (then `values` must give it)."""
    if any(f.init and f.default is MISSING and f.default_factory is MISSING for f in fields(cls)):
        return None
    return cls()


def _is_section(kind: Any) -> bool:
    return isinstance(kind, type) and is_dataclass(kind)


def _typed(kind: Any, value: Any) -> tuple[Any, str]:
    """(`value` as `kind` wants it, "") or (None, what is wrong)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any or kind is object:
        return value, ""
    if kind is bool:
        return (value, "") if isinstance(value, bool) else (None, f"expected true or false, got {_shown(value)}")
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return (value, "") if ok else (None, f"expected an int, got {_shown(value)}")
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (float(value), "") if ok else (None, f"expected a number, got {_shown(value)}")
    if kind is str:
        return (value, "") if isinstance(value, str) else (None, f"expected a string, got {_shown(value)}")
    if origin is Literal:
        return (value, "") if value in args else (None, f"expected one of {list(args)}, got {_shown(value)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None, ""
        for option in (a for a in args if a is not type(None)):
            converted, problem = _typed(option, value)
            if not problem:
                return converted, ""
        return None, f"expected {_spelled(kind)}, got {_shown(value)}"
    if origin is tuple:
        return _tuple(args, value)
    if origin is list or kind is list:
        return (list(value), "") if isinstance(value, (list, tuple)) else (None, f"expected a list, got {_shown(value)}")
    if origin is dict or kind is dict:
        return (value, "") if isinstance(value, dict) else (None, f"expected a mapping, got {_shown(value)}")
    return value, ""  # a type this checker does not know: the dataclass decides


def _tuple(args: tuple[Any, ...], value: Any) -> tuple[Any, str]:
    if not isinstance(value, (list, tuple)):
        return None, f"expected a list, got {_shown(value)}"
    if len(args) == 2 and args[1] is Ellipsis:
        kinds = [args[0]] * len(value)
    elif args:
        if len(value) != len(args):
            return None, f"expected a list of {len(args)} values, got {len(value)}: {_shown(value)}"
        kinds = list(args)
    else:
        kinds = [Any] * len(value)
    out = []
    for i, (kind, item) in enumerate(zip(kinds, value)):
        converted, problem = _typed(kind, item)
        if problem:
            return None, f"item {i}: {problem}"
        out.append(converted)
    return tuple(out), ""


def _spelled(kind: Any) -> str:
    return " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in typing.get_args(kind))


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _suggestion(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
