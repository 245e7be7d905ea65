"""Every way a dataset can break the schema is refused at the door, with a message that says where and why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec.cli import main as genrec_main
from genrec.data.dataset import Dataset, DatasetError


def _good() -> Dataset:
    items = pd.DataFrame({
        "item_id": np.array([1, 2, 3], dtype=np.int64),
        "title": ["Red Leather Boots", "Blue Cotton Tee", "Steel Kettle"],
        "category": [["Shoes", "Boots", "Ankle Boots"], ["Clothing", "Tops", "T-Shirt"], ["Home", "Kitchen", "Kettle"]],
        "attributes": [{"colour": "red"}, {"colour": "blue", "material": "cotton"}, {}],
        "brand": ["Velax", None, "Kormo"],
        "price": [79.99, 12.5, None],
        "origin": ["human", "ai", "human"],
    })
    users = pd.DataFrame({"user_id": np.array([1, 2], dtype=np.int64), "age_band": ["18-24", "55+"]})
    events = pd.DataFrame({
        "user_id": np.array([1, 1, 2, 2], dtype=np.int64),
        "ts": np.array([10, 11, 20, 21], dtype=np.int64),
        "session_id": np.array([1, 1, 2, 2], dtype=np.int64),
        "scenario": ["search", "search", "home_feed", "home_feed"],
        "query": ["red boots", "red boots", None, None],
        "item_id": np.array([1, 1, 2, 3], dtype=np.int64),
        "action": ["impression", "click", "impression", "impression"],
        "position": np.array([0, 0, 0, 1], dtype=np.int32),
    })
    return Dataset(items, users, events)


def _refused(dataset: Dataset, file: str, column: str | None, *expected_words: str) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        dataset.validate("data")
    error = caught.value
    message = str(error)
    assert f"{file}.parquet" in message
    assert error.column == column
    if column:
        assert f"'{column}'" in message
    for word in expected_words:
        assert word in message, f"{word!r} not in {message!r}"
    return error


# --- rules, checked on frames in memory --------------------------------------------------------


def test_the_reference_dataset_is_valid():
    _good().validate()


@pytest.mark.parametrize("table,column", [("items", "title"), ("items", "origin"), ("users", "user_id"), ("events", "action")])
def test_a_missing_column_is_named_with_the_expected_columns(table, column):
    dataset = _good()
    setattr(dataset, table, getattr(dataset, table).drop(columns=column))
    error = _refused(dataset, table, column, "column is missing", "expected columns")
    assert "item_id" in error.expected or "user_id" in error.expected


def test_a_mistyped_id_column_is_refused_as_not_integers():
    dataset = _good()
    dataset.items["item_id"] = ["a", "b", "c"]
    _refused(dataset, "items", "item_id", "expected integers")


def test_a_mistyped_price_column_is_refused_as_not_numbers():
    dataset = _good()
    dataset.items["price"] = ["cheap", "12", None]
    _refused(dataset, "items", "price", "expected numbers")


def test_a_null_in_a_required_column_is_refused():
    dataset = _good()
    dataset.events.loc[1, "scenario"] = None
    _refused(dataset, "events", "scenario", "null values", "a value in every row")


@pytest.mark.parametrize("table,column", [("items", "item_id"), ("users", "user_id")])
def test_duplicate_ids_are_refused_and_shown(table, column):
    dataset = _good()
    frame = getattr(dataset, table)
    frame.loc[1, column] = frame.loc[0, column]
    error = _refused(dataset, table, column, "duplicate ids", "each id once")
    assert len(error.rows) == 2


def test_id_zero_is_reserved_for_padding():
    dataset = _good()
    dataset.items.loc[2, "item_id"] = 0
    dataset.events.loc[3, "item_id"] = 0
    _refused(dataset, "items", "item_id", "ids below 1", "0 is the padding id")


def test_events_pointing_to_an_unknown_user_are_refused():
    dataset = _good()
    dataset.events.loc[2, "user_id"] = 99
    error = _refused(dataset, "events", "user_id", "unknown users", "users.parquet")
    assert error.rows["user_id"].tolist() == [99]


def test_events_pointing_to_an_unknown_item_are_refused():
    dataset = _good()
    dataset.events.loc[3, "item_id"] = 42
    error = _refused(dataset, "events", "item_id", "unknown items", "items.parquet")
    assert "42" in str(error)


def test_an_unknown_action_is_refused_with_the_allowed_ones():
    dataset = _good()
    dataset.events.loc[1, "action"] = "purchase"
    _refused(dataset, "events", "action", "unknown actions", "impression", "order", "purchase")


def test_a_negative_price_is_refused():
    dataset = _good()
    dataset.items.loc[0, "price"] = -1.0
    _refused(dataset, "items", "price", "negative prices", "≥ 0")


@pytest.mark.parametrize("title", ["", "   "])
def test_an_empty_title_is_refused(title):
    dataset = _good()
    dataset.items.loc[1, "title"] = title
    _refused(dataset, "items", "title", "empty titles", "non-empty title")


def test_an_unknown_origin_is_refused():
    dataset = _good()
    dataset.items.loc[2, "origin"] = "robot"
    _refused(dataset, "items", "origin", "unknown origins", "'human'", "'ai'")


def test_a_position_below_minus_one_is_refused():
    dataset = _good()
    dataset.events.loc[0, "position"] = -5
    _refused(dataset, "events", "position", "positions below -1")


def test_an_empty_query_is_refused_but_null_means_recommendation():
    dataset = _good()
    dataset.events.loc[0, "query"] = "  "
    _refused(dataset, "events", "query", "empty queries", "null for recommendation")


def test_category_must_be_a_list_of_strings():
    dataset = _good()
    dataset.items["category"] = ["Shoes/Boots", ["Clothing"], ["Home"]]
    _refused(dataset, "items", "category", "not lists")


def test_attributes_must_be_a_mapping():
    dataset = _good()
    dataset.items["attributes"] = [["red"], {}, {}]
    _refused(dataset, "items", "attributes", "key→value")


# --- rules, checked on files -------------------------------------------------------------------


def test_save_then_load_gives_back_the_same_tables(tmp_path):
    dataset = _good()
    dataset.save(tmp_path / "data")
    loaded = Dataset.load(tmp_path / "data")
    assert loaded.items["category"].tolist() == dataset.items["category"].tolist()
    assert loaded.items["attributes"].tolist() == dataset.items["attributes"].tolist()
    assert loaded.users["age_band"].tolist() == ["18-24", "55+"]
    pd.testing.assert_frame_equal(loaded.events, dataset.events, check_dtype=False)


def _write_with(tmp_path: Path, table: str, change) -> Path:
    root = tmp_path / "data"
    _good().save(root)
    arrow = pq.read_table(root / f"{table}.parquet")
    pq.write_table(change(arrow), root / f"{table}.parquet")
    return root


def test_load_names_a_missing_file(tmp_path):
    root = tmp_path / "data"
    _good().save(root)
    (root / "users.parquet").unlink()
    with pytest.raises(DatasetError, match=r"users\.parquet: file is missing"):
        Dataset.load(root)


def test_load_names_a_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        Dataset.load(tmp_path / "nowhere")


def test_load_names_a_column_missing_from_the_file(tmp_path):
    root = _write_with(tmp_path, "events", lambda t: t.drop_columns(["session_id"]))
    with pytest.raises(DatasetError) as caught:
        Dataset.load(root)
    assert caught.value.column == "session_id" and "events.parquet" in str(caught.value)
    assert "column is missing" in str(caught.value)


def test_load_names_a_column_of_the_wrong_type(tmp_path):
    def price_as_text(t: pa.Table) -> pa.Table:
        index = t.schema.get_field_index("price")
        return t.set_column(index, "price", pa.array(["1", "2", "3"]))

    root = _write_with(tmp_path, "items", price_as_text)
    with pytest.raises(DatasetError) as caught:
        Dataset.load(root)
    assert caught.value.column == "price"
    assert "items.parquet" in str(caught.value) and "type string" in str(caught.value) and "double" in str(caught.value)


def test_load_reports_a_null_id_instead_of_crashing(tmp_path):
    def null_user(t: pa.Table) -> pa.Table:
        index = t.schema.get_field_index("user_id")
        return t.set_column(index, "user_id", pa.array([1, None, 2, 2], type=pa.int64()))

    root = _write_with(tmp_path, "events", null_user)
    with pytest.raises(DatasetError) as caught:
        Dataset.load(root)
    assert caught.value.column == "user_id" and "null values" in str(caught.value)


def test_load_reports_a_file_that_is_not_parquet(tmp_path):
    root = tmp_path / "data"
    _good().save(root)
    (root / "items.parquet").write_text("item_id,title\n1,boots\n")
    with pytest.raises(DatasetError) as caught:
        Dataset.load(root)
    assert "items.parquet" in str(caught.value) and "Parquet" in str(caught.value)


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_validate_exits_zero_on_a_good_dataset(tmp_path, capsys):
    _good().save(tmp_path / "data")
    assert genrec_main(["data", "validate", str(tmp_path / "data")]) == 0
    assert "valid dataset: 3 items, 2 users, 4 events" in capsys.readouterr().out


def test_cli_validate_exits_non_zero_and_prints_the_reason(tmp_path, capsys):
    root = _write_with(tmp_path, "events", lambda t: t.set_column(
        t.schema.get_field_index("action"), "action", pa.array(["impression", "buy", "impression", "impression"])))
    assert genrec_main(["data", "validate", str(root)]) == 1
    err = capsys.readouterr().err
    assert "events.parquet" in err and "'action'" in err and "unknown actions" in err and "buy" in err


# --- atomic writes -----------------------------------------------------------------------------


def test_a_crash_while_saving_keeps_the_previous_dataset_and_leaves_no_half_written_folder(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _good().save(root)
    before = {p.name: p.read_bytes() for p in root.iterdir()}

    calls = {"n": 0}
    real_write = pq.write_table

    def write_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    changed = _good()
    changed.items["title"] = ["A", "B", "C"]
    monkeypatch.setattr(pq, "write_table", write_then_crash)
    with pytest.raises(OSError, match="disk full"):
        changed.save(root)
    monkeypatch.undo()

    assert calls["n"] == 2
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert Dataset.load(root).items["title"].tolist() == _good().items["title"].tolist()


def test_a_crash_while_saving_a_new_dataset_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        _good().save(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_an_invalid_dataset_before_touching_the_disk(tmp_path):
    dataset = _good()
    dataset.items.loc[0, "price"] = -3.0
    with pytest.raises(DatasetError, match="negative prices"):
        dataset.save(tmp_path / "data")
    assert not (tmp_path / "data").exists()


# --- what the server cannot afford, and data that only looks valid ------------------------------


def test_an_item_id_far_beyond_the_item_count_is_refused_with_how_to_remap():
    dataset = _good()
    dataset.items.loc[2, "item_id"] = 2**31  # three items: one slot per id up to 2**31 would be 16 GiB a table
    dataset.events.loc[3, "item_id"] = 2**31
    error = _refused(dataset, "items", "item_id", "largest id 2147483648", "3 items", "genrec data remap")
    assert error.rows["item_id"].tolist() == [2**31]


def test_a_user_id_far_beyond_the_user_count_is_refused():
    dataset = _good()
    dataset.users.loc[1, "user_id"] = 10**9
    dataset.events.loc[[2, 3], "user_id"] = 10**9
    _refused(dataset, "users", "user_id", "largest id 1000000000", "2 users", "genrec data remap")


def test_ids_with_a_few_gaps_are_accepted():
    dataset = _good()
    dataset.items["item_id"] = np.array([1, 5, 9], dtype=np.int64)
    dataset.events["item_id"] = np.array([1, 1, 5, 9], dtype=np.int64)
    dataset.validate()


def test_remap_ids_makes_ids_dense_keeps_the_old_ones_and_the_same_interactions():
    from genrec.data.loaders.canonical import remap_ids

    dataset = _good()
    dataset.items["item_id"] = np.array([7, 2**31, 40], dtype=np.int64)
    dataset.events["item_id"] = np.array([7, 7, 2**31, 40], dtype=np.int64)
    dataset.users["user_id"] = np.array([10**9, 3], dtype=np.int64)
    dataset.events["user_id"] = np.array([10**9, 10**9, 3, 3], dtype=np.int64)
    dense = remap_ids(dataset)
    dense.validate()
    assert dense.items["item_id"].tolist() == [1, 3, 2]  # ordered by the old id
    assert dense.items["original_item_id"].tolist() == [7, 2**31, 40]
    assert dense.users["user_id"].tolist() == [2, 1] and dense.users["original_user_id"].tolist() == [10**9, 3]
    old_item = dict(zip(dense.items["item_id"], dense.items["original_item_id"]))
    old_user = dict(zip(dense.users["user_id"], dense.users["original_user_id"]))
    assert [old_item[i] for i in dense.events["item_id"]] == dataset.events["item_id"].tolist()
    assert [old_user[u] for u in dense.events["user_id"]] == dataset.events["user_id"].tolist()
    assert dense.items["title"].tolist() == dataset.items["title"].tolist()


def test_cli_remap_writes_a_dataset_that_validates(tmp_path, capsys):
    def with_ids(ids: list[int]):
        return lambda t: t.set_column(t.schema.get_field_index("item_id"), "item_id", pa.array(ids, type=pa.int64()))

    root = _write_with(tmp_path, "items", with_ids([1, 2, 2**31]))
    arrow = pq.read_table(root / "events.parquet")
    pq.write_table(with_ids([1, 1, 2, 2**31])(arrow), root / "events.parquet")
    assert genrec_main(["data", "validate", str(root)]) == 1
    assert "genrec data remap" in capsys.readouterr().err
    assert genrec_main(["data", "remap", str(root), "--out", str(tmp_path / "dense")]) == 0
    dense = Dataset.load(tmp_path / "dense")
    assert dense.items["item_id"].tolist() == [1, 2, 3] and dense.events["item_id"].tolist() == [1, 1, 2, 3]
    assert dense.items["original_item_id"].tolist() == [1, 2, 2**31]


def test_a_dataset_without_events_is_refused():
    dataset = _good()
    dataset.events = dataset.events.iloc[:0]
    _refused(dataset, "events", None, "no events", "at least one event")


@pytest.mark.parametrize("price", [np.inf, -np.inf])
def test_an_infinite_price_is_refused(price):
    dataset = _good()
    dataset.items.loc[1, "price"] = price
    _refused(dataset, "items", "price", "non-finite prices", "a finite price")


def test_a_non_finite_image_vector_is_refused():
    dataset = _good()
    dataset.items["image_vector"] = [np.zeros(4, np.float32), np.array([0, np.nan, 0, 0], np.float32), None]
    _refused(dataset, "items", "image_vector", "non-finite values", "finite numbers")


def test_duplicate_event_rows_are_refused_and_shown():
    dataset = _good()
    dataset.events = pd.concat([dataset.events, dataset.events.iloc[[1]]], ignore_index=True)
    error = _refused(dataset, "events", None, "duplicate event rows", "each event once")
    assert len(error.rows) == 2


def test_a_negative_timestamp_is_refused():
    dataset = _good()
    dataset.events.loc[0, "ts"] = -5
    _refused(dataset, "events", "ts", "negative timestamps", "seconds since the epoch")


def test_a_timestamp_in_the_future_is_refused_as_probably_milliseconds():
    dataset = _good()
    dataset.events.loc[2, "ts"] = 1_767_225_600_000  # 2026-01-01 in milliseconds
    _refused(dataset, "events", "ts", "timestamps in the future", "milliseconds")


def test_every_problem_is_listed_at_once_each_with_its_file_and_column():
    dataset = _good()
    dataset.items.loc[0, "price"] = np.inf
    dataset.items.loc[2, "origin"] = "robot"
    dataset.users.loc[1, "user_id"] = 0
    dataset.events.loc[0, "ts"] = -1
    dataset.events.loc[1, "action"] = "purchase"
    dataset.events.loc[3, "item_id"] = 42
    with pytest.raises(DatasetError) as caught:
        dataset.validate("data")
    error = caught.value
    found = {(Path(e.file).name, e.column) for e in error.errors}
    assert found >= {("items.parquet", "price"), ("items.parquet", "origin"), ("users.parquet", "user_id"),
                     ("events.parquet", "ts"), ("events.parquet", "action"), ("events.parquet", "item_id")}
    message = str(error)
    for words in ("non-finite prices", "unknown origins", "ids below 1", "negative timestamps", "purchase", "42"):
        assert words in message


def test_load_lists_the_problems_of_every_file_at_once(tmp_path):
    root = tmp_path / "data"
    _good().save(root)
    (root / "users.parquet").unlink()
    arrow = pq.read_table(root / "events.parquet")
    pq.write_table(arrow.drop_columns(["session_id"]), root / "events.parquet")
    with pytest.raises(DatasetError) as caught:
        Dataset.load(root)
    message = str(caught.value)
    assert "users.parquet: file is missing" in message and "'session_id': column is missing" in message


def test_a_pandas_round_trip_of_a_valid_dataset_stays_valid(tmp_path):
    root = tmp_path / "data"
    _good().save(root)
    frames = {table: pd.read_parquet(root / f"{table}.parquet") for table in ("items", "users", "events")}
    assert isinstance(frames["items"]["attributes"].iloc[1], list)  # pyarrow gives a map as (key, value) pairs
    dataset = Dataset(**frames)
    dataset.validate()
    assert dataset.items["attributes"].tolist() == _good().items["attributes"].tolist()
    dataset.save(tmp_path / "again")
    assert Dataset.load(tmp_path / "again").items["attributes"].tolist() == _good().items["attributes"].tolist()


def test_attribute_pairs_that_are_not_pairs_are_still_refused():
    dataset = _good()
    dataset.items["attributes"] = [[("colour", "red", "extra")], {}, {}]
    _refused(dataset, "items", "attributes", "key→value")
