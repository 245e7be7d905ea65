"""What a dataset looks like, in numbers: the first thing to check before training on it."""

from __future__ import annotations

from typing import Any

import numpy as np

from genrec.data.dataset import Dataset
from genrec.data.schema import ACTIONS
from genrec.data.splits import POSITIVE_ACTIONS

COLD_START_MAX_INTERACTIONS = 2
HEAD_SHARE = 0.01


def dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """Counts, sparsity, scenario mix, funnel, popularity long tail, cold-start users.

    An interaction is a positive event (click, cart, order); sparsity is
    1 - distinct (user, item) interaction pairs / (users × items).
    """
    items, users, events = dataset.items, dataset.users, dataset.events
    positive = events[events["action"].isin(POSITIVE_ACTIONS)]
    pairs = positive[["user_id", "item_id"]].drop_duplicates()
    per_user = positive.groupby("user_id").size().reindex(users["user_id"], fill_value=0)
    actions = events["action"].value_counts().reindex(ACTIONS, fill_value=0)
    per_item = np.sort(events["item_id"].value_counts().to_numpy())[::-1]
    head = max(1, int(np.ceil(HEAD_SHARE * len(items))))
    search = events["query"].notna()
    depth = items["category"].map(len)
    stats: dict[str, Any] = {
        "items": len(items),
        "users": len(users),
        "events": len(events),
        "interactions": len(positive),
        "sessions": int(events["session_id"].nunique()),
        "sparsity": 1.0 - len(pairs) / max(len(users) * len(items), 1),
        "search_share": float(search.mean()) if len(events) else 0.0,
        "recommendation_share": float((~search).mean()) if len(events) else 0.0,
        "scenarios": {k: int(v) for k, v in events["scenario"].value_counts().items()},
        "distinct_queries": int(events.loc[search, "query"].nunique()),
        "funnel": {action: int(actions[action]) for action in ACTIONS},
        "click_rate": _ratio(actions["click"], actions["impression"]),
        "cart_rate": _ratio(actions["cart"], actions["click"]),
        "order_rate": _ratio(actions["order"], actions["cart"]),
        "top_1pct_item_event_share": float(per_item[:head].sum() / max(per_item.sum(), 1)),
        "items_never_interacted": int(len(items) - positive["item_id"].nunique()),
        "interactions_per_user_median": float(per_user.median()) if len(per_user) else 0.0,
        "cold_start_users": int((per_user <= COLD_START_MAX_INTERACTIONS).sum()),
        "cold_start_user_share": float((per_user <= COLD_START_MAX_INTERACTIONS).mean()) if len(per_user) else 0.0,
        "category_leaves": int(items["category"].map(tuple).nunique()),
        "category_depth_max": int(depth.max()) if len(depth) else 0,
        "brands": int(items["brand"].nunique()),
        "origin": {k: int(v) for k, v in items["origin"].value_counts().items()},
    }
    return stats


def print_stats(stats: dict[str, Any], title: str = "dataset") -> None:
    """A Rich table of `dataset_stats` output."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        table.add_row(key.replace("_", " "), _format(value))
    Console().print(table)


def _format(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return str(value)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0
