"""Post-training objectives on a toy catalogue: 16 items with 2-level SIDs, one word per item."""

import numpy as np
import pytest
import torch

from genrec.align.config import AlignConfig
from genrec.align.examples import AlignExamples, TeacherLists
from genrec.align.head_mix import beams_and_head_scores, choose_head_mixes, ranked_by
from genrec.align.objectives import group_advantages, level_kl
from genrec.align.phases import AlignmentContext, distillation_loss, grpo_rollout_loss
from genrec.align.policy import CodeBook, head_log_probs, item_log_probs, propose, repeat_rows, trajectory
from genrec.decode.beam_search import constrained_beam_search
from genrec.decode.trie import PrefixTrie
from genrec.features.text_cache import TextVectorCache
from genrec.model import GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inputs import RequestEncoder
from genrec.model.retriever import GenerativeRetriever
from genrec.retrieval import Request

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "olive", "peach",
         "pear", "plum", "kiwi", "melon", "lime", "fig", "date", "guava"]
TINY = dict(d_model=32, n_heads=2, d_ff=64, dropout=0.0, n_encoder_layers=1, n_decoder_layers=1,
            max_short=4, max_long=4, copy_recent=0)
ITEMS = np.arange(101, 101 + len(WORDS))
CODES = np.stack([np.arange(16) // 4, np.arange(16) % 4], 1)  # 4 × 4: every level has real choices


def _context(seed: int = 0, item_head: bool = False, **config) -> AlignmentContext:
    torch.manual_seed(seed)
    model_config = GenerativeConfig(item_head=item_head, **TINY)
    spec = InputSpec(codebook_sizes=(4, 4), query_vocab_size=64, user_vocab_size=64,
                     n_item_slots=int(ITEMS.max()) + 1 if item_head else 0)
    encoder = RequestEncoder(model_config, spec, ITEMS, CODES).fit(WORDS)
    trie = PrefixTrie.from_codes(CODES, ITEMS, [4, 4])
    requests = [Request(user_id=1, query=w, scenario="search") for w in WORDS[:4]]
    n = len(requests)
    examples = AlignExamples(requests, ITEMS[:n], np.array(["click"] * n), np.zeros(n, np.int64), np.arange(n))
    align = AlignConfig(**{"grpo_group": 16, "kl_weight": 0.0, "reward": "ranker", **config})
    model = GenerativeModel(model_config, spec)
    if item_head:
        model.item_head.set_known_items(torch.from_numpy(ITEMS))
    return AlignmentContext(align, model, encoder, trie, CodeBook(ITEMS, CODES), examples, np.ones(n, np.float32))


def _log_probs(c: AlignmentContext, requests) -> torch.Tensor:
    """log π of every catalogue item for each request `[B, 16]`."""
    batch = repeat_rows(c.encoder.transform(requests), len(ITEMS))
    codes = torch.from_numpy(np.tile(CODES, (len(requests), 1)))
    with torch.no_grad():
        return item_log_probs(c.model.eval(), batch, codes, c.trie).view(len(requests), -1)


def _optimise(c: AlignmentContext, loss_fn, steps: int, lr: float = 0.05) -> None:
    optimizer = torch.optim.Adam(c.model.parameters(), lr=lr)
    rows = np.arange(len(c.examples))
    for _ in range(steps):
        loss = loss_fn(c.model, rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


class _TableReward:
    """reward[request row][item id], looked up by the request's query word."""

    name = "table"

    def __init__(self, table: dict[str, dict[int, float]], noise: float = 0.0, seed: int = 0):
        self.table, self.noise, self.rng = table, noise, np.random.default_rng(seed)

    def score(self, requests, item_ids):
        out = np.array([[self.table.get(r.query, {}).get(int(i), 0.0) for i in row] for r, row in zip(requests, item_ids)],
                       dtype=np.float32)
        return out + self.noise * self.rng.standard_normal(out.shape).astype(np.float32)


def _reference(model):
    import copy

    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def test_item_log_probs_equal_the_beam_search_scores():
    c = _context()
    requests = c.examples.requests
    state = c.model.eval().encode(c.encoder.transform(requests))
    items, scores = constrained_beam_search(c.model, state, c.trie, 16, 16)
    every = _log_probs(c, requests)
    column = {int(i): j for j, i in enumerate(ITEMS)}
    for row in range(len(requests)):
        expected = every[row, [column[int(i)] for i in items[row]]]
        torch.testing.assert_close(scores[row], expected, rtol=1e-4, atol=1e-4)
    assert torch.allclose(every.exp().sum(1), torch.ones(len(requests)), atol=1e-5)  # a distribution over real items


def test_a_reward_that_prefers_one_item_makes_grpo_raise_its_probability():
    c = _context(seed=1)
    before = _log_probs(c, c.examples.requests)
    # each request's least likely item is the one the reward prefers
    favourite = {r.query: int(ITEMS[int(before[i].argmin())]) for i, r in enumerate(c.examples.requests)}
    reward = _TableReward({q: {item: 1.0} for q, item in favourite.items()})
    _optimise(c, grpo_rollout_loss(c, reward), steps=30, lr=0.02)
    after = _log_probs(c, c.examples.requests)
    for i, r in enumerate(c.examples.requests):
        col = int(np.flatnonzero(ITEMS == favourite[r.query])[0])
        assert after[i, col] > before[i, col] + 2.0
        assert int(after[i].argmax()) == col


def test_the_kl_term_keeps_the_policy_near_the_reference_when_the_reward_is_flat():
    drift = {}
    for kl_weight in (0.0, 2.0):
        c = _context(seed=2, kl_weight=kl_weight)
        c.reference = _reference(c.model)
        reward = _TableReward({}, noise=1.0, seed=3)  # no item is better than another, only noise
        _optimise(c, grpo_rollout_loss(c, reward), steps=25, lr=0.02)
        batch = repeat_rows(c.encoder.transform(c.examples.requests), len(ITEMS))
        codes = torch.from_numpy(np.tile(CODES, (len(c.examples), 1)))
        with torch.no_grad():
            _, policy = trajectory(c.model.eval(), batch, codes, c.trie)
            _, reference = trajectory(c.reference, batch, codes, c.trie)
        drift[kl_weight] = float(level_kl(policy, reference))
    assert drift[0.0] > 0.05  # without the KL term the noise pushes the policy around
    assert drift[2.0] < drift[0.0] / 4


def test_distillation_from_a_fixed_teacher_list_reproduces_that_list():
    c = _context(seed=4)
    rng = np.random.default_rng(0)
    lists = np.stack([rng.choice(ITEMS, 5, replace=False) for _ in range(len(c.examples))])
    weights = np.tile(np.array([0.4, 0.25, 0.15, 0.12, 0.08], np.float32), (len(c.examples), 1))
    _optimise(c, distillation_loss(c, TeacherLists(lists, weights)), steps=150, lr=0.02)
    top = propose(c.model, c.encoder, c.trie, c.examples.requests, beams=16, k=5)
    np.testing.assert_array_equal(top, lists)


def test_distillation_teaches_the_item_head_the_teacher_list_only_when_weighted():
    """The head re-ranks the served beams, so distillation must reach it: with head_weight
    (head alone) the head's own top 5 becomes the teacher's list in the teacher's order and
    the SID path's probabilities do not move; with 0 (SID path alone) the head's item table
    is left as it was."""
    rng = np.random.default_rng(1)
    lists = np.stack([rng.choice(ITEMS, 5, replace=False) for _ in range(4)])
    weights = np.tile(np.array([0.4, 0.25, 0.15, 0.12, 0.08], np.float32), (4, 1))
    for head_weight in (0.0, 1.0):
        c = _context(seed=6, item_head=True, head_weight=head_weight, distill_sid=not head_weight)
        table = c.model.item_head.table.detach().clone()
        beams = _log_probs(c, c.examples.requests)
        _optimise(c, distillation_loss(c, TeacherLists(lists, weights)), steps=150, lr=0.02)
        with torch.no_grad():
            head = head_log_probs(c.model.eval(), c.encoder.transform(c.examples.requests),
                                  torch.from_numpy(np.tile(ITEMS, (4, 1))))
        top = ITEMS[torch.argsort(head, dim=1, descending=True)[:, :5].numpy()]
        if head_weight:
            np.testing.assert_array_equal(top, lists)
            torch.testing.assert_close(_log_probs(c, c.examples.requests), beams)  # head alone: the SID path is as trained
        else:
            assert torch.equal(c.model.item_head.table, table)


def test_the_head_mix_is_chosen_per_task_on_validation():
    """Each search's target is the item its beams rank last; a head taught those targets
    (distilled alone) earns the larger mix for searches, and with no recommendation among
    the requests the recommendation mix is left to the model."""
    c = _context(seed=7, item_head=True, distill_sid=False)
    before = _log_probs(c, c.examples.requests)
    targets = ITEMS[before.argmin(1).numpy()]
    lists = TeacherLists(targets[:, None], np.ones((len(targets), 1), np.float32))
    _optimise(c, distillation_loss(c, lists), steps=100, lr=0.05)
    choice = choose_head_mixes(c.model, c.encoder, c.trie, c.examples.requests, targets, beams=16,
                               candidates=(0.0, 4.0))
    assert choice.search_mix == 4.0 and choice.rec_mix is None and choice.search_text_match == 0.0
    assert [row.search_recall for row in choice.table] == [0.0, 1.0]  # at mix 0 and 4
    with pytest.raises(ValueError, match="candidates"):
        choose_head_mixes(c.model, c.encoder, c.trie, c.examples.requests, targets, beams=16, candidates=())


def test_a_text_match_weight_is_chosen_for_searches_whose_targets_match_their_query():
    """Each search's target is an item the model ranks at the bottom, and its text vector is the query's:
    without the text term Recall@10 is 0 (16 beams, target in the last 4), with weight 32 it is 1; a model
    that reads no query vectors only ever gets weight 0."""
    dim = 8
    basis = np.eye(dim, dtype=np.float32)
    vectors = TextVectorCache(lambda texts: np.stack([basis[WORDS.index(t)] for t in texts]), dim=dim)
    torch.manual_seed(3)
    config = GenerativeConfig(item_head=True, **TINY)
    spec = InputSpec(codebook_sizes=(4, 4), query_vocab_size=64, user_vocab_size=64, n_item_slots=int(ITEMS.max()) + 1,
                     query_vector_dim=dim, item_text_dim=dim)
    encoder = RequestEncoder(config, spec, ITEMS, CODES, query_vectors=vectors).fit(WORDS)
    model = GenerativeModel(config, spec).eval()
    model.item_head.set_known_items(torch.from_numpy(ITEMS))
    trie = PrefixTrie.from_codes(CODES, ITEMS, [4, 4])
    requests = [Request(user_id=1, query=w, scenario="search") for w in WORDS[:4]]
    items, beam_scores, head_scores, _ = beams_and_head_scores(model, encoder, trie, requests, beams=16)
    order = np.argsort(beam_scores + head_scores, axis=1)  # worst first
    targets = np.zeros(4, np.int64)
    for k in range(4):  # each request's last-ranked item not already another request's target
        targets[k] = next(i for i in items[k, order[k]] if i not in targets[:k])
    text = np.full((len(ITEMS), dim), 0.0, np.float32)
    text[:, dim - 1] = 1.0  # every other item: a text no query matches
    text[np.searchsorted(ITEMS, targets)] = basis[:4]  # target of request k: the text of query k
    model.item_head.set_item_text(torch.from_numpy(ITEMS), torch.from_numpy(text))
    choice = choose_head_mixes(model, encoder, trie, requests, targets, beams=16, candidates=(1.0,),
                               text_matches=(0.0, 32.0))
    assert choice.search_text_match == 32.0 and [row.search_recall for row in choice.table] == [0.0, 1.0]
    # The served path applies the chosen weight: each search's target comes first, as the chooser scored it.
    for precision in (None, "fp32"):
        served = GenerativeRetriever(model, encoder, trie, beams=16, item_head_mix=1.0, item_head_text_match=32.0,
                                     precision=precision).retrieve(requests, 10)
        assert [int(r.item_ids[0]) for r in served] == targets.tolist()
    unmatched = GenerativeRetriever(model, encoder, trie, beams=16, item_head_mix=1.0).retrieve(requests, 10)
    assert not any(int(t) in r.item_ids.tolist() for r, t in zip(unmatched, targets))  # weight 0: R@10 0
    blind = _context(seed=3, item_head=True)  # no query vectors: nothing to match
    assert choose_head_mixes(blind.model, blind.encoder, blind.trie, requests, targets, beams=16, candidates=(1.0,),
                             text_matches=(0.0, 32.0)).search_text_match == 0.0


def test_head_log_probs_is_none_without_an_item_head():
    c = _context()
    assert head_log_probs(c.model, c.encoder.transform(c.examples.requests[:1]), torch.tensor([[101]])) is None


def test_debiased_grpo_does_not_reorder_a_request_whose_rewards_are_only_noise():
    """Two requests in one batch: "apple" has a clearly right item; "banana"'s rewards differ by
    1e-3 (a ranker that cannot tell its candidates apart), favouring its least likely item.
    Plain GRPO's per-group std turns banana's 1e-3 into advantages as large as apple's and
    lifts that item as far as apple's real one; the debiased variant learns apple as well
    and leaves banana's noise alone."""
    lifted = {}
    for debiased in (False, True):
        c = _context(seed=5, debiased=debiased)
        c.examples = c.examples.subset(np.array([0, 1]))
        before = _log_probs(c, c.examples.requests)
        apple_col = int(before[0].argmin())
        order = [j for j in torch.argsort(before[1]).tolist() if j != apple_col]  # banana, least likely first
        noise = {int(ITEMS[j]): 1e-3 * (len(order) - rank) for rank, j in enumerate(order)}
        reward = _TableReward({"apple": {int(ITEMS[apple_col]): 1.0}, "banana": noise})
        _optimise(c, grpo_rollout_loss(c, reward), steps=20, lr=0.02)
        after = _log_probs(c, c.examples.requests)
        lifted[debiased] = (float(after[0, apple_col] - before[0, apple_col]),
                            float(after[1, order[0]] - before[1, order[0]]))
    plain, debiased = lifted[False], lifted[True]
    assert plain[0] > 2.0 and debiased[0] > 2.0  # both learn the real preference
    assert plain[1] > 2.0  # plain GRPO: banana's noise favourite lifted like a real preference
    assert debiased[1] < 0.5


def test_group_advantages_scale_by_the_group_or_by_the_batch():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.501, 0.5, 0.5, 0.499]])
    valid = torch.ones_like(rewards, dtype=torch.bool)
    plain = group_advantages(rewards, valid)
    pooled = group_advantages(rewards, valid, debiased=True)
    assert plain[1].abs().max() > 1.0  # a 0.001 spread becomes a unit advantage
    assert pooled[1].abs().max() < 0.01 and pooled[0].abs().max() > 1.0
    one = group_advantages(torch.tensor([[1.0, 0.0]]), torch.tensor([[True, False]]))
    assert torch.equal(one, torch.zeros(1, 2))  # nothing to compare in a group of one


def test_a_sid_outside_the_catalogue_is_refused():
    c = _context()
    batch = c.encoder.transform(c.examples.requests[:1])
    bad = PrefixTrie.from_codes(CODES[:8], ITEMS[:8], [4, 4])
    with pytest.raises(ValueError, match="not in the trie"):
        item_log_probs(c.model, batch, torch.tensor([[3, 3]]), bad)


def test_distill_encoder_teaches_the_head_through_the_encoder_and_anchors_the_sid_path():
    """Head alone (the default) leaves every encoder weight as trained; with `distill_encoder` the
    encoder learns the lists too, the head's top 5 become them, and the anchor raises the SID path's
    probability of each logged target (its NLL is part of the loss)."""
    rng = np.random.default_rng(2)
    lists = np.stack([rng.choice(ITEMS, 5, replace=False) for _ in range(4)])
    weights = np.tile(np.array([0.4, 0.25, 0.15, 0.12, 0.08], np.float32), (4, 1))
    for through_encoder in (False, True):
        c = _context(seed=8, item_head=True, distill_encoder=through_encoder)
        encoder_weights = {k: v.detach().clone() for k, v in c.model.named_parameters() if k.startswith("encoder")}
        assert encoder_weights
        targets = np.searchsorted(ITEMS, c.examples.targets)
        before = _log_probs(c, c.examples.requests)[torch.arange(4), targets]
        _optimise(c, distillation_loss(c, TeacherLists(lists, weights)), steps=150, lr=0.02)
        moved = [k for k, v in c.model.named_parameters() if k in encoder_weights and not torch.equal(v, encoder_weights[k])]
        with torch.no_grad():
            head = head_log_probs(c.model.eval(), c.encoder.transform(c.examples.requests),
                                  torch.from_numpy(np.tile(ITEMS, (4, 1))))
        np.testing.assert_array_equal(ITEMS[torch.argsort(head, dim=1, descending=True)[:, :5].numpy()], lists)
        if through_encoder:
            assert moved
            assert bool((_log_probs(c, c.examples.requests)[torch.arange(4), targets] > before).all())
        else:
            assert not moved


def test_the_mix_chooser_ranks_the_candidates_and_history_the_model_serves_with():
    """With the model's `item_head_candidates` and `exclude_history`, the chooser's pool is the served
    one: its order at a mix equals `retrieve`'s at that mix, and no history item is ranked."""
    from dataclasses import replace

    c = _context(seed=9, item_head=True)
    c.model.config = replace(c.model.config, item_head_candidates=4, exclude_history=True)
    requests = [Request(user_id=1, history=(int(ITEMS[i]), int(ITEMS[i + 5])), scenario="feed") for i in range(4)]
    items, beam_scores, head_scores, _ = beams_and_head_scores(c.model, c.encoder, c.trie, requests, beams=6)
    assert items.shape == (4, 10)  # 6 beams, then the head's 4 most likely items (-1 where already a beam)
    for mix in (0.5, 2.0):
        chosen = ranked_by(items, beam_scores, head_scores, mix, 6)
        served = GenerativeRetriever(c.model, c.encoder, c.trie, beams=6, item_head_mix=mix).retrieve(requests, 6)
        for row, (request, answer) in enumerate(zip(requests, served)):
            assert chosen[row][chosen[row] >= 0].tolist() == answer.item_ids.tolist()
            assert not set(answer.item_ids.tolist()) & set(request.history)


def test_a_teacher_is_named_and_a_missing_one_says_how_to_make_it(tmp_path, small_world):
    from genrec.align.teachers import load_teacher
    from genrec.data.splits import leave_one_out

    with pytest.raises(ValueError, match="teacher must be one of"):
        AlignConfig(teacher="popularity")
    with pytest.raises(ValueError, match="choose one"):
        AlignConfig(distill_encoder=True, distill_sid=True)
    assert not AlignConfig(teacher="sasrec", grpo_steps=0).needs_cascade
    assert AlignConfig(teacher="cascade", grpo_steps=0).needs_cascade
    split = leave_one_out(small_world.dataset.events)
    with pytest.raises(ValueError, match=r"SASRec, is missing.*genrec train --run .* --model sasrec"):
        load_teacher("sasrec", tmp_path, small_world.dataset, split)
    with pytest.raises(ValueError, match=r"the cascade, is missing.*genrec cascade train"):
        load_teacher("cascade", tmp_path, small_world.dataset, split)
