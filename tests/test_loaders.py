"""Every loader maps its source format into the canonical, validated dataset."""

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest

from genrec.data.loaders import load_amazon2014, load_esci, load_kuaisar, load_kuaisearch, load_p5_amazon, load_recbole
from genrec.data.loaders.amazon2014 import k_core
from genrec.data.loaders.download import DownloadError, download
from genrec.data.splits import build_requests, leave_one_out

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"public data copies not found at {SHARED} (a user's clone has none)")


@needs_shared
def test_p5_amazon_beauty_matches_the_published_counts_and_tiger_split():
    dataset = load_p5_amazon(SHARED / "amazon-beauty")
    assert dataset.counts() == {"items": 12101, "users": 22363, "events": 198502}
    split = leave_one_out(dataset.events)
    first_line = (SHARED / "amazon-beauty" / "sequential.txt").read_text().splitlines()[0].split()
    user, sequence = int(first_line[0]), [int(x) for x in first_line[1:]]
    requests, targets = build_requests(split, "test")
    by_user = {r.user_id: (r, t) for r, t in zip(requests, targets)}
    request, target = by_user[user]
    assert target == sequence[-1] and list(request.history) == sequence[:-1]
    assert dict(zip(split.valid.user_id, split.valid.item_id))[user] == sequence[-2]
    opi = dataset.items.set_index("item_id").loc[1]
    assert opi.brand == "OPI" and opi.category == ["Makeup", "Nails", "Nail Polish"]
    assert (dataset.items.title.str.len() > 0).all()  # the 7 empty titles got a fallback


@needs_shared
def test_recbole_ml100k_keeps_ratings_time_and_profiles():
    dataset = load_recbole(SHARED / "ml-100k")
    assert dataset.counts() == {"items": 1682, "users": 943, "events": 100000}
    toy_story = dataset.items[dataset.items.attributes.map(lambda a: a["source_id"]) == "1"].iloc[0]
    assert toy_story.title == "Toy Story" and toy_story.category[0] == "Animation"
    assert set(dataset.events.rating.unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert {"age", "gender", "occupation"} <= set(dataset.users.columns)
    assert (dataset.events.groupby("user_id").ts.apply(lambda t: t.is_monotonic_increasing)).all()


def test_recbole_maps_string_tokens_to_dense_ids_in_time_order():
    dataset = load_recbole(FIXTURES / "recbole" / "tiny")
    assert dataset.counts() == {"items": 4, "users": 2, "events": 4}
    source = dict(zip(dataset.items.item_id, dataset.items.attributes.map(lambda a: a["source_id"])))
    u1 = dataset.events[dataset.events.user_id == 1]
    assert [source[i] for i in u1.item_id] == ["b", "a"]  # sorted by timestamp, not file order
    assert sorted(dataset.items.item_id) == [1, 2, 3, 4]


def test_recbole_rejects_an_untyped_header(tmp_path):
    (tmp_path / "bad.inter").write_text("user_id\titem_id\nu\ti\n")
    with pytest.raises(ValueError, match="user_id.*expected one of"):
        load_recbole(tmp_path, "bad")


def test_amazon2014_applies_the_5_core_and_orders_by_time(tmp_path):
    for name in ("reviews", "meta"):
        with open(FIXTURES / "amazon2014" / f"{name}.json", "rb") as src, gzip.open(tmp_path / f"{name}.json.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    dataset = load_amazon2014(tmp_path / "reviews.json.gz", tmp_path / "meta.json.gz")
    assert dataset.counts() == {"items": 6, "users": 6, "events": 30}
    assert "B0RARE" not in set(dataset.items.attributes.map(lambda a: a["source_id"]))
    assert (dataset.events.groupby("user_id").ts.apply(lambda t: t.is_monotonic_increasing)).all()
    items = dataset.items.set_index(dataset.items.attributes.map(lambda a: a["source_id"]))
    assert items.loc["B0000001"].brand == "OPI" and items.loc["B0000001"].price == 8.5
    assert items.loc["B0000001"].category == ["Makeup", "Nails", "Nail Polish"]
    assert items.loc["B0000000"].title == "item B0000000"  # empty title → source id


def test_k_core_is_applied_until_stable():
    import pandas as pd

    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c"], "asin": ["x", "y", "x", "y", "x"]})
    assert set(k_core(frame, 2).user) == {"a", "b"}
    assert k_core(frame, 3).empty


def test_esci_turns_judgements_into_graded_search_events():
    dataset = load_esci(FIXTURES / "esci")
    events = dataset.events
    assert (events.scenario == "search").all() and events["query"].notna().all()
    assert len(events) == 6  # the jp example is filtered out
    by_title = dict(zip(dataset.items.item_id, dataset.items.title))
    red = events[events["query"] == "red nail polish"]
    assert {by_title[i]: a for i, a in zip(red.item_id, red.action)} == {
        "OPI Red Nail Lacquer": "order", "Essie Crimson Polish": "cart", "Garden Hose 50ft": "impression"}
    assert sorted(red.relevance) == [0, 2, 3]


def _copy_esci(tmp_path, edit_examples=None, edit_products=None):
    import pandas as pd

    for name, edit in (("examples", edit_examples), ("products", edit_products)):
        frame = pd.read_csv(FIXTURES / "esci" / f"shopping_queries_dataset_{name}.csv")
        (edit or (lambda f: f))(frame).to_csv(tmp_path / f"shopping_queries_dataset_{name}.csv", index=False)
    return tmp_path


def test_esci_rejects_a_bad_label_naming_file_column_and_row(tmp_path):
    def bad(frame):
        frame.loc[3, "esci_label"] = "X"  # the file's 4th row
        return frame

    with pytest.raises(ValueError, match=r"^shopping_queries_dataset_examples\.csv: column esci_label, row 4: 'X' is not one of E/S/C/I$"):
        load_esci(_copy_esci(tmp_path, edit_examples=bad))


@pytest.mark.parametrize("table, column", [("examples", "esci_label"), ("examples", "query"), ("products", "product_id")])
def test_esci_rejects_a_missing_column_naming_file_and_column(tmp_path, table, column):
    drop = {f"edit_{table}": lambda frame: frame.drop(columns=[column])}
    with pytest.raises(ValueError, match=rf"^shopping_queries_dataset_{table}\.csv: column {column} is missing"):
        load_esci(_copy_esci(tmp_path, **drop))


def test_kuaisearch_turns_graded_judgements_into_search_events():
    import pandas as pd

    dataset = load_kuaisearch(FIXTURES / "kuaisearch")
    events = dataset.events
    assert len(events) == 6 and (events.scenario == "search").all()
    titles = dict(zip(dataset.items.item_id, dataset.items.title))
    red = events[events["query"] == "红色指甲油"]
    assert {titles[i]: (a, r) for i, a, r in zip(red.item_id, red.action, red.relevance)} == {
        "显白正红色指甲油免烤快干": ("order", 3), "裸色指甲油温柔显白": ("cart", 2),
        "指甲油卸甲水大瓶": ("click", 1), "加厚园艺水管20米": ("impression", 0)}
    items = dataset.items.set_index("title")
    assert items.loc["显白正红色指甲油免烤快干"].brand == "甲色"
    assert pd.isna(items.loc["指甲油卸甲水大瓶"].brand)  # 无品牌, "no brand"
    assert "attr_value" not in items.loc["指甲油卸甲水大瓶"].attributes  # \N, the export's null
    assert items.loc["加厚园艺水管20米"].attributes["seller"] == "园丁五金"
    assert dataset.users.user_id.nunique() == 2  # one per query


def _kuaisearch_lines(tmp_path, edit):
    import json

    lines = [json.loads(line) for line in (FIXTURES / "kuaisearch" / "relevance.jsonl").read_text().splitlines()]
    edit(lines)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "relevance.jsonl").write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("label", [4, -1, "high", 2.5, None])
def test_kuaisearch_rejects_a_bad_label_naming_file_column_and_row(tmp_path, label):
    folder = _kuaisearch_lines(tmp_path, lambda lines: lines[4].update(label=label))
    with pytest.raises(ValueError, match=rf"^relevance\.jsonl: column label, row 5: {label!r} is not one of 0/1/2/3"):
        load_kuaisearch(folder)


@pytest.mark.parametrize("column", ["query", "item_title", "label"])
def test_kuaisearch_rejects_a_missing_column_naming_file_and_column(tmp_path, column):
    folder = _kuaisearch_lines(tmp_path, lambda lines: [line.pop(column) for line in lines])
    with pytest.raises(ValueError, match=rf"^relevance\.jsonl: column {column} is missing"):
        load_kuaisearch(folder)


def test_genrec_load_kuaisearch_writes_the_dataset_and_names_a_bad_row(tmp_path, capsys):
    from genrec.cli import main
    from genrec.data.dataset import Dataset

    assert main(["load", "kuaisearch", str(FIXTURES / "kuaisearch"), "--out", str(tmp_path / "data")]) == 0
    assert sorted(Dataset.load(tmp_path / "data").events.relevance) == [0, 0, 1, 2, 3, 3]
    folder = _kuaisearch_lines(tmp_path / "bad", lambda lines: lines[0].update(label="3+"))
    assert main(["load", "kuaisearch", str(folder), "--out", str(tmp_path / "bad_data")]) == 1
    assert "relevance.jsonl: column label, row 1: '3+' is not one of 0/1/2/3" in capsys.readouterr().err


def test_kuaisearch_rejects_an_empty_query_and_a_broken_line(tmp_path):
    folder = _kuaisearch_lines(tmp_path, lambda lines: lines[1].update(query=" "))
    with pytest.raises(ValueError, match=r"^relevance\.jsonl: column query, row 2: ' ' is empty"):
        load_kuaisearch(folder)
    (tmp_path / "relevance.jsonl").write_text('{"query": "a"}\n{not json\n')
    with pytest.raises(ValueError, match=r"relevance\.jsonl: line 2 is not valid JSON"):
        load_kuaisearch(tmp_path)


def test_kuaisar_interleaves_search_and_recommendation_per_user():
    dataset = load_kuaisar(FIXTURES / "kuaisar")
    events = dataset.events
    assert set(events.scenario) == {"search", "home_feed"}
    search = events[events.scenario == "search"]
    assert set(search["query"]) == {"w20 w34", "w7"}
    assert events[events.scenario == "home_feed"]["query"].isna().all()
    first_user = events[events.user_id == events.user_id.iloc[0]]
    assert first_user.ts.is_monotonic_increasing and set(first_user.scenario) == {"search", "home_feed"}
    items = dataset.items.set_index(dataset.items.attributes.map(lambda a: a["source_id"]))
    assert items.loc["104"].title == "w20 w34 w3" and items.loc["104"].category == ["Beauty", "Nails"]
    assert items.loc["102"].category == ["Food"]
    assert {"search_active_level", "rec_active_level"} <= set(dataset.users.columns)
    assert set(events.action) == {"click", "impression"}


def test_download_says_what_to_do_when_offline(tmp_path):
    with pytest.raises(DownloadError, match="place it at"):
        download("http://127.0.0.1:9/nothing.json.gz", tmp_path / "nothing.json.gz", timeout=2)
    assert not (tmp_path / "nothing.json.gz").exists()


@needs_shared
def test_p5_amazon_sports_matches_the_published_counts_and_keeps_brandless_paths():
    dataset = load_p5_amazon(SHARED / "amazon-sports")
    assert dataset.counts() == {"items": 18357, "users": 35598, "events": 296337}
    items = dataset.items.set_index("item_id")
    assert items.loc[1].brand == "Ghost" and items.loc[1].category[0] == "Hunting & Fishing"
    # `|Cycling|…`: an empty brand field; the root category must not be taken for the brand
    assert pd.isna(items.loc[156].brand) and items.loc[156].category[0] == "Cycling"


def _p5_folder(folder: Path, sequences: str) -> Path:
    (folder / "sequential.txt").write_text(sequences)
    (folder / "items.tsv").write_text("item_id\tasin\ttitle\tattributes\n1\tA1\tone\tX|Cat\n2\tA2\ttwo\tY|Cat\n")
    return folder


def test_p5_amazon_reads_a_well_formed_sequence_file(tmp_path):
    dataset = load_p5_amazon(_p5_folder(tmp_path, "1 1 2\n\n2 2 1 2\n"))
    assert dataset.counts() == {"items": 2, "users": 2, "events": 5}


@pytest.mark.parametrize("bad_line, bad_field", [
    ("3 1 x2", "'x2'"),          # a non-integer item id
    ("u3 1 2", "'u3'"),          # a non-integer user id
    ("3 1 2.0", "'2.0'"),        # a float is not an id
    ("3 1 ²", "'²'"),            # str.isdigit accepts it; int() does not
    ("3 1 ١٢", "'١٢'"),          # int() would read it as 12
])
def test_p5_amazon_rejects_a_non_integer_id_naming_file_and_line(tmp_path, bad_line, bad_field):
    _p5_folder(tmp_path, f"1 1 2\n2 2 1\n{bad_line}\n")
    with pytest.raises(ValueError) as error:
        load_p5_amazon(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "sequential.txt") in message and "line 3" in message and bad_field in message


def test_p5_amazon_rejects_a_user_with_no_items_naming_the_line(tmp_path):
    _p5_folder(tmp_path, "1 1 2\n7\n")
    with pytest.raises(ValueError, match=r"sequential\.txt, line 2: .*no items"):
        load_p5_amazon(tmp_path)
