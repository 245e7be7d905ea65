"""A dataset is three Parquet tables in a folder; this module loads, checks and saves them.

Validation happens at the door: `Dataset.load` (and `Dataset.validate`) raise a
`DatasetError` that lists every problem at once, each naming the file, the
column, a few offending rows and what was expected, so a user fixes their
export in one pass instead of debugging a shape error deep inside a model.
Some rules exist to protect the server, not the schema: every model and
retriever allocates one slot per id up to the largest id, so ids must be about
as large as the number of items (or users) — `genrec.data.loaders.canonical.remap_ids`
re-numbers them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.artifacts import atomic_path, manifest, write_json_atomic
from genrec.data.schema import ACTIONS, EVENT_COLUMNS, ORIGINS, TABLES, UNKNOWN_POSITION, arrow_schema

MAX_SHOWN_ROWS = 5
ID_SPREAD = 2
ID_SLACK = 1024
"""Ids may reach `ID_SPREAD × count + ID_SLACK`: room for deleted items and filtered users,
while an id of 2**31 among 600 items (16 GiB per item-sized table) is refused."""
FUTURE_SLACK_SECONDS = 86_400
"""Timestamps may lie up to a day ahead of this machine's clock (time zones, clock skew)."""


class DatasetError(ValueError):
    """A dataset that does not follow `genrec.data.schema`, with where and why.

    `errors` lists every problem found (this error itself when there is one);
    `file`, `column`, `problem`, `expected` and `rows` describe the first.
    """

    def __init__(self, file: str, column: str | None, problem: str, expected: str, rows: pd.DataFrame | None = None):
        self.file, self.column, self.problem, self.expected = file, column, problem, expected
        self.rows = rows
        self.errors: list[DatasetError] = [self]
        where = f"{file}" + (f", column '{column}'" if column else "")
        message = f"{where}: {problem}; expected {expected}"
        if rows is not None and len(rows):
            shown = rows.head(MAX_SHOWN_ROWS).to_string(max_colwidth=40)
            message += f"\nfirst offending rows ({len(rows)} in all):\n{shown}"
        super().__init__(message)

    @classmethod
    def of(cls, errors: list["DatasetError"]) -> "DatasetError":
        """One error that lists all of `errors` (which must not be empty)."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(first.file, first.column, first.problem, first.expected, first.rows)
        combined.errors = list(errors)
        combined.args = (f"{len(errors)} problems:\n" + "\n".join(f"{i}. {e}" for i, e in enumerate(errors, 1)),)
        return combined


@dataclass
class Dataset:
    """Items, users and events in the canonical schema (see `genrec.data.schema`).

    `items.category` holds lists of strings and `items.attributes` dicts; ids are
    int64. Construct from frames and call `validate()`, or `Dataset.load(path)`.
    Attributes given as (key, value) pairs — what `pandas.read_parquet` makes
    of a Parquet map — are turned into dicts on construction.
    """

    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame

    def __post_init__(self) -> None:
        if "attributes" in self.items.columns:
            values = self.items["attributes"].tolist()
            if any(_is_pairs(v) for v in values):
                self.items = self.items.assign(attributes=[dict((str(k), v) for k, v in v) if _is_pairs(v) else v
                                                           for v in values])

    @classmethod
    def load(cls, path: str | os.PathLike, validate: bool = True) -> "Dataset":
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(str(root), None, "no such dataset folder", "a folder with items/users/events .parquet")
        frames, errors = {}, []
        for table in TABLES:
            file = root / f"{table}.parquet"
            if not file.exists():
                errors.append(DatasetError(str(file), None, "file is missing", f"{table}.parquet in {root}"))
                continue
            try:
                arrow = pq.read_table(file)
            except (pa.ArrowException, OSError) as error:
                errors.append(DatasetError(str(file), None, f"not a readable Parquet file ({error})", f"a Parquet table of {table}"))
                continue
            problems = _arrow_column_problems(str(file), table, arrow.schema)
            errors += problems
            if not problems:
                frames[table] = _to_pandas(table, arrow)
        if errors:
            raise DatasetError.of(errors)
        dataset = cls(**frames)
        if validate:
            dataset.validate(root)
        return dataset

    def save(self, path: str | os.PathLike, **manifest_extra) -> None:
        """Write the three tables and a manifest atomically (a folder swap)."""
        self.validate()
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            for table in TABLES:
                frame = getattr(self, table)
                pq.write_table(_to_arrow(table, frame), tmp / f"{table}.parquet", compression="zstd")
            write_json_atomic(tmp / "manifest.json", manifest(counts=self.counts(), **manifest_extra))

    def counts(self) -> dict[str, int]:
        return {"items": len(self.items), "users": len(self.users), "events": len(self.events)}

    def validate(self, where: str | os.PathLike = "<memory>") -> None:
        """Raise one `DatasetError` listing every rule the tables break."""
        errors = self.problems(where)
        if errors:
            raise DatasetError.of(errors)

    def problems(self, where: str | os.PathLike = "<memory>") -> list[DatasetError]:
        """Every rule the tables break, in file order; empty for a valid dataset.

        A column that is missing or of the wrong kind is reported once, and the
        rules that read it are skipped (their messages would only repeat it).
        """
        root = Path(where)
        files = {table: str(root / f"{table}.parquet") for table in TABLES}
        errors: list[DatasetError] = []
        usable: dict[str, set[str]] = {}
        for table in TABLES:
            frame, file = getattr(self, table), files[table]
            usable[table] = set()
            for column in TABLES[table]:
                if column.name not in frame.columns:
                    errors.append(DatasetError(file, column.name, "column is missing", f"columns {[c.name for c in TABLES[table]]}"))
                    continue
                problem = _value_problem(file, frame, column.name, column.type, column.nullable)
                if problem is None:
                    usable[table].add(column.name)
                else:
                    errors.append(problem)
        errors += _item_problems(files["items"], self.items, usable["items"])
        errors += _id_problems(files["users"], self.users, "user_id", "users", usable["users"])
        errors += _event_problems(files["events"], self.events, self.items, self.users, usable)
        return errors


def _is_pairs(value: object) -> bool:
    """A list of (key, value) pairs with string keys: how pyarrow hands a map to pandas."""
    return (isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, str)
            and all(isinstance(p, (list, tuple, np.ndarray)) and len(p) == 2 and isinstance(p[0], str) for p in value))


def _arrow_column_problems(file: str, table: str, schema: pa.Schema) -> list[DatasetError]:
    errors = []
    for column in TABLES[table]:
        if column.name not in schema.names:
            errors.append(DatasetError(file, column.name, "column is missing", f"columns {[c.name for c in TABLES[table]]}"))
            continue
        actual = schema.field(column.name).type
        if not _compatible(actual, column.type):
            errors.append(DatasetError(file, column.name, f"column has type {actual}", f"type {column.type}"))
    return errors


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected):
        return True
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual) or pa.types.is_null(actual)
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_null(actual)
    if pa.types.is_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _compatible(actual.value_type, expected.value_type)
    if pa.types.is_map(expected):
        return pa.types.is_map(actual)
    return False


def _value_problem(file: str, frame: pd.DataFrame, name: str, type_: pa.DataType, nullable: bool) -> DatasetError | None:
    """The first thing wrong with the kind of values in one column, or None."""
    values = frame[name]
    null = values.isna() if not (pa.types.is_list(type_) or pa.types.is_map(type_)) else values.map(lambda v: v is None)
    if not nullable and null.any():
        return DatasetError(file, name, "null values", "a value in every row", frame[null])
    present = values[~null]
    if pa.types.is_integer(type_) and not pd.api.types.is_integer_dtype(values.dtype):
        bad = present.map(lambda v: not float(v).is_integer() if isinstance(v, (int, float, np.number)) else True)
        return DatasetError(file, name, f"dtype {values.dtype}", "integers", frame.loc[present.index[bad]] if bad.any() else None)
    if pa.types.is_floating(type_) and len(present) and not pd.api.types.is_numeric_dtype(present.infer_objects().dtype):
        return DatasetError(file, name, f"dtype {values.dtype}", "numbers")
    if pa.types.is_string(type_):
        bad = present.map(lambda v: not isinstance(v, str))
        if bad.any():
            return DatasetError(file, name, "non-string values", "strings", frame.loc[present.index[bad]])
    if pa.types.is_list(type_):
        bad = present.map(lambda v: not isinstance(v, (list, tuple, np.ndarray)) or any(not isinstance(x, str) for x in v) if pa.types.is_string(type_.value_type) else not isinstance(v, (list, tuple, np.ndarray)))
        if bad.any():
            return DatasetError(file, name, "values that are not lists", f"a list of {type_.value_type}", frame.loc[present.index[bad]])
    if pa.types.is_map(type_):
        bad = present.map(lambda v: not isinstance(v, dict))
        if bad.any():
            return DatasetError(file, name, "values that are not key→value mappings",
                                "a dict of str → str (constructing Dataset(items, users, events) turns (key, value) pairs into dicts)", frame.loc[present.index[bad]])
    return None


def _id_problems(file: str, frame: pd.DataFrame, column: str, noun: str, usable: set[str]) -> list[DatasetError]:
    if column not in usable:
        return []
    errors = []
    ids = frame[column]
    dup = ids.duplicated(keep=False)
    if dup.any():
        errors.append(DatasetError(file, column, "duplicate ids", "each id once", frame[dup].sort_values(column)))
    low = ids < 1
    if low.any():
        errors.append(DatasetError(file, column, "ids below 1", "ids ≥ 1 (0 is the padding id)", frame[low]))
    if len(frame) == 0:
        errors.append(DatasetError(file, None, f"no {noun}", f"at least one row in {Path(file).name}"))
        return errors
    bound = ID_SPREAD * len(frame) + ID_SLACK
    largest = int(ids.max())
    if largest > bound:
        errors.append(DatasetError(
            file, column,
            f"largest id {largest} for {len(frame)} {noun} (every model and retriever allocates one slot per id "
            f"up to the largest, so this costs the memory of {largest} {noun})",
            f"ids from 1 to about the number of {noun}, at most {ID_SPREAD} × {len(frame)} + {ID_SLACK} = {bound}; "
            f"re-number them with `genrec data remap PATH --out NEW_PATH` (the old ids are kept in "
            f"original_{column})",
            frame[ids > bound].sort_values(column)))
    return errors


def _item_problems(file: str, items: pd.DataFrame, usable: set[str]) -> list[DatasetError]:
    errors = _id_problems(file, items, "item_id", "items", usable)
    if "title" in usable:
        empty = items["title"].str.strip().str.len() == 0
        if empty.any():
            errors.append(DatasetError(file, "title", "empty titles", "a non-empty title", items[empty]))
    if "price" in usable:
        price = pd.to_numeric(items["price"], errors="coerce").to_numpy(dtype=np.float64)
        infinite = np.isinf(price)
        if infinite.any():
            errors.append(DatasetError(file, "price", "non-finite prices", "a finite price ≥ 0, or null when unknown", items[infinite]))
        negative = ~infinite & (price < 0)
        if negative.any():
            errors.append(DatasetError(file, "price", "negative prices", "a price ≥ 0 or null", items[negative]))
    if "origin" in usable:
        origin = ~items["origin"].isin(ORIGINS)
        if origin.any():
            errors.append(DatasetError(file, "origin", "unknown origins", f"one of {list(ORIGINS)}", items[origin]))
    if "image_vector" in items.columns:
        errors += _vector_problems(file, items, "image_vector")
    return errors


def _vector_problems(file: str, frame: pd.DataFrame, column: str) -> list[DatasetError]:
    def state(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "ok"
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return "not numbers"
        if array.ndim != 1:
            return "not numbers"
        return "ok" if np.isfinite(array).all() else "non-finite"

    states = frame[column].map(state)
    errors = []
    if (states == "not numbers").any():
        errors.append(DatasetError(file, column, "values that are not lists of numbers", "a list of float32, or null",
                                   frame[states == "not numbers"]))
    if (states == "non-finite").any():
        errors.append(DatasetError(file, column, "non-finite values (NaN or infinity) in vectors",
                                   "finite numbers in every vector, or null for no vector", frame[states == "non-finite"]))
    return errors


def _event_problems(file: str, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
                    usable: dict[str, set[str]]) -> list[DatasetError]:
    if len(events) == 0:
        return [DatasetError(file, None, "no events", "at least one event: every split, model and retriever learns from them")]
    errors = []
    ok = usable["events"]
    if "action" in ok:
        action = ~events["action"].isin(ACTIONS)
        if action.any():
            errors.append(DatasetError(file, "action", "unknown actions", f"one of {list(ACTIONS)}", events[action]))
    if "user_id" in ok and "user_id" in usable["users"]:
        unknown_user = ~events["user_id"].isin(users["user_id"])
        if unknown_user.any():
            errors.append(DatasetError(file, "user_id", "events point to unknown users", "a user_id present in users.parquet", events[unknown_user]))
    if "item_id" in ok and "item_id" in usable["items"]:
        unknown_item = ~events["item_id"].isin(items["item_id"])
        if unknown_item.any():
            errors.append(DatasetError(file, "item_id", "events point to unknown items", "an item_id present in items.parquet", events[unknown_item]))
    if "ts" in ok:
        negative = events["ts"] < 0
        if negative.any():
            errors.append(DatasetError(file, "ts", "negative timestamps", "seconds since the epoch (≥ 0)", events[negative]))
        latest = time.time() + FUTURE_SLACK_SECONDS
        future = events["ts"] > latest
        if future.any():
            errors.append(DatasetError(file, "ts", f"timestamps in the future (after {int(latest)})",
                                       "seconds since the epoch, not later than now; milliseconds must be divided by 1,000",
                                       events[future]))
    if "position" in ok:
        position = events["position"] < UNKNOWN_POSITION
        if position.any():
            errors.append(DatasetError(file, "position", "positions below -1", "a 0-based slot, or -1 when unknown", events[position]))
    if "query" in ok:
        empty_query = events["query"].notna() & (events["query"].fillna("").str.strip().str.len() == 0)
        if empty_query.any():
            errors.append(DatasetError(file, "query", "empty queries", "a non-empty query, or null for recommendation", events[empty_query]))
    canonical = [c.name for c in EVENT_COLUMNS]
    if all(name in ok for name in canonical):
        duplicate = events.duplicated(subset=canonical, keep=False)
        if duplicate.any():
            errors.append(DatasetError(file, None, "duplicate event rows (every column equal)",
                                       "each event once; a repeated action is a new row with its own ts or session_id",
                                       events[duplicate].sort_values(canonical[:3])))
    return errors


def _to_arrow(table: str, frame: pd.DataFrame) -> pa.Table:
    frame = frame.copy()
    if table == "items":
        frame["category"] = frame["category"].map(list)
        frame["attributes"] = frame["attributes"].map(lambda d: list(d.items()))
    extra = pa.Schema.from_pandas(frame.drop(columns=[c.name for c in TABLES[table]]), preserve_index=False)
    schema = arrow_schema(table, extra)
    if "image_vector" in frame.columns:
        schema = schema.set(schema.get_field_index("image_vector"), pa.field("image_vector", pa.list_(pa.float32())))
        frame["image_vector"] = frame["image_vector"].map(lambda v: None if v is None else np.asarray(v, dtype=np.float32))
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def _to_pandas(table: str, arrow: pa.Table) -> pd.DataFrame:
    frame = arrow.to_pandas()
    if table == "items":
        frame["category"] = frame["category"].map(lambda v: [str(x) for x in v] if v is not None else None)
        frame["attributes"] = frame["attributes"].map(lambda v: dict(v) if v is not None else None)
    for column in TABLES[table]:
        # A column with nulls stays as read, so `validate` names it instead of a cast failing here.
        if pa.types.is_integer(column.type) and not frame[column.name].isna().any():
            frame[column.name] = frame[column.name].astype(np.int32 if column.name == "position" else np.int64)
    return frame
