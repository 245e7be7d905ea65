"""Every input embedding of the generative model, and the parts they make.

A request is six parts in one sequence (`PART_NAMES`); each position is its
token's embedding + its part's type embedding + a position within the part.
An interacted item is the sum of its SID codes' embeddings (the same table the
decoder reads back the codes it generated with), plus what was done with it and
how long ago, plus — where enabled — a hashed item-id and its leaf category.

Why loud inputs (N(0, 1) instead of the usual 0.02): with 0.02 the inputs are a
whisper next to the blocks' random outputs and the encoder's output barely
depends on them early on; on a text → SID probe first-level accuracy after 100
steps was 0.01 with quiet inputs and no summary, 0.87 with loud inputs and the
summary (`benchmarks/results/first_level_probe.md`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genrec.model.batches import EncoderBatch
from genrec.model.config import GenerativeConfig, InputSpec

PART_NAMES: tuple[str, ...] = ("query", "user", "short", "long", "context", "query_vector")
"""Encoder input parts, in sequence order; the index is the part's type id."""
INPUT_INIT_STD = 1.0
"""Initial scale of every input embedding and of the query-vector projection (see above)."""

Part = tuple[torch.Tensor, torch.Tensor]
"""An embedded part `[B, T, d]` and its mask `[B, T]` (True = a real position)."""


class InputEmbedding(nn.Module):
    """The embedding tables; `parts` embeds a request batch, the other methods the
    pieces the causal encoder and the summary read one at a time."""

    code_offsets: torch.Tensor  # [levels] first row of each level's codes in `code`
    item_category: torch.Tensor  # [n_item_slots] leaf category of each item id

    def __init__(self, config: GenerativeConfig, spec: InputSpec):
        super().__init__()
        self.config, self.spec = config, spec
        d = config.d_model
        self.register_buffer("code_offsets", torch.tensor([0, *torch.tensor(spec.codebook_sizes).cumsum(0).tolist()[:-1]],
                                                          dtype=torch.long), persistent=False)
        self.query = nn.Embedding(spec.query_vocab_size, d, padding_idx=0)
        self.user = nn.Embedding(spec.user_vocab_size, d, padding_idx=0)
        self.context = nn.Embedding(spec.context_vocab_size, d, padding_idx=0)
        self.code = nn.Embedding(sum(spec.codebook_sizes), d)  # shared by encoder and decoder
        self.item = nn.Embedding(config.item_buckets, d, padding_idx=0) if config.item_buckets else None
        self.query_vector = nn.Linear(spec.query_vector_dim, d) if spec.query_vector_dim else None
        self.category = nn.Embedding(spec.n_categories, d, padding_idx=0) if spec.n_categories else None
        # item id → leaf category id (0 = unknown); filled by `set_item_categories`, saved with the weights
        self.register_buffer("item_category", torch.zeros(spec.n_item_slots if spec.n_categories else 0, dtype=torch.long))
        self.action = nn.Embedding(spec.n_actions, d)
        self.recency = nn.Embedding(spec.n_recency, d)
        self.part_type = nn.Embedding(len(PART_NAMES), d)
        self.position = nn.Embedding(max(config.max_query_tokens, config.max_user_tokens, config.max_short,
                                         config.max_long, config.max_context), d)

    def set_item_categories(self, item_category: torch.Tensor) -> None:
        """`item_category [n_item_slots]`: the leaf-category id (1..n_categories-1, 0 = none) of each item id."""
        spec = self.spec
        item_category = torch.as_tensor(item_category, dtype=torch.long)
        if not spec.n_categories:
            raise ValueError("this model has no category embedding (spec.n_categories = 0)")
        if item_category.shape != (spec.n_item_slots,):
            raise ValueError(f"item_category must have shape [{spec.n_item_slots}], got {list(item_category.shape)}")
        if len(item_category) and (int(item_category.min()) < 0 or int(item_category.max()) >= spec.n_categories):
            raise ValueError(f"item_category holds ids outside [0, {spec.n_categories})")
        self.item_category.copy_(item_category.to(self.item_category.device))

    def parts(self, b: EncoderBatch) -> list[Part]:
        """Every part of the full encoder's sequence, in `PART_NAMES` order (the query
        vector only when the model reads one)."""
        c = self.config
        query = self.query(b.query[:, : c.max_query_tokens])
        user = self.user(b.user[:, : c.max_user_tokens])
        context = self.context(b.context[:, : c.max_context])
        short = self.behaviour(b.short_codes, b.short_items, b.short_action, b.short_recency, c.max_short)
        long = self.behaviour(b.long_codes, b.long_items, b.long_action, b.long_recency, c.max_long)
        masks = [b.query[:, : c.max_query_tokens] > 0, b.user[:, : c.max_user_tokens] > 0,
                 b.short_items[:, -c.max_short:] > 0, b.long_items[:, -c.max_long:] > 0,
                 b.context[:, : c.max_context] > 0]
        parts = [query, user, short, long, context]
        if self.query_vector is not None and b.query_vector is not None:  # a recommendation's zero vector is masked
            parts.append(self.query_vector(b.query_vector.float())[:, None, :])
            masks.append((b.query_vector != 0).any(dim=1, keepdim=True))
        return [(self.typed(x, PART_NAMES[type_id]), m) for type_id, (x, m) in enumerate(zip(parts, masks))]

    def typed(self, x: torch.Tensor, part: str) -> torch.Tensor:
        """`x [B, T, d]` plus the part's type embedding and each position's (behaviour views are
        right-aligned: position 0 is the most recent)."""
        pos = torch.arange(x.shape[1], device=x.device)
        if part in ("short", "long"):
            pos = pos.flip(0)
        return x + self.part_type.weight[PART_NAMES.index(part)] + self.position(pos)

    def behaviour(self, codes: torch.Tensor, items: torch.Tensor, action: torch.Tensor, recency: torch.Tensor,
                  keep: int) -> torch.Tensor:
        """The last `keep` interacted items `[B, T, d]`: SID code sum (+ hashed id, + leaf
        category) + action + recency."""
        codes, items, action, recency = codes[:, -keep:], items[:, -keep:], action[:, -keep:], recency[:, -keep:]
        x = self.code(codes + self.code_offsets).sum(dim=2)
        if self.item is not None:
            x = x + self.item(items % self.config.item_buckets)
        if self.category is not None:  # items newer than the table get category 0
            known = (items >= 0) & (items < len(self.item_category))
            x = x + self.category(torch.where(known, self.item_category[items.clamp(0, len(self.item_category) - 1)], 0))
        return x + self.action(action) + self.recency(recency)

    def user_part(self, user: torch.Tensor) -> torch.Tensor:
        """User tokens `[B, Tu]` → `[B, Tu, d]`, as the full encoder embeds them."""
        return (self.user(user) + self.part_type.weight[PART_NAMES.index("user")]
                + self.position(torch.arange(user.shape[1], device=user.device)))

    def history_part(self, codes: torch.Tensor, items: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """A causal history `[B, T, d]` (any padding, items 0 = pad): no recency (the age of
        a history item depends on which later position reads it), positions counted from
        the oldest item, so a prefix embeds the same whatever follows it."""
        order = ((items > 0).long().cumsum(1) - 1).clamp(0, self.position.num_embeddings - 1)
        return (self.behaviour(codes, items, action, torch.zeros_like(action), items.shape[1])
                + self.part_type.weight[PART_NAMES.index("short")] + self.position(order))

    def context_part(self, context: torch.Tensor) -> torch.Tensor:
        """Scenario and time tokens `[N, Tc]` → `[N, Tc, d]`, as the full encoder embeds them."""
        context = context[:, : self.config.max_context]
        return (self.context(context) + self.part_type.weight[PART_NAMES.index("context")]
                + self.position(torch.arange(context.shape[1], device=context.device)))

    def codes(self, codes: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Embeddings of SID codes `[..., T]`: all chosen at `level`, or (None) column t at level t."""
        offsets = self.code_offsets[: codes.shape[-1]] if level is None else self.code_offsets[level]
        return self.code(codes + offsets)

    def check(self, b: EncoderBatch) -> None:
        """Ids in range and views shaped for this model, as a `ValueError` naming the field."""
        spec = self.spec
        checks = (("query", b.query, spec.query_vocab_size), ("user", b.user, spec.user_vocab_size),
                  ("context", b.context, spec.context_vocab_size), ("short_action", b.short_action, spec.n_actions),
                  ("long_action", b.long_action, spec.n_actions), ("short_recency", b.short_recency, spec.n_recency),
                  ("long_recency", b.long_recency, spec.n_recency))
        for name, t, high in checks:
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= high):
                raise ValueError(f"EncoderBatch.{name} holds ids outside [0, {high})")
        for name in ("short_codes", "long_codes"):
            t = getattr(b, name)
            if t.ndim != 3 or t.shape[2] != spec.levels:
                raise ValueError(f"EncoderBatch.{name} must be [batch, length, {spec.levels}], got {tuple(t.shape)}")
        if not self.config.search:  # reads user tokens and the short view only
            if b.query.numel() and bool((b.query != 0).any()):
                raise ValueError("this model answers recommendations only (tasks='recommendation'): a request "
                                 "with a query cannot be answered; train a search+recommendation model for search")
            return
        if not bool((b.context > 0).any(dim=1).all()):
            raise ValueError("EncoderBatch.context must hold at least one token per request")
        if spec.query_vector_dim:
            if b.query_vector is None or tuple(b.query_vector.shape) != (b.batch_size, spec.query_vector_dim):
                got = None if b.query_vector is None else tuple(b.query_vector.shape)
                raise ValueError(f"EncoderBatch.query_vector must be [batch, {spec.query_vector_dim}] for this model, got {got}")


def masked_mean(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of `x [B, T, d]` over the positions where `real [B, T]` (0 when none)."""
    weights = real[:, :, None].to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
