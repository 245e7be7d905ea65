"""Prometheus metrics in the text exposition format, written by hand.

Four families are enough to run the server: request counts by route and
status, a request latency histogram by route, a histogram of micro-batch sizes
per retriever (what batching buys under load), and the model version served.
Routes are the path templates (`/items/{item_id}`), never raw paths, so label
cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

LATENCY_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Histogram:
    """`counts[i]` counts observations in (`buckets[i-1]`, `buckets[i]`]; rendered cumulatively."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


class ServerMetrics:
    """Thread-safe counters and histograms, rendered by `render()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_sizes: dict[str, Histogram] = {}
        self.retrieve_calls: dict[str, int] = {}
        self.reloads: dict[str, int] = {"ok": 0, "rejected": 0}
        self.model_version: str | None = None

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS_S)).observe(seconds)

    def observe_batch(self, retriever: str, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_sizes.setdefault(retriever, Histogram(BATCH_BUCKETS)).observe(size)
            self.retrieve_calls[retriever] = self.retrieve_calls.get(retriever, 0) + 1

    def observe_reload(self, ok: bool) -> None:
        with self._lock:
            self.reloads["ok" if ok else "rejected"] += 1

    def set_model(self, version: str) -> None:
        with self._lock:
            self.model_version = version

    def request_count(self, route: str, status: int | None = None) -> int:
        with self._lock:
            return sum(n for (_, r, s), n in self.requests.items() if r == route and (status is None or s == status))

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP genrec_requests_total HTTP requests answered, by method, route and status.",
                "# TYPE genrec_requests_total counter",
            ]
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(f'genrec_requests_total{{method="{method}",route="{_escape(route)}",status="{status}"}} {n}')
            lines += [
                "# HELP genrec_request_duration_seconds Time to answer an HTTP request, by route.",
                "# TYPE genrec_request_duration_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                lines += _histogram_lines("genrec_request_duration_seconds", f'route="{_escape(route)}"', hist)
            lines += [
                "# HELP genrec_retrieve_batch_size Requests answered by one retrieve call, by retriever.",
                "# TYPE genrec_retrieve_batch_size histogram",
            ]
            for name, hist in sorted(self.batch_sizes.items()):
                lines += _histogram_lines("genrec_retrieve_batch_size", f'retriever="{_escape(name)}"', hist)
            lines += [
                "# HELP genrec_model_reloads_total Reloads by outcome (ok, rejected).",
                "# TYPE genrec_model_reloads_total counter",
            ]
            for outcome, n in sorted(self.reloads.items()):
                lines.append(f'genrec_model_reloads_total{{outcome="{outcome}"}} {n}')
            lines += [
                "# HELP genrec_model_info The model being served (value 1), labelled with its version (no paths: /metrics is public).",
                "# TYPE genrec_model_info gauge",
            ]
            if self.model_version is not None:
                lines.append(f'genrec_model_info{{version="{_escape(self.model_version)}"}} 1')
            lines += [
                "# HELP genrec_model_loaded 1 when a model is serving, 0 while loading.",
                "# TYPE genrec_model_loaded gauge",
                f"genrec_model_loaded {int(self.model_version is not None)}",
            ]
        return "\n".join(lines) + "\n"


def _histogram_lines(name: str, labels: str, hist: Histogram) -> list[str]:
    lines, cumulative = [], 0
    for bound, count in zip(hist.buckets, hist.counts):
        cumulative += count
        lines.append(f'{name}_bucket{{{labels},le="{_number(bound)}"}} {cumulative}')
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {hist.n}')
    lines.append(f"{name}_sum{{{labels}}} {hist.total:.6f}")
    lines.append(f"{name}_count{{{labels}}} {hist.n}")
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
