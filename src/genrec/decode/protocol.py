"""The step protocol a generative model implements so constrained beam search can drive it.

Beam search never looks inside the model: it only asks for the next-token
scores of N = batch * beams partial codes, and tells the model which rows
survived. Any encoder–decoder with a KV cache fits behind these three calls,
and so does the deterministic `TableStepModel` the tests use.

Shapes: `state` is whatever the model needs per row (encoder memory, KV caches);
after `expand(state, beams)` it holds N = batch * beams rows, request-major
(rows `b * beams : (b + 1) * beams` belong to request b).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

BOS_TOKEN: int = -1
"""The token passed to `step` at level 0, where no code has been chosen yet."""


@runtime_checkable
class BeamSearchModel(Protocol):
    """What `constrained_beam_search` needs from a model.

    * `expand(state, beams)`: repeat each batch entry `beams` times, request-major
      (`repeat_interleave`), so the state holds N = batch * beams rows. Beam
      search calls it after the level-0 step (all beams share the empty prefix,
      so level 0 runs once per request): it must repeat the KV caches too.
    * `step(state, tokens, level)`: `tokens` `[N]` is the code chosen at
      `level - 1` (at level 0 it is `BOS_TOKEN`, -1); returns log-probs or logits
      `[N, V]` over the codes of `level` (V ≥ the level's codebook size; extra
      columns are masked by the trie) and the new state (KV cache grown by one).
    * `reorder(state, index)`: gather rows of the state by `index` `[N]` (the
      surviving beams' parent rows), e.g. `cache[index]` for every KV tensor.
      With `prune_margin` (`genrec.decode.pruning`) `index` is ragged: any
      length, request-major, each request keeping its own number of rows; only
      a model that tracks each row's request (`FastDecoder`) can take that.
      Such a model says so with a class attribute `ragged_rows = True`, and
      beam search then steps only the prefixes that still branch (exact).
    """

    def expand(self, state: Any, beams: int) -> Any: ...

    def step(self, state: Any, tokens: torch.Tensor, level: int) -> tuple[torch.Tensor, Any]: ...

    def reorder(self, state: Any, index: torch.Tensor) -> Any: ...


def state_rows(model: BeamSearchModel, state: Any) -> int:
    """How many rows a state holds (batch before `expand`, batch * beams after).

    `model.num_rows(state)` if the model defines it, else the first dimension of
    the first tensor found in the state (a tensor, dataclass, dict, list or tuple)."""
    if hasattr(model, "num_rows"):
        return int(model.num_rows(state))
    found = _first_tensor(state)
    if found is None:
        raise ValueError(f"cannot tell how many rows a model state of type {type(state).__name__} holds; "
                         "give the model a `num_rows(state) -> int` method")
    return int(found.shape[0])


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value if value.dim() > 0 else None
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, (list, tuple)):
        children = list(value)
    elif hasattr(value, "__dict__"):
        children = list(vars(value).values())
    else:
        return None
    for child in children:
        found = _first_tensor(child)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class TablePrefixState:
    """State of `TableStepModel`: one running hash of the prefix per row, `[N]` int64."""

    prefix_hash: torch.Tensor


class TableStepModel:
    """A deterministic toy model: the logits at a level are a fixed random function of the prefix.

    Each request starts from its own seed (its row index, or `request_seeds`),
    the chosen codes are folded into a 31-bit hash, and the hash selects a row of
    a fixed random table `[levels, buckets, vocab_size]`. Two beams with the same
    prefix therefore always see the same scores — which makes sequence scores a
    pure function of (request, SID), exactly what an exhaustive reference needs.
    """

    _MODULUS = (1 << 31) - 1  # prime; hash * multiplier stays far below 2**63
    _MULTIPLIER = 1_000_003

    def __init__(self, levels: int, vocab_size: int, buckets: int = 4096, seed: int = 0, scale: float = 2.0) -> None:
        if levels < 1:
            raise ValueError(f"levels must be ≥ 1, got {levels}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be ≥ 1, got {vocab_size}")
        if buckets < 1:
            raise ValueError(f"buckets must be ≥ 1, got {buckets}")
        self.levels = levels
        self.vocab_size = vocab_size
        self.buckets = buckets
        generator = torch.Generator().manual_seed(seed)
        self.table = scale * torch.randn(levels, buckets, vocab_size, generator=generator)

    def initial_state(self, batch: int, request_seeds: torch.Tensor | None = None) -> TablePrefixState:
        """State for `batch` requests (before `expand`); `request_seeds` `[batch]` default to 0..batch-1."""
        seeds = torch.arange(batch, dtype=torch.int64) if request_seeds is None else request_seeds
        if seeds.shape != (batch,):
            raise ValueError(f"request_seeds must have shape [{batch}], got {list(seeds.shape)}")
        return TablePrefixState(prefix_hash=(seeds.to(torch.int64) * 7919 + 17) % self._MODULUS)

    def expand(self, state: TablePrefixState, beams: int) -> TablePrefixState:
        return TablePrefixState(prefix_hash=state.prefix_hash.repeat_interleave(beams))

    def step(self, state: TablePrefixState, tokens: torch.Tensor, level: int) -> tuple[torch.Tensor, TablePrefixState]:
        if not 0 <= level < self.levels:
            raise ValueError(f"level must be in [0, {self.levels}), got {level}")
        if tokens.shape != state.prefix_hash.shape:
            raise ValueError(f"tokens must have shape {list(state.prefix_hash.shape)}, got {list(tokens.shape)}")
        new_hash = (state.prefix_hash * self._MULTIPLIER + tokens.to(torch.int64) + 2) % self._MODULUS
        logits = self.table[level, new_hash % self.buckets]
        return logits, TablePrefixState(prefix_hash=new_hash)

    def reorder(self, state: TablePrefixState, index: torch.Tensor) -> TablePrefixState:
        return TablePrefixState(prefix_hash=state.prefix_hash[index])


def pad_answers(item_ids: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Items `[batch, ≤ k]` → `[batch, k]`: unreachable slots (item -1) score -inf, the tail padded so."""
    scores = torch.where(item_ids >= 0, scores, float("-inf"))
    missing = k - item_ids.shape[1]
    if missing > 0:
        item_ids = torch.cat([item_ids, item_ids.new_full((item_ids.shape[0], missing), -1)], 1)
        scores = torch.cat([scores, scores.new_full((scores.shape[0], missing), float("-inf"))], 1)
    return item_ids, scores


def candidate_log_probs(logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, level_size: int,
                        level: int) -> torch.Tensor:
    """The trie-masked log-softmax `[rows, C]` of each row's candidate `codes` (`valid` marks real children):
    equal to a log-softmax over the whole level restricted to the codes the prefix allows.
    `level_size` is the trie's codebook size at `level`; the checks name a model that breaks the protocol."""
    if logits.device != codes.device:
        raise ValueError(f"model.step returned logits on {logits.device} but the trie is on {codes.device}; "
                         f"move it with trie.to({str(logits.device)!r})")
    if logits.shape[1] < level_size:
        raise ValueError(f"model.step returned {logits.shape[1]} columns at level {level}, "
                         f"the trie needs ≥ {level_size}")
    return torch.log_softmax(logits.float().gather(1, codes).masked_fill(~valid, float("-inf")), dim=1)
