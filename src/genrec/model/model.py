"""`GenerativeModel`: the parts wired together, trained two ways, decoded by beam search.

Parts (each its own module): `InputEmbedding` → `TransformerEncoder` (full and
causal views) → `Summary` → `SidDecoder`, with `CopyBias` on recommendation's
first level; opt-in: `QueryFormer` compressing the long view, the long view on
the recommendation path (`rec_long_view`),
`BehaviourUserIds`, `ActionFusion`'s per-action tokens and `DiffusionInterest`'s
query-anchored interest token in search's user part, self-distillation's second
reading of each search (`genrec.model.self_distill`, training only),
`SparseMoE` as the decoder blocks'
feed-forward, `ItemHead` scoring whole items from the summary (trained beside
the levels; the retriever re-ranks its beams with it). A new part is a module plus its line in `__init__` and where it
enters `encode_memory` or the decoder.

Two paths through the encoder:
- search (a request with a query): the full view, every part beside every other;
- recommendation: the causal view of user tokens and the short history, the
  target's own scenario and time added through the summary. Training reads each
  user's history as windows and trains every prefix in one pass
  (`sequence_loss`), and `forward` on one prefix equals `sequence_loss`'s view of
  it (a test holds them equal).

Decoding follows `genrec.decode`'s `BeamSearchModel` protocol:

    state = model.encode(batch)                # cross-attention K/V, once per request
    state = model.expand(state, beams)         # N = batch * beams rows
    logits, state = model.step(state, tokens, level)   # tokens [N]: code chosen at level-1
    state = model.reorder(state, index)        # index [N]: which row each beam continues

Cross-attention keys and values stay at `[batch, heads, memory, head_dim]` and are
never copied per beam: a request's beams are attended as `beams` queries against
its one memory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec.model.action_fusion import ActionFusion
from genrec.model.batches import DecoderState, EncoderBatch, SequenceBatch
from genrec.model.config import GenerativeConfig, InputSpec
from genrec.model.copy_bias import CopyBias
from genrec.model.decoder import SidDecoder
from genrec.model.diffusion_interest import DiffusionInterest
from genrec.model.embedding import INPUT_INIT_STD, PART_NAMES, InputEmbedding, Part, masked_mean
from genrec.model.encoder import TransformerEncoder
from genrec.model.item_head import ItemHead
from genrec.model.layers import init_weights
from genrec.model.moe import SparseMoE
from genrec.model.query_former import QueryFormer
from genrec.model.summary import Summary
from genrec.model.user_ids import BehaviourUserIds

Memory = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Encoder output `[B, S, d]`, its key mask `[B, 1, 1, S]` (True = real), the summary `[B, d]`."""


class TeacherForced(NamedTuple):
    """One teacher-forced reading of a batch: what `loss_from` turns into the training loss."""

    logits: list[torch.Tensor]  # per level [B, V_level]
    summary: torch.Tensor  # [B, d]
    reconstruction: torch.Tensor | None  # DiffusionGS's loss on this reading's searches (training), else None


class GenerativeModel(nn.Module):
    def __init__(self, config: GenerativeConfig, spec: InputSpec):
        super().__init__()
        self.config, self.spec = config, spec
        # The decoder's start vector sits here, not in SidDecoder, so that it comes first in
        # `parameters()` as it did before the model was split into parts: gradient clipping sums
        # the parameters' norms in that order, and so a training run is reproduced bit for bit.
        self.bos = nn.Parameter(torch.zeros(config.d_model))
        self.inputs = InputEmbedding(config, spec)
        self.encoder = TransformerEncoder(config)
        self.long_former = QueryFormer(config, config.long_queries) if config.long_queries else None
        self.user_ids = (BehaviourUserIds(config.d_model, config.user_id_levels, spec.codebook_sizes)
                         if config.user_id_levels else None)
        self.action_fusion = (ActionFusion(config, spec.n_actions, config.action_fusion)
                              if config.action_fusion else None)
        self.diffusion = DiffusionInterest(config.d_model, config.diffusion_steps) if config.diffusion_steps else None
        self.summary = Summary(config)
        self.copy = CopyBias(config.copy_recent, spec.codebook_sizes[0], config.d_model) if config.copy_recent else None
        self.decoder = SidDecoder(config, spec)
        if config.item_head and spec.n_item_slots < 2:
            raise ValueError("item_head needs InputSpec.n_item_slots (the item-id range) ≥ 2")
        self.item_head = ItemHead(config.d_model, spec.n_item_slots, spec.item_text_dim) if config.item_head else None
        self.apply(init_weights)
        with torch.no_grad():  # loud inputs (see genrec.model.embedding)
            for module in self.modules():
                if isinstance(module, nn.Embedding):
                    module.weight.normal_(0.0, INPUT_INIT_STD)
                    if module.padding_idx is not None:
                        module.weight[module.padding_idx].zero_()
            if self.inputs.query_vector is not None:
                self.inputs.query_vector.weight.normal_(0.0, INPUT_INIT_STD)

    def set_item_categories(self, item_category: torch.Tensor) -> None:
        self.inputs.set_item_categories(item_category)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- training ---------------------------------------------------------------------

    def forward(self, batch: EncoderBatch, codes: torch.Tensor) -> list[torch.Tensor]:
        """Teacher-forced logits for every level, a list of `[B, V_level]`; `codes [B, L]`
        is the target SID and level l sees codes[:, :l]."""
        return self.teacher_forced(batch, codes).logits

    def teacher_forced(self, batch: EncoderBatch, codes: torch.Tensor) -> TeacherForced:
        """Each level's teacher-forced logits, the decoder's summary `[B, d]` (what the item head reads)
        and, in training with DiffusionGS, its searches' reconstruction loss (what `loss_from` adds)."""
        self._check_codes(codes, "codes")
        memory, mask, summary = self.encode_memory(batch)
        reconstruction = None
        if self.diffusion is not None and self.training:  # the rows encode_memory just denoised, read once
            reconstruction = self.diffusion.take_loss(self.inputs.codes(codes)[self.has_query(batch)].sum(1))
        previous = self.inputs.codes(codes[:, :-1])
        logits = self.decoder(self.decoder.inputs(self.bos, previous, summary), memory, mask)
        bias = self._request_copy_bias(batch, summary)
        if bias is not None:
            logits[0] = logits[0] + bias
        return TeacherForced(logits, summary, reconstruction)

    def loss(self, batch: EncoderBatch, codes: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over levels of the cross-entropy of each level's code (plus the experts'
        weighted load-balancing loss when the decoder is a sparse MoE, plus the item head's
        weighted cross-entropy of the target `items [B]` when the model has one)."""
        return self.loss_from(self.teacher_forced(batch, codes), codes, items)

    def loss_from(self, forced: TeacherForced, codes: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """`loss` given `teacher_forced`'s output (self-distillation runs two forwards and needs both)."""
        loss = self._with_item_loss(self._with_balance(_level_loss(forced.logits, codes)), forced.summary, items)
        if forced.reconstruction is None:
            return loss
        return loss + self.config.diffusion_weight * forced.reconstruction.to(loss.dtype)

    def _with_item_loss(self, loss: torch.Tensor, summary: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        if self.item_head is None:
            return loss
        if items is None:
            raise ValueError("a model with an item head needs the target item ids to compute its loss")
        return loss + self.config.item_head_weight * self.item_head.loss(summary, items).to(loss.dtype)

    def sequence_loss(self, batch: SequenceBatch) -> torch.Tensor:
        """Mean over the batch's target positions of the mean over levels of each level's
        cross-entropy: the loss `loss` gives when every target is its own request whose
        history is the window's items before it (a test holds the two equal)."""
        if self.config.search and batch.context is None:
            raise ValueError("a search+recommendation model needs SequenceBatch.context (each target's scenario and time)")
        self._check_codes(batch.codes.reshape(-1, self.spec.levels), "SequenceBatch.codes")
        user = batch.user[:, : self.config.max_user_tokens]
        items = batch.items[:, :-1]
        long = None
        if self.config.rec_long_view:
            if batch.long_items is None or batch.long_codes is None or batch.long_action is None:
                raise ValueError("a rec_long_view model needs SequenceBatch.long_items, long_codes and long_action "
                                 "(each window's interactions before it: SequenceTable.build of a rec_long_view encoder)")
            long = self._long_view(batch.long_codes, batch.long_items, batch.long_action)
        memory, key_real = self._encode_causal(user, batch.codes[:, :-1], items, batch.action[:, :-1], long)
        rows, positions = (batch.target & (batch.items > 0)).nonzero(as_tuple=True)  # N targets
        if not len(rows):
            raise ValueError("SequenceBatch has no target position")
        n_user = user.shape[1]
        n_prefix = n_user + (0 if long is None else long[0].shape[1])  # user tokens, then the long view
        columns = torch.arange(memory.shape[1], device=memory.device)
        visible = key_real[rows] & (columns[None, :] < n_prefix + positions[:, None])  # the prefix, positions < t
        history_real = items > 0
        history = memory[:, n_prefix:] * history_real[..., None].to(memory.dtype)
        sums = F.pad(history.cumsum(1), (0, 0, 1, 0))  # [B, T+1, d]: sum over positions < t
        counts = F.pad(history_real.cumsum(1), (1, 0)).to(memory.dtype).clamp(min=1.0)
        latest = None
        if self.summary.latest is not None:  # the position just before the target (none for the first)
            latest = memory[rows, (n_prefix + positions - 1).clamp(min=0)] * (positions > 0)[:, None].to(memory.dtype)
        context = None
        if self.config.search and batch.context is not None:
            context = masked_mean(self.inputs.context_part(batch.context[rows, positions]),
                                  batch.context[rows, positions][:, : self.config.max_context] > 0)
        summary = self.summary.causal(masked_mean(memory[:, :n_user], user > 0)[rows],
                                      sums[rows, positions] / counts[rows, positions][:, None], context, latest)
        codes = batch.codes[rows, positions]  # [N, L]
        previous = self.inputs.codes(codes[:, :-1])
        logits = self.decoder(self.decoder.inputs(self.bos, previous, summary), memory, visible[:, None, None, :], rows)
        if self.copy is not None:
            logits[0] = logits[0] + self.copy(summary, self.copy.recent_in_windows(batch.codes[..., 0], rows, positions))
        return self._with_item_loss(self._with_balance(_level_loss(logits, codes)), summary,
                                    batch.items[rows, positions])

    # ---- sparse MoE: the balance loss and expert usage ----------------------------------

    def moe_layers(self) -> list[SparseMoE]:
        """The sparse-MoE feed-forwards (none unless `moe_experts` > 0)."""
        return [m for m in self.modules() if isinstance(m, SparseMoE)]

    def balance_loss(self) -> torch.Tensor | None:
        """Mean over MoE layers of their last forward's load-balancing loss; None without MoE."""
        losses = [m.last_balance_loss for m in self.moe_layers() if m.last_balance_loss is not None]
        return torch.stack(losses).mean() if losses else None

    def _with_balance(self, loss: torch.Tensor) -> torch.Tensor:
        balance = self.balance_loss() if self.config.moe_balance_weight > 0 else None
        return loss if balance is None else loss + self.config.moe_balance_weight * balance.to(loss.dtype)

    def training_metrics(self) -> dict[str, float]:
        """What the training loop writes beside the loss: each expert's share of the routed
        slots since the last call (`moe_share_e`, mean over MoE layers; 1/E each when balanced)
        and the last balance loss. Empty without MoE."""
        layers = self.moe_layers()
        if not layers:
            return {}
        shares = torch.stack([m.take_usage().cpu() for m in layers]).mean(dim=0)
        metrics = {f"moe_share_{e}": float(share) for e, share in enumerate(shares)}
        balance = self.balance_loss()
        if balance is not None:
            metrics["moe_balance_loss"] = float(balance.detach())
        return metrics

    # ---- encoder ----------------------------------------------------------------------

    def encode_memory(self, batch: EncoderBatch) -> Memory:
        """Searches through the full view, recommendations through the causal one; a
        mixed batch is split and its memories right-padded to one width (padding masked)."""
        self.inputs.check(batch)
        recommendation = ~self.has_query(batch)
        if not self.config.search or bool(recommendation.all()):
            return self._encode_recommendation(batch)
        if not bool(recommendation.any()):
            return self._encode_search(batch)
        groups = [(rows, encode(batch.index(rows).trim()))
                  for rows, encode in ((recommendation.nonzero()[:, 0], self._encode_recommendation),
                                       ((~recommendation).nonzero()[:, 0], self._encode_search))]
        width = max(part_memory.shape[1] for _, (part_memory, _, _) in groups)
        (_, (first, _, first_summary)), (_, (second, _, second_summary)) = groups
        # Under bf16 autocast the two paths can end in different dtypes (a summary out of a Linear is
        # bf16, one out of a norm fp32): the padded tensors take the wider one.
        memory = first.new_zeros(batch.batch_size, width, first.shape[2],
                                 dtype=torch.promote_types(first.dtype, second.dtype))
        mask = torch.zeros(batch.batch_size, 1, 1, width, dtype=torch.bool, device=first.device)
        summary = first_summary.new_zeros(batch.batch_size, first_summary.shape[1],
                                          dtype=torch.promote_types(first_summary.dtype, second_summary.dtype))
        for rows, (part_memory, part_mask, part_summary) in groups:
            memory[rows, :part_memory.shape[1]] = part_memory.to(memory.dtype)
            mask[rows, :, :, :part_mask.shape[-1]] = part_mask
            summary[rows] = part_summary.to(summary.dtype)
        return memory, mask, summary

    def _encode_search(self, batch: EncoderBatch) -> Memory:
        parts = self.inputs.parts(batch)
        fused = None
        if self.action_fusion is not None:  # read before the Query-Former replaces the long view
            c, short, long = self.config, PART_NAMES.index("short"), PART_NAMES.index("long")
            fused = self.action_fusion(torch.cat([parts[short][0], parts[long][0]], dim=1),
                                       torch.cat([parts[short][1], parts[long][1]], dim=1),
                                       torch.cat([batch.short_action[:, -c.max_short:], batch.long_action[:, -c.max_long:]], dim=1))
        interest = self._interest(parts) if self.diffusion is not None else None  # also before the Query-Former
        if self.long_former is not None:  # the long view as `long_queries` tokens
            long = PART_NAMES.index("long")
            parts[long] = self.long_former(*parts[long])
        if self.user_ids is not None:  # behaviour-derived user-ID tokens after the hashed user tokens
            _append_to_user(parts, self.user_ids(self.inputs, batch, self.config.max_short, self.config.max_long))
        if fused is not None:  # per-action tokens after those
            _append_to_user(parts, fused)
        if interest is not None:  # then the history denoised toward the query's intent, one token
            _append_to_user(parts, interest)
        memory, mask, means = self.encoder.full(parts)
        return memory, mask, self.summary(means)

    def _interest(self, parts: list[Part]) -> Part:
        """DiffusionGS's token: the query part (words and vector) as the anchor, the user part's mean
        as the UDL's user, the short and long views as the history (before any compression)."""
        assert self.diffusion is not None
        query = [parts[i] for i in (PART_NAMES.index("query"), PART_NAMES.index("query_vector")) if i < len(parts)]
        anchor = masked_mean(torch.cat([x for x, _ in query], dim=1), torch.cat([m for _, m in query], dim=1))
        user = masked_mean(*parts[PART_NAMES.index("user")])
        views = [parts[PART_NAMES.index(name)] for name in ("short", "long")]
        return self.diffusion(anchor, user, torch.cat([x for x, _ in views], dim=1), torch.cat([m for _, m in views], dim=1))

    def _encode_recommendation(self, b: EncoderBatch) -> Memory:
        c = self.config
        user, items = b.user[:, : c.max_user_tokens], b.short_items[:, -c.max_short:]
        long = (self._long_view(b.long_codes[:, -c.max_long:], b.long_items[:, -c.max_long:],
                                b.long_action[:, -c.max_long:]) if c.rec_long_view else None)
        memory, key_real = self._encode_causal(user, b.short_codes[:, -c.max_short:], items,
                                               b.short_action[:, -c.max_short:], long)
        n_user = user.shape[1]
        n_prefix = n_user + (0 if long is None else long[0].shape[1])
        context = None
        if c.search:  # the request's scenario and time (a recommendation-only model reads none)
            context = masked_mean(self.inputs.context_part(b.context), b.context[:, : c.max_context] > 0)
        latest = None
        if self.summary.latest is not None:  # right-aligned: the last column is the newest item, if any
            latest = (memory[:, -1] * (items[:, -1] > 0)[:, None].to(memory.dtype) if items.shape[1]
                      else torch.zeros_like(memory[:, 0]))
        summary = self.summary.causal(masked_mean(memory[:, :n_user], user > 0),
                                      masked_mean(memory[:, n_prefix:], items > 0), context, latest)
        return memory, key_real[:, None, None, :], summary

    def _encode_causal(self, user: torch.Tensor, codes: torch.Tensor, items: torch.Tensor,
                       action: torch.Tensor, long: Part | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The causal view; `long` (an embedded long view and its mask) joins the user tokens as
        columns every history position sees."""
        history = self.inputs.history_part(codes, items, action)
        prefix, prefix_real = self.inputs.user_part(user), user > 0
        if long is not None:
            prefix = torch.cat([prefix, long[0].to(prefix.dtype)], dim=1)
            prefix_real = torch.cat([prefix_real, long[1]], dim=1)
        return self.encoder.causal(prefix, prefix_real, history, items > 0)

    def _long_view(self, codes: torch.Tensor, items: torch.Tensor, action: torch.Tensor) -> Part:
        """The recommendation path's long view `[B, Tl, d]` (right-aligned, newest last) and its mask,
        compressed to `long_queries` tokens when the model has a Query-Former. No recency: a training
        window knows its long view's order, not each item's age at each of its targets."""
        x = self.inputs.behaviour(codes, items, action, torch.zeros_like(action), items.shape[1])
        part = (self.inputs.typed(x, "long"), items > 0)
        return self.long_former(*part) if self.long_former is not None else part

    @staticmethod
    def has_query(b: EncoderBatch) -> torch.Tensor:
        """`[B]` bool: which requests are searches (a query token or a query vector)."""
        has = (b.query != 0).any(dim=1)
        if b.query_vector is not None:
            has = has | (b.query_vector != 0).any(dim=1)
        return has

    def _request_copy_bias(self, b: EncoderBatch, summary: torch.Tensor) -> torch.Tensor | None:
        """The copy bias of requests' short views; 0 for searches, which the full view answers."""
        if self.copy is None:
            return None
        m = self.config.max_short
        bias = self.copy(summary, self.copy.recent_of_requests(b.short_items[:, -m:], b.short_codes[:, -m:, 0]))
        return bias * (~self.has_query(b))[:, None].to(bias.dtype) if self.config.search else bias

    # ---- decoding: the BeamSearchModel protocol ------------------------------------------

    @torch.no_grad()
    def encode(self, batch: EncoderBatch) -> DecoderState:
        """Encode requests and project the cross-attention K/V once per layer."""
        memory, mask, summary = self.encode_memory(batch)
        ks, vs = zip(*(block.cross.project_memory(memory) for block in self.decoder.layers()))
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
        """Feed the code chosen at `level - 1` (ignored at level 0, where beam search passes
        `BOS_TOKEN`) and return `level`'s logits `[N, V]`, V = max(codebook_sizes)."""
        if not 0 <= level < self.spec.levels:
            raise ValueError(f"level must be in [0, {self.spec.levels}), got {level}")
        if level != state.length:
            raise ValueError(f"state has decoded {state.length} levels, cannot step level {level}")
        n = state.batch_size * state.beams
        if tokens.shape != (n,):
            raise ValueError(f"tokens must have shape [{n}] (batch * beams), got {tuple(tokens.shape)}")
        x = self.bos.expand(n, -1) if level == 0 else self.inputs.codes(tokens.long(), level - 1)
        logits, k, v = self.decoder.step(x, level, state.summary, state.self_k, state.self_v, state.memory_k,
                                         state.memory_v, state.memory_mask, state.beams)
        if level == 0 and state.first_level_bias is not None:  # one bias per request, shared by its beams
            logits = logits + state.first_level_bias.repeat_interleave(state.beams, dim=0)
        return self.decoder.padded(logits), replace(state, self_k=k, self_v=v)

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

    def _check_codes(self, codes: torch.Tensor, name: str) -> None:
        levels = self.spec.levels
        if codes.ndim != 2 or codes.shape[1] != levels:
            raise ValueError(f"{name} must have shape [batch, {levels}], got {tuple(codes.shape)}")
        sizes = torch.tensor(self.spec.codebook_sizes, device=codes.device)
        if codes.numel() and (bool((codes < 0).any()) or bool((codes >= sizes).any())):
            raise ValueError(f"{name} holds a code outside [0, codebook_sizes) = {self.spec.codebook_sizes}")


def _append_to_user(parts: list[Part], tokens: Part) -> None:
    """Extend the full view's user part (in `parts`, in place) by `tokens` and their mask."""
    user = PART_NAMES.index("user")
    x, real = parts[user]
    parts[user] = (torch.cat([x, tokens[0].to(x.dtype)], dim=1), torch.cat([real, tokens[1]], dim=1))


def _level_loss(logits: list[torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    return torch.stack([F.cross_entropy(lg, codes[:, level]) for level, lg in enumerate(logits)]).mean()
