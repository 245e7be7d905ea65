"""A search's BM25 keyword term (`genrec.model.keywords`): the index scores items exactly as the BM25
baseline does, saves and loads, and in the generative retriever reorders a search's beams so the item
its query's words name comes first, on the same scale `score` gives, leaving recommendations alone;
the align stage chooses its weight on validation and the aligned folder carries the index."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from genrec.baselines.bm25 import BM25Retriever
from genrec.decode.trie import PrefixTrie
from genrec.features import item_text
from genrec.model import GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inputs import RequestEncoder
from genrec.model.keywords import FILE, KeywordIndex
from genrec.model.retriever import GenerativeRetriever
from genrec.retrieval import Request
from tests.test_align_objectives import CODES, ITEMS, TINY, WORDS

TITLES = ["red running shoes", "blue running shorts", "red wool scarf", "green garden hose",
          "wireless earbuds with case", "the red and the blue", "running", "scarf scarf scarf warm"]


def test_scores_are_the_bm25_baselines_for_every_item_and_query(small_world):
    items = small_world.dataset.items
    n_slots = int(items["item_id"].max()) + 1
    index = KeywordIndex.build(items["item_id"].to_numpy(), item_text(items), n_slots)
    baseline = BM25Retriever().fit(small_world.dataset, np.ones(n_slots))
    queries = [str(t) for t in items["title"].iloc[:5]] + ["red shoes", "the and of", "zzz unknown"]
    for query in queries:
        np.testing.assert_allclose(index.score_all(query), baseline.score_query(query), rtol=1e-5, atol=1e-5)
    assert not index.score_all("the and of").any() and not index.score_all(None).any()


def test_scores_of_given_items_with_missing_items_and_queries():
    ids = np.arange(3, 3 + len(TITLES)) * 2  # ids with gaps: rows are item ids, not positions
    index = KeywordIndex.build(ids, TITLES, int(ids.max()) + 1)
    all_red = index.score_all("red scarf")
    assert all_red[ids[2]] == all_red.max() > 0  # "red wool scarf" holds both words
    assert all_red[ids[3]] == 0 and all_red[0] == 0  # no word in common; not an item
    assert all_red[ids[7]] > all_red[ids[0]]  # three scarves beat one red
    items = np.array([[ids[2], ids[3], -1, 10_000], [ids[2], ids[0], ids[1], ids[2]]])
    scores = index.scores(["red scarf", None], items)
    assert scores[0, 0] == pytest.approx(all_red[ids[2]]) and (scores[0, 1:] == 0).all()  # -1, outside: 0
    assert (scores[1] == 0).all()  # no query
    twice = index.scores(["red scarf"], np.array([[ids[7], ids[2], ids[7], -1]]))[0]  # an item asked for twice
    np.testing.assert_allclose(twice, [all_red[ids[7]], all_red[ids[2]], all_red[ids[7]], 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        index.scores(["red"], items)


def test_the_index_saves_and_loads_the_same_scores(tmp_path):
    ids = np.arange(1, 1 + len(TITLES))
    index = KeywordIndex.build(ids, TITLES, 20)
    path = index.save(tmp_path / FILE)
    loaded = KeywordIndex.load(path)
    for query in ("red running", "scarf", "wireless case"):
        np.testing.assert_array_equal(loaded.score_all(query), index.score_all(query))
    assert loaded.n_slots == 20 and [p.name for p in tmp_path.iterdir()] == [FILE]  # no temporary left


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="texts"):
        KeywordIndex.build(np.array([1, 2]), ["a b"], 5)
    with pytest.raises(ValueError, match="unique"):
        KeywordIndex.build(np.array([1, 1]), ["red", "blue"], 5)
    with pytest.raises(ValueError, match="must be in"):
        KeywordIndex.build(np.array([1, 5]), ["red", "blue"], 5)
    with pytest.raises(ValueError, match="k1"):
        KeywordIndex.build(np.array([1]), ["red"], 5, b=2.0)
    with pytest.raises(ValueError, match="keyword_match must be ≥ 0"):
        GenerativeConfig(keyword_match=-1.0)


def _searches_naming_their_worst_items():
    """A tiny untrained model (16 items, 4 × 4 codes) and 4 searches whose query word appears in the
    text of one item each, an item the model ranks among its worst for that search:
    (model, encoder, trie, searches, targets, keyword index)."""
    torch.manual_seed(3)
    spec = InputSpec(codebook_sizes=(4, 4), query_vocab_size=64, user_vocab_size=64, n_item_slots=int(ITEMS.max()) + 1)
    config = GenerativeConfig(item_head=True, item_head_text=False, item_head_mix=1.0, **TINY)
    encoder = RequestEncoder(config, spec, ITEMS, CODES).fit(WORDS)
    model = GenerativeModel(config, spec).eval()
    model.item_head.set_known_items(torch.from_numpy(ITEMS))
    trie = PrefixTrie.from_codes(CODES, ITEMS, [4, 4])
    searches = [Request(user_id=1, query=w, scenario="search") for w in WORDS[:4]]
    everything = GenerativeRetriever(model, encoder, trie, beams=16).retrieve(searches, 16)
    targets: list[int] = []
    for ranked in everything:  # each search's worst item that is not already another's target
        targets.append(next(int(i) for i in ranked.item_ids[::-1] if int(i) not in targets))
    texts = {item: f"item {item} plain" for item in ITEMS.tolist()}
    for word, target in zip(WORDS, targets):
        texts[target] = f"{word} item {target}"
    keywords = KeywordIndex.build(ITEMS, [texts[i] for i in ITEMS.tolist()], int(ITEMS.max()) + 1)
    return model, encoder, trie, searches, targets, keywords


def test_the_keyword_term_puts_the_named_item_first_on_the_scale_score_gives():
    model, encoder, trie, searches, targets, keywords = _searches_naming_their_worst_items()
    recommendation = Request(user_id=2, history=(int(ITEMS[0]),))
    plain = GenerativeRetriever(model, encoder, trie, beams=16)
    for precision in (None, "fp32"):
        weighed = GenerativeRetriever(model, encoder, trie, beams=16, precision=precision, keywords=keywords,
                                      keyword_match=10.0)
        found = weighed.retrieve(searches + [recommendation], 10)
        assert [int(r.item_ids[0]) for r in found[:4]] == targets
        items = np.stack([r.item_ids for r in found])
        np.testing.assert_allclose(weighed.score(searches + [recommendation], items),
                                   np.stack([r.scores for r in found]), rtol=1e-4, atol=1e-4)
        assert found[4].item_ids.tolist() == plain.retrieve([recommendation], 10)[0].item_ids.tolist()
    assert not any(int(r.item_ids[0]) == t for r, t in zip(plain.retrieve(searches, 10), targets))
    no_head = replace(model.config, item_head_mix=0.0)  # without the head the term still reorders the beams
    model.config = no_head
    bare = GenerativeRetriever(model, encoder, trie, beams=16, keywords=keywords, keyword_match=10.0)
    assert bare._head() is None
    assert [int(r.item_ids[0]) for r in bare.retrieve(searches, 3)] == targets
    with pytest.raises(ValueError, match="needs a keyword index"):
        GenerativeRetriever(model, encoder, trie, beams=16, keyword_match=1.0)
    with pytest.raises(ValueError, match="keyword_match must be ≥ 0"):
        GenerativeRetriever(model, encoder, trie, beams=16, keywords=keywords, keyword_match=-1.0)


def test_align_chooses_the_keyword_weight_and_the_served_model_reads_its_index(tmp_path):
    from genrec.align.head_mix import choose_head_mixes
    from genrec.portable import from_pretrained, save_pretrained
    from genrec.serve.model import fastest_exact

    model, encoder, trie, searches, targets, keywords = _searches_naming_their_worst_items()
    choice = choose_head_mixes(model, encoder, trie, searches, np.array(targets), beams=16, candidates=(1.0,),
                               keywords=keywords, keyword_matches=(0.0, 10.0, 20.0))
    assert choice.search_keyword_match == 10.0  # ties go to the smaller weight
    assert [row.search_recall for row in choice.table] == [0.0, 1.0, 1.0]
    without = choose_head_mixes(model, encoder, trie, searches, np.array(targets), beams=16, candidates=(1.0,),
                                keyword_matches=(0.0, 10.0))
    assert without.search_keyword_match == 0.0 and len(without.table) == 1  # no index: only 0 is tried

    model.config = replace(model.config, keyword_match=choice.search_keyword_match)  # what align saves
    served = GenerativeRetriever(model, encoder, trie, beams=16, keywords=keywords)
    exact = fastest_exact(served)
    assert exact.precision == "fp32" and exact.keywords is keywords and exact.keyword_match == 10.0
    folder = save_pretrained(served, tmp_path / "model")
    assert (folder / FILE).exists()
    loaded = from_pretrained(folder)
    assert loaded.keyword_match == 10.0
    assert [int(r.item_ids[0]) for r in loaded.retrieve(searches, 10)] == targets


def test_the_align_stage_saves_the_index_beside_a_model_that_weighs_keywords(tmp_path, small_world):
    from genrec.align.config import AlignConfig
    from genrec.align.stage import keyword_index, write_aligned

    model, *_ = _searches_naming_their_worst_items()
    index = keyword_index(small_world.dataset)
    item = small_world.dataset.items.iloc[3]
    assert index.score_all(str(item["title"]))[int(item["item_id"])] == index.score_all(str(item["title"])).max() > 0
    base = tmp_path / "run" / "train" / "generative"
    base.mkdir(parents=True)
    (base / "config.json").write_text('{"model": {}}')
    (base / "encoder.json").write_text("{}")
    model.config = replace(model.config, keyword_match=0.5)
    out = write_aligned(tmp_path / "run", model, base, AlignConfig(), {}, {}, None, index)
    assert (out / FILE).exists() and (out / "manifest.json").exists()
    assert '"keyword_match": 0.5' in (out / "config.json").read_text()
    np.testing.assert_array_equal(KeywordIndex.load(out / FILE).score_all("red"), index.score_all("red"))
    model.config = replace(model.config, keyword_match=0.0)
    out = write_aligned(tmp_path / "run", model, base, AlignConfig(), {}, {}, None, None)
    assert not (out / FILE).exists()  # a re-aligned model without the term carries no stale index
