"""Atomic writes and manifests for everything a pipeline stage leaves on disk.

A stage writes to a temporary name and renames it into place, so a crash never
leaves a half-written file that a later stage would trust. Each artefact folder
carries `manifest.json` (config, versions, input hashes) so a run can be
audited and a stale artefact detected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
import warnings
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto `target`.

    Works for files and folders. On an exception the temporary is removed and
    `target` keeps whatever it held before.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if tmp.is_dir() and target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(path: str | os.PathLike) -> str:
    """One hash over every file below `path` (names and bytes), manifests excluded."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def manifest(config: Any = None, inputs: dict[str, str | None] | None = None, **extra: Any) -> dict[str, Any]:
    """The record saved next to an artefact: what made it, from what, with what."""
    import numpy
    import pandas

    versions = {"python": sys.version.split()[0], "numpy": numpy.__version__, "pandas": pandas.__version__}
    with contextlib.suppress(ImportError):
        import torch

        versions["torch"] = torch.__version__
    from genrec import __version__

    versions["genrec"] = __version__
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "versions": versions,
        "config": _jsonable(config) if config is not None else None,
        "inputs": inputs or {},
        **extra,
    }


def warn_if_trained_by_other_code(folder: Path, fingerprint: str, what: str, retrain: str) -> bool:
    """Warn when the artefact in `folder` was trained by code other than `fingerprint` (`code_fingerprint`
    of the modules that train it); return whether it was.

    Loading keeps such an artefact (an upgrade of genrec must not take a served model away, nor throw
    a long training run away); the training stages, which compare the same hash, retrain instead."""
    recorded = json.loads((folder / "manifest.json").read_text()).get("code")
    other = recorded != fingerprint
    if other:
        warnings.warn(f"{folder} was trained by other {what} code "
                      f"({'no code hash recorded' if recorded is None else 'a different code hash'}); "
                      f"using it as it is (retrain: {retrain})", stacklevel=4)
    return other


def code_fingerprint(*modules: str) -> str:
    """One hash over the source of the named modules (a package: every `.py` below it).

    A cached model is only as current as the code that trained it: a config and the
    input hashes can match while the training code has changed. Loaders compare
    this hash with the one in the artefact's manifest: the demo and the training
    stages (SASRec's, the cascade's) rebuild when it differs; loading the generative
    model or the cascade (`from_run`) warns and keeps it. A package is
    hashed whole, so an edit to any of its files (its CLI too) counts as a change.
    """
    import importlib.util

    digest = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"no module named {name!r} to fingerprint")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for file in files:
            digest.update(f"{name}:{file.relative_to(origin.parent)}".encode())
            digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return obj


class MissingStageError(FileNotFoundError):
    """A run folder lacks a stage's finished artefact (no `manifest.json`): loading never
    trains, so serving, reloading and evaluating say which command makes it instead."""

    def __init__(self, folder: str | os.PathLike, command: str):
        self.folder, self.command = Path(folder), command
        super().__init__(f"{self.folder} holds no finished model (its manifest.json is missing: the stage never ran "
                         f"or was interrupted); make it with: {command}")
