"""The `embed` stage: RUN/data → RUN/features (item vectors, config, manifest)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from genrec.artifacts import folder_sha256, manifest, write_json_atomic
from genrec.data.dataset import Dataset
from genrec.device import check_device
from genrec.features.item_vectors import ItemVectors, encode_items
from genrec.features.text import TEXT_MODEL_NAME


@dataclass(frozen=True)
class EmbedConfig:
    """What `embed_run` encodes. `views`: see `genrec.features.VIEWS`. `model`: the text view's
    sentence-transformers encoder, by Hub name or local folder (default the shipped MiniLM; queries
    for dense retrieval and the models keep MiniLM). `device`: where it runs ("auto", "cpu",
    "cuda", … `genrec.device`); the vectors do not depend on it."""

    views: tuple[str, ...] = ("text",)
    batch_size: int = 256
    model: str = TEXT_MODEL_NAME
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_device(self.device, "device")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must name a sentence-transformers encoder (Hub name or folder), got {self.model!r}")


def embed_run(run: str | os.PathLike, config: EmbedConfig = EmbedConfig(), progress: bool = True) -> ItemVectors:
    """Encode the items of RUN/data into RUN/features; a cache hit when nothing changed.

    Writes `item_vectors-<hash>.npz` (see `encode_items`), `config.json` and
    `manifest.json` (with the vector file's name, so later stages can audit it).
    """
    run = Path(run)
    dataset = Dataset.load(run / "data")
    features = run / "features"
    vectors = encode_items(dataset, features, views=config.views, batch_size=config.batch_size, progress=progress,
                           device=config.device, model=config.model)
    write_json_atomic(features / "config.json", config)
    files = sorted(p.name for p in features.glob("item_vectors-*.npz"))
    write_json_atomic(
        features / "manifest.json",
        manifest(
            config,
            inputs={"data": folder_sha256(run / "data")},
            n_items=len(vectors),
            dim=int(vectors.vectors.shape[1]),
            views=list(vectors.views),
            view_dims=list(vectors.view_dims),
            vector_files=files,
        ),
    )
    return vectors
