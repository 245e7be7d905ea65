"""KHQE: keywords from titles and queries, keyword-enhanced vectors, the keyword level (relevance
constraint) and the OPQ last level."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pandas as pd
import pytest

from genrec import cli
from genrec.config_file import load_config
from genrec.data.dataset import Dataset
from genrec.features import item_vectors as item_vectors_module
from genrec.features import text as text_module
from genrec.pipeline import PipelineConfig
from genrec.sid import RQKMeansTokenizer, SidTable, build_sids
from genrec.sid.build import SidConfig
from genrec.sid.keyword_level import keyword_values, query_code_agreement
from genrec.sid.keyword_vectors import keyword_vectors, with_keywords
from genrec.sid.keywords import KeywordScorer, catalogue_keywords, logged_query_tokens, tokenize
from genrec.sid.opq import OPQLastLevel
from tests.test_sid import fake_text_encoder, tiny_run

BRANDS = ["Astix", "Ternward", "Moxus", "Korax"]
SCENTS = ["lavender", "rose", "mint"]


def search_world(root, users: int = 12) -> Dataset:
    """24 sunscreens (4 brands × 3 scents, half 'organic') and 16 teas; each user searches
    'lavender sunscreen' three times and clicks a different lavender sunscreen each time
    (the first search is training data, the last two are held out by leave-one-out)."""
    titles, categories, brands = [], [], []
    for i in range(24):
        organic = "Organic " if i % 2 == 0 else ""
        titles.append(f"{BRANDS[i % 4]} {organic}{SCENTS[(i // 4) % 3].title()} Sunscreen Lotion")
        categories.append(["Beauty", "Sun", "Sunscreen"])
        brands.append(BRANDS[i % 4])
    for i in range(16):
        titles.append(f"{BRANDS[i % 4]} Organic {['Mint', 'Ginger'][i % 2]} Herbal Tea")
        categories.append(["Grocery", "Drinks", "Tea"])
        brands.append(BRANDS[i % 4])
    n = len(titles)
    items = pd.DataFrame({
        "item_id": np.arange(1, n + 1, dtype=np.int64), "title": titles, "category": categories,
        "attributes": [{} for _ in range(n)], "brand": brands, "price": np.full(n, 10.0), "origin": ["human"] * n,
    })
    lavender = [i + 1 for i in range(24) if (i // 4) % 3 == 0]  # 8 items
    rows = []
    for user in range(1, users + 1):
        for step in range(3):
            item = lavender[(user + 3 * step) % len(lavender)]
            rows.append((user, 100 * user + step, 10 * user + step, "search", "lavender sunscreen", item, "click", 0))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "session_id", "scenario", "query", "item_id", "action", "position"])
    events = events.astype({"user_id": np.int64, "ts": np.int64, "session_id": np.int64, "item_id": np.int64, "position": np.int32})
    dataset = Dataset(items, pd.DataFrame({"user_id": np.arange(1, users + 1, dtype=np.int64)}), events)
    dataset.save(root / "data")
    return dataset


def word_encoder(texts, batch_size=256, progress=True):
    """Stands in for MiniLM on keywords: one fixed random unit vector per word."""
    vectors = np.stack([np.random.default_rng(sum(map(ord, t)) * 31 + len(t)).normal(size=32) for t in texts])
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


# ----- keywords ------------------------------------------------------------------------------------


def test_tokenize_drops_stop_words_shopping_fillers_and_sizes():
    assert tokenize("The BEST cheap Frying-Pan for 2 cooks, 28cm, XL") == ["frying", "pan", "cooks", "xl"]
    assert tokenize(None) == []


def test_keyword_scorer_ranks_a_category_distinctive_word_over_a_common_one():
    # "black" is as frequent in the pan leaf as "skillet", but every leaf has it
    documents = [["black", "skillet"], ["black", "skillet", "steel"], ["black", "pan"],
                 ["black", "shirt"], ["black", "shirt", "cotton"], ["black", "tee"]]
    scorer = KeywordScorer(top_k=2, min_count=1).fit(documents, np.array([0, 0, 0, 1, 1, 1]))
    assert scorer.score(0, "skillet") > scorer.score(0, "black") > 0
    assert [w for w, _ in scorer.ranked_words(0)][0] == "skillet"
    assert scorer.keywords(1)[0][0] == "skillet" and len(scorer.keywords(1)) == 2
    assert scorer.score(1, "skillet") == 0.0  # never seen in the shirt leaf
    rare = KeywordScorer(min_count=2).fit(documents, np.array([0, 0, 0, 1, 1, 1]))
    assert "steel" not in rare.vocabulary_  # once in the catalogue: a typo or a serial number to the scorer
    with pytest.raises(ValueError, match="classes"):
        KeywordScorer().fit(documents, np.array([0, 1]))
    with pytest.raises(ValueError, match="top_k"):
        KeywordScorer(top_k=0)


def test_logged_queries_feed_the_items_they_found_in_training_only(tmp_path):
    dataset = search_world(tmp_path, users=1)
    tokens = logged_query_tokens(dataset, dataset.items["item_id"].to_numpy())
    # user 1 clicked lavender items 5, 17, 5 … the first search is training, the last two held out
    found = [i for i, words in enumerate(tokens) if words]
    assert len(found) == 1 and tokens[found[0]] == ["lavender", "sunscreen"]
    scorer, leaves = catalogue_keywords(dataset, dataset.items["item_id"].to_numpy())
    assert leaves == ["Beauty > Sun > Sunscreen", "Grocery > Drinks > Tea"]
    assert "lavender" in scorer.documents_[found[0]]
    titles_only, _ = catalogue_keywords(dataset, dataset.items["item_id"].to_numpy(), queries=False)
    assert sum(titles_only.documents_[found[0]].count(w) for w in ("lavender", "sunscreen")) == 2  # the title's own


# ----- keyword-enhanced vectors -------------------------------------------------------------------------


def test_keyword_enhanced_vectors_move_toward_the_keyword_embedding_with_the_weight(monkeypatch):
    monkeypatch.setattr(text_module, "encode_texts", word_encoder)
    rng = np.random.default_rng(0)
    text = rng.normal(size=(3, 32)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    keys = keyword_vectors([[("skillet", 0.5), ("steel", 0.1)], [("shirt", 1.0)], []])
    assert np.allclose(np.linalg.norm(keys[:2], axis=1), 1.0) and not keys[2].any()
    np.testing.assert_allclose(keys[1], word_encoder(["shirt"])[0], atol=1e-6)
    cosines = [float((with_keywords(text, keys, w)[:2] * keys[:2]).sum(1).mean()) for w in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(a < b for a, b in zip(cosines, cosines[1:])) and cosines[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(with_keywords(text, keys, 0.0), text, atol=1e-6)
    np.testing.assert_allclose(with_keywords(text, keys, 0.9)[2], text[2])  # no keywords: the text vector stays
    with pytest.raises(ValueError, match="keyword_weight"):
        with_keywords(text, keys, 1.5)


def test_keyword_vectors_are_cached_under_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "encode_texts", word_encoder)
    first = keyword_vectors([[("rose", 1.0)]], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("keyword_vectors-*.npz"))) == 1
    monkeypatch.setattr(text_module, "encode_texts", lambda *a, **k: pytest.fail("encoded twice"))
    np.testing.assert_array_equal(keyword_vectors([[("rose", 1.0)]], cache_dir=tmp_path), first)


# ----- the keyword level: the relevance constraint ---------------------------------------------------------


def test_the_keyword_level_is_a_decision_list_items_holding_the_best_keyword_share_it():
    documents = [["pan", "steel", "black"], ["pan", "steel"], ["pan", "black"], ["pan", "red"], ["pan"], ["shirt", "black"]]
    scorer = KeywordScorer(min_count=1).fit(documents, np.array([0, 0, 0, 0, 0, 1]))
    values, ranked = keyword_values(scorer, codes=3)
    assert "pan" not in ranked[0]  # carried by every pan: the category already says it
    assert len(ranked[0]) == 2 and ranked[0][0] == "steel"
    assert values[:2] == ["steel", "steel"]  # both hold the leaf's best keyword, "black" or not
    assert values[2] == ranked[0][1] and values[3:5] == ["", ""]
    _, without = keyword_values(scorer, codes=3, exclude=[["steel"]] + [[]] * 5)
    assert "steel" not in without[0]
    with pytest.raises(ValueError, match="keyword_codes"):
        keyword_values(scorer, codes=1)


def test_the_keyword_level_groups_the_items_a_query_matches_where_the_brand_level_splits_them(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    dataset = search_world(tmp_path)
    lavender = np.array(["Lavender" in t for t in dataset.items["title"]])
    brand = build_sids(tmp_path, levels=1, codebook_size=4, prefix=("category", "brand"), progress=False, out=tmp_path / "b")
    keyword = build_sids(tmp_path, levels=1, codebook_size=4, prefix=("category", "keyword", "brand"), progress=False,
                         keyword_codes=4)
    assert len(np.unique(keyword.codes[lavender, :2], axis=0)) == 1  # all eight share category and keyword
    assert len(np.unique(brand.codes[lavender, :2], axis=0)) == 4  # one per brand
    assert len(np.unique(keyword.codes, axis=0)) == len(keyword)
    before = query_code_agreement(brand.codes, brand.item_ids, dataset, depths=(1, 2))
    after = query_code_agreement(keyword.codes, keyword.item_ids, dataset, depths=(1, 2), seed=0)
    assert before["searches"]["all"] == after["searches"]["all"] == 24  # 12 users × 2 held-out searches
    assert after["depth"]["all"][1] == before["depth"]["all"][1] == 1.0
    assert after["depth"]["all"][2] == 1.0 > before["depth"]["all"][2]
    assert after["shuffled"]["all"][2] < 0.6  # the same cell sizes cut blind to the query scatter the lavender items
    assert after["searches"]["narrowing"] == 24 and after["depth"]["narrowing"][2] == 1.0  # "lavender" is no leaf name
    saved = json.loads((tmp_path / "sid" / "keywords.json").read_text())["ranked"]
    assert saved["Beauty > Sun > Sunscreen"][0] == "lavender" and "astix" not in saved["Beauty > Sun > Sunscreen"]


# ----- OPQ last level ---------------------------------------------------------------------------------------------


def correlated_toy_set(n: int = 3000, seed: int = 0) -> np.ndarray:
    """8-d vectors whose variance lies along random directions, so every coordinate slice mixes them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8)) * np.array([4, 3, 2, 1.5, 0.3, 0.2, 0.1, 0.1])
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    return (z @ rotation).astype(np.float32)


def test_opq_codes_reconstruct_better_than_plain_pq_on_correlated_dimensions():
    x = correlated_toy_set()
    errors = {}
    for rotate in (True, False):
        level = OPQLastLevel(16, subspaces=2, rotate=rotate, seed=0).fit(x)
        codes = level.assign(x)
        assert codes.shape == (len(x), 2) and codes.min() >= 0 and codes.max() < 16
        errors[rotate] = float(((level.reconstruct(codes) - x) ** 2).sum(1).mean())
    assert errors[True] < 0.75 * errors[False]
    rotation = OPQLastLevel(16, 2).fit(x).rotation_
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(8), atol=1e-4)  # a rotation: lengths kept


def test_one_seed_gives_one_rotation_whatever_the_thread_count():
    x = np.random.default_rng(3).normal(size=(2000, 24)).astype(np.float32)
    before = faiss.omp_get_max_threads()
    rotations = []
    try:
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            rotations.append(OPQLastLevel(16, 2, seed=0).fit(x).rotation_)
            assert faiss.omp_get_max_threads() == threads  # the caller's setting is given back
    finally:
        faiss.omp_set_num_threads(before)
    np.testing.assert_array_equal(rotations[0], rotations[1])


def test_opq_pads_a_width_the_subspaces_do_not_divide_and_refuses_bad_input():
    x = correlated_toy_set(n=500)[:, :7]
    level = OPQLastLevel(8, subspaces=2).fit(x)
    assert level.reconstruct(level.assign(x)).shape == (500, 7)
    with pytest.raises(ValueError, match="columns"):
        level.assign(x[:, :6])
    with pytest.raises(ValueError, match="codebook_size"):
        OPQLastLevel(1)
    with pytest.raises(ValueError, match="opq_subspaces"):
        OPQLastLevel(8, subspaces=0)
    with pytest.raises(ValueError, match="not fitted"):
        OPQLastLevel(8).assign(x)


def test_build_sids_with_keyword_vectors_and_an_opq_last_level(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    monkeypatch.setattr(text_module, "encode_texts", word_encoder)
    search_world(tmp_path)
    table = build_sids(tmp_path, levels=1, codebook_size=4, prefix=("category",), progress=False, last_level="opq",
                       last_level_size=4, opq_subspaces=2, keyword_weight=0.5)
    assert table.codebook_sizes[:4] == [2, 4, 4, 4]  # 2 leaves, the residual level, 2 OPQ codes
    assert len(np.unique(table.codes, axis=0)) == len(table) == 40
    assert SidTable.load(tmp_path / "sid").codebook_sizes == table.codebook_sizes
    with np.load(tmp_path / "sid" / "last_level.npz") as saved:
        assert saved["rotation"].shape == (32, 32) and saved["codebooks"].shape == (2, 4, 16)
    assert len(list((tmp_path / "features").glob("keyword_vectors-*.npz"))) == 1
    config = json.loads((tmp_path / "sid" / "config.json").read_text())
    assert config["keyword_weight"] == 0.5 and config["last_level"] == "opq"
    build_sids(tmp_path, levels=1, codebook_size=4, prefix=("category",), progress=False, out=tmp_path / "plain")
    enhanced = RQKMeansTokenizer.load(tmp_path / "sid" / "tokenizer.npz").codebooks_
    plain = RQKMeansTokenizer.load(tmp_path / "plain" / "tokenizer.npz").codebooks_
    assert not np.allclose(enhanced, plain, atol=1e-3)  # the residual level quantized the mixed vectors


@pytest.mark.parametrize("options, field", [
    (dict(prefix=("keyword", "category")), "needs 'category' before it"),
    (dict(prefix=("category",), keyword_codes=8), "keyword_codes"),
    (dict(prefix=("category", "keyword"), keyword_codes=1), "keyword_codes"),
    (dict(opq_subspaces=2), "opq_subspaces"),
    (dict(last_level="balanced", opq_subspaces=2), "opq_subspaces"),
    (dict(last_level="pq"), "last_level"),
    (dict(last_level_size=8), "last_level_size"),
    (dict(keyword_weight=1.5), "keyword_weight"),
    (dict(keyword_weight=0.3, views=("text", "image")), "views"),
])
def test_bad_or_incompatible_khqe_options_name_the_field(options, field):
    with pytest.raises(ValueError, match=field):
        SidConfig(**options)


def test_sid_command_takes_the_khqe_options_and_refuses_an_unknown_last_level(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = tiny_run(tmp_path)
    assert cli.main(["sid", "--run", str(run), "--levels", "1", "--codebook-size", "4", "--prefix", "category",
                     "--last-level", "opq", "--last-level-size", "4", "--opq-subspaces", "3"]) == 0
    assert SidTable.load(run / "sid").codebook_sizes[2:5] == [4, 4, 4]
    with pytest.raises(SystemExit):
        cli.main(["sid", "--run", str(run), "--last-level", "pq"])
    assert "invalid choice: 'pq'" in capsys.readouterr().err
    assert cli.main(["sid", "--run", str(run), "--prefix", "keyword"]) == 2  # refused before anything is embedded
    assert "needs 'category' before it" in capsys.readouterr().err


def test_the_khqe_options_come_from_a_config_file_and_a_bad_combination_is_refused(tmp_path):
    (tmp_path / "khqe.yaml").write_text("sid: {prefix: [category, brand, keyword], keyword_weight: 0.3, keyword_codes: 8,\n"
                                        "      last_level: opq, opq_subspaces: 3, keyword_queries: false}\n")
    sid = load_config(PipelineConfig, tmp_path / "khqe.yaml").sid
    assert sid.prefix == ("category", "brand", "keyword") and (sid.keyword_weight, sid.keyword_codes) == (0.3, 8)
    assert (sid.last_level, sid.opq_subspaces, sid.keyword_queries, sid.levels) == ("opq", 3, False, 1)
    assert load_config(PipelineConfig, None, ["sid.last_level=opq"]).sid.last_level == "opq"
    (tmp_path / "bad.yaml").write_text("sid: {keyword_codes: 8}\n")  # the demo's prefix has no keyword level
    with pytest.raises(ValueError, match="keyword_codes"):
        load_config(PipelineConfig, tmp_path / "bad.yaml")
