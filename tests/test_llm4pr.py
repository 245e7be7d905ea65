"""LLM4PR: the query-instructed adapter, feature adaptation, and list-wise post-ranking with MiniLM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genrec.features.text import load_text_encoder
from genrec.postrank.llm4pr import (
    FEATURES,
    LLM4PR,
    LanguageModel,
    LLM4PRConfig,
    LLM4PRRetriever,
    QueryInstructedAdapter,
    encode_lists,
    list_ndcg,
    request_text,
)
from genrec.retrieval import Ranked, Request

WORDS = ["red", "blue", "leather", "cotton", "boots", "scarf", "lamp", "mug", "oak", "steel", "silk", "wool"]


@pytest.fixture(scope="module")
def language_model() -> LanguageModel:
    return LanguageModel(load_text_encoder(), trainable_layers=1)


def toy_lists(language_model: LanguageModel, n: int, k: int, seed: int, config: LLM4PRConfig):
    """Lists whose taken item is the one with the highest P(order) feature, shown at a random position."""
    rng = np.random.default_rng(seed)
    titles = {i: " ".join(rng.choice(WORDS, 3)) for i in range(1, 200)}
    requests = [Request(user_id=1, query=" ".join(rng.choice(WORDS, 2)), history=()) for _ in range(n)]
    ranked = [Ranked(rng.choice(np.arange(1, 200), k, replace=False), np.linspace(1, 0, k).astype(np.float32))
              for _ in range(n)]
    features = rng.random((n, k, len(FEATURES))).astype(np.float32)
    features[:, :, 0] = np.arange(1, k + 1)
    lists = encode_lists(language_model, requests, ranked, features, titles, config)
    return lists, features[:, :, 4].argmax(1)


def test_the_adapter_reads_the_query():
    torch.manual_seed(0)
    adapter = QueryInstructedAdapter(n_features=len(FEATURES), tokens=3, dim=16).eval()
    features = torch.randn(2, len(FEATURES))
    one, other = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        assert not torch.allclose(adapter(features, one), adapter(features, other), atol=1e-4)
        assert torch.allclose(adapter(features), adapter(features))
        assert adapter(features, one).shape == (2, 3, 16)


def test_a_recommendation_is_instructed_by_its_newest_history_titles():
    titles = {1: "oak desk", 2: "steel lamp", 3: "wool scarf"}
    assert request_text(Request(user_id=1, query="red boots", history=(1, 2)), titles) == "red boots"
    assert request_text(Request(user_id=1, query=None, history=(1, 2, 3)), titles, history_items=2) == "wool scarf; steel lamp"


def test_list_ndcg_scores_one_relevant_position():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    ids = np.array([[4, 5, 6], [7, 8, 9]])
    np.testing.assert_allclose(list_ndcg(scores, ids, np.array([1, -1])), [1.0, 0.0])
    np.testing.assert_allclose(list_ndcg(scores, ids, np.array([2, 0])), [1 / np.log2(3), 1.0])


def test_post_ranking_learns_what_the_features_say(language_model):
    config = LLM4PRConfig(candidates=4, epochs=10, adaptation_epochs=1, lr=1e-3, batch_lists=8, max_text_tokens=4,
                          max_title_tokens=6)
    train, train_labels = toy_lists(language_model, 96, 4, 0, config)
    held_out, held_out_labels = toy_lists(language_model, 48, 4, 1, config)
    post_ranker = LLM4PR(language_model, config).fit(train, train_labels, held_out, held_out_labels)
    base = list_ndcg(-np.tile(np.arange(4.0), (48, 1)), held_out.item_ids, held_out_labels).mean()
    learned = list_ndcg(post_ranker.score(held_out), held_out.item_ids, held_out_labels).mean()
    assert learned > base + 0.2
    assert max(post_ranker.valid_ndcg_) == pytest.approx(learned)  # the kept epoch is the best one


def test_feature_adaptation_moves_soft_tokens_toward_the_features_in_words(language_model):
    config = LLM4PRConfig(candidates=4, adaptation_epochs=4, lr=2e-3, max_text_tokens=4, max_title_tokens=6)
    lists, _ = toy_lists(language_model, 48, 4, 2, config)
    losses = LLM4PR(language_model, config).adapt(lists)
    assert len(losses) == 4 and losses[-1] < losses[0]


@dataclass
class FixedRetriever:
    answer: Ranked
    name: str = "fixed"

    def retrieve(self, requests, k):
        return [Ranked(self.answer.item_ids[:k], self.answer.scores[:k]) for _ in requests]


def test_the_retriever_reorders_only_the_post_ranked_head(language_model):
    config = LLM4PRConfig(candidates=4, epochs=1, adaptation_epochs=0, max_text_tokens=4, max_title_tokens=6)
    post_ranker = LLM4PR(language_model, config)
    titles = {i: f"item {i}" for i in range(1, 20)}
    base = FixedRetriever(Ranked(np.arange(1, 13), np.linspace(1, 0, 12).astype(np.float32)))
    featurize = lambda requests, ranked: np.random.default_rng(0).random((len(ranked), 4, len(FEATURES)))  # noqa: E731
    post_ranker.score = lambda lists: np.tile(np.arange(4.0), (len(lists), 1))  # the post-ranker prefers the 4th
    answer = LLM4PRRetriever(base, post_ranker, titles, featurize).retrieve([Request(user_id=1, query="item", history=())], 8)[0]
    assert answer.item_ids[:4].tolist() == [4, 3, 2, 1]  # the head in the post-ranker's order
    assert answer.item_ids[4:].tolist() == [5, 6, 7, 8]  # the rest as the base retriever left it


@pytest.mark.parametrize("fields, match", [({"candidates": 1}, "candidates"), ({"epochs": 0}, "epochs"),
                                           ({"lr": 0.0}, "lr")])
def test_bad_llm4pr_settings_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        LLM4PRConfig(**fields)


def test_a_language_model_cannot_train_all_its_layers():
    with pytest.raises(ValueError, match="trainable_layers"):
        LanguageModel(load_text_encoder(), trainable_layers=6)
