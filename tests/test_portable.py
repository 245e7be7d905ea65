"""A trained generative retriever saved as a self-contained folder answers exactly as the run it came from."""

import json
import shutil

import numpy as np
import pytest
import torch

import genrec
from genrec.cli import main
from genrec.model import GenerativeConfig
from genrec.model.retriever import GenerativeRetriever
from genrec.portable import from_pretrained, save_pretrained
from genrec.retrieval import Request
from genrec.sid.table import SidTable
from genrec.train.generative import GenerativeTrainConfig, train_generative
from genrec.train.loop import TrainConfig

TINY = GenerativeConfig(d_model=32, n_heads=2, d_ff=64, dropout=0.0, n_encoder_layers=1, n_decoder_layers=1,
                        max_short=4, max_long=4)


@pytest.fixture(scope="module")
def trained_run(small_world, tmp_path_factory):
    """A run folder with a tiny generative model trained for a few steps."""
    run = tmp_path_factory.mktemp("portable") / "run"
    items = small_world.dataset.items.sort_values("item_id")
    item_ids = items["item_id"].to_numpy()
    index = np.arange(len(item_ids))
    codes = np.stack([(index // 8 ** (3 - lv)) % 8 for lv in range(4)], axis=1)
    small_world.save(run / "data")
    SidTable(item_ids, codes, [8] * 4).save(run / "sid")
    torch.manual_seed(0)
    config = GenerativeTrainConfig(
        model=TINY, train=TrainConfig(steps=4, batch_size=32, eval_every=2, checkpoint_every=2, warmup_steps=1, progress=False),
        valid_requests=20, beams=10)
    train_generative(run, config, progress=False)
    return run


@pytest.fixture(scope="module")
def requests(small_world):
    from genrec.data.splits import build_requests, leave_one_out

    built, _ = build_requests(leave_one_out(small_world.dataset.events), "test")
    return [r for r in built if r.is_search][:5] + [r for r in built if not r.is_search and r.history][:5]


def test_a_copied_folder_answers_the_same_items_and_scores_without_the_run(trained_run, requests, tmp_path, capsys):
    expected = GenerativeRetriever.from_run(trained_run).retrieve(requests, k=10)
    assert main(["export", "--run", str(trained_run), "--out", str(tmp_path / "model")]) == 0
    assert "genrec.load" in capsys.readouterr().out
    copied = tmp_path / "elsewhere"
    shutil.move(tmp_path / "model", copied)
    files = {p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "encoder.json", "sid/sids.parquet", "catalog.parquet", "users.parquet",
            "README.md"} <= files
    assert not any(name.endswith(".pt") for name in files)  # no pickles
    assert (copied / "model.safetensors").stat().st_mode & 0o044 == 0o044  # others may read what is shared
    hidden = trained_run.with_name("hidden")
    trained_run.rename(hidden)  # the run is gone while the folder loads and answers
    try:
        answers = from_pretrained(copied).retrieve(requests, k=10)
    finally:
        hidden.rename(trained_run)
    for got, want in zip(answers, expected):
        np.testing.assert_array_equal(got.item_ids, want.item_ids)
        np.testing.assert_array_equal(got.scores, want.scores)
    card = (copied / "README.md").read_text()
    manifest = json.loads((trained_run / "train" / "generative" / "manifest.json").read_text())
    assert f"{manifest['result']['best_metric']:.4f}" in card and "genrec train --run RUN --model generative --config config.json" in card
    config = json.loads((copied / "config.json").read_text())
    assert config["model"]["d_model"] == TINY.d_model and config["train"]["steps"] == 4


def test_genrec_load_searches_and_recommends_in_original_ids_with_titles(trained_run, small_world, requests, tmp_path):
    from genrec.portable import export_run

    folder = export_run(trained_run, tmp_path / "model")
    model = genrec.load(folder)
    items = small_world.dataset.items.set_index("item_id")
    direct = GenerativeRetriever.from_run(trained_run)
    search = next(r for r in requests if r.is_search)
    hits = model.search(search.query, user=search.user_id, k=5, ts=search.ts)
    want = direct.retrieve([Request(user_id=search.user_id, query=search.query, scenario="search", ts=search.ts)], k=5)[0]
    assert [h.internal_id for h in hits] == want.item_ids.tolist()
    assert [h.score for h in hits] == pytest.approx(want.scores.tolist(), abs=0)
    assert [h.title for h in hits] == [items.loc[i, "title"] for i in want.item_ids]
    rec = next(r for r in requests if not r.is_search)
    history = list(rec.history[-3:])
    hits = model.recommend(user=rec.user_id, history=history, k=5, ts=rec.ts)
    want = direct.retrieve([Request(user_id=rec.user_id, ts=rec.ts, history=tuple(history),
                                    history_actions=("click",) * 3, history_ts=(rec.ts,) * 3)], k=5)[0]
    assert [h.internal_id for h in hits] == want.item_ids.tolist()
    with pytest.raises(ValueError, match="not in this model's catalog"):
        model.recommend(history=[10**9])


def test_a_folder_without_weights_says_how_to_make_one(tmp_path):
    with pytest.raises(ValueError, match="genrec export --run RUN"):
        from_pretrained(tmp_path)


def test_save_pretrained_without_a_catalog_answers_in_genrec_ids(trained_run, requests, tmp_path):
    retriever = GenerativeRetriever.from_run(trained_run)
    folder = save_pretrained(retriever, tmp_path / "bare")
    model = genrec.load(folder)
    rec = next(r for r in requests if not r.is_search)
    hits = model.recommend(user=rec.user_id, history=list(rec.history), k=3, ts=rec.ts)
    assert all(isinstance(h.item_id, int) and h.title is None for h in hits) and len(hits) == 3
    assert "No catalog was saved" in (folder / "README.md").read_text()
