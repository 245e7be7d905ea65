"""Beam search with dynamic pruning (`prune_margin`): off is today's search bit for bit, an infinite margin
drops nothing that could reach the answer, the best beam is never dropped, the answer only holds items of
beams that were kept, and dropped beams really leave the decoder with fewer rows; `FastDecoder`'s ragged
rows give the same logits as its uniform ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genrec.decode import PrefixTrie, TableStepModel, constrained_beam_search, exhaustive_search
from genrec.model.inference import FastDecoder
from tests.test_decode import random_catalog
from tests.test_fast_decode import CASES, SPEC, _model_and_batch, _trie


@dataclass(frozen=True)
class RecordedState:
    inner: object
    request: torch.Tensor  # [N] request of each row
    prefix: torch.Tensor  # [N, t] codes chosen so far


class PrefixRecorder:
    """Wraps a `BeamSearchModel`; records, per level, the (request, prefix) of every row it was stepped on."""

    def __init__(self, model) -> None:
        self.model = model
        self.stepped: list[set[tuple[int, tuple[int, ...]]]] = []

    def initial_state(self, batch: int) -> RecordedState:
        return RecordedState(self.model.initial_state(batch), torch.arange(batch), torch.zeros(batch, 0, dtype=torch.long))

    def num_rows(self, state: RecordedState) -> int:
        return len(state.request)

    def step(self, state: RecordedState, tokens: torch.Tensor, level: int):
        prefix = state.prefix if level == 0 else torch.cat([state.prefix, tokens[:, None]], 1)
        self.stepped.append({(int(r), tuple(p)) for r, p in zip(state.request.tolist(), prefix.tolist())})
        self.rows_per_level = [*getattr(self, "rows_per_level", []), len(tokens)]
        logits, inner = self.model.step(state.inner, tokens, level)
        return logits, RecordedState(inner, state.request, prefix)

    def expand(self, state: RecordedState, beams: int) -> RecordedState:
        return RecordedState(self.model.expand(state.inner, beams), state.request.repeat_interleave(beams),
                             state.prefix.repeat_interleave(beams, dim=0))

    def reorder(self, state: RecordedState, index: torch.Tensor) -> RecordedState:
        return RecordedState(self.model.reorder(state.inner, index), state.request[index], state.prefix[index])


def _catalog(seed: int = 0):
    codes, item_ids = random_catalog(seed=seed, n_items=300, levels=4, codebook=5)
    return codes, item_ids, PrefixTrie.from_codes(codes, item_ids)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruning_off_is_the_unpruned_search_bit_for_bit_and_exact_with_enough_beams(seed: int) -> None:
    codes, item_ids, trie = _catalog(seed)
    model = TableStepModel(levels=4, vocab_size=6, seed=seed)
    default = constrained_beam_search(model, model.initial_state(5), trie, beams=8, k=10)
    off = constrained_beam_search(model, model.initial_state(5), trie, beams=8, k=10, prune_margin=None)
    assert torch.equal(default[0], off[0]) and torch.equal(default[1], off[1])
    exact = constrained_beam_search(model, model.initial_state(5), trie, beams=len(codes), k=10, prune_margin=None)
    want = exhaustive_search(model, model.initial_state(5), codes, item_ids, k=10)
    assert torch.equal(exact[0], want[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beams", [1, 4, 16, 400])  # 400 > root fan-out: level 0 leaves dead beams
def test_an_infinite_margin_returns_the_unpruned_items_and_scores(seed: int, beams: int) -> None:
    codes, item_ids, trie = _catalog(seed)
    model = TableStepModel(levels=4, vocab_size=6, seed=seed)
    want = constrained_beam_search(model, model.initial_state(6), trie, beams=beams, k=10)
    got = constrained_beam_search(model, model.initial_state(6), trie, beams=beams, k=10, prune_margin=float("inf"))
    assert torch.equal(got[0], want[0])
    assert torch.equal(got[1], want[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_best_beam_is_never_dropped(seed: int) -> None:
    """Margin 0 keeps only each request's best beam (and exact ties): the greedy path, 1 row per request.
    Any margin keeps that path, so its answer scores at least the greedy item."""
    codes, item_ids, trie = _catalog(seed)
    model = TableStepModel(levels=4, vocab_size=6, seed=seed)
    greedy = constrained_beam_search(model, model.initial_state(6), trie, beams=1, k=1)
    zero = constrained_beam_search(model, model.initial_state(6), trie, beams=8, k=1, prune_margin=0.0)
    assert torch.equal(zero[0], greedy[0])
    for margin in (0.5, 1.0, 3.0):
        got = constrained_beam_search(model, model.initial_state(6), trie, beams=8, k=1, prune_margin=margin)
        assert (got[1][:, 0] >= greedy[1][:, 0]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.5, 1.0, 2.0])
def test_the_answer_only_holds_items_of_beams_that_were_kept(seed: int, margin: float) -> None:
    # Every prefix branches, so the last level steps every kept beam and `stepped[-1]` lists them all.
    codes = np.stack(np.meshgrid(*[np.arange(4)] * 3, np.arange(3), indexing="ij"), -1).reshape(-1, 4)
    item_ids = np.random.default_rng(seed).permutation(len(codes)) + 1
    trie = PrefixTrie.from_codes(codes, item_ids)
    unpruned = PrefixRecorder(TableStepModel(levels=4, vocab_size=6, seed=seed))
    constrained_beam_search(unpruned, unpruned.initial_state(6), trie, beams=8, k=10)
    pruned = PrefixRecorder(TableStepModel(levels=4, vocab_size=6, seed=seed))
    items, scores = constrained_beam_search(pruned, pruned.initial_state(6), trie, beams=8, k=10, prune_margin=margin)
    dropped = unpruned.stepped[-1] - pruned.stepped[-1]
    assert dropped, "the margin should drop some beam the unpruned search kept"
    sid_of = {int(i): tuple(c) for i, c in zip(item_ids, codes.tolist())}
    for request, row in enumerate(items.tolist()):
        for item in (i for i in row if i >= 0):
            assert (request, sid_of[item][:-1]) in pruned.stepped[-1]
            assert (request, sid_of[item][:-1]) not in dropped
    assert not torch.isnan(scores).any()


class HopelessBranch:
    """Level 0 puts `gap` nats between root code 0 and root code 1 for the requests in `hopeless`; later
    levels are flat. Its state is the request of each row."""

    def __init__(self, hopeless: list[bool], gap: float = 30.0) -> None:
        self.bias = torch.tensor([[0.0, -gap if h else 0.0] for h in hopeless])

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.arange(batch)

    def step(self, state: torch.Tensor, tokens: torch.Tensor, level: int):
        return (self.bias[state] if level == 0 else torch.zeros(len(state), 2)), state

    def expand(self, state: torch.Tensor, beams: int) -> torch.Tensor:
        return state.repeat_interleave(beams)

    def reorder(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]


def test_a_hopeless_branch_leaves_the_decoder_fewer_rows_at_later_levels() -> None:
    codes = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3)  # 8 items, fan-out 2
    trie = PrefixTrie.from_codes(codes, np.arange(8))
    hopeless = [True, False, True]
    plain, pruned = PrefixRecorder(HopelessBranch(hopeless)), PrefixRecorder(HopelessBranch(hopeless))
    want = constrained_beam_search(plain, plain.initial_state(3), trie, beams=4, k=4)
    got = constrained_beam_search(pruned, pruned.initial_state(3), trie, beams=4, k=4, prune_margin=5.0)
    assert plain.rows_per_level == [3, 12, 12]
    # After level 0 the hopeless requests keep root code 0 only (1 row), the other keeps both (2 rows);
    # at level 1 all four children of a request tie, so every request keeps 2 or 4 beams.
    assert pruned.rows_per_level == [3, 1 + 2 + 1, 2 + 4 + 2]
    for request in (0, 2):  # the hopeless requests' answers all start with code 0, as the unpruned ones do
        assert all(codes[i][0] == 0 for i in got[0][request].tolist())
        assert torch.equal(got[0][request], want[0][request])
    torch.testing.assert_close(got[1], want[1])  # request 1's eight items all tie: which four is arbitrary


def test_the_last_level_steps_only_beams_whose_prefix_has_several_children() -> None:
    """A prefix with one valid child scores it log 1 = 0 whatever the model says, so it needs no step."""
    codes = np.array([[a, b, 0] for a in range(2) for b in range(2)] + [[0, 0, 1]])  # only (0, 0) branches
    trie = PrefixTrie.from_codes(codes, np.arange(len(codes)))
    plain, pruned = (PrefixRecorder(TableStepModel(levels=3, vocab_size=2, seed=4)) for _ in range(2))
    want = constrained_beam_search(plain, plain.initial_state(3), trie, beams=4, k=5)
    got = constrained_beam_search(pruned, pruned.initial_state(3), trie, beams=4, k=5, prune_margin=float("inf"))
    assert plain.rows_per_level == [3, 12, 12]  # level 1: two live beams per request, two dead ones
    assert pruned.rows_per_level == [3, 6, 3]  # dead beams dropped; at level 2 only (0, 0) is stepped
    assert pruned.stepped[2] == {(r, (0, 0)) for r in range(3)}
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_a_prefix_with_one_item_below_is_never_stepped_again() -> None:
    """Below prefix (1,) lies one item, so its remaining codes are forced (log 1 = 0 at every level):
    the search carries its score without stepping the model for it at levels 1 and 2."""
    codes = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    trie = PrefixTrie.from_codes(codes, np.arange(len(codes)) + 10)
    plain, skipping = (PrefixRecorder(TableStepModel(levels=3, vocab_size=2, seed=7)) for _ in range(2))
    want = constrained_beam_search(plain, plain.initial_state(3), trie, beams=4, k=4)
    got = constrained_beam_search(skipping, skipping.initial_state(3), trie, beams=4, k=4, prune_margin=float("inf"))
    assert plain.rows_per_level == [3, 12, 12]
    assert skipping.rows_per_level == [3, 3, 3]
    assert skipping.stepped[1] == {(r, (0,)) for r in range(3)}
    assert skipping.stepped[2] == {(r, (0, 0)) for r in range(3)}
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert set(got[0][0].tolist()) == {10, 11, 12, 13}


def test_bad_margins_are_refused_with_the_field_named() -> None:
    codes, item_ids, trie = _catalog(0)
    model = TableStepModel(levels=4, vocab_size=6)
    for margin in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="prune_margin"):
            constrained_beam_search(model, model.initial_state(2), trie, beams=4, k=2, prune_margin=margin)


# ----- FastDecoder: ragged rows ------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("config,recommendations", CASES.values(), ids=CASES.keys())
def test_fast_decoder_ragged_rows_give_the_uniform_rows_logits(config, recommendations, precision) -> None:
    """The slow twin of a ragged step is the uniform step of every beam: the ragged state keeps 1..beams
    of each request's uniform rows (`kept`), and its logits must be those rows' logits."""
    model, batch = _model_and_batch(config, recommendations)
    fast = FastDecoder(model, precision)
    b, beams = batch.batch_size, 3
    g = torch.Generator().manual_seed(3)
    tol = {"atol": 1e-5, "rtol": 1e-5} if precision == "fp32" else {"atol": 2e-2, "rtol": 2e-2}

    def some_rows_of_each_request(level: int) -> torch.Tensor:
        return torch.cat([torch.randperm(beams, generator=g)[: 1 + (r + level) % beams].sort().values + r * beams
                          for r in range(b)])

    tokens = torch.full((b,), -1)
    logits_u, uniform = fast.step(fast.encode(batch), tokens, 0)
    logits_r, ragged = fast.step(fast.encode(batch), tokens, 0)
    torch.testing.assert_close(logits_r, logits_u, atol=0, rtol=0)
    uniform = fast.expand(uniform, beams)
    kept = some_rows_of_each_request(0)
    ragged = fast.reorder(ragged, kept // beams)
    assert fast.num_rows(ragged) == len(kept) < b * beams
    for level in range(1, SPEC.levels):
        all_tokens = torch.randint(0, SPEC.codebook_sizes[level - 1], (b * beams,), generator=g)
        logits_u, uniform = fast.step(uniform, all_tokens, level)
        logits_r, ragged = fast.step(ragged, all_tokens[kept], level)
        torch.testing.assert_close(logits_r, logits_u[kept], **tol)
        # Every uniform row continues a kept row of its request; the ragged state keeps some of them.
        parents = torch.cat([kept[kept // beams == r][torch.randint(int((kept // beams == r).sum()), (beams,),
                                                                    generator=g)] for r in range(b)])
        place = {int(u): j for j, u in enumerate(kept.tolist())}
        kept = some_rows_of_each_request(level)
        uniform = fast.reorder(uniform, parents)
        ragged = fast.reorder(ragged, torch.tensor([place[int(parents[u])] for u in kept.tolist()]))


def test_fast_decoder_refuses_a_ragged_index_that_is_not_request_major() -> None:
    model, batch = _model_and_batch(*list(CASES.values())[0])
    fast = FastDecoder(model, "fp32")
    _, state = fast.step(fast.encode(batch), torch.full((batch.batch_size,), -1), 0)
    with pytest.raises(ValueError, match="request-major"):
        fast.reorder(state, torch.tensor([1, 0, 2, 3, 4, 5, 5]))
    ragged = fast.reorder(state, torch.tensor([0, 1, 2, 3, 4, 4, 4]))  # request 5 keeps no row: allowed
    assert fast.num_rows(ragged) == 7


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_decoder_search_with_an_infinite_margin_is_the_unpruned_search(precision: str) -> None:
    model, batch = _model_and_batch(*list(CASES.values())[0])
    fast, trie = FastDecoder(model, precision), _trie()
    want = constrained_beam_search(fast, fast.encode(batch), trie, beams=6, k=10)
    got = constrained_beam_search(fast, fast.encode(batch), trie, beams=6, k=10, prune_margin=float("inf"))
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], **({"atol": 1e-5, "rtol": 1e-5} if precision == "fp32" else {}))


@pytest.mark.parametrize("prune_margin", [None, 5.0])
def test_a_model_with_too_few_logit_columns_is_named_by_both_searches(prune_margin) -> None:
    _, _, trie = _catalog()
    model = TableStepModel(levels=4, vocab_size=3, seed=0)  # the trie's codebook has 5 codes per level
    with pytest.raises(ValueError, match=r"returned 3 columns at level 0, the trie needs ≥ 5"):
        constrained_beam_search(model, model.initial_state(2), trie, beams=4, k=3, prune_margin=prune_margin)
