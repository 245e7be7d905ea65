"""What a loaded model must pass before it serves: reload = load, verify, swap.

A checkpoint full of NaN loads without complaint and then answers every
request with nothing, so loading is not enough. Before a model goes live
(at startup or on `POST /admin/reload`) the server checks, in this order:

1. **weights are finite** — no NaN in any tensor the retrievers hold, no ±inf
   in a parameter (`genrec.serve.weights`);
2. **the SID table is the model's** — a stage that records the hash of
   `RUN/sid` it was trained on (`inputs.sid` in its manifest) still finds that
   table there; a model decoding another table's codes answers other items;
3. **a canary batch answers** — each retriever gets a search for a catalog
   title (with the most active user's history) and a recommendation for that
   user; the search must return catalog items, and every returned score must be
   finite.

Any failure raises `RunLoadError` naming the retriever and the check; the
server then keeps the model it had.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from genrec.serve.model import RunLoadError, ServedModel
from genrec.serve.weights import nonfinite_weights

CANARY_K = 10
CANARY_QUERY_CHARS = 200


def verify_served_model(model: ServedModel) -> None:
    """Raise `RunLoadError` unless `model` passes every check above."""
    for name, retriever in model.retrievers.items():
        bad = nonfinite_weights({name: retriever})
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise RunLoadError(f"retriever {name!r}: weights not finite: {shown}")
    check_sid_table(model.run)
    for name, retriever in model.retrievers.items():
        check_canary(model, name, retriever)


def check_sid_table(run: Path) -> None:
    """Every manifest that names the SID table it was trained on must find that table in `RUN/sid`."""
    from genrec.artifacts import folder_sha256

    sid = Path(run) / "sid"
    current = None
    for path in sorted(Path(run).rglob("manifest.json")):
        try:
            recorded = json.loads(path.read_text()).get("inputs", {}).get("sid")
        except (ValueError, AttributeError) as error:
            raise RunLoadError(f"{path.relative_to(run)} is not a valid manifest: {error}") from error
        if not isinstance(recorded, str):
            continue
        if not sid.is_dir():
            raise RunLoadError(f"{path.parent.relative_to(run)} was trained on a SID table, but the run has no sid/ folder")
        current = current or folder_sha256(sid)
        if current != recorded:
            raise RunLoadError(f"the SID table in sid/ is not the one {path.parent.relative_to(run)} was trained on "
                               f"(hash {current[:12]}, trained on {recorded[:12]}); rebuild or retrain so they match")


def check_canary(model: ServedModel, name: str, retriever) -> None:
    """A search and a recommendation through `retriever`, straight (no batcher: it is not live yet)."""
    users = model.most_active_users(1)
    user = users[0] if users else None
    items, _, _ = model.history(user)
    item = model.item(int(items[-1])) if len(items) else None
    item = item or next(iter(model.items_by_id.values()), None)
    if item is None:
        raise RunLoadError("the catalog is empty; nothing to serve")
    query = " ".join(item["title"].split())[:CANARY_QUERY_CHARS] or "a"
    requests = [model.request(user, query), model.request(user, None)]
    try:
        search, recommend = retriever.retrieve(requests, CANARY_K)
    except Exception as error:
        raise RunLoadError(f"retriever {name!r} failed the canary: {type(error).__name__}: {error}") from error
    for kind, ranked in (("search", search), ("recommendation", recommend)):
        scores = [float(s) for s in ranked.scores[:CANARY_K]]
        if not all(math.isfinite(s) for s in scores):
            raise RunLoadError(f"retriever {name!r} failed the canary: its {kind} scores are not finite ({scores[:3]} …)")
    found = [i for i in search.item_ids[:CANARY_K].tolist() if model.item(i) is not None]
    if not found:
        raise RunLoadError(f"retriever {name!r} failed the canary: a search for {query[:60]!r} answered no catalog items "
                           f"({len(search)} ids, none in the catalog)")
