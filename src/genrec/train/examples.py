"""Search examples as one pre-built tensor table: a training step only indexes it.

One row per search interaction (plus the indexing task's item-text requests),
encoded once by the `RequestEncoder`; recommendation trains on windows instead
(`genrec.train.sequences`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genrec.model.batches import EncoderBatch
from genrec.model.config import GenerativeConfig
from genrec.model.inputs import RequestEncoder
from genrec.retrieval import Request


@dataclass
class ExampleTable:
    """All training examples as one pre-built `EncoderBatch` (int32), target
    codes `[n, L]` and target item ids `[n]`, so a training step only indexes tensors."""

    batch: EncoderBatch
    codes: torch.Tensor
    items: torch.Tensor

    @classmethod
    def build(cls, encoder: RequestEncoder, sids: Any, requests: Sequence[Request], targets: np.ndarray,
              chunk: int = 4096, progress: bool = True) -> "ExampleTable":
        code_of = dict(zip(np.asarray(sids.item_ids).tolist(), range(len(sids.item_ids))))
        keep = np.asarray([int(t) in code_of for t in targets], dtype=bool)
        if not keep.all():  # an interaction with an item the SID table lacks cannot be a target
            requests = [r for r, k in zip(requests, keep) if k]
            targets = targets[keep]
        if not len(requests):
            raise ValueError("no training examples: split.train has no positive interaction with a SID")
        parts = []
        for start in tqdm(range(0, len(requests), chunk), desc="examples", unit="chunk", disable=not progress):
            parts.append(_pad_to_config(encoder.transform(requests[start:start + chunk]), encoder.config))
        def stacked(name: str) -> torch.Tensor | None:  # ints as int32, the query vector as float16
            if getattr(parts[0], name) is None:
                return None
            return torch.cat([getattr(p, name) for p in parts]).to(torch.float16 if name == "query_vector" else torch.int32)

        # Any: `stacked` gives None only for a field that is None in the parts, so required fields stay tensors.
        columns: dict[str, Any] = {f: stacked(f) for f in vars(parts[0])}
        batch = EncoderBatch(**columns)
        rows = np.asarray([code_of[int(t)] for t in targets])
        return cls(batch, torch.from_numpy(np.asarray(sids.codes)[rows].astype(np.int64)),
                   torch.from_numpy(np.asarray(targets, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.codes)

    def collate(self, indices: list[int]) -> tuple[EncoderBatch, torch.Tensor, torch.Tensor]:
        """(requests, target codes, target item ids): `GenerativeModel.loss`'s arguments."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        b = self.batch.index(idx)
        return b.map(lambda t: t.float() if t.is_floating_point() else t.long()).trim(), self.codes[idx], self.items[idx]


def _pad_to_config(b: EncoderBatch, c: GenerativeConfig) -> EncoderBatch:
    """Full fixed widths (left-aligned parts padded right, behaviour views padded left), so chunks concatenate."""
    right = lambda t, n: F.pad(t, (0, n - t.shape[1]))  # noqa: E731
    left = lambda t, n: F.pad(t, (0, 0, n - t.shape[1], 0)) if t.ndim == 3 else F.pad(t, (n - t.shape[1], 0))  # noqa: E731
    return EncoderBatch(
        query=right(b.query, c.max_query_tokens), user=right(b.user, c.max_user_tokens), context=right(b.context, 3),
        **{f"{view}_{part}": left(getattr(b, f"{view}_{part}"), size)
           for view, size in (("short", c.max_short), ("long", c.max_long))
           for part in ("codes", "items", "action", "recency")},
        query_vector=b.query_vector)
