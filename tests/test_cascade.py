"""The cascade's learned stages and the whole cascade as a Retriever.

Text vectors come from `cascade_toy.toy_encode` (seeded word vectors), so nothing
here loads MiniLM.
"""

import warnings

import numpy as np
import pytest
from cascade_toy import toy_dataset, toy_encode

from genrec.cascade.features import PAIR_FEATURES, FeatureSpace
from genrec.cascade.rank import MultiTaskRanker, RankerConfig
from genrec.cascade.recall import NOT_RETRIEVED, PersonalizedRecallConfig, RecallUnion
from genrec.cascade.rerank import PostRankConfig
from genrec.cascade.retriever import (
    CascadeConfig,
    CascadeRetriever,
    load_cascade,
    saved_cascade_fits,
    train_cascade,
)
from genrec.cascade.samples import impression_samples
from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.metrics import auc
from genrec.features.text import item_text
from genrec.retrieval import Ranked, Request


class ListRetriever:
    """Returns the same fixed list for every request, cut to k."""

    def __init__(self, name, ids):
        self.name, self.ids = name, np.asarray(ids)

    def retrieve(self, requests, k):
        return [Ranked(self.ids[:k], -np.arange(len(self.ids[:k]), dtype=np.float32)) for _ in requests]


def test_recall_union_respects_quotas_dedupes_and_keeps_provenance():
    sources = {"a": ListRetriever("a", [1, 2, 3, 4, 5]), "b": ListRetriever("b", [3, 9, 1, 8, 7]), "c": ListRetriever("c", [6])}
    union = RecallUnion(sources, search_quotas={"a": 2, "b": 4}, recommendation_quotas={"c": 5})
    search, recommend = union.candidates([Request(1, query="x"), Request(2)])
    assert sorted(search.item_ids) == [1, 2, 3, 8, 9]  # a's top 2 ∪ b's top 4
    assert len(set(search.item_ids)) == len(search.item_ids)
    assert set(search.from_source("a")) == {1, 2} and set(search.from_source("b")) == {3, 9, 1, 8}
    row = list(search.item_ids).index(1)
    assert search.source_rank[row].tolist() == [0, 2, NOT_RETRIEVED]
    assert list(recommend.item_ids) == [6]


def test_recall_union_cut_keeps_the_best_of_every_source_first():
    sources = {"a": ListRetriever("a", [1, 2, 3, 4, 5]), "b": ListRetriever("b", [3, 9, 1, 8, 7])}
    union = RecallUnion(sources, search_quotas={"a": 5, "b": 5}, recommendation_quotas={}, max_candidates=4)
    (search,) = union.candidates([Request(1, query="x")])
    assert list(search.item_ids) == [1, 3, 2, 9]  # round-robin by rank, duplicates dropped


def test_recall_union_rejects_a_quota_for_an_unknown_source():
    with pytest.raises(ValueError, match="unknown source 'z'"):
        RecallUnion({"a": ListRetriever("a", [1])}, {"z": 3}, {})


def test_cascade_config_reads_fixed_weights_from_json_as_a_triple_and_rejects_another_length():
    config = CascadeConfig.from_json('{"fixed_weights": [1.0, 0.5, 0.25]}')
    assert config.fixed_weights == (1.0, 0.5, 0.25)
    with pytest.raises(ValueError, match="fixed_weights must have 3 values"):
        CascadeConfig(fixed_weights=(1.0, 0.5))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def toy():
    dataset = toy_dataset()
    split = leave_one_out(dataset.events)
    texts = item_text(dataset.items)
    space = FeatureSpace(history_length=10).fit(
        dataset.items, split.train, dataset.items["item_id"].to_numpy(), toy_encode(texts), texts, toy_encode)
    return dataset, split, space


def test_pair_features_see_the_query_match(toy):
    dataset, _, space = toy
    req = space.requests([Request(1, query="red lamp")])
    lamp = int(dataset.items.loc[dataset.items["title"].str.endswith("lamp")].item_id.iloc[0])
    bike = int(dataset.items.loc[dataset.items["title"].str.endswith("bike")].item_id.iloc[0])
    pairs = space.pairs(req, np.array([0, 0]), np.array([lamp, bike]))
    share = PAIR_FEATURES.index("query_word_share")
    cosine = PAIR_FEATURES.index("query_cos")
    assert pairs[0, share] > pairs[1, share] and pairs[0, cosine] > pairs[1, cosine]


def test_mmoe_ranker_learns_the_click_signal(toy):
    _, split, space = toy
    samples = impression_samples(split.train, split.interactions, max_history=10)
    rng = np.random.default_rng(0)
    held = rng.random(len(samples.requests)) < 0.25
    fit, test = samples.subset_requests(~held), samples.subset_requests(held)
    ranker = MultiTaskRanker(space, RankerConfig(epochs=4, batch_size=256, progress=False)).fit(fit)
    probs = ranker.predict_proba(space.requests(test.requests), test.request_index, test.item_ids)
    assert probs.shape == (len(test), 3)
    assert auc(probs[:, 0], test.labels[:, 0]) > 0.7
    assert np.all(probs[:, 0] >= probs[:, 1]) and np.all(probs[:, 1] >= probs[:, 2])  # click ⊇ cart ⊇ order


def test_impression_history_never_includes_the_visit_itself(toy):
    _, split, _ = toy
    samples = impression_samples(split.train, split.interactions, max_history=50)
    for request in samples.requests[:200]:
        assert all(t < request.ts for t in request.history_ts)


@pytest.fixture(scope="module")
def trained_cascade(small_world, tmp_path_factory):
    run = tmp_path_factory.mktemp("cascade_run")
    dataset = small_world.dataset
    split = leave_one_out(dataset.events)
    config = CascadeConfig(
        progress=False, max_train_visits=3000, ranker=RankerConfig(epochs=3, batch_size=256, progress=False),
        recall=PersonalizedRecallConfig(epochs=4, batch_size=256, progress=False),
        postrank=PostRankConfig(mmr_trade_off=0.9, ai_max_share=0.5),
    )
    train_cascade(run, config, dataset, split, encoder=toy_encode)
    return run, dataset, split


def test_a_saved_cascade_is_reused_only_for_the_same_data_and_the_same_cascade_code(trained_cascade, monkeypatch):
    from genrec.cascade import retriever as cascade_retriever

    run, dataset, _ = trained_cascade
    folder = run / "cascade" / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert saved_cascade_fits(folder, dataset)
    other = Dataset(dataset.items, dataset.users, dataset.events.iloc[:-1].reset_index(drop=True))
    with pytest.warns(UserWarning, match="other data"):
        assert not saved_cascade_fits(folder, other)
    monkeypatch.setattr(cascade_retriever, "code_fingerprint", lambda *modules: "edited")
    with pytest.warns(UserWarning, match="other cascade code"):
        assert not saved_cascade_fits(folder, dataset)
    assert not saved_cascade_fits(run / "nothing here", dataset)


def test_loading_keeps_a_cascade_from_other_code_with_a_warning_as_it_keeps_a_generative_model(
        trained_cascade, monkeypatch, tmp_path):
    """One policy for saved models: `from_run` of either model warns about other code and loads it;
    the training stage (`CascadeRetriever.train`, what `stages.train_missing` calls) retrains."""
    from genrec.artifacts import MissingStageError, code_fingerprint, manifest, write_json_atomic
    from genrec.cascade import retriever as cascade_retriever
    from genrec.model.retriever import GENERATIVE_CODE, GenerativeRetriever

    run, dataset, split = trained_cascade
    monkeypatch.setattr(cascade_retriever, "load_cascade", lambda run, device=None: load_cascade(run, toy_encode, device))
    monkeypatch.setattr(cascade_retriever, "recall_sources", lambda *args: {})
    monkeypatch.setattr(cascade_retriever, "code_fingerprint", lambda *modules: "edited")
    with pytest.warns(UserWarning, match=r"other cascade code.*using it as it is \(retrain: genrec cascade train"):
        loaded = CascadeRetriever.from_run(run, dataset, split)
    assert loaded.retrieve([Request(1)], 5)[0].item_ids.size > 0
    other = Dataset(dataset.items, dataset.users, dataset.events.iloc[:-1].reset_index(drop=True))
    with pytest.warns(UserWarning, match="other data"), pytest.raises(MissingStageError, match="genrec cascade train"):
        CascadeRetriever.from_run(run, other, split)  # another catalogue's tables still refuse to load

    retrained = []
    monkeypatch.setattr(cascade_retriever, "train_cascade", lambda *args, **kwargs: retrained.append(args))
    with pytest.warns(UserWarning, match="other cascade code"):
        CascadeRetriever.train(run, dataset, split)
    assert len(retrained) == 1  # the stage retrains what loading keeps

    folder = tmp_path / "train" / "generative"  # the generative model: the same policy
    folder.mkdir(parents=True)
    write_json_atomic(folder / "manifest.json", manifest({}, code="older"))
    assert code_fingerprint(*GENERATIVE_CODE) != "older"
    monkeypatch.setattr(GenerativeRetriever, "load", classmethod(lambda cls, folder, sids: "loaded"))
    monkeypatch.setattr("genrec.model.retriever.SidTable.load", lambda folder: None)
    with pytest.warns(UserWarning, match="other genrec.model / genrec.train code.*using it as it is"):
        assert GenerativeRetriever.from_run(tmp_path) == "loaded"


def test_a_pipeline_config_retrains_the_cascade_for_what_it_learns_not_for_where_it_runs(trained_cascade, monkeypatch):
    """`genrec run`'s cascade section: the saved cascade is reused until a setting that changes what it
    learns differs; another device (or progress bar) loads the same weights elsewhere."""
    from dataclasses import replace

    from genrec.cascade import retriever as cascade_retriever
    from genrec.cascade.retriever import train_if_stale

    run, dataset, split = trained_cascade
    saved = CascadeConfig.from_json((run / "cascade" / "model" / "config.json").read_text())
    retrained = []
    monkeypatch.setattr(cascade_retriever, "train_cascade", lambda run, config, *args: retrained.append(config))
    assert not train_if_stale(run, dataset, split)  # no config given: the saved one is kept
    assert not train_if_stale(run, dataset, split, replace(saved, device="auto", progress=True))
    changed = replace(saved, ranker=replace(saved.ranker, dim=16))
    assert train_if_stale(run, dataset, split, changed) and retrained == [changed]


def test_the_ranker_reward_scores_the_same_inside_a_students_bf16_autocast(trained_cascade):
    """GRPO scores rollouts inside the student's training step, under bf16 autocast by default on
    such CPUs: the reward must be the fp32 ranker's, not a bf16 one (the fusion net refused bf16)."""
    import torch

    from genrec.align.rewards import RankerReward

    run, dataset, split = trained_cascade
    reward = RankerReward.from_run(run)
    requests = build_requests(split, "valid")[0][:8]
    items = np.stack([np.arange(1, 6) + 7 * row for row in range(len(requests))])
    items[0, -1] = -1  # padding scores 0 either way
    plain = reward.score(requests, items)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = reward.score(requests, items)
    assert inside.dtype == np.float32 and plain[0, -1] == 0
    np.testing.assert_array_equal(inside, plain)
    assert np.unique(plain[items >= 0]).size > 1  # a real ranker's scores, not a constant


def test_cascade_returns_only_valid_unique_items_best_first(trained_cascade):
    run, dataset, split = trained_cascade
    retriever = CascadeRetriever(load_cascade(run, toy_encode))
    requests, _ = build_requests(split, "test")
    answers = retriever.retrieve(requests[:60], k=10)
    known = set(dataset.items["item_id"].tolist())
    ai = set(dataset.items.loc[dataset.items["origin"] == "ai", "item_id"].tolist())
    assert len(answers) == 60
    for answer in answers:
        assert 0 < len(answer) <= 10
        assert set(answer.item_ids.tolist()) <= known
        assert len(set(answer.item_ids.tolist())) == len(answer)
        assert np.all(np.diff(answer.scores) <= 0) and np.all((answer.scores >= 0) & (answer.scores <= 1))
        assert sum(i in ai for i in answer.item_ids.tolist()) <= 5


def test_cascade_beats_popularity_on_the_small_world(trained_cascade):
    from genrec.eval.metrics import ranked_matrix, recall_at_k

    run, dataset, split = trained_cascade
    retriever = CascadeRetriever(load_cascade(run, toy_encode))
    requests, targets = build_requests(split, "test")
    cascade = recall_at_k(ranked_matrix(retriever.retrieve(requests, 10), 10), targets, 10).mean
    popular = np.bincount(split.train.loc[split.train.action != "impression", "item_id"]).argsort()[::-1][:10]
    baseline = float(np.isin(targets, popular).mean())
    assert cascade > baseline + 0.05


def test_cascade_report_measures_every_stage(trained_cascade):
    from genrec.cascade.report import evaluate_cascade

    run, dataset, split = trained_cascade
    results = evaluate_cascade(run, dataset, split, encoder=toy_encode, sources={}, max_requests=40, progress=False)
    assert [row["task"] for row in results["ranker"]][:3] == ["click", "cart", "order"]
    assert {row["calibrator"] for row in results["calibration"]} == {"raw", "isotonic", "umc"}
    assert [row["fusion"] for row in results["fusion"]] == ["fixed", "grade", "harmonrank"]
    for row in results["calibration"]:  # monotone calibrators cannot change the ranker's AUC by more than ties
        raw = next(r for r in results["calibration"] if r["task"] == row["task"] and r["calibrator"] == "raw")
        assert row["auc"] <= raw["auc"] + 1e-9
    assert (run / "cascade" / "report.md").read_text().count("|") > 50
    assert (run / "cascade" / "reliability.png").stat().st_size > 1000


def test_sampled_negatives_are_never_items_the_visit_showed(toy):
    from genrec.cascade.samples import add_sampled_negatives

    _, split, space = toy
    samples = impression_samples(split.train, split.interactions, max_history=10)
    more = add_sampled_negatives(samples, np.arange(1, space.n_items_), space.popularity_, per_visit=5, seed=0)
    assert len(more) > len(samples)
    shown = set(zip(samples.request_index.tolist(), samples.item_ids.tolist()))
    pairs = list(zip(more.request_index.tolist(), more.item_ids.tolist()))
    added = [i for i, pair in enumerate(pairs) if pair not in shown]
    assert len(added) == len(more) - len(samples)
    assert np.all(more.labels[added] == 0) and np.all(more.position[added] == 0)
    assert np.all(np.diff(more.request_index) >= 0)


def test_the_cascades_word_ids_are_the_same_in_every_process():
    """Word ids follow the words' first appearance in the item texts, whatever Python's per-process
    hash seed: with `set(words)` two runs of one command gave the ranker different word ids (and so
    different weights, and a different teacher for `genrec align`)."""
    import os
    import subprocess
    import sys

    script = ("import pandas as pd\n"
              "from genrec.cascade.features import FeatureSpace\n"
              "space = FeatureSpace()\n"
              "space.n_items_ = 3\n"
              "space._fit_vocabulary(pd.DataFrame({'item_id': [1, 2]}),"
              " ['zeta alpha mu zeta', 'beta alpha omega kappa'])\n"
              "print(list(space.vocabulary_.items()))\n")
    seen = set()
    for seed in ("0", "1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        seen.add(out.stdout.strip())
    assert seen == {str([("zeta", 0), ("alpha", 1), ("mu", 2), ("beta", 3), ("omega", 4), ("kappa", 5)])}


def test_the_ranker_trains_on_one_thread_and_gives_the_callers_threads_back(toy, monkeypatch):
    """Under two threads two trainings of the ranker on the same data gave different weights (up to
    0.05 apart) and so a different cascade per run; on one thread they are bit-identical. The fit
    must therefore train on one thread — and leave the process's thread count as it found it."""
    import torch

    import genrec.train.loop as loop

    _, split, space = toy
    samples = impression_samples(split.train, split.interactions, max_history=10)
    seen: list[int] = []
    real_train = loop.train

    def recording_train(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loop, "train", recording_train)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        MultiTaskRanker(space, RankerConfig(epochs=1, batch_size=256, progress=False)).fit(samples)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
