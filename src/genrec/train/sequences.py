"""Recommendation training windows: each user's training
interactions cut into windows of at most `max_short + 1` items, so that one
encoder pass trains every prefix of the window (`GenerativeModel.sequence_loss`).

A user with at most `max_short + 1` known interactions is one window whose every
position is a target, exactly the examples `training_requests` would make one at
a time. A longer sequence is covered from its end by windows that overlap by half:
each window trains only its newest `stride` positions (the oldest window trains
what is left), so every interaction is a target exactly once and sees at least
`max_short + 1 - stride` earlier items, instead of the cut-off a non-overlapping
split would give the first target of each window (SASRec's windows have it).
Interactions with an item that has no SID are dropped, as a request's
history drops them.

For a search+recommendation model each position also carries its own scenario
and time, read when it is the target. For a `rec_long_view` model each window also
carries its long view: the user's `max_long` interactions before the window's first
item, which is what a request's long view is (the interactions older than its
short view) for the window's trained positions. Every interaction is a target, searches
included: the item a user searched for is also one they wanted next, as SASRec
trains on it (training on query-free targets only lost on validation:
docs/generative.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from genrec.model.batches import SequenceBatch
from genrec.model.inputs import RequestEncoder
from genrec.retrieval import ACTIONS


@dataclass
class SequenceTable:
    """Every training window as padded arrays; `collate` indexes them into a `SequenceBatch`.

    user [n, Tu], items / action [n, W] (oldest first, 0-padded at the end),
    codes [n, W, L], target [n, W] bool, context [n, W, 3] or None;
    long_items / long_action [n, max_long] (newest last, 0-padded at the front),
    long_codes [n, max_long, L], or None.
    """

    user: torch.Tensor
    items: torch.Tensor
    codes: torch.Tensor
    action: torch.Tensor
    target: torch.Tensor
    context: torch.Tensor | None = None
    long_items: torch.Tensor | None = None
    long_codes: torch.Tensor | None = None
    long_action: torch.Tensor | None = None

    @classmethod
    def build(cls, encoder: RequestEncoder, interactions: pd.DataFrame) -> "SequenceTable":
        """`interactions`: `genrec.data.splits.interactions(split.train)` (user_id, item_id,
        action, ordered by user then time; scenario, ts and query too for a
        search+recommendation model)."""
        c = encoder.config
        with_context = c.search
        needed = {"scenario", "query", "ts"} if with_context else set()
        missing = sorted(name for name in needed if name not in interactions)
        if missing:
            raise ValueError(f"this model's windows need interactions with {missing}")
        width = c.max_short + 1
        stride = max(1, width // 2)
        users = interactions["user_id"].to_numpy(dtype=np.int64)
        items = interactions["item_id"].to_numpy(dtype=np.int64)
        action_id = {a: i for i, a in enumerate(ACTIONS)}
        actions = np.asarray([action_id.get(a, 1) for a in interactions["action"]], dtype=np.int64)
        known = encoder.has_sid(items)
        users, items, actions = users[known], items[known], actions[known]
        is_target = np.ones(len(items), dtype=bool)
        context = (encoder.context_tokens(interactions["scenario"].to_numpy()[known], interactions["ts"].to_numpy()[known])
                   if with_context else None)
        if not len(items):
            raise ValueError("no training windows: split.train has no positive interaction with a SID")
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        ends = np.r_[starts[1:], len(users)]
        spans: list[tuple[int, int, int, int, int]] = []  # the user's first row, rows [first, last), targets [from, to)
        for begin, end in zip(starts.tolist(), ends.tolist()):
            stop = end
            while stop - begin > width:
                spans.append((begin, stop - width, stop, stop - stride, stop))
                stop -= stride
            spans.append((begin, begin, min(begin + width, end), begin, stop))
        n = len(spans)
        out_user = np.zeros((n, c.max_user_tokens), dtype=np.int64)
        out_items = np.zeros((n, width), dtype=np.int64)
        out_action = np.zeros((n, width), dtype=np.int64)
        out_target = np.zeros((n, width), dtype=bool)
        out_context = np.zeros((n, width, 3), dtype=np.int64) if with_context else None
        long = c.max_long if c.rec_long_view else 0
        out_long_items = np.zeros((n, long), dtype=np.int64)
        out_long_action = np.zeros((n, long), dtype=np.int64)
        for row, (begin, first, last, target_from, target_to) in enumerate(spans):
            older = max(begin, first - long)
            if first > older:  # right-aligned: the item just before the window is the last column
                out_long_items[row, long - (first - older):] = items[older:first]
                out_long_action[row, long - (first - older):] = actions[older:first]
            tokens = encoder.user_tokens(int(users[first]))
            out_user[row, :len(tokens)] = tokens
            out_items[row, :last - first] = items[first:last]
            out_action[row, :last - first] = actions[first:last]
            out_target[row, target_from - first:target_to - first] = is_target[target_from:target_to]
            if out_context is not None and context is not None:  # both exist exactly when with_context
                out_context[row, :last - first] = context[first:last]
        keep = out_target.any(axis=1)  # a window whose targets are all searches trains nothing here
        codes = encoder.code_of_item[out_items[keep]]
        codes[out_items[keep] == 0] = 0
        t = torch.from_numpy
        long_views: dict[str, torch.Tensor] = {}
        if long:
            long_codes = encoder.code_of_item[out_long_items[keep]]
            long_codes[out_long_items[keep] == 0] = 0
            long_views = {"long_items": t(out_long_items[keep]), "long_codes": t(long_codes),
                          "long_action": t(out_long_action[keep])}
        return cls(t(out_user[keep]), t(out_items[keep]), t(codes), t(out_action[keep]), t(out_target[keep]),
                   None if out_context is None else t(out_context[keep]), **long_views)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_targets(self) -> int:
        return int(self.target.sum())

    def collate(self, indices: list[int]) -> SequenceBatch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        items = self.items[idx]
        width = max(2, int((items > 0).sum(1).max()))  # the batch's longest window
        user = self.user[idx]
        user = user[:, :max(1, int((user > 0).sum(1).max()))]
        long_views = {}
        if self.long_items is not None and self.long_codes is not None and self.long_action is not None:
            long_items = self.long_items[idx]
            keep = max(1, int((long_items > 0).sum(1).max()))  # the batch's longest long view, right-aligned
            long_views = {"long_items": long_items[:, -keep:], "long_codes": self.long_codes[idx, -keep:],
                          "long_action": self.long_action[idx, -keep:]}
        return SequenceBatch(user=user, items=items[:, :width], codes=self.codes[idx, :width],
                             action=self.action[idx, :width], target=self.target[idx, :width],
                             context=None if self.context is None else self.context[idx, :width], **long_views)

