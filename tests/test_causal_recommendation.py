"""Search and recommendation in one model: searches through the full encoder,
recommendations through the causal one, trained on windows with each target's own context."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from genrec.model import GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inputs import RequestEncoder
from genrec.retrieval import ACTIONS, Request
from genrec.train.mixed import MixedBatch, MixedTable, mixed_loss
from genrec.train.sequences import SequenceTable

HYBRID = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=64, dropout=0.0, item_buckets=31, max_short=4, max_long=3,
                          copy_recent=0)
SPEC = InputSpec(codebook_sizes=(7, 5, 3), query_vocab_size=50, user_vocab_size=20, n_categories=4, n_item_slots=31)
SCENARIOS = ("home_feed", "search", "cart_page")


def _encoder(config: GenerativeConfig = HYBRID, n_items: int = 30, seed: int = 0) -> RequestEncoder:
    rng = np.random.default_rng(seed)
    item_ids = np.arange(1, n_items + 1)
    codes = np.stack([rng.integers(0, v, n_items) for v in SPEC.codebook_sizes], axis=1)
    users = pd.DataFrame({"user_id": [1, 2, 3, 4], "age_band": ["18-24", "25-34", None, "25-34"]})
    return RequestEncoder(config, SPEC, item_ids, codes).fit(["apple banana", "cherry"], users)


def _interactions(lengths: dict[int, int], seed: int = 1) -> pd.DataFrame:
    """Interactions of users, every third one a search; ts spread over days so hours and weekdays differ."""
    rng = np.random.default_rng(seed)
    rows = []
    for user, n in lengths.items():
        for i in range(n):
            search = i % 3 == 2
            rows.append((user, int(rng.integers(1, 31)), ACTIONS[1 + i % 3], int(rng.integers(0, 30 * 86400)),
                         "search" if search else SCENARIOS[i % 2 * 2], "apple" if search else None))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "action", "ts", "scenario", "query"])
    return frame.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)


def _model(config: GenerativeConfig = HYBRID) -> GenerativeModel:
    torch.manual_seed(0)
    model = GenerativeModel(config, SPEC).eval()
    model.set_item_categories(torch.randint(0, SPEC.n_categories, (SPEC.n_item_slots,)))
    return model


def _user_of(encoder: RequestEncoder, tokens: torch.Tensor) -> int:
    return next(u for u in range(1, 5) if encoder.user_tokens(u) == tokens[tokens > 0].tolist())


@pytest.mark.parametrize("latest, copy", [(False, 0), (True, 0), (False, 3)],
                         ids=["means", "latest-in-summary", "copy-recent"])
def test_sequence_loss_equals_every_prefix_as_a_recommendation_request_with_its_own_context(latest, copy):
    config = replace(HYBRID, latest_in_summary=latest, copy_recent=copy)
    encoder = _encoder(config)
    inter = _interactions({1: 3, 2: 5, 3: 9, 4: 1})
    table = SequenceTable.build(encoder, inter)
    model = _model(config)
    fast = model.sequence_loss(table.collate(list(range(len(table)))))

    rows_of_user = {u: inter[inter["user_id"] == u].reset_index(drop=True) for u in range(1, 5)}
    requests, targets = [], []
    for row in range(len(table)):
        user = _user_of(encoder, table.user[row])
        items, actions = table.items[row].tolist(), table.action[row].tolist()
        for t in range(len(items)):
            if table.target[row, t] and items[t] > 0:
                # the window position's own scenario and time, found back in the user's interactions
                match = rows_of_user[user][(rows_of_user[user]["item_id"] == items[t])]
                context = encoder.context_tokens(match["scenario"].tolist(), match["ts"].to_numpy())
                hit = int(np.flatnonzero((context == table.context[row, t].numpy()).all(axis=1))[0])
                ts = int(match["ts"].iloc[hit])
                earlier = rows_of_user[user][rows_of_user[user]["ts"] < ts]["ts"].tolist()[-t:] if t else []
                requests.append(Request(user_id=user, scenario=str(match["scenario"].iloc[hit]), ts=ts,
                                        history=tuple(items[:t]), history_ts=tuple(earlier),
                                        history_actions=tuple(ACTIONS[a] for a in actions[:t])))
                targets.append(items[t])
    assert len(requests) == len(inter) == table.n_targets  # search interactions are targets too
    codes = torch.from_numpy(encoder.code_of_item[np.asarray(targets)])
    slow = model.loss(encoder.transform(requests), codes)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("copy, latest", [(0, False), (3, False), (0, True)],
                         ids=["plain", "copy-recent", "latest-in-summary"])
def test_a_mixed_batch_answers_each_request_as_it_would_alone(copy, latest):
    config = replace(HYBRID, copy_recent=copy, latest_in_summary=latest)
    encoder = _encoder(config)
    model = _model(config)
    requests = [Request(user_id=1, query="apple", scenario="search", ts=5000, history=(3, 7),
                        history_actions=("click", "order")),
                Request(user_id=2, scenario="home_feed", ts=90000, history=(4, 5, 6, 9, 11),
                        history_actions=("click", "cart", "click", "order", "click")),
                Request(user_id=3, query="banana cherry", scenario="search", ts=7, history=()),
                Request(user_id=4, scenario="cart_page", ts=123456, history=())]
    codes = torch.tensor([[1, 2, 0], [6, 4, 2], [0, 0, 1], [3, 1, 1]])
    together = model(encoder.transform(requests), codes)
    for row, request in enumerate(requests):
        alone = model(encoder.transform([request]), codes[row:row + 1])
        for level in range(SPEC.levels):
            torch.testing.assert_close(together[level][row], alone[level][0], atol=1e-5, rtol=1e-5)
    # decoding sees the same first level as teacher forcing (the copy bias rides in the decoder state)
    state = model.encode(encoder.transform(requests))
    first, _ = model.step(state, torch.zeros(len(requests), dtype=torch.long), 0)
    torch.testing.assert_close(first[:, :SPEC.codebook_sizes[0]], together[0], atol=1e-5, rtol=1e-5)


def test_copy_recent_biases_the_newest_items_first_level_codes_and_leaves_searches_alone():
    config = replace(HYBRID, copy_recent=2)
    encoder = _encoder(config)
    model = _model(config)
    with torch.no_grad():
        model.copy.gate.weight.zero_()
        model.copy.gate.bias.copy_(torch.tensor([5.0, 1.0]))  # newest item +5, the one before +1
    base = replace(config, copy_recent=0)
    plain = _model(base)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("copy.")})
    history = (4, 5, 6)
    recommendation = Request(user_id=2, scenario="home_feed", ts=90000, history=history,
                             history_actions=("click",) * 3)
    search = replace(recommendation, query="apple", scenario="search")
    codes = torch.tensor([[1, 2, 0]])
    for request, expected_bias in ((recommendation, True), (search, False)):
        batch = encoder.transform([request])
        delta = model(batch, codes)[0] - plain(batch, codes)[0]
        want = torch.zeros(SPEC.codebook_sizes[0])
        if expected_bias:
            first_codes = encoder.code_of_item[list(history), 0]
            want[int(first_codes[-1])] += 5.0
            want[int(first_codes[-2])] += 1.0
        torch.testing.assert_close(delta[0], want, atol=1e-5, rtol=1e-5)


def test_recommendation_reads_the_history_causally_and_its_context_while_search_reads_the_long_view():
    encoder = _encoder()
    model = _model()
    codes = torch.tensor([[1, 2, 0]])
    base = Request(user_id=2, scenario="home_feed", ts=90000, history=(4, 5, 6, 9, 11, 12, 13),
                   history_actions=("click", "order", "click", "click", "click", "click", "click"))

    def logits(request: Request) -> torch.Tensor:
        return torch.cat(model(encoder.transform([request]), codes), dim=1)

    other_scenario = logits(Request(**{**vars(base), "scenario": "cart_page"}))
    assert not torch.allclose(logits(base), other_scenario)  # the target's own context reaches the decoder
    # the order at position 2 fell out of the 4-item short view: recommendation does not read the long view
    without_old = Request(**{**vars(base), "history": (1, 1, 6, 9, 11, 12, 13),
                             "history_actions": ("click",) * 7})
    torch.testing.assert_close(logits(base), logits(without_old), atol=1e-5, rtol=1e-5)
    # a search reads the whole request, the long view included
    search = Request(**{**vars(base), "query": "apple", "scenario": "search"})
    search_without_old = Request(**{**vars(without_old), "query": "apple", "scenario": "search"})
    assert not torch.allclose(logits(search), logits(search_without_old))


def test_windows_of_a_search_model_need_each_targets_scenario_and_time():
    with pytest.raises(ValueError, match="scenario"):
        SequenceTable.build(_encoder(), _interactions({1: 3}).drop(columns=["scenario"]))


def test_mixed_loss_is_the_mean_over_every_target_of_the_step():
    encoder = _encoder()
    model = _model()
    windows = SequenceTable.build(encoder, _interactions({1: 3, 2: 5, 3: 9}))
    searches = [Request(user_id=1, query="apple", scenario="search", ts=5, history=(3,)),
                Request(user_id=2, query="cherry", scenario="search", ts=9, history=(4, 5))]
    search_codes = torch.tensor([[1, 2, 0], [6, 4, 2]])

    class Requests:  # the ExampleTable interface MixedTable uses
        def __len__(self):
            return len(searches)

        def collate(self, indices):
            return encoder.transform([searches[i] for i in indices]), search_codes[indices]

    table = MixedTable(Requests(), windows)
    assert len(table) == 2 + len(windows) and table.n_targets == 2 + windows.n_targets
    batch = table.collate([0, 1, 2, 3])
    assert len(batch.requests[1]) == 2 and len(batch.windows.items) == 2
    n_window_targets = int(batch.windows.target.sum())
    expected = (2 * model.loss(*batch.requests) + n_window_targets * model.sequence_loss(batch.windows)) / (2 + n_window_targets)
    torch.testing.assert_close(mixed_loss(model, batch), expected)
    only_windows = table.collate([2])
    assert only_windows.requests is None
    torch.testing.assert_close(mixed_loss(model, only_windows), model.sequence_loss(only_windows.windows))
    with pytest.raises(ValueError, match="neither"):
        mixed_loss(model, MixedBatch(None, None))


def test_windows_without_context_are_refused_by_a_search_model():
    windows = SequenceTable.build(_encoder(), _interactions({1: 3}))
    batch = windows.collate([0])
    batch.context = None
    with pytest.raises(ValueError, match="context"):
        _model().sequence_loss(batch)


def test_train_generative_trains_one_model_for_search_and_windows_for_recommendation(small_world, small_sid_run):
    from genrec.data.splits import build_requests, interactions, leave_one_out
    from genrec.model.retriever import GenerativeRetriever
    from genrec.train.generative import GenerativeTrainConfig, train_generative, training_requests
    from genrec.train.loop import TrainConfig

    dataset, run = small_world.dataset, small_sid_run
    ids = dataset.items["item_id"].to_numpy()
    config = GenerativeTrainConfig(
        model=GenerativeConfig(item_head=False, d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1, max_short=6),
        train=TrainConfig(steps=4, batch_size=32, eval_every=2, checkpoint_every=2, warmup_steps=1, progress=False),
        valid_requests=40, beams=10, query_vectors=False)
    split = leave_one_out(dataset.events)
    folder = train_generative(run, config, progress=False)
    result = json.loads((folder / "manifest.json").read_text())["result"]
    n_positive = len(interactions(split.train))
    n_searches = sum(1 for r in training_requests(split)[0] if r.query)
    # searches once as requests, every interaction once as a window target, plus the indexing task
    assert result["n_interaction_examples"] == n_searches + n_positive
    assert result["n_index_examples"] == config.index_copies * len(ids)
    assert {"search_ndcg@10", "rec_ndcg@10"} <= set(result["history"][-1])
    saved = json.loads((folder / "config.json").read_text())
    assert saved["model"]["tasks"] == "search+recommendation" and saved["inputs"]["query_vector_dim"] == 0
    retriever = GenerativeRetriever.from_run(run, dataset, split)
    requests, _ = build_requests(split, "test")
    answers = retriever.retrieve(requests[:30], k=5)
    assert {bool(r.query) for r in requests[:30]} == {True, False}
    assert all(len(a) == 5 and set(a.item_ids) <= set(ids.tolist()) for a in answers)
    with pytest.raises(ValueError, match="index_copies"):
        GenerativeTrainConfig(model=replace(config.model, tasks="recommendation"), index_copies=1)
