"""A dataset is three Parquet tables in a folder; this module loads, checks and saves them.

Validation happens at the door: `Dataset.load` (and `Dataset.validate`) raise a
`DatasetError` naming the file, the column, a few offending rows and what was
expected, so a user fixes their export instead of debugging a shape error deep
inside a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genrec.artifacts import atomic_path, manifest, write_json_atomic
from genrec.data.schema import ACTIONS, ORIGINS, TABLES, UNKNOWN_POSITION, arrow_schema

MAX_SHOWN_ROWS = 5


class DatasetError(ValueError):
    """A dataset that does not follow `genrec.data.schema`, with where and why."""

    def __init__(self, file: str, column: str | None, problem: str, expected: str, rows: pd.DataFrame | None = None):
        self.file, self.column, self.problem, self.expected = file, column, problem, expected
        self.rows = rows
        where = f"{file}" + (f", column '{column}'" if column else "")
        message = f"{where}: {problem}; expected {expected}"
        if rows is not None and len(rows):
            shown = rows.head(MAX_SHOWN_ROWS).to_string(max_colwidth=40)
            message += f"\nfirst offending rows ({len(rows)} in all):\n{shown}"
        super().__init__(message)


@dataclass
class Dataset:
    """Items, users and events in the canonical schema (see `genrec.data.schema`).

    `items.category` holds lists of strings and `items.attributes` dicts; ids are
    int64. Construct from frames and call `validate()`, or `Dataset.load(path)`.
    """

    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame

    @classmethod
    def load(cls, path: str | os.PathLike, validate: bool = True) -> "Dataset":
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(str(root), None, "no such dataset folder", "a folder with items/users/events .parquet")
        frames = {}
        for table in TABLES:
            file = root / f"{table}.parquet"
            if not file.exists():
                raise DatasetError(str(file), None, "file is missing", f"{table}.parquet in {root}")
            try:
                arrow = pq.read_table(file)
            except (pa.ArrowException, OSError) as error:
                raise DatasetError(str(file), None, f"not a readable Parquet file ({error})", f"a Parquet table of {table}") from error
            _check_arrow_columns(str(file), table, arrow.schema)
            frames[table] = _to_pandas(table, arrow)
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
        """Raise `DatasetError` on the first rule the tables break."""
        root = Path(where)
        for table in TABLES:
            frame = getattr(self, table)
            file = str(root / f"{table}.parquet")
            missing = [c.name for c in TABLES[table] if c.name not in frame.columns]
            if missing:
                raise DatasetError(file, missing[0], "column is missing", f"columns {[c.name for c in TABLES[table]]}")
            for column in TABLES[table]:
                _check_values(file, frame, column.name, column.type, column.nullable)
        _check_items(str(root / "items.parquet"), self.items)
        _check_unique(str(root / "users.parquet"), self.users, "user_id")
        _check_events(str(root / "events.parquet"), self.events, self.items, self.users)


def _check_arrow_columns(file: str, table: str, schema: pa.Schema) -> None:
    for column in TABLES[table]:
        if column.name not in schema.names:
            raise DatasetError(file, column.name, "column is missing", f"columns {[c.name for c in TABLES[table]]}")
        actual = schema.field(column.name).type
        if not _compatible(actual, column.type):
            raise DatasetError(file, column.name, f"column has type {actual}", f"type {column.type}")


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


def _check_values(file: str, frame: pd.DataFrame, name: str, type_: pa.DataType, nullable: bool) -> None:
    values = frame[name]
    null = values.isna() if not (pa.types.is_list(type_) or pa.types.is_map(type_)) else values.map(lambda v: v is None)
    if not nullable and null.any():
        raise DatasetError(file, name, "null values", "a value in every row", frame[null])
    present = values[~null]
    if pa.types.is_integer(type_) and not pd.api.types.is_integer_dtype(values.dtype):
        bad = present.map(lambda v: not float(v).is_integer() if isinstance(v, (int, float, np.number)) else True)
        raise DatasetError(file, name, f"dtype {values.dtype}", "integers", frame.loc[present.index[bad]] if bad.any() else None)
    if pa.types.is_floating(type_) and len(present) and not pd.api.types.is_numeric_dtype(present.infer_objects().dtype):
        raise DatasetError(file, name, f"dtype {values.dtype}", "numbers")
    if pa.types.is_string(type_):
        bad = present.map(lambda v: not isinstance(v, str))
        if bad.any():
            raise DatasetError(file, name, "non-string values", "strings", frame.loc[present.index[bad]])
    if pa.types.is_list(type_):
        bad = present.map(lambda v: not isinstance(v, (list, tuple, np.ndarray)) or any(not isinstance(x, str) for x in v) if pa.types.is_string(type_.value_type) else not isinstance(v, (list, tuple, np.ndarray)))
        if bad.any():
            raise DatasetError(file, name, "values that are not lists", f"a list of {type_.value_type}", frame.loc[present.index[bad]])
    if pa.types.is_map(type_):
        bad = present.map(lambda v: not isinstance(v, dict))
        if bad.any():
            raise DatasetError(file, name, "values that are not key→value mappings", "a dict of str → str", frame.loc[present.index[bad]])


def _check_unique(file: str, frame: pd.DataFrame, column: str) -> None:
    dup = frame[column].duplicated(keep=False)
    if dup.any():
        raise DatasetError(file, column, "duplicate ids", "each id once", frame[dup].sort_values(column))
    bad = frame[column] < 1
    if bad.any():
        raise DatasetError(file, column, "ids below 1", "ids ≥ 1 (0 is the padding id)", frame[bad])


def _check_items(file: str, items: pd.DataFrame) -> None:
    _check_unique(file, items, "item_id")
    empty = items["title"].str.strip().str.len() == 0
    if empty.any():
        raise DatasetError(file, "title", "empty titles", "a non-empty title", items[empty])
    negative = items["price"] < 0
    if negative.any():
        raise DatasetError(file, "price", "negative prices", "a price ≥ 0 or null", items[negative])
    origin = ~items["origin"].isin(ORIGINS)
    if origin.any():
        raise DatasetError(file, "origin", "unknown origins", f"one of {list(ORIGINS)}", items[origin])


def _check_events(file: str, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> None:
    action = ~events["action"].isin(ACTIONS)
    if action.any():
        raise DatasetError(file, "action", "unknown actions", f"one of {list(ACTIONS)}", events[action])
    unknown_user = ~events["user_id"].isin(users["user_id"])
    if unknown_user.any():
        raise DatasetError(file, "user_id", "events point to unknown users", "a user_id present in users.parquet", events[unknown_user])
    unknown_item = ~events["item_id"].isin(items["item_id"])
    if unknown_item.any():
        raise DatasetError(file, "item_id", "events point to unknown items", "an item_id present in items.parquet", events[unknown_item])
    position = events["position"] < UNKNOWN_POSITION
    if position.any():
        raise DatasetError(file, "position", "positions below -1", "a 0-based slot, or -1 when unknown", events[position])
    empty_query = events["query"].notna() & (events["query"].fillna("").str.strip().str.len() == 0)
    if empty_query.any():
        raise DatasetError(file, "query", "empty queries", "a non-empty query, or null for recommendation", events[empty_query])


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
