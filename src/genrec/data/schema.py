"""The canonical dataset schema, written down once.

Every source (the generated world, Amazon reviews, RecBole files, Shopping
Queries, KuaiSAR, a user's own logs) is mapped into these three tables, so
every later stage reads one shape. `docs/data.md` explains each column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

ACTIONS: tuple[str, ...] = ("impression", "click", "cart", "order")
"""Funnel order: a later action implies stronger intent."""

ORIGINS: tuple[str, ...] = ("human", "ai")
"""Who made the item's content: a person, or a generator (AIGC)."""

SCENARIOS: tuple[str, ...] = ("search", "home_feed", "item_detail")
"""Scenarios the generated world uses; loaders may add their own names."""

UNKNOWN_POSITION = -1
"""`events.position` when the source did not log where the item was shown."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    doc: str


ITEM_COLUMNS: tuple[Column, ...] = (
    Column("item_id", pa.int64(), False, "unique item id, ≥ 1 (0 is reserved for padding)"),
    Column("title", pa.string(), False, "human-readable title, non-empty"),
    Column("category", pa.list_(pa.string()), False, "category path from root to leaf"),
    Column("attributes", pa.map_(pa.string(), pa.string()), False, "attribute name → value"),
    Column("brand", pa.string(), True, "brand name, null when unknown"),
    Column("price", pa.float64(), True, "price ≥ 0, null when unknown"),
    Column("origin", pa.string(), False, "'human' or 'ai' (AI-generated content)"),
)
OPTIONAL_ITEM_COLUMNS: tuple[Column, ...] = (
    Column("image_vector", pa.list_(pa.float32()), True, "precomputed image (or other view) embedding"),
)

USER_COLUMNS: tuple[Column, ...] = (
    Column("user_id", pa.int64(), False, "unique user id, ≥ 1"),
)
"""Any further user columns are free-form profile fields (age band, city, …)."""

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("user_id", pa.int64(), False, "who acted; must exist in users"),
    Column("ts", pa.int64(), False, "seconds since the epoch (or any monotone clock)"),
    Column("session_id", pa.int64(), False, "groups events of one visit"),
    Column("scenario", pa.string(), False, "where it happened: search, home_feed, item_detail, …"),
    Column("query", pa.string(), True, "the typed query; null for recommendation"),
    Column("item_id", pa.int64(), False, "the item acted on; must exist in items"),
    Column("action", pa.string(), False, "impression, click, cart or order"),
    Column("position", pa.int32(), False, "0-based slot the item was shown in, -1 when unknown"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "items": ITEM_COLUMNS,
    "users": USER_COLUMNS,
    "events": EVENT_COLUMNS,
}


def arrow_schema(table: str, extra: pa.Schema | None = None) -> pa.Schema:
    """The Arrow schema for `table`, with any extra (optional/profile) fields appended."""
    fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in TABLES[table]]
    if extra is not None:
        known = {f.name for f in fields}
        fields += [f for f in extra if f.name not in known]
    return pa.schema(fields)
