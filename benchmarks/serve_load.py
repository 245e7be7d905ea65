"""Load test of `genrec serve` over loopback: throughput, p50/p99, batching on vs off, memory.

Starts the real server (`python -m genrec.cli serve RUN`) as subprocesses on
127.0.0.1 — micro-batching on (max batch 64, 5 ms, `genrec serve`'s thread
sizing), on with every batch on every thread, and off (max batch 1) — and
drives `GET /search` from an asyncio client at concurrency 1, 8 and 32 for
each retriever. Every level is bounded in count and in time. Then,
with batching on, it sends 10,000 requests and reads the server's resident
memory (VmRSS) before and after. Queries and users come from the run's own
event log (seeded). Writes `benchmarks/results/serve.md`.

    .venv/bin/python benchmarks/serve_load.py --run runs/demo --retrievers bm25,generative

Client and server share the machine, so absolute numbers include the
client's own cost; the ratios (batching on/off) are measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
from loopback_server import stop, wait_until_healthy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve.md"
CONCURRENCY = (1, 8, 32)
MODES = {"on": ("64", "5", "32"), "on, all threads": ("64", "5", "1"), "off": ("1", "0", "32")}
"""Server settings compared in one run: --max-batch, --max-wait-ms, --parallel-from. `on` is `genrec serve`'s
default (batches of 32 or more on every torch thread, smaller ones on one); `on, all threads` puts every batch
on every thread (what the server did before batches were sized), measured only when the server has threads to share."""


@dataclass
class Level:
    """One (retriever, batching, concurrency) cell, accumulated over rounds."""

    retriever: str
    batching: str
    concurrency: int
    n: int = 0
    errors: int = 0
    throughputs: list[float] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)
    batched_requests: float = 0.0
    retrieve_calls: float = 0.0
    server_cpu_s: float = 0.0

    def add(self, n: int, errors: int, seconds: float, latencies_ms: np.ndarray, batched: float, calls: float,
            cpu_s: float) -> None:
        self.n += n
        self.server_cpu_s += cpu_s
        self.errors += errors
        self.throughputs.append(n / seconds if seconds else 0.0)
        self.latencies.append(latencies_ms)
        self.batched_requests += batched
        self.retrieve_calls += calls

    @property
    def throughput(self) -> float:
        """Median over rounds, requests per second."""
        return float(np.median(self.throughputs))

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU time (all threads) per request: robust to other load on the machine."""
        return 1000 * self.server_cpu_s / self.n if self.n else float("nan")

    @property
    def mean_batch(self) -> float:
        return self.batched_requests / self.retrieve_calls if self.retrieve_calls else float("nan")

    def percentile(self, q: float) -> float:
        """Over every request of every round, milliseconds."""
        return float(np.percentile(np.concatenate(self.latencies), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder to serve (RUN/data and the stages retrievers need)")
    parser.add_argument("--retrievers", default="generative,bm25")
    parser.add_argument("--requests", type=int, default=200, help="requests per (retriever, batching, concurrency) level and round")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="time bound per level and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions; throughput is their median")
    parser.add_argument("--memory-requests", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--workers", type=int, default=1, help="`genrec serve --workers`: server processes per server")
    parser.add_argument("--threads", type=int, default=None,
                        help="`genrec serve --threads`: torch threads per server process (default: the cores shared "
                             "out among the workers)")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the report (how RUN was made)")
    args = parser.parse_args()

    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.workers)
    modes = {mode: options for mode, options in MODES.items() if args.threads > 1 or mode != "on, all threads"}
    wanted = [n.strip() for n in args.retrievers.split(",") if n.strip()]
    served, notes = usable_retrievers(args.run, wanted)
    if not served:
        print("no retriever could be served: " + "; ".join(notes), file=sys.stderr)
        return 1
    queries, users = workload(args.run, args.seed, n=max(args.requests, args.memory_requests) + 200)

    levels: dict[tuple[str, str, int], Level] = {}
    harness = Harness(args.run, served, queries, users, args.k, args.requests)
    with contextlib.ExitStack() as stack:
        servers = {mode: stack.enter_context(Server(args.run, served, *options, workers=args.workers,
                                                    threads=args.threads))
                   for mode, options in modes.items()}
        for server in servers.values():
            for name in served:  # warm-up: first calls, caches, worker threads
                drive(server.url, name, queries[:100], users[:100], args.k, 8, 100, args.max_seconds)
        for round_ in range(args.rounds):
            # Modes alternate within each round (and swap order between rounds), and each retriever's harness
            # pass follows its served levels, so drift in the machine's load hits all of them alike.
            order = list(modes) if round_ % 2 == 0 else list(modes)[::-1]
            for name in served:
                for concurrency in CONCURRENCY:
                    for mode in order:
                        url = servers[mode].url
                        before, cpu_before = batch_totals(url, name, args.workers), servers[mode].cpu_seconds()
                        n, errors, seconds, latencies = drive(url, name, queries, users, args.k, concurrency,
                                                              args.requests, args.max_seconds)
                        after, cpu_after = batch_totals(url, name, args.workers), servers[mode].cpu_seconds()
                        level = levels.setdefault((name, mode, concurrency), Level(name, mode, concurrency))
                        level.add(n, errors, seconds, latencies, after[0] - before[0], after[1] - before[1],
                                  cpu_after - cpu_before)
                        print(f"round {round_ + 1} {name:>12} batching {mode:>15} c={concurrency:>2}: "
                              f"{n / seconds:7.1f} req/s p50 {np.percentile(latencies, 50):7.2f} ms "
                              f"p99 {np.percentile(latencies, 99):7.2f} ms errors {errors}", flush=True)
                rate = harness.run_pass(name)
                print(f"round {round_ + 1} {name:>12} harness (in process, batches of 64): {rate:7.1f} req/s", flush=True)
        memory = memory_run(servers["on"], served, queries, users, args.k, args.memory_requests)
        print(f"RSS before {memory['before_mib']:.1f} MiB, after {memory['after_mib']:.1f} MiB "
              f"({memory['n']} requests, {memory['errors']} errors)", flush=True)

    levels = [levels[(name, mode, c)] for name in served for mode in modes for c in CONCURRENCY]
    write_report(args, served, notes, levels, memory, harness.timings)
    total_errors = sum(level.errors for level in levels) + int(memory.get("errors", 0))
    print(f"wrote {args.out}; errors: {total_errors}")
    return 0 if total_errors == 0 else 1


class Harness:
    """Each retriever called in this process on the served workload's first `n` requests, in batches of 64
    as the evaluation harness calls it: the ceiling the server's batched throughput is compared with.

    The requests and retrievers are built by the server's own code (`load_served_model`), so the harness
    decodes as the server does. One pass over every request first fills the query-vector cache, as the
    server's warm-up and lower levels fill its cache before concurrency 32; then each `run_pass` is timed.
    """

    def __init__(self, run: Path, served: list[str], queries: list[str], users: list[int], k: int, n: int):
        import torch

        from genrec.malloc import keep_freed_memory
        from genrec.serve.model import load_served_model

        torch.set_num_threads(min(2, os.cpu_count() or 1))
        keep_freed_memory()  # as `genrec serve` does in its processes
        self.model = load_served_model(run, served)
        self.k = k
        self.requests = [self.model.request(int(user), query) for query, user in zip(queries[:n], users[:n])]
        self.timings: dict[str, list[float]] = {name: [] for name in served}
        for name in served:
            self._pass(name)
        gc.collect()
        gc.freeze()  # as the server does after loading: no full collections over the loaded model mid-pass

    def _pass(self, name: str) -> float:
        retriever = self.model.retrievers[name]
        start = time.perf_counter()
        for begin in range(0, len(self.requests), 64):
            retriever.retrieve(self.requests[begin:begin + 64], self.k)
        return len(self.requests) / (time.perf_counter() - start)

    def run_pass(self, name: str) -> float:
        """One timed pass; requests per second."""
        rate = self._pass(name)
        self.timings[name].append(rate)
        return rate


def usable_retrievers(run: Path, wanted: list[str]) -> tuple[list[str], list[str]]:
    """The wanted retrievers that build from `run`; notes say why the others were left out."""
    from genrec.data.dataset import Dataset
    from genrec.registry import build_retriever
    from genrec.serve.model import served_split

    dataset = Dataset.load(run / "data")
    split = served_split(dataset)
    served, notes = [], []
    for name in wanted:
        if name == "generative" and not (run / "train" / "generative" / "manifest.json").exists():
            # GenerativeRetriever.from_run would train one first: a load test must not.
            notes.append(f"`generative` not measured: {run}/train/generative holds no trained model "
                         f"(run `genrec demo --run {run}` or the train stage first)")
            continue
        try:
            build_retriever(name, run, dataset, split)
            served.append(name)
        except Exception as error:  # report, and measure the rest
            notes.append(f"`{name}` not measured: {type(error).__name__}: {str(error)[:200]}")
    return served, notes


def workload(run: Path, seed: int, n: int) -> tuple[list[str], list[int]]:
    """`n` (query, user) pairs drawn from the run's logged searches, seeded."""
    from genrec.data.dataset import Dataset

    events = Dataset.load(run / "data").events
    searched = events[events["query"].notna()]
    rng = np.random.default_rng(seed)
    if len(searched):
        rows = rng.integers(0, len(searched), size=n)
        return searched["query"].to_numpy()[rows].tolist(), searched["user_id"].to_numpy()[rows].tolist()
    titles = Dataset.load(run / "data").items["title"].to_numpy()
    users = events["user_id"].to_numpy()
    return titles[rng.integers(0, len(titles), n)].tolist(), users[rng.integers(0, len(users), n)].tolist()


class Server:
    """`genrec serve` in a subprocess on a free loopback port; waits for /healthz."""

    def __init__(self, run: Path, retrievers: list[str], max_batch: str, max_wait_ms: str, parallel_from: str,
                 workers: int = 1, threads: int = 1):
        self.workers = workers
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "genrec.cli", "serve", str(run), "--host", "127.0.0.1",
                        "--port", str(self.port), "--retrievers", ",".join(retrievers),
                        "--max-batch", max_batch, "--max-wait-ms", max_wait_ms, "--parallel-from", parallel_from,
                        "--workers", str(workers), "--threads", str(threads)]

    def __enter__(self) -> "Server":
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_healthy(self.process, self.url, lambda: self.process.stderr.read().decode()[-2000:])
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)

    def processes(self) -> list[int]:
        """The server's process and its descendants (the worker processes of `--workers N`)."""
        found, queue = [], [self.process.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    queue += [int(child) for child in (task / "children").read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the server's processes (all their threads)."""
        total = 0.0
        for pid in self.processes():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def rss_mib(self) -> float:
        """Resident memory of the server's processes together."""
        total = 0.0
        for pid in self.processes():
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
        return total


def drive(url: str, retriever: str, queries: list[str], users: list[int], k: int, concurrency: int,
          n: int, max_seconds: float) -> tuple[int, int, float, np.ndarray]:
    """Send up to `n` searches with `concurrency` in flight, for at most `max_seconds`."""
    return asyncio.run(_drive(url, retriever, queries, users, k, concurrency, n, max_seconds))


async def _drive(url, retriever, queries, users, k, concurrency, n, max_seconds):
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    next_index = 0
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal next_index, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while next_index < n and time.perf_counter() - start < max_seconds:
                i = next_index
                next_index += 1
                target = "/search?" + urlencode({"q": queries[i % len(queries)], "user_id": users[i % len(users)],
                                                  "k": k, "retriever": retriever})
                sent = time.perf_counter()
                try:
                    status = await _get(reader, writer, host, target)
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    status = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                latencies.append((time.perf_counter() - sent) * 1000)
                errors += status != 200
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), errors, time.perf_counter() - start, np.asarray(latencies)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, target: str) -> int:
    """One keep-alive HTTP/1.1 GET; returns the status after reading the whole body.

    A few lines of asyncio instead of an HTTP client library, so that the
    client's own cost stays small next to the server's on a shared machine.
    """
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), None)
    if length is None:
        raise ValueError("response without content-length")
    await reader.readexactly(length)
    return status


def batch_totals(url: str, retriever: str, workers: int = 1) -> tuple[float, float]:
    """(requests answered, retrieve calls) so far for `retriever`, from /metrics, summed over the server's
    `workers` processes: each keeps its own metrics, and a new connection reaches one of them, so this
    scrapes until it has heard from each (by the `genrec_worker` pid label); NaN if one stays silent."""
    seen: dict[str, tuple[float, float]] = {}
    for _ in range(50 * workers):
        text = httpx.get(url + "/metrics", timeout=10, headers={"Connection": "close"}).text
        pid = re.search(r'genrec_worker{pid="(\d+)"}', text)
        total = re.search(rf'genrec_retrieve_batch_size_sum{{retriever="{retriever}"}} ([\d.]+)', text)
        calls = re.search(rf'genrec_retrieve_batch_size_count{{retriever="{retriever}"}} (\d+)', text)
        seen[pid.group(1) if pid else ""] = (float(total.group(1)) if total else 0.0,
                                             float(calls.group(1)) if calls else 0.0)
        if len(seen) == workers:
            return sum(v[0] for v in seen.values()), sum(v[1] for v in seen.values())
    return float("nan"), float("nan")


GENERATIVE_MEMORY_SHARE = 500
"""Requests of the memory run that go to `generative` (a beam search each); the rest go to the others."""


def memory_run(server: Server, served: list[str], queries, users, k: int, n: int) -> dict[str, float]:
    before = server.rss_mib()
    counts = {name: 0 for name in served}
    cheap = [name for name in served if name != "generative"]
    if "generative" in counts:
        counts["generative"] = n if not cheap else min(GENERATIVE_MEMORY_SHARE, n)
    for index, name in enumerate(cheap):
        rest = n - counts.get("generative", 0)
        counts[name] = rest // len(cheap) + (rest % len(cheap) if index == 0 else 0)
    sent, errors = 0, 0
    for name, count in counts.items():
        done, failed, _, _ = drive(server.url, name, queries, users, k, 32, count, 600)
        sent, errors = sent + done, errors + failed
    return {"before_mib": before, "after_mib": server.rss_mib(), "n": sent, "errors": errors, "counts": counts}


def write_report(args, served: list[str], notes: list[str], levels: list[Level], memory: dict[str, float],
                 harness: dict[str, list[float]]) -> None:
    from genrec.data.dataset import Dataset

    counts = Dataset.load(args.run / "data").counts()
    off = {(lv.retriever, lv.concurrency): lv for lv in levels if lv.batching == "off"}
    lines = [
        "# Serving under load (`genrec serve`, loopback)",
        "",
        f"Command: `.venv/bin/python benchmarks/serve_load.py --run {args.run} --retrievers {args.retrievers} "
        f"--requests {args.requests} --max-seconds {args.max_seconds:g} --rounds {args.rounds} --memory-requests {args.memory_requests} "
        f"--workers {args.workers} --threads {args.threads} --seed {args.seed}`",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {platform.platform()}, "
        f"{os.cpu_count()} CPU cores (client and server share them), Python {platform.python_version()}; "
        f"1-minute load average at the end {os.getloadavg()[0]:.1f} (other work on the machine shows up as noise)",
        f"- Data: `{args.run}/data` — {counts['items']} items, {counts['users']} users, {counts['events']} events; "
        f"queries and users drawn from the logged searches with seed {args.seed}; `GET /search`, k={args.k}",
        f"- Each level: up to {args.requests} requests or {args.max_seconds:g} s, repeated in {args.rounds} rounds "
        f"that interleave the server settings ({len({lv.batching for lv in levels})} servers side by side, each warmed up with 100 requests per "
        "retriever); throughput = median over rounds. Batching on = max batch 64, max wait 5 ms (adaptive: waits only "
        "after a batch larger than one), a batch of 32 or more requests on every torch thread of the process and a "
        "smaller one on one thread (`genrec serve`'s defaults); on, all threads = the same with every batch on every "
        "thread (`--parallel-from 1`); off = max batch 1 (one `retrieve` call per request, on the retriever's single "
        "worker thread either way)",
        f"- Server: `genrec serve --workers {args.workers}` ({args.workers} process{'es' if args.workers > 1 else ''} on one "
        f"port, each with its own model and micro-batcher, {args.threads} torch thread{'s' if args.threads > 1 else ''} "
        f"each: `--threads {args.threads}`); the "
        "generative model decodes with its exact fp32 `FastDecoder` copy (`genrec.serve.model.fastest_exact`)",
        "- Server CPU ms/request = the server processes' user+system CPU time (all threads, from /proc) over the "
        "level's requests: unlike wall-clock numbers it barely moves with other load on the machine, so it is the "
        "fairer on/off comparison here; CPU off/on > 1 means batching saves work",
        "- Latency is measured by the client (request sent → response read, keep-alive connections, one per concurrent client); p50/p99 over the level's requests",
    ]
    lines += [f"- {note}" for note in [*args.note, *notes]]
    lines += [
        "",
        "| retriever | batching | concurrency | requests | errors | throughput (req/s, median) | p50 (ms) | p99 (ms) | mean batch | server CPU ms/request | CPU off/on | throughput on/off |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        base = off.get((lv.retriever, lv.concurrency))
        on = lv.batching != "off" and base is not None
        ratio = f"{lv.throughput / base.throughput:.2f}×" if on and base.throughput else ""
        cpu_ratio = f"{base.cpu_ms_per_request / lv.cpu_ms_per_request:.2f}×" if on and lv.cpu_ms_per_request else ""
        lines.append(f"| {lv.retriever} | {lv.batching} | {lv.concurrency} | {lv.n} | {lv.errors} | {lv.throughput:.1f} | "
                     f"{lv.percentile(50):.2f} | {lv.percentile(99):.2f} | {lv.mean_batch:.1f} | "
                     f"{lv.cpu_ms_per_request:.2f} | {cpu_ratio} | {ratio} |")
    if memory:
        growth = memory["after_mib"] - memory["before_mib"]
        lines += [
            "",
            f"Server memory (VmRSS{f' of its {args.workers} worker processes and their supervisor together' if args.workers > 1 else ''}, batching on, concurrency 32): "
            f"**{memory['before_mib']:.1f} MiB** after the runs above → **{memory['after_mib']:.1f} MiB** after "
            f"{memory['n']:,} more requests ({growth:+.1f} MiB), {memory['errors']} errors; requests per retriever: "
            + ", ".join(f"{name} {count:,}" for name, count in memory["counts"].items()) + ".",
        ]
    busiest = max(CONCURRENCY)
    served_on = {(lv.retriever, lv.batching): lv for lv in levels if lv.batching != "off" and lv.concurrency == busiest}
    lines += [
        "",
        f"Served against the harness (same run; the harness = the retriever called in process on the first "
        f"{args.requests} requests of the same workload, built as the server builds it (`load_served_model`), in "
        f"batches of 64 on {min(2, os.cpu_count() or 1)} torch threads, after one untimed pass; one timed pass "
        f"right after each round's served levels of that retriever, with the servers idle; median of {args.rounds} rounds). "
        "Load from other work on the machine drifts within seconds, so the ratio is also given per round "
        "(each round's served throughput over the harness pass that followed it) and as the median of those:",
        "",
        f"| retriever | batching | harness req/s | served req/s ({busiest} clients) | served / harness (medians) | "
        "served / harness per round | median of per-round ratios | served p99 ms |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for (name, mode), lv in served_on.items():
        rates = harness.get(name)
        if rates:
            rate = float(np.median(rates))
            paired = [s / h for s, h in zip(lv.throughputs, rates)]
            lines.append(f"| {name} | {mode} | {rate:.1f} | {lv.throughput:.1f} | {lv.throughput / rate:.0%} | "
                         + ", ".join(f"{r:.0%}" for r in paired) + f" | {float(np.median(paired)):.0%} | "
                         f"{lv.percentile(99):.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
