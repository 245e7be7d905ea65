"""`SidTable`: the item → Semantic ID mapping every later stage reads (trie, model, serving)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.artifacts import atomic_path, manifest, write_json_atomic

SIDS_FILE = "sids.parquet"


@dataclass
class SidTable:
    """`item_ids` int64 `[n]`, `codes` int64 `[n, L]` (the last level disambiguates),
    `codebook_sizes` one vocabulary size per level, the disambiguation level's included.

    On disk: `sids.parquet` with columns `item_id`, `sid_0` … `sid_{L-1}`; the
    codebook sizes live in the Parquet metadata, so the file stands alone.
    """

    item_ids: np.ndarray
    codes: np.ndarray
    codebook_sizes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.item_ids = np.asarray(self.item_ids, dtype=np.int64)
        self.codes = np.asarray(self.codes, dtype=np.int64)
        if self.item_ids.ndim != 1:
            raise ValueError(f"item_ids must be 1-d [n], got shape {self.item_ids.shape}")
        if self.codes.ndim != 2 or len(self.codes) != len(self.item_ids):
            raise ValueError(f"codes must be [n={len(self.item_ids)}, levels], got shape {self.codes.shape}")
        if len(np.unique(self.item_ids)) != len(self.item_ids):
            raise ValueError("item_ids holds duplicates; expected each item once")
        if not self.codebook_sizes:
            self.codebook_sizes = [int(c) + 1 for c in self.codes.max(axis=0)] if len(self.codes) else []
        self.codebook_sizes = [int(s) for s in self.codebook_sizes]
        if len(self.codebook_sizes) != self.codes.shape[1]:
            raise ValueError(f"codebook_sizes has {len(self.codebook_sizes)} entries; expected one per level ({self.codes.shape[1]})")
        if len(self.codes) and ((self.codes < 0).any() or (self.codes.max(axis=0) >= np.asarray(self.codebook_sizes)).any()):
            raise ValueError(f"codes must lie in [0, codebook_sizes[level]) per level; codebook_sizes={self.codebook_sizes}")

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def levels(self) -> int:
        """Levels including the disambiguation level."""
        return int(self.codes.shape[1])

    def codes_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Codes `[len(item_ids), L]` for the given ids; ValueError on an unknown id."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        order = np.argsort(self.item_ids)
        position = np.searchsorted(self.item_ids, item_ids, sorter=order)
        position = np.minimum(position, len(order) - 1)
        rows = order[position]
        unknown = self.item_ids[rows] != item_ids
        if unknown.any():
            raise ValueError(f"item_ids holds ids without a SID, e.g. {item_ids[unknown][:5].tolist()}")
        return self.codes[rows]

    def save(self, folder: str | os.PathLike, **manifest_extra: Any) -> None:
        """Write `folder/sids.parquet` and `folder/manifest.json` atomically."""
        folder = Path(folder)
        columns = {"item_id": pa.array(self.item_ids, pa.int64())}
        columns.update({f"sid_{level}": pa.array(self.codes[:, level], pa.int64()) for level in range(self.levels)})
        table = pa.table(columns).replace_schema_metadata({"codebook_sizes": json.dumps(self.codebook_sizes)})
        with atomic_path(folder / SIDS_FILE) as tmp:
            pq.write_table(table, tmp)
        write_json_atomic(
            folder / "manifest.json",
            manifest(n_items=len(self), codebook_sizes=self.codebook_sizes, **manifest_extra),
        )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SidTable":
        file = Path(folder) / SIDS_FILE
        if not file.exists():
            raise ValueError(f"folder {str(folder)!r} has no {SIDS_FILE}; expected the output of `genrec sid`")
        table = pq.read_table(file)
        metadata = table.schema.metadata or {}
        sizes = json.loads(metadata[b"codebook_sizes"]) if b"codebook_sizes" in metadata else []
        level_columns = sorted((c for c in table.column_names if c.startswith("sid_")), key=lambda c: int(c[4:]))
        codes = np.stack([table[c].to_numpy() for c in level_columns], axis=1) if level_columns else np.zeros((table.num_rows, 0))
        return cls(table["item_id"].to_numpy(), codes, sizes)
