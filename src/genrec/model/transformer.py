"""A compact encoder–decoder Transformer that generates an item's Semantic ID.

Read top-down: `GenerativeConfig` (hyper-parameters), `EncoderBatch` (what the
encoder sees), `GenerativeModel` (encode → decode level by level), then the
blocks. The encoder reads one request — query words, user tokens, two views of
the user's behaviour as item SIDs, scenario and time — as one sequence in which
every part carries its own type embedding. The decoder emits the SID one level
at a time (`levels` steps, the last one the disambiguation level), so beam
search over it costs `levels` small steps, not a vocabulary-sized softmax over
all items (TIGER; OneSearch; OneMall).

Decoding follows `genrec.decode`'s `BeamSearchModel` protocol:

    state = model.encode(batch)                # cross-attention K/V, once per request
    state = model.expand(state, beams)         # N = batch * beams rows
    logits, state = model.step(state, tokens, level)   # tokens [N]: code chosen at level-1
    state = model.reorder(state, index)        # index [N]: which row each beam continues

The self-attention cache grows by one position per level. Cross-attention keys
and values stay at `[batch, heads, memory, head_dim]` and are never copied per
beam: a request's beams are attended as `beams` queries against its one memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

PART_NAMES: tuple[str, ...] = ("query", "user", "short", "long", "context", "query_vector")
"""Encoder input parts, in sequence order; the index is the part's type id."""


@dataclass
class GenerativeConfig:
    """Hyper-parameters. The defaults give ~2M parameters and train in minutes
    on two CPU cores; `codebook_sizes` must match the SID table it decodes."""

    codebook_sizes: tuple[int, ...] = (64, 64, 64, 8)
    query_vocab_size: int = 8192
    user_vocab_size: int = 4096
    context_vocab_size: int = 256
    item_buckets: int = 0  # >0: behaviour positions also get a hashed item-id embedding
    query_vector_dim: int = 0  # >0: one more encoder token, the query's sentence vector projected
    n_categories: int = 0  # >0: behaviour positions also get their item's leaf-category embedding
    n_item_slots: int = 0  # size of the item → category table (max item id + 1) when n_categories > 0
    memory_summary: bool = True  # add a per-part summary of the encoder output to every decoder input
    tie_heads: bool = False  # score a level's codes against their own embeddings (see GenerativeModel)
    input_init_std: float = 1.0  # initial scale of every input embedding and of the query-vector projection
    causal_history: bool = False  # recommendation-only model trained on every prefix at once (see GenerativeModel)
    causal_recommendation: bool = False  # search through the full encoder, recommendation through the causal one
    latest_in_summary: bool = False  # causal paths: the newest history position's encoding joins the summary
    latest_age: bool = False  # with latest_in_summary: that item's age at the request joins it too
    copy_recent: int = 0  # causal paths: >0 gives the first-level codes of that many newest history items a learned bias
    n_actions: int = 4
    n_recency: int = 16
    max_query_tokens: int = 24
    max_user_tokens: int = 8
    max_short: int = 10
    max_long: int = 10
    max_context: int = 8
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.codebook_sizes = tuple(int(v) for v in self.codebook_sizes)
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must be a non-empty tuple of positive ints, got {self.codebook_sizes}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("query_vocab_size", "user_vocab_size", "context_vocab_size", "d_model", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("item_buckets", "query_vector_dim", "n_categories", "n_item_slots"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.n_categories and self.n_item_slots < 1:
            raise ValueError("n_categories > 0 needs n_item_slots ≥ 1 (the size of the item → category table)")
        if self.causal_history and self.causal_recommendation:
            raise ValueError("causal_history (recommendation only) and causal_recommendation (search and "
                             "recommendation) exclude each other: choose one")
        if self.latest_in_summary and not (self.memory_summary and self.sequence_trained):
            raise ValueError("latest_in_summary needs memory_summary and a causal mode (causal_history or "
                             "causal_recommendation): it adds the causal encoder's newest position to the summary")
        if self.copy_recent < 0:
            raise ValueError(f"copy_recent must be ≥ 0, got {self.copy_recent}")
        if self.copy_recent and not (self.memory_summary and self.sequence_trained):
            raise ValueError("copy_recent needs memory_summary and a causal mode (causal_history or "
                             "causal_recommendation): the summary sets how much each recent item is copied")
        if self.latest_age and not self.latest_in_summary:
            raise ValueError("latest_age needs latest_in_summary: it is the age of the newest history item")
        if self.causal_recommendation and not self.memory_summary:
            raise ValueError("causal_recommendation needs memory_summary: a recommendation request's "
                             "scenario and time reach the decoder through the summary")

    @property
    def sequence_trained(self) -> bool:
        """Whether recommendation is trained on windows (`GenerativeModel.sequence_loss`)."""
        return self.causal_history or self.causal_recommendation

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    def to_dict(self) -> dict:
        return {**asdict(self), "codebook_sizes": list(self.codebook_sizes)}

    @classmethod
    def from_dict(cls, values: dict) -> "GenerativeConfig":
        """A saved config; a field it predates takes the value models had before that field
        existed (`LEGACY_VALUES`), not today's default, so an older model loads as trained."""
        known = {f.name for f in fields(cls)}
        return cls(**{**LEGACY_VALUES, **{k: v for k, v in values.items() if k in known}})


LEGACY_VALUES: dict = {"memory_summary": False, "input_init_std": 0.02}
"""What a model saved before these `GenerativeConfig` fields existed was built with."""


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

    def map(self, function) -> "EncoderBatch":
        """`function` applied to every tensor (a missing query_vector stays None)."""
        return EncoderBatch(**{f.name: None if getattr(self, f.name) is None else function(getattr(self, f.name))
                               for f in fields(self)})

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
    def random(cls, config: GenerativeConfig, batch_size: int, generator: torch.Generator | None = None) -> "EncoderBatch":
        """A batch of random but well-formed inputs (tests, benchmarks)."""
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
    """Windows of users' interactions for `GenerativeModel.sequence_loss`
    (causal-history models): every marked position is a target, predicted from
    the window's positions before it.

    user   [B, Tu]     user tokens, as in `EncoderBatch`
    items  [B, W]      item ids, oldest first, 0-padded at the end
    codes  [B, W, L]   their SIDs (anything valid at padding)
    action [B, W]      action ids
    target [B, W]      bool, True where the position is trained as a target
    context [B, W, Tc] each position's own scenario and time tokens, read when it is
                       the target (`causal_recommendation` models; None otherwise)
    recency [B, W]     the recency bucket of the item before each position at that
                       position's time (`latest_age` models; None otherwise)
    """

    user: torch.Tensor
    items: torch.Tensor
    codes: torch.Tensor
    action: torch.Tensor
    target: torch.Tensor
    context: torch.Tensor | None = None
    recency: torch.Tensor | None = None


@dataclass
class DecoderState:
    """What decoding carries between levels.

    memory_k/v: per decoder layer `[B, H, S, head_dim]` — one copy per request.
    memory_mask: `[B, 1, 1, S]` bool, True where the encoder position is real.
    summary: `[B, d]` the decoder's per-part summary input (None unless `memory_summary`).
    self_k/v: per decoder layer `[N, H, t, head_dim]`, N = B * beams, t = levels so far.
    """

    memory_k: list[torch.Tensor]
    memory_v: list[torch.Tensor]
    memory_mask: torch.Tensor
    beams: int = 1
    self_k: list[torch.Tensor] = field(default_factory=list)
    self_v: list[torch.Tensor] = field(default_factory=list)
    summary: torch.Tensor | None = None  # [B, d] mean encoder output, with config.memory_summary
    first_level_bias: torch.Tensor | None = None  # [B, V0] added to level 0's logits (config.copy_recent)

    @property
    def batch_size(self) -> int:
        return self.memory_mask.shape[0]

    @property
    def length(self) -> int:
        return self.self_k[0].shape[2] if self.self_k else 0


class GenerativeModel(nn.Module):
    """Encoder over the request, decoder over SID levels, one output head per level.

    With `memory_summary`, every decoder input also gets a linear map of the
    per-part means of the encoder output (the query's positions averaged, the
    recent items', the long-term items', ...). Why: the decoder's first position
    is the same vector for every request, so until cross-attention learns *where*
    to look (a bilinear form starting near zero) it reads an average over all
    positions in which the query is one voice among the context tokens; a model
    trained on text → SID alone kept its first level at chance for about 100
    steps of a 500-step budget. Means taken per part are not diluted, and a
    linear map of them is learned at once. It works together with
    `input_init_std` ≈ 1: with the usual 0.02 the inputs are a whisper next to the
    blocks' random outputs and the encoder's output barely depends on them (on
    that text → SID run, first-level accuracy after 100 steps: 0.01 with neither,
    0.02 with the summary alone, 0.06 with loud inputs alone, 0.87 with both;
    `benchmarks/first_level_probe.py`).

    With `tie_heads`, a level's logits are the decoder state against that level's
    code embeddings (plus a bias), the same vectors the encoder reads history
    items with. Why: "more of what the user just looked at" then becomes a copy
    through shared vectors, the inductive bias that makes SASRec's tied item
    embeddings strong on recommendation, instead of a mapping learned per code.

    With `causal_history`, the model is a recommender over behaviour alone: the
    encoder reads the user tokens and the short view (oldest first, positions
    counted from the oldest), each history position attends only to the user
    tokens and to itself and earlier positions, and query, long view and context
    are not read. Why: the encoder output at position t then depends only on the
    first t+1 items, so `sequence_loss` trains a user's every prefix in one encoder
    pass (as SASRec does), instead of re-encoding each prefix as its own example:
    on Amazon Beauty that is ~6 targets per encoder pass instead of one, which is
    what makes tens of epochs fit a CPU hour. At inference a request is encoded the
    same way, so `forward` on one prefix equals `sequence_loss`'s view of it.

    With `causal_recommendation`, one model does both: a request with a query goes
    through the full encoder as above, a request without one through the causal
    encoder, with its own scenario and time added to the decoder's summary (they
    belong to the target, not to the history, so they cannot sit in the shared
    causal memory). Why: recommendation then trains on every prefix of a user's
    history at once, search interactions included as targets, while search keeps
    reading the query next to the whole history.

    With `latest_in_summary` (causal paths only), the causal encoder's output at
    the newest history position, which has read the whole history, is mapped into
    the summary too: SASRec's user vector. Why: the causal encoder counts positions
    from the oldest item, so no fixed position means "the latest", and
    cross-attention alone must find it; on the default world the gap to SASRec was
    in item-detail sessions, whose target shares the leaf of the items just seen.
    With `latest_age`, that item's age at the request (the recency bucket the full
    encoder gives every history position) is added to it: "seconds ago, same
    session" is the target's own fact, so it cannot sit in the shared memory.

    With `copy_recent = k` (causal paths only), a recommendation's first-level
    logits get a bias on the first-level codes of its k newest history items,
    each weighted by a linear map of the summary (so the scenario sets how much
    to copy, and the bias can be negative): a pointer to "the same leaf again".
    Why: on the default world's validation split the newest item's leaf is the
    target's in 55% of item-detail requests, and the model put the target's leaf
    first in only 45% of them (53% with the pointer; `benchmarks/recent_leaf.py`);
    copying through learned code embeddings is slow to learn, a pointer is immediate.
    """

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.config = config
        c = config
        d = c.d_model
        self.offsets = [0, *torch.tensor(c.codebook_sizes).cumsum(0).tolist()[:-1]]
        self.register_buffer("code_offsets", torch.tensor(self.offsets, dtype=torch.long), persistent=False)

        # encoder embeddings
        self.query_embedding = nn.Embedding(c.query_vocab_size, d, padding_idx=0)
        self.user_embedding = nn.Embedding(c.user_vocab_size, d, padding_idx=0)
        self.context_embedding = nn.Embedding(c.context_vocab_size, d, padding_idx=0)
        self.code_embedding = nn.Embedding(sum(c.codebook_sizes), d)  # shared by encoder and decoder
        self.item_embedding = nn.Embedding(c.item_buckets, d, padding_idx=0) if c.item_buckets else None
        self.query_vector_projection = nn.Linear(c.query_vector_dim, d) if c.query_vector_dim else None
        self.category_embedding = nn.Embedding(c.n_categories, d, padding_idx=0) if c.n_categories else None
        # item id → leaf category id (0 = unknown); filled by `set_item_categories`, saved with the weights
        self.register_buffer("item_category", torch.zeros(c.n_item_slots if c.n_categories else 0, dtype=torch.long))
        self.action_embedding = nn.Embedding(c.n_actions, d)
        self.recency_embedding = nn.Embedding(c.n_recency, d)
        self.type_embedding = nn.Embedding(len(PART_NAMES), d)
        max_part = max(c.max_query_tokens, c.max_user_tokens, c.max_short, c.max_long, c.max_context)
        self.position_embedding = nn.Embedding(max_part, d)
        self.encoder_blocks = nn.ModuleList(EncoderBlock(c) for _ in range(c.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.summary_projection = nn.Linear(len(PART_NAMES) * d, d) if c.memory_summary else None
        self.latest_projection = nn.Linear(d, d) if c.latest_in_summary else None
        self.copy_gate = nn.Linear(d, c.copy_recent) if c.copy_recent else None

        # decoder
        self.bos = nn.Parameter(torch.zeros(d))
        self.level_embedding = nn.Embedding(c.levels, d)
        self.decoder_blocks = nn.ModuleList(DecoderBlock(c) for _ in range(c.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        # with tie_heads only the heads' biases are used; the weights are the code embeddings
        self.heads = nn.ModuleList(nn.Linear(d, v) for v in c.codebook_sizes)
        self.drop = nn.Dropout(c.dropout)
        self.apply(_init_weights)
        if c.input_init_std != 0.02:  # inputs loud enough to dominate the residual stream at step 0
            with torch.no_grad():
                for module in self.modules():
                    if isinstance(module, nn.Embedding):
                        module.weight.normal_(0.0, c.input_init_std)
                        if module.padding_idx is not None:
                            module.weight[module.padding_idx].zero_()
                if self.query_vector_projection is not None:
                    self.query_vector_projection.weight.normal_(0.0, c.input_init_std)

    def set_item_categories(self, item_category: torch.Tensor) -> None:
        """`item_category [n_item_slots]`: the leaf-category id (1..n_categories-1, 0 = none) of each item id."""
        c = self.config
        item_category = torch.as_tensor(item_category, dtype=torch.long)
        if not c.n_categories:
            raise ValueError("this model has no category embedding (config.n_categories = 0)")
        if item_category.shape != (c.n_item_slots,):
            raise ValueError(f"item_category must have shape [{c.n_item_slots}], got {list(item_category.shape)}")
        if len(item_category) and (int(item_category.min()) < 0 or int(item_category.max()) >= c.n_categories):
            raise ValueError(f"item_category holds ids outside [0, {c.n_categories})")
        self.item_category.copy_(item_category.to(self.item_category.device))

    # ---- training ---------------------------------------------------------------------

    def forward(self, batch: EncoderBatch, codes: torch.Tensor) -> list[torch.Tensor]:
        """Teacher-forced logits for every level: a list of `[B, V_level]`.

        `codes` `[B, L]` is the target SID; level l sees codes[:, :l].
        """
        self._check_codes(codes, "codes")
        memory, mask, summary = self.encode_memory(batch)
        x = self._decoder_inputs(codes)  # [B, L, d]
        if summary is not None:
            x = x + summary[:, None, :]
        for block in self.decoder_blocks:
            x = block(x, memory, mask)
        x = self.decoder_norm(x)
        logits = [self._level_logits(x[:, level], level) for level in range(self.config.levels)]
        bias = self._request_copy_bias(batch, summary)
        if bias is not None:
            logits[0] = logits[0] + bias
        return logits

    def loss(self, batch: EncoderBatch, codes: torch.Tensor) -> torch.Tensor:
        """Mean over levels of the cross-entropy of each level's code."""
        logits = self(batch, codes)
        return torch.stack([F.cross_entropy(lg, codes[:, lv]) for lv, lg in enumerate(logits)]).mean()

    # ---- encoder ----------------------------------------------------------------------

    def encode_memory(self, batch: EncoderBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Encoder output `[B, S, d]`, its key mask `[B, 1, 1, S]` (True = real) and,
        with `memory_summary`, the decoder's summary input `[B, d]` (else None)."""
        c = self.config
        if c.causal_history:
            self._check_batch(batch)
            return self._encode_causal_request(batch)
        if c.causal_recommendation:
            self._check_batch(batch)
            recommendation = ~self._has_query(batch)
            if bool(recommendation.all()):
                return self._encode_causal_request(batch)
            if bool(recommendation.any()):
                return self._encode_mixed(batch, recommendation)
        return self._encode_full(batch)

    def _encode_full(self, batch: EncoderBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`encode_memory` through the full encoder: every part, every position sees every other."""
        parts = self._embed_parts(batch)
        x = torch.cat([p for p, _ in parts], dim=1)
        real = torch.cat([m for _, m in parts], dim=1)
        mask = real[:, None, None, :]
        x = self.drop(x)
        for block in self.encoder_blocks:
            x = block(x, mask)
        memory = self.encoder_norm(x)
        if self.summary_projection is None:
            return memory, mask, None
        means, start = [], 0
        for part, part_mask in parts:  # one mean per part, over its real positions (0 when it has none)
            width = part.shape[1]
            means.append(self._masked_mean(memory[:, start:start + width], part_mask))
            start += width
        means += [torch.zeros_like(means[0])] * (len(PART_NAMES) - len(means))
        return memory, mask, self.summary_projection(torch.cat(means, dim=1))

    def _encode_mixed(self, batch: EncoderBatch, recommendation: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Search rows through the full encoder, the others through the causal one,
        their memories right-padded to one width (padding masked out)."""
        groups = [(rows, encode(batch.index(rows).trim()))
                  for rows, encode in ((recommendation.nonzero()[:, 0], self._encode_causal_request),
                                       ((~recommendation).nonzero()[:, 0], self._encode_full))]
        width = max(memory.shape[1] for _, (memory, _, _) in groups)
        first = groups[0][1][0]
        memory = first.new_zeros(batch.batch_size, width, first.shape[2])
        mask = torch.zeros(batch.batch_size, 1, 1, width, dtype=torch.bool, device=first.device)
        summary = first.new_zeros(batch.batch_size, first.shape[2])
        for rows, (part_memory, part_mask, part_summary) in groups:
            memory[rows, :part_memory.shape[1]] = part_memory
            mask[rows, :, :, :part_mask.shape[-1]] = part_mask
            summary[rows] = part_summary
        return memory, mask, summary

    @staticmethod
    def _has_query(b: EncoderBatch) -> torch.Tensor:
        """`[B]` bool: which requests are searches (a query token or a query vector)."""
        has = (b.query != 0).any(dim=1)
        if b.query_vector is not None:
            has = has | (b.query_vector != 0).any(dim=1)
        return has

    def _embed_parts(self, b: EncoderBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        self._check_batch(b)
        query = self.query_embedding(b.query[:, : c.max_query_tokens])
        user = self.user_embedding(b.user[:, : c.max_user_tokens])
        context = self.context_embedding(b.context[:, : c.max_context])
        short = self._embed_behaviour(b.short_codes, b.short_items, b.short_action, b.short_recency, c.max_short)
        long = self._embed_behaviour(b.long_codes, b.long_items, b.long_action, b.long_recency, c.max_long)
        masks = [b.query[:, : c.max_query_tokens] > 0, b.user[:, : c.max_user_tokens] > 0,
                 b.short_items[:, -c.max_short:] > 0, b.long_items[:, -c.max_long:] > 0,
                 b.context[:, : c.max_context] > 0]
        parts = [query, user, short, long, context]
        if self.query_vector_projection is not None:  # a recommendation request's all-zero vector is masked out
            parts.append(self.query_vector_projection(b.query_vector.float())[:, None, :])
            masks.append((b.query_vector != 0).any(dim=1, keepdim=True))
        out = []
        for type_id, (x, m) in enumerate(zip(parts, masks)):
            pos = torch.arange(x.shape[1], device=x.device)
            if PART_NAMES[type_id] in ("short", "long"):  # right-aligned: position 0 is the most recent
                pos = pos.flip(0)
            out.append((x + self.type_embedding.weight[type_id] + self.position_embedding(pos), m))
        return out

    def _embed_behaviour(self, codes, items, action, recency, keep: int) -> torch.Tensor:
        """An interacted item is the sum of its SID code embeddings (+ hashed id),
        plus what was done with it and how long ago: `[B, T, d]`."""
        codes, items, action, recency = codes[:, -keep:], items[:, -keep:], action[:, -keep:], recency[:, -keep:]
        x = self.code_embedding(codes + self.code_offsets).sum(dim=2)
        if self.item_embedding is not None:
            x = x + self.item_embedding(items % self.config.item_buckets)
        if self.category_embedding is not None:  # items newer than the table get category 0
            known = (items >= 0) & (items < len(self.item_category))
            x = x + self.category_embedding(torch.where(known, self.item_category[items.clamp(0, len(self.item_category) - 1)], 0))
        return x + self.action_embedding(action) + self.recency_embedding(recency)

    # ---- causal history: every prefix in one pass ---------------------------------------

    def sequence_loss(self, batch: "SequenceBatch") -> torch.Tensor:
        """Mean over the batch's target positions of the mean over levels of each
        level's cross-entropy: the loss `loss` gives when every target is its own
        request whose history is the window's items before it (a test holds the two
        equal). Needs `causal_history`."""
        c = self.config
        if not c.sequence_trained:
            raise ValueError("sequence_loss needs a model with config.causal_history or causal_recommendation")
        if c.causal_recommendation and batch.context is None:
            raise ValueError("a causal_recommendation model needs SequenceBatch.context (each target's scenario and time)")
        self._check_codes(batch.codes.reshape(-1, self.config.levels), "SequenceBatch.codes")
        user = batch.user[:, : self.config.max_user_tokens]
        history_real = batch.items[:, :-1] > 0
        memory, key_real = self._encode_causal(user, batch.codes[:, :-1], batch.items[:, :-1], batch.action[:, :-1])
        rows, positions = (batch.target & (batch.items > 0)).nonzero(as_tuple=True)  # N targets
        if not len(rows):
            raise ValueError("SequenceBatch has no target position")
        n_user = user.shape[1]
        columns = torch.arange(memory.shape[1], device=memory.device)
        # target t sees the user tokens and history positions < t
        visible = key_real[rows] & (columns[None, :] < n_user + positions[:, None])
        codes = batch.codes[rows, positions]  # [N, L]
        x = self._decoder_inputs(codes)
        if self.summary_projection is not None:
            user_mean = self._masked_mean(memory[:, :n_user], user > 0)[rows]
            history = memory[:, n_user:] * history_real[..., None].to(memory.dtype)
            sums = F.pad(history.cumsum(1), (0, 0, 1, 0))  # [B, T+1, d]: sum over positions < t
            counts = F.pad(history_real.cumsum(1), (1, 0)).to(memory.dtype).clamp(min=1.0)
            history_mean = sums[rows, positions] / counts[rows, positions][:, None]
            context = None if batch.context is None or not c.causal_recommendation else batch.context[rows, positions]
            latest = None
            if self.latest_projection is not None:  # the position just before the target (none for the first)
                if c.latest_age and batch.recency is None:
                    raise ValueError("a latest_age model needs SequenceBatch.recency (the newest item's age)")
                latest = self._latest(memory[rows, (n_user + positions - 1).clamp(min=0)], positions > 0,
                                      None if batch.recency is None else batch.recency[rows, positions])
            summary = self._summary(user_mean, history_mean, context, latest)
            x = x + summary[:, None, :]
        mask = visible[:, None, None, :]
        for block in self.decoder_blocks:
            k, v = block.cross.project_memory(memory)
            x = block.forward_projected(x, k.index_select(0, rows), v.index_select(0, rows), mask)
        x = self.decoder_norm(x)
        logits = [self._level_logits(x[:, level], level) for level in range(self.config.levels)]
        if self.copy_gate is not None:  # the k positions before each target, newest first (-1: none)
            back = positions[:, None] - torch.arange(1, c.copy_recent + 1, device=positions.device)
            recent = batch.codes[rows[:, None], back.clamp(min=0), 0]
            logits[0] = logits[0] + self._copy_bias(summary, torch.where(back >= 0, recent, -1))
        return torch.stack([F.cross_entropy(lg, codes[:, level]) for level, lg in enumerate(logits)]).mean()

    def _encode_causal_request(self, b: EncoderBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`encode_memory` of a causal-history model: user tokens and the short view only."""
        c = self.config
        user = b.user[:, : c.max_user_tokens]
        items = b.short_items[:, -c.max_short:]
        memory, key_real = self._encode_causal(user, b.short_codes[:, -c.max_short:], items, b.short_action[:, -c.max_short:])
        mask = key_real[:, None, None, :]
        if self.summary_projection is None:
            return memory, mask, None
        n_user = user.shape[1]
        context = b.context[:, : c.max_context] if c.causal_recommendation else None
        latest = None
        if self.latest_projection is not None:  # right-aligned: the last column is the newest item, if any
            latest = (self._latest(memory[:, -1], items[:, -1] > 0, b.short_recency[:, -1]) if items.shape[1]
                      else torch.zeros_like(memory[:, 0]))
        summary = self._summary(self._masked_mean(memory[:, :n_user], user > 0),
                                self._masked_mean(memory[:, n_user:], items > 0), context, latest)
        return memory, mask, summary

    def _encode_causal(self, user: torch.Tensor, codes: torch.Tensor, items: torch.Tensor,
                       action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output `[B, Tu + T, d]` over user tokens then history (any padding,
        items 0 = pad), and its key mask `[B, Tu + T]`. A history position sees the
        user tokens, itself and the columns before it; user tokens see each other."""
        c = self.config
        n_user, width = user.shape[1], items.shape[1]
        real = items > 0
        max_position = self.position_embedding.num_embeddings - 1
        order = (real.long().cumsum(1) - 1).clamp(0, max_position)  # left-aligned: 0 = the oldest item
        history = (self._embed_behaviour(codes, items, action, torch.zeros_like(action), width)
                   + self.type_embedding.weight[PART_NAMES.index("short")] + self.position_embedding(order))
        user_x = (self.user_embedding(user) + self.type_embedding.weight[PART_NAMES.index("user")]
                  + self.position_embedding(torch.arange(n_user, device=user.device)))
        x = self.drop(torch.cat([user_x, history], dim=1))
        key_real = torch.cat([user > 0, real], dim=1)
        s = torch.arange(n_user + width, device=x.device)
        sees = s[None, :] <= torch.clamp(s[:, None], min=n_user - 1)  # [S, S]: user columns, or not later
        mask = (sees[None] & key_real[:, None, :]) | torch.eye(len(s), dtype=torch.bool, device=x.device)
        for block in self.encoder_blocks:
            x = block(x, mask[:, None])
        return self.encoder_norm(x), key_real

    def _latest(self, newest: torch.Tensor, real: torch.Tensor, age: torch.Tensor | None) -> torch.Tensor:
        """The `latest_in_summary` input: the newest history position's encoding `[N, d]`,
        plus its age bucket `[N]` with `latest_age`, and 0 where there is none (`real [N]`)."""
        if self.config.latest_age:
            newest = newest + self.recency_embedding(age)
        return newest * real[:, None].to(newest.dtype)

    def _copy_bias(self, summary: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """`[N, V0]`: each of `recent [N, k]` first-level codes (newest first, -1 = none)
        gets the weight the summary gives its slot; a code seen twice gets both."""
        weights = self.copy_gate(summary) * (recent >= 0).to(summary.dtype)
        bias = summary.new_zeros(summary.shape[0], self.config.codebook_sizes[0])
        return bias.scatter_add(1, recent.clamp(min=0), weights)

    def _request_copy_bias(self, b: EncoderBatch, summary: torch.Tensor | None) -> torch.Tensor | None:
        """`_copy_bias` of requests: their short view's newest items; 0 for searches, which
        the full encoder answers."""
        if self.copy_gate is None:
            return None
        k = self.config.copy_recent
        items = b.short_items[:, -self.config.max_short:]
        codes = b.short_codes[:, -self.config.max_short:, 0]
        width = min(k, items.shape[1])
        recent = torch.full((b.batch_size, k), -1, dtype=torch.long, device=items.device)
        if width:  # right-aligned: the last column is the newest
            newest = codes[:, -width:].flip(1).long()
            recent[:, :width] = torch.where(items[:, -width:].flip(1) > 0, newest, -1)
        bias = self._copy_bias(summary, recent)
        if self.config.causal_recommendation:
            bias = bias * (~self._has_query(b))[:, None].to(bias.dtype)
        return bias

    def _summary(self, user_mean: torch.Tensor, history_mean: torch.Tensor,
                 context: torch.Tensor | None = None, latest: torch.Tensor | None = None) -> torch.Tensor:
        """The summary input from the parts the causal encoder reads (the others are 0).
        `context [N, Tc]`: the target's scenario and time tokens (`causal_recommendation`),
        embedded as the full encoder embeds them but not encoded: they are the target's own."""
        means = [torch.zeros_like(user_mean)] * len(PART_NAMES)
        means[PART_NAMES.index("user")] = user_mean
        means[PART_NAMES.index("short")] = history_mean
        if context is not None:
            context = context[:, : self.config.max_context]
            embedded = (self.context_embedding(context) + self.type_embedding.weight[PART_NAMES.index("context")]
                        + self.position_embedding(torch.arange(context.shape[1], device=context.device)))
            means[PART_NAMES.index("context")] = self._masked_mean(embedded, context > 0)
        summary = self.summary_projection(torch.cat(means, dim=1))
        return summary if latest is None else summary + self.latest_projection(latest)

    @staticmethod
    def _masked_mean(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Mean of `x [B, T, d]` over the positions where `real [B, T]` (0 when none)."""
        weights = real[:, :, None].to(x.dtype)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    # ---- decoder: the BeamSearchModel protocol -----------------------------------------

    @torch.no_grad()
    def encode(self, batch: EncoderBatch) -> DecoderState:
        """Encode requests and project the cross-attention K/V once per layer."""
        memory, mask, summary = self.encode_memory(batch)
        ks, vs = zip(*(block.cross.project_memory(memory) for block in self.decoder_blocks))
        return DecoderState(list(ks), list(vs), mask, summary=summary,
                            first_level_bias=self._request_copy_bias(batch, summary))

    def expand(self, state: DecoderState, beams: int) -> DecoderState:
        """Give every request `beams` decoder rows (N = B * beams), beams of a request adjacent."""
        if beams < 1:
            raise ValueError(f"beams must be ≥ 1, got {beams}")
        rep = lambda ts: [t.repeat_interleave(beams, dim=0) for t in ts]  # noqa: E731
        return replace(state, beams=state.beams * beams, self_k=rep(state.self_k), self_v=rep(state.self_v))

    @torch.no_grad()
    def step(self, state: DecoderState, tokens: torch.Tensor, level: int) -> tuple[torch.Tensor, DecoderState]:
        """Feed the code chosen at `level - 1` (ignored at level 0, where beam search
        passes `BOS_TOKEN`) and return the logits of `level`'s code, `[N, V]` with
        V = max(codebook_sizes); columns past this level's codebook are -inf."""
        if not 0 <= level < self.config.levels:
            raise ValueError(f"level must be in [0, {self.config.levels}), got {level}")
        if level != state.length:
            raise ValueError(f"state has decoded {state.length} levels, cannot step level {level}")
        n = state.batch_size * state.beams
        if tokens.shape != (n,):
            raise ValueError(f"tokens must have shape [{n}] (batch * beams), got {tuple(tokens.shape)}")
        if level == 0:
            x = self.bos.expand(n, -1)
        else:
            x = self.code_embedding(tokens.long() + self.offsets[level - 1])
        x = x + self.level_embedding.weight[level]
        if state.summary is not None:  # one summary per request, shared by its beams
            x = x + state.summary.repeat_interleave(state.beams, dim=0)
        x = x[:, None, :]  # [N, 1, d]
        new_k, new_v = [], []
        for i, block in enumerate(self.decoder_blocks):
            cache = (state.self_k[i], state.self_v[i]) if state.self_k else None
            x, (k, v) = block.step(x, cache, state.memory_k[i], state.memory_v[i], state.memory_mask, state.beams)
            new_k.append(k)
            new_v.append(v)
        logits = self._level_logits(self.decoder_norm(x[:, 0]), level)
        if level == 0 and state.first_level_bias is not None:  # one bias per request, shared by its beams
            logits = logits + state.first_level_bias.repeat_interleave(state.beams, dim=0)
        pad = max(self.config.codebook_sizes) - logits.shape[1]
        if pad:  # one width V for every level; codes past this level's codebook can never win
            logits = F.pad(logits, (0, pad), value=float("-inf"))
        return logits, replace(state, self_k=new_k, self_v=new_v)

    def num_rows(self, state: DecoderState) -> int:
        """N = batch * beams (the memory tensors hold only `batch` rows)."""
        return state.batch_size * state.beams

    def reorder(self, state: DecoderState, index: torch.Tensor) -> DecoderState:
        """Row i continues from row index[i]; a beam never moves to another request."""
        n = state.batch_size * state.beams
        index = index.long()
        if index.shape != (n,):
            raise ValueError(f"index must have shape [{n}], got {tuple(index.shape)}")
        rows = torch.arange(n, device=index.device)
        if not torch.equal(index // state.beams, rows // state.beams):
            raise ValueError("reorder index moves a beam to another request's rows")
        pick = lambda ts: [t.index_select(0, index) for t in ts]  # noqa: E731
        return replace(state, self_k=pick(state.self_k), self_v=pick(state.self_v))

    # ---- helpers ----------------------------------------------------------------------

    def _level_logits(self, x: torch.Tensor, level: int) -> torch.Tensor:
        head = self.heads[level]
        if not self.config.tie_heads:
            return head(x)
        start = self.offsets[level]
        return F.linear(x, self.code_embedding.weight[start:start + self.config.codebook_sizes[level]], head.bias)

    def _decoder_inputs(self, codes: torch.Tensor) -> torch.Tensor:
        b, levels = codes.shape
        prev = self.code_embedding(codes[:, :-1] + self.code_offsets[:-1])  # [B, L-1, d]
        x = torch.cat([self.bos.expand(b, 1, -1), prev], dim=1)
        return self.drop(x + self.level_embedding.weight[:levels])

    def _check_codes(self, codes: torch.Tensor, name: str) -> None:
        if codes.ndim != 2 or codes.shape[1] != self.config.levels:
            raise ValueError(f"{name} must have shape [batch, {self.config.levels}], got {tuple(codes.shape)}")
        sizes = torch.tensor(self.config.codebook_sizes, device=codes.device)
        if codes.numel() and (bool((codes < 0).any()) or bool((codes >= sizes).any())):
            raise ValueError(f"{name} holds a code outside [0, codebook_sizes) = {self.config.codebook_sizes}")

    def _check_batch(self, b: EncoderBatch) -> None:
        c = self.config
        checks = (("query", b.query, c.query_vocab_size), ("user", b.user, c.user_vocab_size),
                  ("context", b.context, c.context_vocab_size), ("short_action", b.short_action, c.n_actions),
                  ("long_action", b.long_action, c.n_actions), ("short_recency", b.short_recency, c.n_recency),
                  ("long_recency", b.long_recency, c.n_recency))
        for name, t, high in checks:
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= high):
                raise ValueError(f"EncoderBatch.{name} holds ids outside [0, {high})")
        for name in ("short_codes", "long_codes"):
            t = getattr(b, name)
            if t.ndim != 3 or t.shape[2] != c.levels:
                raise ValueError(f"EncoderBatch.{name} must be [batch, length, {c.levels}], got {tuple(t.shape)}")
        if c.causal_history:  # reads user tokens and the short view only
            if b.query.numel() and bool((b.query != 0).any()):
                raise ValueError("this model reads behaviour only (causal_history): a request with a query "
                                 "cannot be answered; train a model without causal_history for search")
            return
        if not bool((b.context > 0).any(dim=1).all()):
            raise ValueError("EncoderBatch.context must hold at least one token per request")
        if c.query_vector_dim:
            if b.query_vector is None or tuple(b.query_vector.shape) != (b.batch_size, c.query_vector_dim):
                got = None if b.query_vector is None else tuple(b.query_vector.shape)
                raise ValueError(f"EncoderBatch.query_vector must be [batch, {c.query_vector_dim}] for this model, got {got}")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Attention(nn.Module):
    """Multi-head attention on `F.scaled_dot_product_attention`."""

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.d_model // config.n_heads
        self.q = nn.Linear(config.d_model, config.d_model)
        self.kv = nn.Linear(config.d_model, 2 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] → [B, H, T, hd]
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:  # [B, H, T, hd] → [B, T, d]
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(self, q, k, v, mask=None, causal=False) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)

    def forward(self, x: torch.Tensor, source: torch.Tensor, mask=None, causal=False) -> torch.Tensor:
        k, v = self.project_memory(source)
        return self.out(self.merge(self.attend(self.heads(self.q(x)), k, v, mask, causal)))


class CrossAttention(Attention):
    def step(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, beams: int) -> torch.Tensor:
        """x `[B*beams, 1, d]` against one memory per request `[B, H, S, hd]`:
        the beams of a request become `beams` query positions."""
        n = x.shape[0]
        q = self.q(x).view(n // beams, beams, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, beams, hd]
        y = self.attend(q, k, v, mask)  # [B, H, beams, hd]
        return self.out(y.transpose(1, 2).reshape(n, 1, -1))


class MLP(nn.Module):
    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(F.gelu(self.up(x))))


class EncoderBlock(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn, self.mlp = Attention(config), MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, mask))
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the encoder, MLP."""

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        d = config.d_model
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn, self.cross, self.mlp = Attention(config), CrossAttention(config), MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.forward_projected(x, *self.cross.project_memory(memory), mask)

    def forward_projected(self, x: torch.Tensor, memory_k: torch.Tensor, memory_v: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
        """`forward` with the memory's keys and values already projected, one set per row
        `[N, H, S, hd]` (sequence training: many targets share one window's projection)."""
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, causal=True))
        c = self.cross
        y = c.attend(c.heads(c.q(self.norm2(x))), memory_k, memory_v, mask)
        x = x + self.drop(c.out(c.merge(y)))
        return x + self.mlp(self.norm3(x))

    def step(self, x, cache, memory_k, memory_v, mask, beams):
        """One new position `[N, 1, d]`; returns it and the grown self-attention cache."""
        a = self.self_attn
        h = self.norm1(x)
        k, v = a.project_memory(h)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        x = x + a.out(a.merge(a.attend(a.heads(a.q(h)), k, v)))
        x = x + self.cross.step(self.norm2(x), memory_k, memory_v, mask, beams)
        return x + self.mlp(self.norm3(x)), (k, v)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


__all__ = ["GenerativeConfig", "EncoderBatch", "SequenceBatch", "DecoderState", "GenerativeModel", "PART_NAMES"]
