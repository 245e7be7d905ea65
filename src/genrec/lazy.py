"""Package attributes imported on first use (PEP 562), so a light import — a CLI's `--help`, a config
reader — does not pay for torch or the model stack behind a package's heavier names."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_getattr(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `modules[name]` when `name` is first read from `package`."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
