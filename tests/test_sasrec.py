"""SASRec baseline: learns a sequential pattern, answers the Retriever contract,
and a run folder's trained model is loaded, not retrained."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from genrec.artifacts import MissingStageError
from genrec.baselines import sasrec
from genrec.baselines.sasrec import (
    SASRec,
    SASRecConfig,
    SASRecModelConfig,
    SASRecRetriever,
    collate_windows,
    leaf_categories,
    score_histories,
    training_windows,
)
from genrec.data.dataset import Dataset
from genrec.data.splits import SERVED, Split, build_requests, interactions, leave_one_out
from genrec.retrieval import Request, Retriever
from genrec.train.loop import TrainConfig

N_ITEMS = 40


def successor_world(n_users: int = 120, seed: int = 0) -> Dataset:
    """Every user clicks a run of consecutive items: item i is always followed by i + 1 (wrapping)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        start, length = rng.integers(1, N_ITEMS + 1), rng.integers(6, 14)
        for step in range(length):
            item = (start - 1 + step) % N_ITEMS + 1
            rows.append((user, 1000 * user + step, 10 * user + step, "home_feed", None, int(item), "click", 0))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "session_id", "scenario", "query", "item_id", "action", "position"])
    events["position"] = events["position"].astype(np.int32)
    items = pd.DataFrame({
        "item_id": np.arange(1, N_ITEMS + 1, dtype=np.int64),
        "title": [f"item {i}" for i in range(1, N_ITEMS + 1)],
        "category": [["root", f"c{i % 4}"] for i in range(1, N_ITEMS + 1)],
        "attributes": [{} for _ in range(N_ITEMS)],
        "brand": [None] * N_ITEMS,
        "price": [1.0] * N_ITEMS,
        "origin": ["human"] * N_ITEMS,
    })
    users = pd.DataFrame({"user_id": np.arange(1, n_users + 1, dtype=np.int64)})
    dataset = Dataset(items, users, events)
    dataset.validate()
    return dataset


def small_config(**train) -> SASRecConfig:
    settings = dict(steps=100, batch_size=32, lr=5e-3, warmup_steps=10, eval_every=50, checkpoint_every=50,
                    device="cpu", progress=False)
    return SASRecConfig(max_history=8, dim=32, heads=2, layers=1, dropout=0.1,
                        train=TrainConfig(**{**settings, **train}))


def test_training_windows_make_every_later_interaction_a_target_exactly_once():
    inter = pd.DataFrame({"user_id": [1] * 12 + [2] * 2 + [3], "item_id": list(range(1, 13)) + [5, 6] + [9]})
    windows = training_windows(inter, max_history=4)
    assert all(2 <= len(w) <= 5 for w in windows)
    targets = sorted(t for w in windows for t in w[1:].tolist())
    assert targets == sorted(list(range(2, 13)) + [6])  # user 3 (one interaction) yields nothing
    batch = collate_windows(windows)
    real = batch["targets"] > 0
    # every target's input at the same position is the item just before it
    for window, inputs, targets_row in zip(windows, batch["inputs"], batch["targets"]):
        n = len(window) - 1
        assert inputs[:n].tolist() == window[:-1].tolist() and targets_row[:n].tolist() == window[1:].tolist()
    assert int(real.sum()) == len(targets)


def test_a_position_never_sees_later_items():
    torch.manual_seed(0)
    model = SASRec(SASRecModelConfig(n_items=20, max_history=6, dim=16, heads=2, layers=2, dropout=0.0)).eval()
    items = torch.tensor([[3, 4, 5, 6, 7, 8]])
    changed = items.clone()
    changed[0, 4:] = torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(model(items)[:, :4], model(changed)[:, :4])
        assert not torch.allclose(model(items)[:, 4:], model(changed)[:, 4:])
    padded = torch.tensor([[3, 4, 5, 0, 0, 0]])
    with torch.no_grad():
        scores = score_histories(model, [(3, 4, 5)], np.zeros(21))
        torch.testing.assert_close(scores[0, 1:], model.item_logits(model(padded)[0, 2]))


def test_sasrec_learns_that_item_i_is_followed_by_i_plus_one(tmp_path):
    dataset = successor_world()
    split = leave_one_out(dataset.events)
    retriever = SASRecRetriever.train(tmp_path, dataset, split, small_config())
    assert isinstance(retriever, Retriever) and retriever.name == "sasrec"
    requests, targets = build_requests(split, "test", max_history=8)
    answers = retriever.retrieve(requests, k=5)
    first = np.array([a.item_ids[0] for a in answers])
    assert np.mean(first == targets) > 0.8
    assert all(len(a) == 5 and len(set(a.item_ids.tolist())) == 5 and 0 not in a.item_ids for a in answers)
    assert all(np.all(np.diff(a.scores) <= 0) for a in answers)


def test_from_run_loads_the_saved_model_and_never_trains(tmp_path, monkeypatch):
    dataset = successor_world()
    split = leave_one_out(dataset.events)
    config = small_config(steps=20)
    with pytest.raises(MissingStageError, match="genrec train --run .* --model sasrec"):
        SASRecRetriever.from_run(tmp_path, dataset, split, config)
    trained = SASRecRetriever.train(tmp_path, dataset, split, config)
    folder = tmp_path / "train" / "sasrec"
    assert {"best.pt", "manifest.json", "config.json"} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / "manifest.json").read_text())["result"]["best_step"] > 0

    def no_training(*args, **kwargs):
        raise AssertionError("trained although loading was asked for")

    monkeypatch.setattr(sasrec, "train", no_training)
    for loaded in (SASRecRetriever.from_run(tmp_path, dataset, split, config),
                   SASRecRetriever.train(tmp_path, dataset, split, config)):  # the stage reuses a matching model
        for name, tensor in trained.model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], tensor)
    # serving's all-events split is answered by the leave-one-out model the report measured
    served = Split(SERVED, dataset.events, dataset.events.iloc[:0], dataset.events.iloc[:0], interactions(dataset.events))
    assert torch.equal(SASRecRetriever.from_run(tmp_path, dataset, served, config).model.item_embedding.weight,
                       trained.model.item_embedding.weight)
    # Other data, another config or other code is not what was saved: an error naming the command, no training.
    other = successor_world(seed=1)
    for args in ((dataset, split, small_config(steps=21)), (other, leave_one_out(other.events), config)):
        with pytest.raises(MissingStageError, match="--force"):
            SASRecRetriever.from_run(tmp_path, *args)
    monkeypatch.setattr(sasrec, "code_fingerprint", lambda *modules: "edited")
    with pytest.raises(MissingStageError):
        SASRecRetriever.from_run(tmp_path, dataset, split, config)
    with pytest.raises(AssertionError, match="trained although"):  # the stage itself does retrain
        SASRecRetriever.train(tmp_path, dataset, split, config)


def test_cold_start_requests_get_training_popularity_and_queries_are_ignored(tmp_path):
    dataset = successor_world()
    split = leave_one_out(dataset.events)
    retriever = SASRecRetriever.train(tmp_path, dataset, split, small_config(steps=5))
    popularity = np.bincount(interactions(split.train)["item_id"], minlength=N_ITEMS + 1)
    cold = retriever.retrieve([Request(user_id=999)], k=3)[0]
    assert set(cold.item_ids.tolist()) <= set(np.flatnonzero(popularity >= np.sort(popularity)[-3]).tolist())
    with_query = retriever.retrieve([Request(user_id=1, query="anything", history=(3, 4))], k=4)[0]
    without = retriever.retrieve([Request(user_id=1, history=(3, 4))], k=4)[0]
    assert np.array_equal(with_query.item_ids, without.item_ids)
    excluding = SASRecRetriever(retriever.model, retriever.popularity_, exclude_history=True)
    assert not {3, 4} & set(excluding.retrieve([Request(user_id=1, history=(3, 4))], k=10)[0].item_ids.tolist())


def test_unknown_history_items_are_rejected_with_the_field_named(tmp_path):
    model = SASRec(SASRecModelConfig(n_items=5, max_history=4, dim=8, heads=2, layers=1))
    retriever = SASRecRetriever(model, np.ones(6))
    with pytest.raises(ValueError, match="history item ids"):
        retriever.retrieve([Request(user_id=1, history=(2, 9))], k=3)


def test_genrec_train_cli_trains_sasrec_into_the_run_folder_then_reuses_it(tmp_path, capsys):
    from genrec.cli import main

    successor_world().save(tmp_path / "data")
    assert main(["train", "--run", str(tmp_path), "--model", "sasrec", "--steps", "3", "--device", "cpu"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["last_step"] == 3 and (tmp_path / "train" / "sasrec" / "best.pt").exists()
    assert main(["train", "--run", str(tmp_path), "--model", "sasrec", "--steps", "3", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["train_seconds"] == first["train_seconds"]  # loaded, not retrained
    assert main(["train", "--run", str(tmp_path / "missing"), "--model", "sasrec"]) == 1


def test_items_of_one_leaf_category_share_its_vector_and_leaves_are_whole_paths():
    dataset = successor_world()
    items = dataset.items.copy()
    items.loc[items["item_id"] == 1, "category"] = pd.Series([["other", "c1"]], index=items.index[items["item_id"] == 1])
    dataset.items = items
    category, n = leaf_categories(dataset)
    assert category[0] == 0 and n == 5 and category.shape == (N_ITEMS + 1,)
    assert category[1] != category[5]  # same leaf name "c1", other parent
    assert category[5] == category[9] and category[5] != category[6]
    model = SASRec(SASRecModelConfig(n_items=N_ITEMS, dim=8, heads=2, n_categories=n), torch.from_numpy(category))
    with torch.no_grad():
        own = model.item_embedding(torch.tensor([5, 9]))
        shared = model.item_vectors(torch.tensor([5, 9])) - own
        torch.testing.assert_close(shared[0], shared[1])
        assert torch.count_nonzero(model.item_vectors(torch.tensor([0]))) == 0  # padding stays zero


def test_training_does_not_depend_on_what_the_process_drew_before(tmp_path):
    """The initial weights come from the config's seed, so the pipeline's order of stages
    (what else used torch's random generator first) cannot change the trained model."""
    dataset = successor_world()
    split = leave_one_out(dataset.events)
    torch.manual_seed(123)
    first = SASRecRetriever.train(tmp_path / "a", dataset, split, small_config(steps=5))
    torch.rand(1000)  # another stage drew from the generator in between
    second = SASRecRetriever.train(tmp_path / "b", dataset, split, small_config(steps=5))
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], tensor)
