"""Your own CSV/Parquet export → a validated dataset, with column and action mappings."""

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from genrec.cli import main
from genrec.data.dataset import Dataset, DatasetError
from genrec.data.loaders import load_csv

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_readme_ten_lines_load_validate_and_describe(tmp_path, monkeypatch, capsys):
    section = _readme_section("Your data in ten lines")
    csv = re.search(r"```csv\n(.*?)```", section, re.S).group(1)
    commands = [line for line in re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines() if line.strip()]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text(csv)
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "genrec"
        assert main(argv[1:]) == 0, line
    assert "events" in capsys.readouterr().out
    dataset = Dataset.load(tmp_path / "shop" / "data")
    events = dataset.events
    assert len(events) == 4 and sorted(events.action) == ["cart", "click", "click", "order"]
    assert events["query"].notna().sum() == 1 and (events.scenario == "search").sum() == 1
    assert sorted(dataset.users.source_id) == ["c1", "c2"]


def test_iso_timestamps_and_a_purchase_action_load(tmp_path):
    (tmp_path / "events.csv").write_text(
        "customer_id,sku,event,time\n"
        "u9,X,purchase,2024-05-01T00:00:10Z\n"
        "u9,Y,view,2024-05-01T00:00:00Z\n"
        "u7,X,view,1714521600\n")
    (tmp_path / "items.csv").write_text("sku,name,category,colour\nX,Red pen,Office > Pens,red\nY,Blue pad,Office > Paper,\nZ,Unsold,Office,\n")
    dataset = load_csv(tmp_path / "events.csv", tmp_path / "items.csv",
                       columns={"user": "customer_id", "item": "sku", "action": "event", "ts": "time", "title": "name"})
    items = dataset.items.set_index(dataset.items.attributes.map(lambda a: a["source_id"]))
    assert items.loc["X", "title"] == "Red pen" and items.loc["X", "category"] == ["Office", "Pens"]
    assert items.loc["X", "attributes"]["colour"] == "red" and "colour" not in items.loc["Y", "attributes"]
    assert len(items) == 3 and sorted(dataset.items.item_id) == [1, 2, 3]  # an item without events stays in the catalog
    user = dict(zip(dataset.users.source_id, dataset.users.user_id))["u9"]
    mine = dataset.events[dataset.events.user_id == user]
    assert mine.ts.tolist() == [1714521600, 1714521610]  # sorted by time, ISO → seconds since the epoch (UTC)
    source = dict(zip(items.item_id, items.index))
    assert [source[i] for i in mine.item_id] == ["Y", "X"] and mine.action.tolist() == ["click", "order"]


def test_actions_can_be_remapped_and_parquet_reads_like_csv(tmp_path):
    frame = pd.DataFrame({"user_id": [5, 5, 6], "item_id": [10, 11, 10], "action": ["view", "view", "buy"],
                          "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])})
    frame.to_parquet(tmp_path / "events.parquet")
    dataset = load_csv(tmp_path / "events.parquet", actions={"view": "impression"})
    assert sorted(dataset.events.action) == ["impression", "impression", "order"]
    assert dataset.events.ts.min() == 1704067200


def test_an_unmapped_action_is_one_clear_error_naming_the_word(tmp_path):
    (tmp_path / "events.csv").write_text("user,item,action\na,x,view\na,y,wishlist\nb,x,wishlist\n")
    with pytest.raises(DatasetError, match=r"column 'action'.*\['wishlist'\].*--action wishlist=order") as error:
        load_csv(tmp_path / "events.csv")
    assert len(error.value.errors) == 1 and len(error.value.rows) == 2


def test_a_missing_column_is_named_and_every_problem_is_reported_at_once(tmp_path):
    (tmp_path / "events.csv").write_text("customer,item,action,when\na,x,view,yesterday\n")
    with pytest.raises(DatasetError) as error:
        load_csv(tmp_path / "events.csv", columns={"ts": "time"})
    problems = [(e.column, e.problem) for e in error.value.errors]
    assert ("user_id", "no 'user' column") in problems
    assert ("time", "column is missing (mapped to 'ts')") in problems
    assert "--map user=YOUR_COLUMN" in str(error.value)


def test_unreadable_timestamps_and_unknown_items_are_reported_together(tmp_path):
    (tmp_path / "events.csv").write_text("user,item,ts\na,x,2024-05-01\na,q,not a date\n")
    (tmp_path / "items.csv").write_text("item,title\nx,Pen\n")
    with pytest.raises(DatasetError) as error:
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv")
    assert [e.column for e in error.value.errors] == ["ts", "item"]
    assert "neither numbers nor dates" in str(error.value) and "absent from" in str(error.value)


def test_the_cli_names_the_problem_and_fails(tmp_path, capsys):
    (tmp_path / "events.csv").write_text("user,item,action\na,x,like\n")
    assert main(["load", "csv", str(tmp_path / "events.csv"), "--out", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "'like'" in err and "--action like=order" in err
    assert not (tmp_path / "data").exists()
    assert main(["load", "recbole", str(tmp_path), "--map", "user=u", "--out", str(tmp_path / "data")]) == 1
    assert "apply to the csv format only" in capsys.readouterr().err


def test_a_file_scoped_mapping_names_one_files_column(tmp_path):
    (tmp_path / "events.csv").write_text("customer,sku\nc1,A\nc2,B\n")
    (tmp_path / "items.csv").write_text("product_id,title\nA,Pen\nB,Pad\n")
    (tmp_path / "users.csv").write_text("customer_id,city\nc1,Oslo\n")
    dataset = load_csv(tmp_path / "events.csv", tmp_path / "items.csv", tmp_path / "users.csv",
                       columns={"user": "customer", "item": "sku", "items.item": "product_id", "users.user": "customer_id"})
    assert sorted(dataset.items.title) == ["Pad", "Pen"]
    assert dict(zip(dataset.users.source_id, dataset.users.city.fillna("-"))) == {"c1": "Oslo", "c2": "-"}
    with pytest.raises(ValueError, match="unknown field 'items.ts'"):
        load_csv(tmp_path / "events.csv", columns={"items.ts": "when"})
