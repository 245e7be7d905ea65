"""The tensors a served model computes with: found, checked for NaN, hashed.

The server serves any `Retriever`, so it cannot ask for "the checkpoint": it
walks the retriever's own attributes (and those of the objects it holds, a few
levels down) and collects every `torch.nn.Module` and tensor it finds. What it
finds is what answers requests — the bytes in memory, not a file name — so a
hash of it tells two models apart even when every manifest is identical.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Iterator, Mapping

MAX_DEPTH = 5
MAX_CONTAINER = 256
"""Lists and dicts longer than this are data (item tables, caches), not model parts: not walked."""


def served_tensors(retrievers: Mapping[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """`(name, tensor, is_parameter)` for every tensor the retrievers hold, in a stable order.

    Nothing is found (and torch is not imported) when no retriever uses torch.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    seen: set[int] = set()
    for name, retriever in sorted(retrievers.items()):
        yield from _walk(torch, retriever, name, seen, 0, type(retriever).__module__)


def nonfinite_weights(retrievers: Mapping[str, Any]) -> list[str]:
    """Names of tensors holding NaN — or ±inf in a parameter (a buffer may hold -inf on purpose: attention masks)."""
    torch = sys.modules.get("torch")
    bad = []
    for name, tensor, is_parameter in served_tensors(retrievers):
        if not tensor.is_floating_point() and not tensor.is_complex():
            continue
        broken = ~torch.isfinite(tensor) if is_parameter else torch.isnan(tensor)
        count = int(broken.sum())
        if count:
            bad.append(f"{name} ({count} of {tensor.numel()} values)")
    return bad


def weights_digest(retrievers: Mapping[str, Any]) -> str:
    """SHA-256 over every served tensor's name, dtype, shape and bytes ('' when there are none)."""
    torch = sys.modules.get("torch")
    digest, found = hashlib.sha256(), False
    for name, tensor, _ in served_tensors(retrievers):
        found = True
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest() if found else ""


def _walk(torch, obj: Any, path: str, seen: set[int], depth: int, home: str) -> Iterator[tuple[str, Any, bool]]:
    if id(obj) in seen or depth > MAX_DEPTH:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        parameters = {id(p) for p in obj.parameters()}
        for name, tensor in obj.state_dict(keep_vars=True).items():
            yield f"{path}.{name}", tensor.detach(), id(tensor) in parameters
        return
    if isinstance(obj, torch.Tensor):
        yield path, obj.detach(), False
        return
    if isinstance(obj, dict) and len(obj) <= MAX_CONTAINER:
        for key, value in obj.items():
            yield from _walk(torch, value, f"{path}[{key!r}]", seen, depth + 1, home)
    elif isinstance(obj, (list, tuple)) and len(obj) <= MAX_CONTAINER:
        for index, value in enumerate(obj):
            yield from _walk(torch, value, f"{path}[{index}]", seen, depth + 1, home)
    elif _is_own_object(obj, home):
        for name, value in vars(obj).items():
            yield from _walk(torch, value, f"{path}.{name}", seen, depth + 1, home)


def _is_own_object(obj: Any, home: str) -> bool:
    """genrec's objects (and those defined beside the retriever) are walked; other libraries' are not."""
    module = type(obj).__module__
    return hasattr(obj, "__dict__") and not isinstance(obj, type) and (module.startswith("genrec.") or module == home)
