"""A trained generative model's folder → the model, its config and its input spec.

The folder is what `genrec.train.generative.train_generative` writes: `config.json`
("model": the hyper-parameters, "inputs": the input spec), `best.pt` ({"model":
state dict}), `encoder.json`, `manifest.json`. Weights saved before the model was
split into parts carry flat parameter names; `migrate_state_dict` renames them, so
older runs load unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from genrec.model.config import load_model_config
from genrec.model.model import GenerativeModel
from genrec.train.loop import read_checkpoint

_OLD_PREFIXES: tuple[tuple[str, str], ...] = (
    ("query_embedding.", "inputs.query."), ("user_embedding.", "inputs.user."),
    ("context_embedding.", "inputs.context."), ("code_embedding.", "inputs.code."),
    ("item_embedding.", "inputs.item."), ("query_vector_projection.", "inputs.query_vector."),
    ("category_embedding.", "inputs.category."), ("item_category", "inputs.item_category"),
    ("action_embedding.", "inputs.action."), ("recency_embedding.", "inputs.recency."),
    ("type_embedding.", "inputs.part_type."), ("position_embedding.", "inputs.position."),
    ("encoder_blocks.", "encoder.blocks."), ("encoder_norm.", "encoder.norm."),
    ("summary_projection.", "summary.projection."), ("latest_projection.", "summary.latest."),
    ("copy_gate.", "copy.gate."), ("level_embedding.", "decoder.level."),
    ("decoder_blocks.", "decoder.blocks."), ("decoder_norm.", "decoder.norm."), ("heads.", "decoder.heads."),
)


def migrate_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameter names of a model saved before the parts split, renamed; others unchanged."""
    if any(name.startswith(("inputs.", "decoder.")) for name in state):  # already this layout
        return state
    out = {}
    for name, value in state.items():
        for old, new in _OLD_PREFIXES:
            if name == old or name.startswith(old):
                name = new + name[len(old):]
                break
        out[name] = value
    return out


def load_model(folder: str | Path, checkpoint: str = "best.pt") -> tuple[GenerativeModel, dict[str, Any]]:
    """The model in `folder` (eval mode, on the CPU) and its `config.json`."""
    folder = Path(folder)
    meta = json.loads((folder / "config.json").read_text())
    config, spec = load_model_config(meta["model"], meta.get("inputs"))
    model = GenerativeModel(config, spec)
    saved = read_checkpoint(folder / checkpoint)  # a truncated or foreign file is an error naming it
    model.load_state_dict(migrate_state_dict(saved["model"]))
    return model.eval(), meta
