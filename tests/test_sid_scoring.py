"""Scoring given items on the beam search's scale (`genrec.decode.score`, `GenerativeRetriever.score`)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_generative import tiny_generative

from genrec.model import GenerativeModel
from genrec.model.retriever import GenerativeRetriever
from genrec.retrieval import Request

REQUESTS = [Request(user_id=1, history=(3, 4)), Request(user_id=2, history=(5,)), Request(user_id=3)]


@pytest.mark.parametrize("precision", [None, "fp32"])
def test_an_item_scores_what_the_beam_search_gave_it(small_world, precision):
    model, encoder, trie = tiny_generative(small_world, seed=0, decoder_scale=3.0)
    retriever = GenerativeRetriever(model, encoder, trie, beams=32, precision=precision)
    ranked = retriever.retrieve(REQUESTS, 12)
    items = np.stack([r.item_ids for r in ranked])
    scores = retriever.score(REQUESTS, items)
    np.testing.assert_allclose(scores, np.stack([r.scores for r in ranked]), rtol=1e-4, atol=1e-4)
    # An item the search did not return scores below every one it did (the search is near-exact at 32 beams).
    outside = np.array([[next(i for i in small_world.dataset.items["item_id"] if i not in set(row))] for row in items])
    assert (retriever.score(REQUESTS, outside)[:, 0] <= scores.min(1) + 1e-4).all()


def test_with_an_item_head_the_score_adds_the_heads_mix(small_world):
    model, encoder, trie = tiny_generative(small_world, seed=0, decoder_scale=3.0)
    spec = replace(model.spec, n_item_slots=int(small_world.dataset.items["item_id"].max()) + 1)
    with_head = GenerativeModel(replace(model.config, item_head=True), spec).eval()
    with_head.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        with_head.item_head.table.normal_(0, 1.0)
    retriever = GenerativeRetriever(with_head, encoder, trie, beams=32, item_head_mix=0.7)
    ranked = retriever.retrieve(REQUESTS, 8)
    np.testing.assert_allclose(retriever.score(REQUESTS, np.stack([r.item_ids for r in ranked])),
                               np.stack([r.scores for r in ranked]), rtol=1e-4, atol=1e-4)


def test_items_without_a_sid_or_a_wrong_shape_are_refused(small_world):
    model, encoder, trie = tiny_generative(small_world, seed=0)
    retriever = GenerativeRetriever(model, encoder, trie, beams=8)
    with pytest.raises(ValueError, match="catalogue item"):
        retriever.score(REQUESTS, np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        retriever.score(REQUESTS, np.ones((2, 1), dtype=np.int64))
