"""The tensors that pass between the request encoder, the model and beam search.

`EncoderBatch` is one batch of requests as the encoder reads them, `SequenceBatch`
windows of users' histories for training every prefix at once, `DecoderState` what
decoding carries from one SID level to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from genrec.model.config import InputSpec

@dataclass
class EncoderBatch:
    """Tensors for one batch of requests; 0 is padding everywhere except codes.

    query   [B, Tq]      query token ids (0 = pad; a recommendation request has none)
    user    [B, Tu]      user tokens: hashed user-id bucket + hashed profile fields
    short_codes [B, Ts, L]  SIDs of recent interactions, oldest first, right-aligned
                         (left-padded: the most recent is always the last column)
    short_items [B, Ts]  item ids (0 = pad); also the padding mask of the view
    short_action, short_recency [B, Ts]
    long_*               the same for the long-term view (orders and carts)
    context [B, Tc]      scenario and time tokens
    query_vector [B, D]  float sentence vector of the query (all zeros without a query);
                         None when the model has no query-vector token
    """

    query: torch.Tensor
    user: torch.Tensor
    short_codes: torch.Tensor
    short_items: torch.Tensor
    short_action: torch.Tensor
    short_recency: torch.Tensor
    long_codes: torch.Tensor
    long_items: torch.Tensor
    long_action: torch.Tensor
    long_recency: torch.Tensor
    context: torch.Tensor
    query_vector: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.query.shape[0]

    def to(self, device: torch.device | str) -> "EncoderBatch":
        return self.map(lambda t: t.to(device))

    def index(self, rows: torch.Tensor | slice) -> "EncoderBatch":
        return self.map(lambda t: t[rows])

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> "EncoderBatch":
        """`function` applied to every tensor (a missing query_vector stays None)."""
        mapped: dict[str, Any] = {f.name: None if getattr(self, f.name) is None else function(getattr(self, f.name))
                                  for f in fields(self)}
        return EncoderBatch(**mapped)

    def trim(self) -> "EncoderBatch":
        """Drop the padding columns no request in the batch uses: trailing ones of
        query/user/context (left-aligned), leading ones of the behaviour views
        (right-aligned). Positions are counted so that this changes no output."""
        def used_right(t: torch.Tensor) -> int:  # width needed by left-aligned rows
            cols = (t != 0).any(dim=0).nonzero()
            return int(cols.max()) + 1 if len(cols) else 0

        def used_left(t: torch.Tensor) -> int:  # width needed by right-aligned rows
            cols = (t != 0).any(dim=0).nonzero()
            return t.shape[1] - int(cols.min()) if len(cols) else 0

        q, u, c = used_right(self.query), used_right(self.user), used_right(self.context)
        s, lg = used_left(self.short_items), used_left(self.long_items)
        tail = lambda t, n: t[:, t.shape[1] - n:]  # noqa: E731
        return EncoderBatch(
            query=self.query[:, :max(q, 1)], user=self.user[:, :max(u, 1)], context=self.context[:, :max(c, 1)],
            short_codes=tail(self.short_codes, s), short_items=tail(self.short_items, s),
            short_action=tail(self.short_action, s), short_recency=tail(self.short_recency, s),
            long_codes=tail(self.long_codes, lg), long_items=tail(self.long_items, lg),
            long_action=tail(self.long_action, lg), long_recency=tail(self.long_recency, lg),
            query_vector=self.query_vector)

    @classmethod
    def random(cls, spec: InputSpec, batch_size: int, generator: torch.Generator | None = None) -> "EncoderBatch":
        """A batch of random but well-formed inputs for a model of `spec` (tests, benchmarks)."""
        config = spec
        def ints(high: int, *shape: int) -> torch.Tensor:
            return torch.randint(0, high, shape, generator=generator)

        codes = lambda t: torch.stack(  # noqa: E731
            [ints(v, batch_size, t) for v in config.codebook_sizes], dim=-1)
        b = batch_size
        return cls(
            query=ints(config.query_vocab_size, b, 8), user=ints(config.user_vocab_size, b, 3),
            short_codes=codes(6), short_items=ints(50, b, 6), short_action=ints(config.n_actions, b, 6),
            short_recency=ints(config.n_recency, b, 6),
            long_codes=codes(4), long_items=ints(50, b, 4), long_action=ints(config.n_actions, b, 4),
            long_recency=ints(config.n_recency, b, 4),
            context=ints(config.context_vocab_size - 1, b, 3) + 1,
            query_vector=(torch.randn(b, config.query_vector_dim, generator=generator)
                          if config.query_vector_dim else None),
        )


@dataclass
class SequenceBatch:
    """Windows of users' interactions for `GenerativeModel.sequence_loss`: every
    marked position is a target, predicted from the window's positions before it.

    user   [B, Tu]     user tokens, as in `EncoderBatch`
    items  [B, W]      item ids, oldest first, 0-padded at the end
    codes  [B, W, L]   their SIDs (anything valid at padding)
    action [B, W]      action ids
    target [B, W]      bool, True where the position is trained as a target
    context [B, W, Tc] each position's own scenario and time tokens, read when it is
                       the target (search+recommendation models; None otherwise)
    long_items [B, Tl], long_codes [B, Tl, L], long_action [B, Tl]: the user's interactions
                       before the window, newest last, 0-padded at the front — the long view
                       every target of the window reads (`rec_long_view` models; None otherwise)
    """

    user: torch.Tensor
    items: torch.Tensor
    codes: torch.Tensor
    action: torch.Tensor
    target: torch.Tensor
    context: torch.Tensor | None = None
    long_items: torch.Tensor | None = None
    long_codes: torch.Tensor | None = None
    long_action: torch.Tensor | None = None


@dataclass
class DecoderState:
    """What decoding carries between levels.

    memory_k/v: per decoder layer `[B, H, S, head_dim]` — one copy per request.
    memory_mask: `[B, 1, 1, S]` bool, True where the encoder position is real.
    summary: `[B, d]` the decoder's per-part summary input, added to every decoder position.
    self_k/v: per decoder layer `[N, H, t, head_dim]`, N = B * beams, t = levels so far.
    """

    memory_k: list[torch.Tensor]
    memory_v: list[torch.Tensor]
    memory_mask: torch.Tensor
    beams: int = 1
    self_k: list[torch.Tensor] = field(default_factory=list)
    self_v: list[torch.Tensor] = field(default_factory=list)
    summary: torch.Tensor | None = None  # [B, d], see above
    first_level_bias: torch.Tensor | None = None  # [B, V0] added to level 0's logits (`CopyBias`; None without it)

    @property
    def batch_size(self) -> int:
        return self.memory_mask.shape[0]

    @property
    def length(self) -> int:
        return self.self_k[0].shape[2] if self.self_k else 0
