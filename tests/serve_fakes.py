"""A tiny hand-made catalog and a fake retriever for the serving tests.

The fake ranks by words shared with the title (search) or by how often an item
was interacted with (recommendation), and records every `retrieve` call's batch
size, so tests can see what the micro-batcher did.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.retrieval import Ranked, Request, top_k

SCRIPT_TITLE = "<script>alert(1)</script>"

ITEMS = [
    (1, "red running shoe", ["fashion", "shoes", "running"], 59.0, "human"),
    (2, "blue running shoe", ["fashion", "shoes", "running"], 64.5, "ai"),
    (3, "green wool hat", ["fashion", "hats"], 19.99, "human"),
    (4, SCRIPT_TITLE, ["electronics", "<b>phones</b>"], 1.0, "ai"),
    (5, "leather wallet", ["fashion", "accessories"], None, "human"),
    (6, "trail running socks", ["fashion", "socks"], 9.0, "human"),
    (7, "espresso machine", ["home", "kitchen"], 249.0, "human"),
    (8, "script writing notebook", ["office", "paper"], 4.5, "ai"),
]


def tiny_dataset(title_suffix: str = "") -> Dataset:
    items = pd.DataFrame({
        "item_id": np.array([i[0] for i in ITEMS], dtype=np.int64),
        "title": [i[1] + title_suffix if i[1] != SCRIPT_TITLE else i[1] for i in ITEMS],
        "category": [i[2] for i in ITEMS],
        "attributes": [{"colour": "red"} if i[0] == 1 else {} for i in ITEMS],
        "brand": ["Acme" if i[0] % 2 else None for i in ITEMS],
        "price": [i[3] for i in ITEMS],
        "origin": [i[4] for i in ITEMS],
    })
    users = pd.DataFrame({"user_id": np.array([1, 2, 3], dtype=np.int64), "city": ["Oslo", "Lima", "Pune"]})
    rows = [
        (1, 100, 1, "search", "running shoe", 1, "impression"),
        (1, 101, 1, "search", "running shoe", 1, "click"),
        (1, 102, 1, "search", "running shoe", 1, "order"),
        (1, 200, 2, "home_feed", None, 6, "click"),
        (1, 300, 3, "home_feed", None, 3, "cart"),
        (2, 150, 4, "home_feed", None, 7, "click"),
        (2, 160, 4, "home_feed", None, 1, "click"),
        (3, 170, 5, "search", "hat", 3, "click"),
    ]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "session_id", "scenario", "query", "item_id", "action"])
    events["position"] = np.int32(0)
    dataset = Dataset(items, users, events)
    dataset.validate()
    return dataset


def save_run(folder: Path, dataset: Dataset) -> Path:
    dataset.save(folder / "data")
    return folder


class FakeRetriever:
    """Word overlap for search, interaction counts for recommendation; records batch sizes."""

    def __init__(self, dataset: Dataset, name: str = "fake", delay_s: float = 0.0, gate: threading.Event | None = None):
        self.name = name
        self.delay_s = delay_s
        self.gate = gate
        self.batch_sizes: list[int] = []
        self.requests_seen: list[Request] = []
        self._lock = threading.Lock()
        n = int(dataset.items["item_id"].max()) + 1
        self._words = {int(i): set(_words(t)) for i, t in zip(dataset.items["item_id"], dataset.items["title"])}
        self._popularity = np.zeros(n, dtype=np.float32)
        counts = dataset.events[dataset.events["action"] != "impression"]["item_id"].value_counts()
        self._popularity[counts.index.to_numpy()] = counts.to_numpy()
        self._popularity[1:] += 0.01  # every real item is retrievable, padding id 0 never is
        self._n = n

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split) -> "FakeRetriever":
        return cls(dataset)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        with self._lock:
            self.batch_sizes.append(len(requests))
            self.requests_seen.extend(requests)
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.delay_s:
            time.sleep(self.delay_s)
        answers = []
        for request in requests:
            if request.query is None:
                scores = self._popularity.copy()
                scores[list(request.history)] = -np.inf
                scores[0] = -np.inf
            else:
                query = set(_words(request.query))
                scores = np.full(self._n, -np.inf, dtype=np.float32)
                for item, words in self._words.items():
                    overlap = len(query & words)
                    if overlap:
                        scores[item] = overlap + 0.001 * self._popularity[item]
            answers.append(top_k(scores, k))
        return answers


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class WeightedFakeRetriever(FakeRetriever):
    """A FakeRetriever whose scores pass through a torch weight loaded from `RUN/train/fake/weights.pt`.

    So a run folder can carry a good, a different, a NaN or a truncated
    checkpoint, as a generative model's would: NaN weights make every score
    NaN and every answer empty — the symptom a bad checkpoint shows in beam search.
    """

    def __init__(self, dataset: Dataset, layer, **options):
        super().__init__(dataset, **options)
        self.layer = layer

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split=None, **options) -> "WeightedFakeRetriever":
        import torch

        layer = torch.nn.Linear(1, 1, bias=False)
        layer.load_state_dict(torch.load(Path(run) / "train" / "fake" / "weights.pt", weights_only=True))
        return cls(dataset, layer, **options)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        weight = float(self.layer.weight.detach()[0, 0])
        return [_scaled(ranked, weight, k) for ranked in super().retrieve(requests, 10**6)]


def _scaled(ranked: Ranked, weight: float, k: int) -> Ranked:
    scores = ranked.scores.astype(np.float32) * np.float32(weight)
    keep = np.isfinite(scores)
    order = np.argsort(-scores[keep], kind="stable")[:k]
    return Ranked(ranked.item_ids[keep][order], scores[keep][order])


def save_weighted_run(folder: Path, dataset: Dataset, weight: float = 1.0, sid_codes: str = "1,2,3") -> Path:
    """A run folder with data, a tiny `sid/` and `train/fake/` (weights + a manifest naming the SID table's hash).

    The manifest does not depend on `weight`: two runs that differ only in
    their weights have identical manifests, as a retrained-in-place model does.
    """
    import json

    import torch

    from genrec.artifacts import folder_sha256

    save_run(folder, dataset)
    (folder / "sid").mkdir(parents=True, exist_ok=True)
    (folder / "sid" / "sids.txt").write_text(sid_codes)
    model = folder / "train" / "fake"
    model.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.full((1, 1), float(weight))}, model / "weights.pt")
    (model / "manifest.json").write_text(json.dumps({"stage": "fake", "inputs": {"sid": folder_sha256(folder / "sid")}}))
    return folder


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(config) -> Iterator[Any]:
    """Serve the `uvicorn.Config` on a daemon thread for the block: a real socket (keep-alive,
    idle timeouts, a browser), which `TestClient` does not open. Yields the `uvicorn.Server` (a test may
    begin its graceful shutdown early with `server.should_exit = True`)."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop"
