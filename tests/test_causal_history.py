"""The causal path: one encoder pass trains every prefix, and agrees with one request per prefix."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from genrec.model import GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inputs import RequestEncoder
from genrec.retrieval import ACTIONS, Request
from genrec.train.sequences import SequenceTable

CAUSAL = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=64, dropout=0.0, item_buckets=31, tasks="recommendation",
                          max_short=4, copy_recent=0)
SPEC = InputSpec(codebook_sizes=(7, 5, 3), query_vocab_size=50, user_vocab_size=20, n_categories=4, n_item_slots=31)


def _encoder(config: GenerativeConfig, n_items: int = 30, seed: int = 0) -> RequestEncoder:
    rng = np.random.default_rng(seed)
    item_ids = np.arange(1, n_items + 1)
    codes = np.stack([rng.integers(0, v, n_items) for v in SPEC.codebook_sizes], axis=1)
    users = pd.DataFrame({"user_id": [1, 2, 3, 4], "age_band": ["18-24", "25-34", None, "25-34"]})
    return RequestEncoder(config, SPEC, item_ids, codes).fit(["apple banana", "cherry"], users)


def _interactions(lengths: dict[int, int], seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(user, int(rng.integers(1, 31)), ACTIONS[1 + i % 3], i) for user, n in lengths.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "action", "ts"])


def _model(config: GenerativeConfig = CAUSAL) -> GenerativeModel:
    torch.manual_seed(0)
    model = GenerativeModel(config, SPEC).eval()
    model.set_item_categories(torch.randint(0, SPEC.n_categories, (SPEC.n_item_slots,)))
    return model


@pytest.mark.parametrize("latest,copy,experts,head", [(False, 0, 0, False), (True, 2, 0, False), (False, 0, 4, False),
                                                      (True, 0, 0, True)],
                         ids=["means", "latest-in-summary+copy", "sparse-moe-decoder", "item-head"])
def test_sequence_loss_equals_the_mean_loss_of_every_prefix_as_its_own_request(latest, copy, experts, head):
    # (the MoE's balance loss is a statistic of the whole batch, so it is left out of this comparison)
    config = replace(CAUSAL, latest_in_summary=latest, copy_recent=copy, moe_experts=experts, moe_balance_weight=0.0,
                     item_head=head, item_head_text=False)
    encoder = _encoder(config)
    inter = _interactions({1: 3, 2: 5, 3: 9, 4: 1})
    table = SequenceTable.build(encoder, inter)
    model = _model(config)
    fast = model.sequence_loss(table.collate(list(range(len(table)))))

    requests, targets = [], []
    for row in range(len(table)):
        user_tokens = table.user[row]
        user = next(u for u in range(1, 5) if encoder.user_tokens(u) == user_tokens[user_tokens > 0].tolist())
        items, actions = table.items[row].tolist(), table.action[row].tolist()
        for t in range(len(items)):
            if table.target[row, t] and items[t] > 0:
                requests.append(Request(user_id=user, history=tuple(items[:t]),
                                        history_actions=tuple(ACTIONS[a] for a in actions[:t])))
                targets.append(items[t])
    assert len(requests) == len(inter) == table.n_targets
    codes = torch.from_numpy(encoder.code_of_item[np.asarray(targets)])
    slow = model.loss(encoder.transform(requests), codes, torch.as_tensor(targets) if head else None)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_a_history_item_never_sees_a_later_one():
    encoder = _encoder(CAUSAL)
    model = _model()
    early = Request(user_id=1, history=(3, 7), history_actions=("click", "order"))
    late = Request(user_id=1, history=(3, 7, 9), history_actions=("click", "order", "cart"))
    memory_early, _, _ = model.encode_memory(encoder.transform([early]))
    memory_late, _, _ = model.encode_memory(encoder.transform([late]))
    n_user = len(encoder.user_tokens(1))
    # left-aligned after the user tokens: the first two history positions are the same items
    torch.testing.assert_close(memory_early[0, -2:], memory_late[0, n_user:n_user + 2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(memory_late[0, -1], memory_late[0, -2])


def test_windows_make_every_interaction_a_target_exactly_once_with_half_a_window_of_history():
    config = CAUSAL
    encoder = _encoder(config)
    lengths = {1: 1, 2: 5, 3: 6, 4: 23}
    inter = _interactions(lengths)
    table = SequenceTable.build(encoder, inter)
    width = config.max_short + 1
    assert table.items.shape[1] == width
    assert table.n_targets == sum(lengths.values())
    # each user's targets, window by window, are exactly that user's interactions: none twice, none skipped
    trained: dict[int, list[int]] = {user: [] for user in lengths}
    for row in range(len(table)):
        tokens = table.user[row][table.user[row] > 0].tolist()
        user = next(u for u in lengths if encoder.user_tokens(u) == tokens)
        trained[user] += table.items[row][table.target[row]].tolist()
    for user in lengths:
        assert sorted(trained[user]) == sorted(inter.loc[inter["user_id"] == user, "item_id"].tolist())
    for row in range(len(table)):
        real = table.items[row] > 0
        positions = torch.nonzero(table.target[row]).flatten()
        assert bool(real[positions].all())
        starts_the_user = positions.min() == 0
        # a target that is not the user's oldest window's sees at least width - stride earlier items
        assert starts_the_user or int(positions.min()) >= width - max(1, width // 2)


def test_unknown_items_leave_the_windows_like_they_leave_a_requests_history():
    encoder = _encoder(CAUSAL, n_items=30)
    inter = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [4, 99, 5], "action": ["click"] * 3, "ts": [0, 1, 2]})
    table = SequenceTable.build(encoder, inter)
    assert table.items[0, :3].tolist() == [4, 5, 0]
    assert table.n_targets == 2


def test_a_recommendation_model_refuses_a_search_and_windows_without_context_are_refused_by_a_search_model():
    encoder = _encoder(CAUSAL)
    model = _model()
    with pytest.raises(ValueError, match="recommendations only"):
        model.encode_memory(encoder.transform([Request(user_id=1, query="apple", history=(3,))]))
    both = GenerativeModel(GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=64), SPEC)
    table = SequenceTable.build(encoder, _interactions({1: 3}))  # a recommendation-only model's: no context
    with pytest.raises(ValueError, match="context"):
        both.sequence_loss(table.collate([0]))


def test_train_generative_trains_a_causal_model_on_windows_that_serves(small_world, small_sid_run):
    from genrec.data.splits import build_requests, leave_one_out
    from genrec.model.retriever import GenerativeRetriever
    from genrec.train.generative import GenerativeTrainConfig, train_generative
    from genrec.train.loop import TrainConfig

    dataset, run = small_world.dataset, small_sid_run
    ids = dataset.items["item_id"].to_numpy()
    config = GenerativeTrainConfig(
        model=GenerativeConfig(item_head=False, d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1,
                               max_short=6, tasks="recommendation"),
        train=TrainConfig(steps=4, batch_size=16, eval_every=2, checkpoint_every=2, warmup_steps=1, progress=False),
        valid_requests=20, beams=10, index_copies=0)
    split = leave_one_out(dataset.events)
    folder = train_generative(run, config, progress=False)
    result = json.loads((folder / "manifest.json").read_text())["result"]
    assert result["n_index_examples"] == 0
    assert result["n_interaction_examples"] > result["n_examples"]  # several targets per window
    retriever = GenerativeRetriever.from_run(run, dataset, split)
    assert retriever.model.config.tasks == "recommendation" and retriever.model.spec.query_vector_dim == 0
    requests, _ = build_requests(split, "test")
    recommendation = [r for r in requests if not r.query][:10]
    answers = retriever.retrieve(recommendation, k=5)
    assert all(len(a) == 5 and set(a.item_ids) <= set(ids.tolist()) for a in answers)
    with pytest.raises(ValueError, match="index_copies"):
        train_generative(run, GenerativeTrainConfig(model=config.model, train=config.train, index_copies=1),
                         progress=False)


def test_the_cli_trains_from_config_overrides_and_refuses_them_for_sasrec(small_world, tmp_path, capsys):
    from genrec.cli import main
    from genrec.sid.table import SidTable

    ids = small_world.dataset.items["item_id"].to_numpy()
    index = np.arange(len(ids))
    small_world.save(tmp_path / "data")
    SidTable(ids, np.stack([index // 64, (index // 8) % 8, index % 8], axis=1), [10, 8, 8]).save(tmp_path / "sid")
    recommendation = ["--set", "model.tasks=recommendation", "--set", "index_copies=0"]
    assert main(["train", "--run", str(tmp_path), "--model", "sasrec", *recommendation]) == 1
    assert "generative only" in capsys.readouterr().err
    assert main(["train", "--run", str(tmp_path), "--model", "generative", "--set", "model.dropout=often"]) == 1
    assert "model.dropout: expected a number" in capsys.readouterr().err
    assert main(["train", "--run", str(tmp_path), "--model", "generative", *recommendation,
                 "--set", "model.copy_recent=0", "--steps", "2", "--device", "cpu"]) == 0
    saved = json.loads((tmp_path / "train" / "generative" / "config.json").read_text())
    assert saved["model"]["tasks"] == "recommendation" and saved["index_copies"] == 0
    assert saved["model"]["copy_recent"] == 0 and saved["inputs"]["codebook_sizes"] == [10, 8, 8]
