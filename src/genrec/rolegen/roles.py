"""Item roles learned from trajectories: which clicks make a hesitant user buy *next*.

A ranker values an item by what the user does with it: click, cart, order. For
a user who browses but rarely buys, the items that matter most may be ones they
never buy — a *trigger* whose click shapes the intent that ends in an order of
something else of its kind (RoleGen's functional role). Its value is in the
trajectory after it, so it is estimated from the trajectory:

    y(click) = 1 if the user later carts or orders another item of the clicked item's leaf

over the clicks of low-converting users (carts + orders ≤ `max_conversion` × clicks),
and an item's trigger uplift is its clicks' mean y minus the mean y of clicks on
the *other* items of the same leaf by the same population — the counterfactual
"had they clicked another item of that kind instead". One item is clicked by
few such users, so the estimate is shrunk to its brand's uplift (pooled over the
brand's items, itself shrunk to 0) with `prior_clicks` pseudo-clicks each: a
brand that sells the next item shows it over many items.

On a world built with `WorldConfig(trigger_awakening > 0)` the hidden
`WorldTruth.item_is_trigger` says which items truly are triggers, and
`benchmarks/rolegen.py` measures how well these roles recover them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec.model.inputs import leaf_categories

CONVERSIONS = ("cart", "order")


@dataclass(frozen=True)
class RoleConfig:
    """Who counts as a hesitant user, and how strongly a sparse item leans on its brand."""

    max_conversion: float = 0.35
    """A user is low-converting when carts + orders ≤ this share of their clicks."""
    min_clicks: int = 3
    """…and has at least this many clicks (fewer say nothing about their habit)."""
    prior_clicks: float = 60.0
    """Pseudo-clicks of the brand's uplift in an item's estimate (and of 0 in a brand's)."""

    def __post_init__(self) -> None:
        if not 0 <= self.max_conversion < 1:
            raise ValueError(f"max_conversion must be in [0, 1), got {self.max_conversion}")
        if self.min_clicks < 1:
            raise ValueError(f"min_clicks must be ≥ 1, got {self.min_clicks}")
        if not self.prior_clicks > 0:
            raise ValueError(f"prior_clicks must be > 0, got {self.prior_clicks}")


@dataclass(frozen=True)
class ItemRoles:
    """Per item: the trigger uplift (shrunk) and the low-converting clicks it rests on."""

    item_ids: np.ndarray   # [n] int64, the catalogue's items
    uplift: np.ndarray     # [n] float: Δ P(later conversion in the leaf) after a click on it
    clicks: np.ndarray     # [n] int64: low-converting users' clicks on it
    hesitant_users: np.ndarray  # user ids counted as low-converting

    @classmethod
    def learn(cls, events: pd.DataFrame, items: pd.DataFrame, config: RoleConfig = RoleConfig()) -> "ItemRoles":
        """Estimate every catalogue item's trigger uplift from `events` (only the past: pass training events)."""
        missing = {"user_id", "ts", "item_id", "action"} - set(events.columns)
        if missing:
            raise ValueError(f"events lack columns {sorted(missing)}")
        item_ids = items["item_id"].to_numpy(dtype=np.int64)
        item_leaf, _ = leaf_categories(items)
        brand = pd.Series(items["brand"].fillna("").to_numpy(), index=item_ids)

        positive = events[events["action"].isin(("click",) + CONVERSIONS)]
        per_user = positive.groupby("user_id")["action"].agg(
            clicks=lambda a: int((a == "click").sum()), conversions=lambda a: int(a.isin(CONVERSIONS).sum()))
        hesitant = per_user.index[(per_user["clicks"] >= config.min_clicks)
                                  & (per_user["conversions"] <= config.max_conversion * per_user["clicks"])]
        rows = positive[positive["user_id"].isin(hesitant)]
        rows = rows.assign(leaf=item_leaf[rows["item_id"].to_numpy()]).sort_values(["user_id", "ts"], kind="stable")
        clicks = rows[rows["action"] == "click"]
        conversions = rows[rows["action"].isin(CONVERSIONS)]
        outcome = converts_later(clicks, conversions)

        frame = pd.DataFrame({"item": clicks["item_id"].to_numpy(), "leaf": clicks["leaf"].to_numpy(), "y": outcome})
        frame["residual"] = frame["y"] - frame.groupby("leaf")["y"].transform("mean")
        frame["brand"] = brand.reindex(frame["item"]).to_numpy()
        by_brand = frame[frame["brand"] != ""].groupby("brand")["residual"].agg(["sum", "count"])
        brand_uplift = by_brand["sum"] / (by_brand["count"] + config.prior_clicks)
        by_item = frame.groupby("item")["residual"].agg(["sum", "count"]).reindex(item_ids, fill_value=0)
        prior = brand.reindex(item_ids).map(brand_uplift).fillna(0.0).to_numpy()
        uplift = (by_item["sum"].to_numpy() + config.prior_clicks * prior) / (by_item["count"].to_numpy() + config.prior_clicks)
        return cls(item_ids, uplift.astype(np.float64), by_item["count"].to_numpy(dtype=np.int64),
                   hesitant.to_numpy(dtype=np.int64))

    def top_triggers(self, n: int) -> np.ndarray:
        """The `n` item ids with the largest uplift, best first."""
        if n < 0:
            raise ValueError(f"n must be ≥ 0, got {n}")
        return self.item_ids[np.argsort(-self.uplift, kind="stable")[:n]]


def converts_later(clicks: pd.DataFrame, conversions: pd.DataFrame) -> np.ndarray:
    """`[len(clicks)]` float: 1 where the click's user carts or orders *another* item of its leaf afterwards."""
    later = clicks[["user_id", "leaf", "ts", "item_id"]].reset_index(drop=True).reset_index(names="click")
    pairs = later.merge(conversions[["user_id", "leaf", "ts", "item_id"]], on=["user_id", "leaf"], suffixes=("", "_c"))
    hit = pairs[(pairs["ts_c"] > pairs["ts"]) & (pairs["item_id_c"] != pairs["item_id"])]["click"].unique()
    outcome = np.zeros(len(later))
    outcome[hit] = 1.0
    return outcome
