"""The popularity prior divided out of beam search (`genrec.decode.prior`)."""

import numpy as np
import pytest
import torch

from genrec.decode import PrefixTrie, constrained_beam_search
from genrec.decode.prior import PopularityPrior


class PrefixTable:
    """A beam-search model whose logits are a fixed table of the prefix (default: all zeros)."""

    def __init__(self, table: dict[tuple[int, ...], torch.Tensor], vocab_size: int = 3):
        self.table, self.vocab_size = table, vocab_size

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 0, dtype=torch.int64)

    def expand(self, state: torch.Tensor, beams: int) -> torch.Tensor:
        return state.repeat_interleave(beams, 0)

    def reorder(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]

    def step(self, state: torch.Tensor, tokens: torch.Tensor, level: int):
        if level:
            state = torch.cat([state, tokens[:, None]], 1)
        logits = torch.stack([self.table.get(tuple(row.tolist()), torch.zeros(self.vocab_size)) for row in state])
        return logits, state


def small_trie() -> PrefixTrie:
    codes = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [2, 0], [2, 1]])
    return PrefixTrie.from_codes(codes, np.arange(1, 7))


def test_prior_factors_multiply_to_the_smoothed_item_share():
    trie = small_trie()
    counts = np.array([50.0, 3, 0, 7, 20, 0])
    prior = PopularityPrior.from_counts(trie, np.arange(1, 7), counts, smoothing=1.0)
    item_log_prior = prior.item_log_prior(trie).numpy()
    expected = np.log((counts + 1) / (counts + 1).sum())
    order = trie.leaf_item_ids.numpy() - 1
    np.testing.assert_allclose(item_log_prior, expected[order], rtol=1e-5)
    # The single child of prefix (1,) is forced: its factor is log 1 = 0.
    codes, child_ids, valid = trie.children(1, torch.tensor([1]))
    assert prior.log_prior[1][child_ids[valid]].item() == 0.0


def test_prior_weight_lets_a_rare_item_win_and_weight_zero_changes_nothing():
    trie = small_trie()
    # The model slightly prefers item 1 (code 0,0) over item 3 (code 0,2); item 1 is far more popular.
    table = {(): torch.tensor([3.0, 0.0, 0.0]), (0,): torch.tensor([1.0, -5.0, 0.8])}
    model = PrefixTable(table)
    state = model.initial_state(1)
    prior = PopularityPrior.from_counts(trie, np.arange(1, 7), np.array([100.0, 1, 0, 1, 1, 1]))
    plain, plain_scores = constrained_beam_search(model, state, trie, beams=4, k=2)
    zero, zero_scores = constrained_beam_search(model, model.initial_state(1), trie, beams=4, k=2,
                                                prior=prior, prior_weight=torch.zeros(1))
    assert plain[0, 0].item() == 1
    assert torch.equal(plain, zero) and torch.allclose(plain_scores, zero_scores)
    debiased, _ = constrained_beam_search(model, model.initial_state(1), trie, beams=4, k=2,
                                          prior=prior, prior_weight=torch.ones(1))
    assert debiased[0, 0].item() == 3


def test_prior_needs_one_weight_per_request():
    trie = small_trie()
    prior = PopularityPrior.from_counts(trie, np.arange(1, 7), np.ones(6))
    model = PrefixTable({})
    with pytest.raises(ValueError, match="go together"):
        constrained_beam_search(model, model.initial_state(1), trie, beams=2, k=1, prior=prior)
    with pytest.raises(ValueError, match=r"shape \[1\]"):
        constrained_beam_search(model, model.initial_state(1), trie, beams=2, k=1, prior=prior,
                                prior_weight=torch.zeros(2))
    with pytest.raises(ValueError, match="smoothing"):
        PopularityPrior.from_counts(trie, np.arange(1, 7), np.ones(6), smoothing=0)
