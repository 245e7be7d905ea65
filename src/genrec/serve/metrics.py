"""The server's Prometheus metrics, as `prometheus_client` collectors.

Four families are enough to run the server: request counts by route and
status, a request latency histogram by route, a histogram of micro-batch sizes
per retriever (what batching buys under load), and the model version served;
plus reload outcomes, the process id (`genrec serve --workers N` runs N
processes, each with its own counts) and the process's own CPU, memory and
open files.
Routes are the path templates (`/items/{item_id}`), never raw paths, so label
cardinality stays bounded whatever clients send.

Each `ServerMetrics` owns its `CollectorRegistry` rather than using the
library's global one: two apps in one process (tests, a reload probe) would
otherwise register the same names twice and count each other's requests.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

LATENCY_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus version scrapes."""


class ServerMetrics:
    """The collectors of one app, on their own registry; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("genrec_requests", "HTTP requests answered, by method, route and status.",
                                ("method", "route", "status"), registry=self.registry)
        self.latency = Histogram("genrec_request_duration_seconds", "Time to answer an HTTP request, by route.",
                                 ("route",), buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.batch_sizes = Histogram("genrec_retrieve_batch_size", "Requests answered by one retrieve call, by retriever.",
                                     ("retriever",), buckets=BATCH_BUCKETS, registry=self.registry)
        self.reloads = Counter("genrec_model_reloads", "Reloads by outcome (ok, rejected).", ("outcome",),
                               registry=self.registry)
        for outcome in ("ok", "rejected"):
            self.reloads.labels(outcome)  # both series exist from the start, at 0
        self.model = Gauge("genrec_model_info", "The model being served (value 1), labelled with its version "
                                                "(no paths: /metrics is public).", ("version",), registry=self.registry)
        self.loaded = Gauge("genrec_model_loaded", "1 when a model is serving, 0 while loading.", registry=self.registry)
        self.worker = Gauge("genrec_worker", "This server process (value 1), labelled with its process id: with "
                                              "`genrec serve --workers N` each process counts only what it answered.",
                            ("pid",), registry=self.registry)
        self.worker.labels(str(os.getpid())).set(1)
        ProcessCollector(registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, retriever: str, size: int, seconds: float) -> None:
        self.batch_sizes.labels(retriever).observe(size)

    def observe_reload(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "rejected").inc()

    def set_model(self, version: str) -> None:
        self.model.clear()  # one series: the version serving now
        self.model.labels(version).set(1)
        self.loaded.set(1)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
