"""Semantic ID tokenizers, the codebook-size rule, the SID report and the `sid` stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genrec import cli
from genrec.data.dataset import Dataset
from genrec.features import item_vectors as item_vectors_module
from genrec.sid import (
    RQKMeansTokenizer,
    RQVAETokenizer,
    SidTable,
    adaptive_codebook_size,
    append_disambiguation_level,
    build_sids,
    sid_report,
    spread_last_level,
)

FAST_RQVAE = dict(latent_dim=8, hidden_dims=(32,), epochs=12, batch_size=64)


def clustered_vectors(n: int = 400, clusters: int = 10, dim: int = 16, spread: float = 0.15, seed: int = 0):
    """Unit vectors around `clusters` well-separated centres; returns (vectors [n, dim], cluster [n])."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    cluster = rng.integers(0, clusters, n)
    x = centres[cluster] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), cluster


def make_tokenizer(kind: str, **params):
    return RQKMeansTokenizer(**params) if kind == "rqkmeans" else RQVAETokenizer(**FAST_RQVAE, **params)


# ----- codebook size and disambiguation ----------------------------------------------------------


@pytest.mark.parametrize(
    "n_items, levels, expected",
    [(512, 3, 8), (513, 3, 16), (600, 3, 16), (2_000, 3, 16), (10_000, 3, 32), (1_000_000, 3, 128), (5, 3, 8), (10**9, 2, 256)],
)
def test_adaptive_codebook_size_is_the_smallest_power_of_two_covering_the_catalog_clamped(n_items, levels, expected):
    assert adaptive_codebook_size(n_items, levels) == expected


def test_adaptive_codebook_size_never_gives_a_2k_catalog_a_256_code_and_always_has_room():
    for n in range(1, 70_000, 997):
        size = adaptive_codebook_size(n, 3)
        assert size & (size - 1) == 0 and 8 <= size <= 256
        assert size**3 >= n
        assert size == 8 or (size // 2) ** 3 < n
    assert adaptive_codebook_size(2_000, 3) < 256


def test_tokenizer_without_codebook_size_uses_the_adaptive_rule():
    x, _ = clustered_vectors(n=600)
    tokenizer = RQKMeansTokenizer(levels=3).fit(x)
    assert tokenizer.codebook_size_ == adaptive_codebook_size(600, 3) == 16
    assert tokenizer.codebook_sizes_[:3] == [16, 16, 16]


def test_disambiguation_level_numbers_items_sharing_a_prefix_in_row_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 3], [1, 2]])
    full = append_disambiguation_level(codes)
    np.testing.assert_array_equal(full[:, :2], codes)
    np.testing.assert_array_equal(full[:, 2], [0, 0, 1, 0, 2])


def test_spread_last_level_gives_siblings_distinct_codes_while_the_parent_has_free_ones():
    parents = np.array([[0], [0], [0], [1], [1]])
    distances = np.array(
        [
            [0.0, 1.0, 2.0],  # most confident in parent 0: keeps code 0
            [0.1, 0.5, 0.9],  # wants 0 (taken) → its next nearest, 1
            [0.2, 0.3, 0.4],  # wants 0, then 1 (taken) → 2
            [0.5, 0.0, 1.0],  # parent 1: code 1
            [0.9, 0.1, 0.2],  # wants 1 (taken by its sibling) → 2
        ]
    )
    np.testing.assert_array_equal(spread_last_level(parents, distances), [0, 1, 2, 1, 2])
    # more children than codes: once all are taken, the rest take their nearest code
    full = spread_last_level(np.zeros((4, 0), dtype=np.int64), np.array([[0, 1.0], [0, 2.0], [0.5, 3.0], [2.0, 0.9]]))
    np.testing.assert_array_equal(full, [0, 1, 0, 1])


@pytest.mark.parametrize("kind", ["rqkmeans", "rqvae"])
def test_spreading_the_last_level_never_collides_more_than_nearest_codes(kind):
    x, _ = clustered_vectors(n=400, clusters=6, spread=0.02)  # tight clusters: many near-duplicates
    plain = make_tokenizer(kind, levels=2, codebook_size=8, spread_last_level=False).fit_transform(x)
    spread = make_tokenizer(kind, levels=2, codebook_size=8, spread_last_level=True).fit_transform(x)
    np.testing.assert_array_equal(spread[:, 0], plain[:, 0])
    before, after = sid_report(plain, 2)["collision_rate"], sid_report(spread, 2)["collision_rate"]
    assert after < before
    assert sid_report(spread, 2)["disambiguation_size"] <= sid_report(plain, 2)["disambiguation_size"]
    # a parent with at most 8 children has no collision left
    groups = pd.Series(range(len(spread))).groupby(spread[:, 0]).size()
    for parent, size in groups.items():
        if size <= 8:
            assert len(np.unique(spread[spread[:, 0] == parent, 1])) == size


# ----- both tokenizers ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rqkmeans", "rqvae"])
def test_tokenizer_gives_every_item_a_distinct_full_sid_within_its_codebooks(kind):
    x, _ = clustered_vectors()
    x = np.concatenate([x, x[:5]])  # exact duplicates must still get distinct SIDs
    tokenizer = make_tokenizer(kind, levels=2, codebook_size=8)
    codes = tokenizer.fit_transform(x)
    assert codes.dtype == np.int64 and codes.shape == (len(x), 3)
    assert len(np.unique(codes, axis=0)) == len(x)
    assert (codes >= 0).all() and (codes < np.asarray(tokenizer.codebook_sizes_)).all()
    assert tokenizer.codebook_sizes_[-1] == codes[:, -1].max() + 1


@pytest.mark.parametrize("kind", ["rqkmeans", "rqvae"])
def test_tokenizer_is_deterministic_for_a_seed(kind):
    x, _ = clustered_vectors()
    first = make_tokenizer(kind, levels=2, codebook_size=8, seed=3).fit_transform(x)
    second = make_tokenizer(kind, levels=2, codebook_size=8, seed=3).fit_transform(x)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("kind", ["rqkmeans", "rqvae"])
def test_saved_and_loaded_tokenizer_transforms_identically(kind, tmp_path):
    x, _ = clustered_vectors()
    tokenizer = make_tokenizer(kind, levels=2, codebook_size=8).fit(x)
    tokenizer.save(tmp_path / "tokenizer.npz")
    loaded = type(tokenizer).load(tmp_path / "tokenizer.npz")
    fresh, _ = clustered_vectors(n=50, seed=9)
    np.testing.assert_array_equal(loaded.transform(x), tokenizer.transform(x))
    np.testing.assert_array_equal(loaded.transform(fresh), tokenizer.transform(fresh))
    assert loaded.codebook_sizes_ == tokenizer.codebook_sizes_
    assert loaded.get_params() == tokenizer.get_params()


def test_rqkmeans_first_level_never_mixes_well_separated_clusters():
    x, cluster = clustered_vectors(n=400, clusters=6, spread=0.05)
    codes = RQKMeansTokenizer(levels=2, codebook_size=16).fit_transform(x)
    for code in np.unique(codes[:, 0]):
        assert len(np.unique(cluster[codes[:, 0] == code])) == 1


def test_rqkmeans_residual_levels_reduce_quantization_error():
    x, _ = clustered_vectors(n=400, spread=0.3)
    tokenizer = RQKMeansTokenizer(levels=3, codebook_size=8).fit(x)
    codes = tokenizer.transform(x)
    residual, errors = x.copy(), []
    for level in range(3):
        residual = residual - tokenizer.codebooks_[level][codes[:, level]]
        errors.append(float((residual**2).sum(1).mean()))
    assert errors[0] > errors[1] > errors[2]


def test_rqvae_reconstruction_loss_decreases_and_no_dead_codes_remain_after_reset():
    x, _ = clustered_vectors(n=400, clusters=4, spread=0.2)  # 4 clusters, 16 codes: many start dead
    tokenizer = RQVAETokenizer(levels=2, codebook_size=16, **FAST_RQVAE).fit(x)
    losses = tokenizer.reconstruction_loss_
    assert len(losses) == FAST_RQVAE["epochs"]
    assert losses[-1] < 0.5 * losses[0]
    assert sum(tokenizer.dead_codes_reset_) > 0
    codes = tokenizer.transform(x)
    for level in range(2):
        assert len(np.unique(codes[:, level])) == 16


# ----- the report --------------------------------------------------------------------------------


def test_sid_report_numbers_equal_a_direct_count_on_a_hand_made_code_array():
    codes = np.array(
        [
            [0, 1, 0],
            [0, 1, 1],
            [0, 1, 2],
            [0, 2, 0],
            [1, 0, 0],
            [1, 0, 1],
            [3, 3, 0],
            [3, 2, 0],
        ]
    )
    report = sid_report(codes, levels=2, codebook_sizes=[4, 4, 3])
    assert report["n_items"] == 8
    assert report["collision_rate"] == pytest.approx(5 / 8)  # (0,1)×3 and (1,0)×2
    assert report["leaf_prefixes"] == 5
    assert report["items_per_leaf_max"] == 3
    assert report["items_per_leaf_p99"] == pytest.approx(np.percentile([3, 1, 2, 1, 1], 99))
    assert report["disambiguation_size"] == 3
    level0, level1 = report["per_level"]
    assert (level0["used"], level0["usage"]) == (3, 0.75)  # codes 0, 1, 3 of 4
    assert (level1["used"], level1["usage"]) == (4, 1.0)
    p0 = np.array([4, 2, 2]) / 8
    assert level0["entropy_bits"] == pytest.approx(-(p0 * np.log2(p0)).sum())  # 1.5 bits
    assert level0["normalized_entropy"] == pytest.approx(1.5 / 2)
    p1 = np.array([2, 3, 2, 1]) / 8
    assert level1["entropy_bits"] == pytest.approx(-(p1 * np.log2(p1)).sum())


def test_sid_report_without_collisions_is_zero():
    codes = append_disambiguation_level(np.array([[0, 0], [0, 1], [1, 0]]))
    report = sid_report(codes, levels=2)
    assert report["collision_rate"] == 0.0 and report["disambiguation_size"] == 1


# ----- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rqkmeans", "rqvae"])
def test_bad_input_raises_value_error_naming_the_field(kind):
    x, _ = clustered_vectors(n=100)
    tokenizer = make_tokenizer(kind, levels=2, codebook_size=8)
    with pytest.raises(ValueError, match="not fitted"):
        tokenizer.transform(x)
    with pytest.raises(ValueError, match="vectors must be 2-d"):
        tokenizer.fit(x[0])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="vectors holds NaN"):
        tokenizer.fit(bad)
    with pytest.raises(ValueError, match="vectors must have at least one row"):
        tokenizer.fit(x[:0])
    tokenizer.fit(x)
    with pytest.raises(ValueError, match="vectors has 15 columns; expected 16"):
        tokenizer.transform(x[:, :15])
    with pytest.raises(ValueError, match="levels"):
        make_tokenizer(kind, levels=0).fit(x)
    with pytest.raises(ValueError, match="codebook_size"):
        make_tokenizer(kind, codebook_size=1).fit(x)


def test_bad_report_and_table_input_raises_value_error_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="levels"):
        sid_report(np.zeros((4, 3), dtype=np.int64), levels=5)
    with pytest.raises(ValueError, match="codes must hold integers"):
        sid_report(np.zeros((4, 3)), levels=2)
    with pytest.raises(ValueError, match="codebook_sizes"):
        sid_report(np.array([[0, 9]]), levels=2, codebook_sizes=[4, 4])
    with pytest.raises(ValueError, match="item_ids holds duplicates"):
        SidTable(np.array([1, 1]), np.array([[0, 0], [0, 1]]))
    with pytest.raises(ValueError, match="codebook_sizes"):
        SidTable(np.array([1, 2]), np.array([[0, 0], [0, 1]]), [1, 1])
    with pytest.raises(ValueError, match="sids.parquet"):
        SidTable.load(tmp_path)
    with pytest.raises(ValueError, match="item_ids holds ids without a SID"):
        SidTable(np.array([1, 2]), np.array([[0, 0], [0, 1]])).codes_of(np.array([3]))


# ----- the table and the stage -------------------------------------------------------------------


def test_sid_table_round_trips_through_parquet(tmp_path):
    table = SidTable(np.array([7, 3, 9]), np.array([[0, 1, 0], [2, 0, 0], [0, 1, 1]]), [4, 2, 2])
    table.save(tmp_path)
    loaded = SidTable.load(tmp_path)
    np.testing.assert_array_equal(loaded.item_ids, [7, 3, 9])
    np.testing.assert_array_equal(loaded.codes, table.codes)
    assert loaded.codebook_sizes == [4, 2, 2]
    np.testing.assert_array_equal(loaded.codes_of(np.array([9, 7])), [[0, 1, 1], [0, 1, 0]])
    assert json.loads((tmp_path / "manifest.json").read_text())["codebook_sizes"] == [4, 2, 2]


def tiny_run(root, n_items: int = 120):
    categories = [["Sports", "Shoes"], ["Home", "Kitchen"], ["Toys", "Blocks"], ["Books", "Fiction"]]
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int64),
            "title": [f"item {i}" for i in range(n_items)],
            "category": [categories[i % 4] for i in range(n_items)],
            "attributes": [{"size": str(i % 3)} for i in range(n_items)],
            "brand": [None] * n_items,
            "price": np.full(n_items, 10.0),
            "origin": ["human"] * n_items,
        }
    )
    users = pd.DataFrame({"user_id": np.array([1], dtype=np.int64)})
    events = pd.DataFrame(
        {
            "user_id": np.array([1], dtype=np.int64),
            "ts": np.array([0], dtype=np.int64),
            "session_id": np.array([1], dtype=np.int64),
            "scenario": ["home_feed"],
            "query": [None],
            "item_id": np.array([1], dtype=np.int64),
            "action": ["click"],
            "position": np.array([0], dtype=np.int32),
        }
    )
    Dataset(items, users, events).save(root / "data")
    return root


def fake_text_encoder(texts, batch_size=256, progress=True, **where):
    """Stands in for MiniLM: the same text always gets the same vector, texts of one category sit together."""
    vectors = []
    for text in texts:
        category = text.split("category: ")[1].split(" |")[0]
        centre = np.random.default_rng(sum(map(ord, category))).normal(size=32)
        noise = np.random.default_rng(sum(map(ord, text)) * 7919 + len(text)).normal(size=32)
        vectors.append(centre + 0.3 * noise)
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_build_sids_writes_a_loadable_table_report_and_manifest_and_is_reproducible(tmp_path, monkeypatch, method):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = tiny_run(tmp_path)
    table = build_sids(run, method=method, levels=2, seed=1, epochs=5, progress=False)
    sid = run / "sid"
    for name in ("sids.parquet", "sid_report.md", "sid_report.json", "tokenizer.npz", "config.json", "manifest.json"):
        assert (sid / name).exists(), name
    loaded = SidTable.load(sid)
    np.testing.assert_array_equal(loaded.item_ids, np.arange(1, 121))
    np.testing.assert_array_equal(loaded.codes, table.codes)
    assert loaded.codebook_sizes == table.codebook_sizes and table.codebook_sizes[:2] == [16, 16]  # adaptive: 120 ** (1/2) → 16
    assert len(np.unique(table.codes, axis=0)) == 120
    report = json.loads((sid / "sid_report.json").read_text())
    assert report["collision_rate"] == sid_report(table.codes, 2)["collision_rate"]
    assert "collision rate" in (sid / "sid_report.md").read_text()
    assert json.loads((sid / "config.json").read_text())["method"] == method

    again = build_sids(run, method=method, levels=2, seed=1, epochs=5, progress=False, out=tmp_path / "again")
    np.testing.assert_array_equal(again.codes, table.codes)


def test_sid_and_embed_commands_start_from_the_demo_and_read_a_config_file_and_set(tmp_path, monkeypatch, capsys):
    """`genrec sid --run RUN` alone builds the demo's SIDs; a file, `--set` and the options layer on top
    (an option wins), and every bad setting comes back in one error before anything is embedded."""
    from dataclasses import asdict

    from genrec.sid.config import DEMO_SIDS, SidConfig

    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = tiny_run(tmp_path)
    (tmp_path / "embed.yaml").write_text("batch_size: 64\nviews: [text]\n")
    assert cli.main(["embed", "--run", str(run), "--config", str(tmp_path / "embed.yaml"), "--set", "device=auto"]) == 0
    embedded = json.loads((run / "features" / "config.json").read_text())
    assert (embedded["batch_size"], embedded["views"], embedded["device"]) == (64, ["text"], "auto")

    assert cli.main(["sid", "--run", str(run)]) == 0
    demo = json.loads(json.dumps(asdict(SidConfig(**DEMO_SIDS))))
    assert json.loads((run / "sid" / "config.json").read_text()) == demo
    assert demo["prefix"] == ["category", "brand"] and demo["levels"] == 1

    (tmp_path / "sid.toml").write_text('levels = 2\nprefix = ["category"]\nseed = 5\n')
    assert cli.main(["sid", "--run", str(run), "--config", str(tmp_path / "sid.toml"), "--set", "seed=3",
                     "--levels", "1", "--out", str(tmp_path / "other")]) == 0
    made = json.loads((tmp_path / "other" / "config.json").read_text())
    assert (made["prefix"], made["seed"], made["levels"]) == (["category"], 3, 1)  # file < --set < option
    assert cli.main(["sid", "--run", str(run), "--config", str(run / "sid" / "config.json"),
                     "--out", str(tmp_path / "again")]) == 0  # a run's saved config reads back
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == demo

    capsys.readouterr()
    assert cli.main(["sid", "--run", str(run), "--set", "levles=2", "--set", "method=kmeans", "--device", "gpu"]) == 2
    error = capsys.readouterr().err
    assert "3 problems" in error and "did you mean 'levels'" in error
    assert "method must be one of" in error and "device must be 'auto' or a torch device" in error
    assert cli.main(["embed", "--run", str(run), "--set", "device=gpu", "--set", "model="]) == 2
    assert "2 problems" in capsys.readouterr().err


def test_sid_command_writes_run_sid(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = tiny_run(tmp_path)
    assert cli.main(["embed", "--run", str(run)]) == 0
    assert len(list((run / "features").glob("item_vectors-*.npz"))) == 1
    assert cli.main(["sid", "--run", str(run), "--method", "rqkmeans", "--levels", "2"]) == 0
    assert "collision rate" in capsys.readouterr().out
    assert len(SidTable.load(run / "sid")) == 120
    with pytest.raises(ValueError, match="method"):
        build_sids(run, method="kmeans")
