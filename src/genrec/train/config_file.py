"""The generative training stage's config from a file and `--set` overrides (`genrec train --config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from genrec.config_file import load_config
from genrec.train.generative import GenerativeTrainConfig


def load_train_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> GenerativeTrainConfig:
    """`GenerativeTrainConfig`'s defaults, updated by the file at `path`, then by each `key=value`."""
    return load_config(GenerativeTrainConfig, path, overrides)
