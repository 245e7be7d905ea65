"""An item-level score beside the generated Semantic ID: re-ranks the model's own beams.

Why: a beam's log-probability is the sum of its levels' log-probabilities, and its
last level is often an arbitrary index among items that share a prefix (on Amazon
Beauty up to 52 look-alikes share one), so the generated order within a prefix
means little. Item-level models (SASRec's softmax over items, the cascade's
ranker) tell those items apart and win. This head gives the generative model the
same ability without leaving it: a softmax over the catalogue from the decoder's
summary vector, trained beside the level losses, and at inference each beam's
score becomes `beam log-prob + mix * item log-prob`. By default the candidates
come from constrained generation only; `GenerativeConfig.item_head_candidates`
lets the head add its own most likely items, scored on the same scale. The head
costs one `[d] x [d, items]` product per request, so the model still answers
alone (no ranker, no second retriever); `mix` is chosen on validation
(`GenerativeConfig.item_head_mix`).
The hybrid of generated candidates and a dense item score follows the
dense-plus-generative line of work (e.g. LIGER, Yang et al. 2024).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

OUTPUT_INIT_STD = 0.02
"""The item table starts small: the model's input tables start loud (std 1), an output table
that did would start with logits of size ~d and a saturated softmax."""


class ItemHead(nn.Module):
    """`log_probs(summary)`: log p(item | request) over the item-id slots `[0, n_item_slots)`.

    Slots outside the catalogue (id 0, gaps in the id range, items without a SID)
    are masked to -inf, so the distribution is over the items generation can reach.

    With `text_dim` > 0 an item's vector is its learned row plus a learned map of its
    text vector (`set_item_text`): items seen a few times in training borrow from
    look-alike texts, and a search's summary can match an item by what it says.
    """

    known: torch.Tensor  # [n_item_slots] bool: the slot is a catalogue item with a SID
    text: torch.Tensor  # [n_item_slots, text_dim] float16 item text vectors (0 rows: none)

    def __init__(self, d_model: int, n_item_slots: int, text_dim: int = 0):
        super().__init__()
        if n_item_slots < 2:
            raise ValueError(f"the item head needs n_item_slots ≥ 2 (slot 0 is padding), got {n_item_slots}")
        self.projection = nn.Linear(d_model, d_model)
        self.table = nn.Parameter(torch.randn(n_item_slots, d_model) * OUTPUT_INIT_STD)
        self.text_projection = nn.Linear(text_dim, d_model, bias=False) if text_dim else None
        self.register_buffer("known", torch.ones(n_item_slots, dtype=torch.bool))
        self.register_buffer("text", torch.zeros(n_item_slots if text_dim else 0, text_dim, dtype=torch.float16),
                             persistent=bool(text_dim))  # a head without text saves no empty tensor
        self.known[0] = False

    def set_item_text(self, item_ids: torch.Tensor, vectors: torch.Tensor) -> None:
        """`vectors [n, text_dim]`: the text vector of each of `item_ids [n]`."""
        if self.text_projection is None:
            raise ValueError("this item head was built without text (text_dim 0)")
        item_ids = torch.as_tensor(item_ids, dtype=torch.long).reshape(-1)
        vectors = torch.as_tensor(vectors)
        if vectors.shape != (len(item_ids), self.text.shape[1]):
            raise ValueError(f"vectors must be [{len(item_ids)}, {self.text.shape[1]}], got {list(vectors.shape)}")
        if len(item_ids) and (int(item_ids.min()) < 1 or int(item_ids.max()) >= len(self.known)):
            raise ValueError(f"item ids must be in [1, {len(self.known)})")
        self.text.zero_()
        self.text[item_ids.to(self.text.device)] = vectors.to(self.text.device, torch.float16)

    def item_vectors(self) -> torch.Tensor:
        """`[n_item_slots, d]`: the learned rows, plus the mapped text vectors when the head reads text."""
        if self.text_projection is None:
            return self.table
        return self.table + self.text_projection(self.text.to(self.table.dtype))

    def set_known_items(self, item_ids: torch.Tensor) -> None:
        """Only `item_ids` (the items the SID table codes) get probability mass."""
        item_ids = torch.as_tensor(item_ids, dtype=torch.long).reshape(-1)
        if len(item_ids) and (int(item_ids.min()) < 1 or int(item_ids.max()) >= len(self.known)):
            raise ValueError(f"item ids must be in [1, {len(self.known)}), got [{int(item_ids.min())}, "
                             f"{int(item_ids.max())}]")
        self.known.zero_()
        self.known[item_ids.to(self.known.device)] = True

    def logits(self, summary: torch.Tensor, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, n_item_slots]` fp32 logits, -inf outside the catalogue. `vectors`: `item_vectors()` computed
        earlier by a caller that knows the weights have not changed since (a served retriever keeps them:
        the text map is a product over the whole catalogue); None computes them now."""
        vectors = self.item_vectors() if vectors is None else vectors
        scores = self.projection(summary).float() @ vectors.float().T
        return scores.masked_fill(~self.known, float("-inf"))

    def log_probs(self, summary: torch.Tensor, vectors: torch.Tensor | None = None) -> torch.Tensor:
        return F.log_softmax(self.logits(summary, vectors), dim=-1)

    def loss(self, summary: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the target items `[B]` (ids outside the catalogue are an error)."""
        items = items.long()
        if len(items) and not bool(self.known[items.clamp(0, len(self.known) - 1)].all() &
                                   (items < len(self.known)).all()):
            raise ValueError("item head targets must be catalogue items with a SID")
        return F.cross_entropy(self.logits(summary), items)

    def score(self, summary: torch.Tensor, items: torch.Tensor, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, K]` log p of `items [B, K]` (-1 = no item: scores 0, the caller keeps it last)."""
        real = items >= 0
        picked = self.log_probs(summary, vectors).gather(1, items.clamp(min=0).long())
        return torch.where(real, picked, torch.zeros_like(picked))

    def text_match(self, query_vector: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """`[B, K]` cosine between each request's query vector `[B, text_dim]` and the text vector of
        each of its `items [B, K]`; 0 for a request without a query (zero vector), item -1 or an item
        without text.

        Why a fixed cosine beside the learned head: the head sees the query only through the
        summary (d numbers after two encoder layers), and the teacher ranks searches largely by how
        well an item's text answers the query; the raw MiniLM cosine carries that directly, and its
        weight is chosen on validation (`GenerativeConfig.item_head_text_match`)."""
        if self.text_projection is None:
            raise ValueError("this item head was built without text (text_dim 0): it has no item text to match")
        query = F.normalize(query_vector.float(), dim=-1)
        text = F.normalize(self.text[items.clamp(min=0).long()].float(), dim=-1)  # [B, K, text_dim]
        cosine = torch.einsum("bd,bkd->bk", query, text)
        return torch.where(items >= 0, cosine, torch.zeros_like(cosine))

    def rerank(self, summary: torch.Tensor, items: torch.Tensor, scores: torch.Tensor, mix: float | torch.Tensor,
               k: int, bonus: torch.Tensor | None = None,
               vectors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The best `k` of each request's beams `items [B, K]` (-1 = none, score -inf) by
        `scores + mix * log p(item) (+ bonus [B, K])` (`mix` one number, or one per request `[B]`):
        `(items [B, k], combined scores [B, k])`, -1 rows last."""
        if isinstance(mix, torch.Tensor):
            mix = mix.float().reshape(-1, 1)
        combined = scores.float() + mix * self.score(summary, items, vectors)
        if bonus is not None:
            combined = combined + bonus.float()
        combined = combined.masked_fill(items < 0, float("-inf"))
        top = torch.topk(combined, min(k, items.shape[1]), dim=1)
        return items.gather(1, top.indices), top.values


def can_match_text(model) -> bool:
    """Whether `model` (a `GenerativeModel`) can score a search's query against its items' text
    (`ItemHead.text_match`): a text-aware item head, and an encoder that reads query vectors."""
    head = getattr(model, "item_head", None)
    return head is not None and head.text_projection is not None and bool(model.spec.query_vector_dim)


__all__ = ["ItemHead", "OUTPUT_INIT_STD", "can_match_text"]
