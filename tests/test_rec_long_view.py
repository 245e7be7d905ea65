"""The long view on the recommendation path (`GenerativeConfig.rec_long_view`): what it holds, how
training windows carry it, and that training and inference read it the same way."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from genrec.model import GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inputs import RequestEncoder
from genrec.retrieval import ACTIONS, Request
from genrec.train.sequences import SequenceTable

SPEC = InputSpec(codebook_sizes=(7, 5, 3), query_vocab_size=50, user_vocab_size=20, n_categories=4, n_item_slots=41)
LONG = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=64, dropout=0.0, item_buckets=41,
                        tasks="recommendation", max_short=4, max_long=3, copy_recent=0, rec_long_view=True)


def _encoder(config: GenerativeConfig) -> RequestEncoder:
    rng = np.random.default_rng(0)
    item_ids = np.arange(1, 41)
    codes = np.stack([rng.integers(0, v, len(item_ids)) for v in SPEC.codebook_sizes], axis=1)
    users = pd.DataFrame({"user_id": [1, 2, 3], "age_band": ["18-24", "25-34", None]})
    return RequestEncoder(config, SPEC, item_ids, codes).fit(["apple"], users)


def _model(config: GenerativeConfig) -> GenerativeModel:
    """A model whose layers are far from their near-zero initialisation, so that every input it
    reads moves its outputs measurably (at init, attention over a prefix barely moves a loss)."""
    torch.manual_seed(0)
    model = GenerativeModel(config, SPEC).eval()
    model.set_item_categories(torch.randint(0, SPEC.n_categories, (SPEC.n_item_slots,)))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 0.3)
    return model


def _interactions(lengths: dict[int, int]) -> pd.DataFrame:
    rows = [(user, 1 + (7 * user + 3 * i) % 40, ACTIONS[1 + i % 3], i) for user, n in lengths.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "action", "ts"])


def test_the_long_view_holds_the_interactions_just_older_than_the_short_view():
    history = tuple(range(1, 11))  # ten clicks: no cart or order among them
    request = Request(user_id=1, history=history, history_actions=("click",) * 10)
    batch = _encoder(LONG).transform([request])
    assert batch.short_items[0].tolist() == [7, 8, 9, 10]
    assert batch.long_items[0].tolist() == [4, 5, 6]  # right-aligned: the newest of them last
    default = _encoder(replace(LONG, rec_long_view=False)).transform([request])
    assert not bool((default.long_items > 0).any())  # the default long view: carts and orders only


def test_a_short_history_has_an_empty_long_view():
    batch = _encoder(LONG).transform([Request(user_id=1, history=(3, 4, 5), history_actions=("order",) * 3)])
    assert not bool((batch.long_items > 0).any())


def test_each_window_carries_the_users_interactions_before_it():
    inter = _interactions({1: 12, 2: 3})
    encoder = _encoder(LONG)
    table = SequenceTable.build(encoder, inter)
    items = inter["item_id"].to_numpy()
    assert table.long_items is not None and table.long_codes is not None
    for row in range(len(table)):
        window = table.items[row][table.items[row] > 0].tolist()
        user = next(u for u in (1, 2) if encoder.user_tokens(u) == table.user[row][table.user[row] > 0].tolist())
        user_items = items[inter["user_id"].to_numpy() == user]
        first = next(i for i in range(len(user_items)) if user_items[i:i + len(window)].tolist() == window)
        expected = user_items[max(0, first - LONG.max_long):first].tolist()
        got = table.long_items[row][table.long_items[row] > 0].tolist()
        assert got == expected
        assert table.long_items[row, LONG.max_long - len(expected):].tolist() == expected  # right-aligned
    assert any(len(table.long_items[row][table.long_items[row] > 0]) == LONG.max_long for row in range(len(table)))
    default = SequenceTable.build(_encoder(replace(LONG, rec_long_view=False)), inter)
    assert default.long_items is None


@pytest.mark.parametrize("queries", [0, 2], ids=["long-view-whole", "query-former"])
def test_sequence_loss_equals_every_target_as_a_request_with_its_windows_long_view(queries):
    config = replace(LONG, long_queries=queries, latest_in_summary=True)
    encoder, model = _encoder(config), _model(config)
    table = SequenceTable.build(encoder, _interactions({1: 12, 2: 3, 3: 7}))
    fast = model.sequence_loss(table.collate(list(range(len(table)))))
    assert table.long_items is not None and table.long_codes is not None and table.long_action is not None
    losses = []
    for row in range(len(table)):
        items, actions = table.items[row].tolist(), table.action[row].tolist()
        user = next(u for u in (1, 2, 3) if encoder.user_tokens(u) == table.user[row][table.user[row] > 0].tolist())
        for t in range(len(items)):
            if not (table.target[row, t] and items[t] > 0):
                continue
            request = Request(user_id=user, history=tuple(items[:t]), history_actions=tuple(ACTIONS[a] for a in actions[:t]))
            batch = replace(encoder.transform([request]), long_items=table.long_items[row:row + 1],
                            long_codes=table.long_codes[row:row + 1], long_action=table.long_action[row:row + 1])
            codes = torch.from_numpy(encoder.code_of_item[np.asarray([items[t]])])
            losses.append(model.loss(batch, codes))
    torch.testing.assert_close(fast, torch.stack(losses).mean(), atol=1e-5, rtol=1e-5)


def test_the_recommendation_depends_on_the_long_view_only_when_the_model_reads_it():
    short = (11, 12, 13, 14)
    a = Request(user_id=1, history=(1, 2, 3, *short), history_actions=("click",) * 7)
    b = Request(user_id=1, history=(20, 21, 22, *short), history_actions=("click",) * 7)
    for config, differs in ((LONG, True), (replace(LONG, rec_long_view=False), False)):
        encoder, model = _encoder(config), _model(config)
        with torch.no_grad():
            _, _, summary = model.encode_memory(encoder.transform([a, b]))
        assert (not torch.allclose(summary[0], summary[1], atol=1e-6)) == differs


def test_windows_without_their_long_view_are_refused_by_name():
    encoder, model = _encoder(LONG), _model(LONG)
    batch = SequenceTable.build(encoder, _interactions({1: 8})).collate([0])
    with pytest.raises(ValueError, match="long_items"):
        model.sequence_loss(replace(batch, long_items=None))
