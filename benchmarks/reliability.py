"""Reliability probe of `genrec serve` over loopback: bad inputs, connections, corrupt artefacts, load with reloads.

Starts the real server (`python -m genrec.cli serve RUN`) on 127.0.0.1 only and
runs four bounded phases against it:

1. **Bad inputs** — a fixed list of malformed, hostile or over-limit calls
   (JSON the standard library accepts but cannot echo, wrong types, bodies
   past the size limit, work past the k / requests limits, unauthenticated
   admin calls …), sent on one keep-alive connection. Each must be a clean
   4xx with a JSON body; 5xx answers and connection resets are counted.
2. **Connections** — idle and half-sent connections must be closed after the
   keep-alive timeout, and the server must answer afterwards.
3. **Corrupt artefacts** — copies of RUN (every file a symlink but the
   corrupted one): NaN weights, a single NaN, an infinite weight, a truncated
   checkpoint, another SID table, a broken catalog. Each reload must be
   rejected (422) while the old model keeps serving the same version.
4. **Load** — 64 clients on mixed routes for a bounded time, with good and
   corrupt reloads during it; every answer must be a 200; p50/p99 per route.

Writes `benchmarks/results/reliability.md`; with `--baseline-ref COMMIT` the
same probe also runs against that commit's `src/` and the tables show both.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reliability.py --run runs/demo --retrievers generative,bm25 \
        --seconds 30 --baseline-ref b7be8c5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
from loopback_server import stop, wait_until_healthy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reliability.md"
TOKEN = "reliability-probe-token"
HOST = "127.0.0.1"
MODEL_DIR = Path("train") / "generative"


# --- the server --------------------------------------------------------------------------------


class Server:
    """`genrec serve` in a subprocess on a free loopback port, with an admin token; waits for /healthz."""

    def __init__(self, run: Path, retrievers: list[str], extra: list[str], src: Path):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self.command = [sys.executable, "-m", "genrec.cli", "serve", str(run), "--host", HOST, "--port", str(self.port),
                        "--retrievers", ",".join(retrievers), *extra]
        self.src = src

    def __enter__(self) -> "Server":
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GENREC_ADMIN_TOKEN": TOKEN,
               "PYTHONPATH": str(self.src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, env=env, stdout=self.log, stderr=self.log)
        wait_until_healthy(self.process, self.url, self.log_tail)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)

    def log_tail(self, n: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- raw HTTP/1.1 on one socket ----------------------------------------------------------------


class Connection:
    """A keep-alive HTTP/1.1 connection over a plain socket: counts the times the server dropped it."""

    def __init__(self, port: int):
        self.port = port
        self.resets = 0
        self.sock = socket.create_connection((HOST, port), timeout=30)

    def request(self, method: str, target: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
        try:
            return self._exchange(raw, method)
        except (ConnectionError, OSError):  # dropped (after a 500, say): count it, retry once on a new connection
            self.resets += 1
            self.reopen()
        try:
            return self._exchange(raw, method)
        except (ConnectionError, OSError):
            self.reopen()
            return 0, {}, b""

    def reopen(self) -> None:
        self.sock.close()
        self.sock = socket.create_connection((HOST, self.port), timeout=30)

    def _exchange(self, raw: bytes, method: str) -> tuple[int, dict, bytes]:
        self.sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = 0 if method == "HEAD" else int(headers.get("content-length", 0))
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
        if headers.get("connection", "").lower() == "close":
            self.reopen()
        return int(lines[0].split()[1]), headers, rest[:length]


# --- 1. bad inputs -----------------------------------------------------------------------------


@dataclass
class Probe:
    name: str
    method: str
    target: str
    body: bytes | None = None
    headers: dict | None = None
    expect: tuple[int, ...] = (422,)


def bad_inputs(retriever: str, max_k: int, max_requests: int, max_query: int, run: Path) -> list[Probe]:
    j = {"Content-Type": "application/json"}
    admin = {**j, "X-Admin-Token": TOKEN}

    def post(name, body: bytes, expect=(422,), headers=j, target="/retrieve"):
        return Probe(name, "POST", target, body, headers, expect)

    def get(name, target, expect=(422,)):
        return Probe(name, "GET", target, expect=expect)

    one = lambda **fields: json.dumps({"retriever": retriever, "requests": [{"query": "shoe", **fields}]}).encode()  # noqa: E731
    return [
        post("lone surrogate in a query", rb'{"requests": [{"query": "\ud800"}]}'),
        post("lone low surrogate in a query", rb'{"requests": [{"query": "a\udfffb"}]}'),
        post("lone surrogate as retriever name", rb'{"retriever": "\ud800", "requests": [{"query": "a"}]}'),
        post("lone surrogate as a key", rb'{"requests": [{"\ud800": 1}]}'),
        post("NaN literal for k", rb'{"requests": [{"query": "a", "k": NaN}]}'),
        post("Infinity literal for k", rb'{"requests": [{"query": "a", "k": Infinity}]}'),
        post("-Infinity for user_id", rb'{"requests": [{"user_id": -Infinity}]}'),
        post("1e999 (overflows to inf)", rb'{"requests": [{"query": "a", "k": 1e999}]}'),
        post("5,000-digit integer", b'{"requests": [{"user_id": 1' + b"0" * 5000 + b"}]}"),
        post("30-digit user_id", b'{"requests": [{"user_id": 123456789012345678901234567890}]}'),
        post("surrogate as raw UTF-8 bytes", b'{"requests": [{"query": "\xed\xa0\x80"}]}'),
        post("invalid UTF-8 byte", b'{"requests": [{"query": "\xff"}]}'),
        post("UTF-8 BOM (JSON parsers may ignore it: accepted)", b'\xef\xbb\xbf{"requests": [{"query": "a"}]}', expect=(200,)),
        post("truncated JSON", b'{"requests": ['),
        post("100,000-deep nesting", b"[" * 100_000 + b"]" * 100_000),
        post("k: true", one(k=True)),
        post('k: "5"', one(k="5")),
        post("k: 5.0", one(k=5.0)),
        post("user_id: true", one(user_id=True)),
        post('user_id: "7"', one(user_id="7")),
        post("query: 5", json.dumps({"requests": [{"query": 5}]}).encode()),
        post("requests: not a list", b'{"requests": "no"}'),
        post("requests: empty", b'{"requests": []}'),
        post(f"{max_requests + 1} requests", json.dumps({"requests": [{"query": "a", "k": 1}] * (max_requests + 1)}).encode()),
        post("256 requests × k=1000", json.dumps({"retriever": retriever, "requests": [{"query": "a", "k": 1000}] * 256}).encode()),
        post(f"k={max_k + 1} in a body", one(k=max_k + 1)),
        post(f"query of {max_query + 1} characters", one(query="x" * (max_query + 1))),
        post("unknown retriever", json.dumps({"retriever": "nope", "requests": [{"query": "a"}]}).encode()),
        post("text/plain body", b"requests=1", headers={"Content-Type": "text/plain"}),
        get(f"GET /search k={max_k + 1}", f"/search?q=shoe&k={max_k + 1}"),
        get("GET /search k=1000", "/search?q=shoe&k=1000"),
        get("GET /search k=true", "/search?q=shoe&k=true"),
        get("GET /search k=-1", "/search?q=shoe&k=-1"),
        get("GET /search empty q", "/search?q=%20%20"),
        get(f"GET /search q of {max_query + 1} chars", "/search?" + urlencode({"q": "x" * (max_query + 1)})),
        get("GET /search q percent-encoded surrogate", "/search?q=%ED%A0%80", expect=(200,)),
        get("GET /search user_id=2^64", f"/search?q=shoe&user_id={2**64}"),
        get("GET /search user_id=-1", "/search?q=shoe&user_id=-1"),
        get("GET /recommend unknown retriever", "/recommend?retriever=nope"),
        get("GET /users/1 recent=10,000", "/users/1?recent=10000"),
        get("GET /items/abc", "/items/abc"),
        get("GET /items/unknown", "/items/999999999", expect=(404,)),
        get("GET /nowhere", "/nowhere", expect=(404,)),
        get("GET /docs (CDN page: off)", "/docs", expect=(404,)),
        Probe("POST /search (wrong method)", "POST", "/search", b"", j, expect=(405,)),
        post("reload without token", b"{}", expect=(401,), target="/admin/reload"),
        post("reload with a wrong token", b"{}", expect=(401,), target="/admin/reload",
             headers={**j, "Authorization": "Bearer guess"}),
        post("reload body run: true", b'{"run": true}', headers=admin, target="/admin/reload"),
        post("reload of a folder that does not exist", json.dumps({"run": str(run / "nope")}).encode(),
             headers=admin, target="/admin/reload"),
        get("GET /admin/status without token", "/admin/status", expect=(401,)),
    ]


def run_bad_inputs(server: Server, probes: list[Probe]) -> tuple[list[dict], int]:
    connection = Connection(server.port)
    rows = []
    for probe in probes:
        status, headers, body = connection.request(probe.method, probe.target, probe.body, probe.headers)
        is_json = headers.get("content-type", "").startswith("application/json")
        rows.append({"name": probe.name, "expect": probe.expect, "status": status,
                     "ok": status in probe.expect and (status < 400 or is_json)})
    return rows, connection.resets


def oversized_bodies(server: Server, max_body: int) -> list[dict]:
    """A 100 MB body announced by Content-Length, and a body 4× the limit streamed without one."""
    rows = []
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        size = 100_000_000
        sock.sendall(f"POST /retrieve HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode() + b" " * 65536)
        start = time.perf_counter()
        try:
            answer = sock.recv(4096)
        except (socket.timeout, TimeoutError):
            answer = b""  # no answer in 10 s: the server is waiting for the other 99.9 MB
        rows.append({"name": "100 MB body (Content-Length)", "expect": (413,), "status": _status(answer),
                     "ok": _status(answer) == 413, "note": f"answered after {time.perf_counter() - start:.3f} s, 64 KiB sent"})
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(f"POST /retrieve HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b" " * 16384
        answer = b""
        for _ in range(4 * max_body // len(chunk)):
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                break
            sock.settimeout(0.001)
            try:
                answer = sock.recv(4096)
                break
            except (socket.timeout, TimeoutError):
                pass
            finally:
                sock.settimeout(10)
        try:
            answer = answer or sock.recv(4096)
        except (socket.timeout, TimeoutError):
            answer = b""
        rows.append({"name": f"{4 * max_body // 1024} KiB streamed body (chunked)", "expect": (413,),
                     "status": _status(answer), "ok": _status(answer) == 413})
    return rows


def _status(raw: bytes) -> int:
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def admin_rate_limit(server: Server, per_minute: int) -> dict:
    codes = [httpx.post(server.url + "/admin/reload", headers={"X-Admin-Token": "guess"}, timeout=10).status_code
             for _ in range(per_minute + 10)]
    return {"sent": len(codes), "401": codes.count(401), "429": codes.count(429), "other": len(codes) - codes.count(401) - codes.count(429)}


# --- 2. connections ----------------------------------------------------------------------------


def idle_connections(server: Server, n: int, keep_alive_s: float) -> dict:
    """Open `n` silent and `n // 10` half-sent connections; count how many the server closed after the timeout."""
    socks = [socket.create_connection((HOST, server.port), timeout=10) for _ in range(n)]
    half = [socket.create_connection((HOST, server.port), timeout=10) for _ in range(n // 10)]
    for sock in half:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    time.sleep(keep_alive_s + 2.0)
    closed = 0
    for sock in socks + half:
        sock.settimeout(0.5)
        try:
            closed += sock.recv(1) == b""
        except ConnectionResetError:
            closed += 1
        except (socket.timeout, TimeoutError):
            pass
        sock.close()
    healthy = httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    return {"opened": len(socks) + len(half), "closed": closed, "healthy_after": healthy}


# --- 3. corrupt artefacts ----------------------------------------------------------------------


def mirror(run: Path, dest: Path) -> Path:
    """A copy of `run` made of symlinks (cheap); the corruption replaces one of them with a real file."""
    for path in run.rglob("*"):
        target = dest / path.relative_to(run)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.resolve())
    return dest


def _own(path: Path) -> Path:
    """Replace a symlink by a private copy of its file, so it can be written."""
    real = path.resolve()
    path.unlink()
    shutil.copyfile(real, path)
    return path


def corruptions(run: Path) -> dict:
    """name → function(copy folder) that corrupts one artefact of the copy."""
    import torch

    def weights(edit):
        def corrupt(folder: Path) -> None:
            path = _own(folder / MODEL_DIR / "best.pt")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            floats = [t for t in checkpoint["model"].values() if t.is_floating_point()]
            edit(floats)
            torch.save(checkpoint, path)
        return corrupt

    def all_nan(floats):
        for tensor in floats:
            tensor.fill_(float("nan"))

    def one_nan(floats):
        floats[len(floats) // 2].view(-1)[0] = float("nan")

    def one_inf(floats):
        floats[-1].view(-1)[-1] = float("inf")

    def truncate(folder: Path) -> None:
        path = _own(folder / MODEL_DIR / "best.pt")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def other_sid_table(folder: Path) -> None:
        from genrec.sid.table import SidTable

        table = SidTable.load(run / "sid")
        shuffled = SidTable(table.item_ids, table.codes[np.random.default_rng(0).permutation(len(table))], table.codebook_sizes)
        with tempfile.TemporaryDirectory() as tmp:
            shuffled.save(tmp)
            (folder / "sid" / "sids.parquet").unlink()
            shutil.copyfile(Path(tmp) / "sids.parquet", folder / "sid" / "sids.parquet")

    def broken_catalog(folder: Path) -> None:
        path = folder / "data" / "items.parquet"
        path.unlink()
        path.write_bytes(b"PAR1 this is not parquet")

    table = {"broken catalog (items.parquet not Parquet)": broken_catalog}
    if (run / MODEL_DIR / "best.pt").exists():
        table = {"NaN weights (every tensor)": weights(all_nan), "one NaN in one weight": weights(one_nan),
                 "one +inf in one weight": weights(one_inf), "truncated checkpoint (half of best.pt)": truncate,
                 **table}
    if (run / "sid" / "sids.parquet").exists():
        table["another SID table (codes shuffled among items)"] = other_sid_table
    return table


def reload(server: Server, folder: Path) -> tuple[int, str, float]:
    start = time.perf_counter()
    answer = httpx.post(server.url + "/admin/reload", json={"run": str(folder)}, headers={"X-Admin-Token": TOKEN}, timeout=600)
    detail = answer.json().get("detail", "") if answer.status_code != 200 else answer.json()["model_version"]
    return answer.status_code, str(detail), time.perf_counter() - start


def run_corruptions(server: Server, run: Path, workdir: Path, retriever: str) -> list[dict]:
    rows = []
    for index, (name, corrupt) in enumerate(corruptions(run).items()):
        folder = mirror(run, workdir / f"corrupt-{index}")
        corrupt(folder)
        before = httpx.get(server.url + "/healthz", timeout=10).json()["model_version"]
        status, detail, seconds = reload(server, folder)
        after = httpx.get(server.url + "/healthz", timeout=10).json()["model_version"]
        search = httpx.get(server.url + "/search", params={"q": "gift", "k": 10, "retriever": retriever}, timeout=60).json()
        serving = search.get("model_version") == before and len(search.get("hits", [])) > 0
        reason = detail.split("previous model: ", 1)[-1].replace(str(folder), "COPY")[:150]
        rows.append({"name": name, "status": status, "reason": reason,
                     "seconds": seconds, "same_version": before == after, "serving": serving,
                     "ok": status == 422 and before == after and serving})
    return rows


# --- 4. load with reloads ----------------------------------------------------------------------


ROUTES = [  # (name, share) — shares of the mix
    ("search", 0.35), ("recommend", 0.15), ("retrieve ×4", 0.10), ("item", 0.15), ("user", 0.15), ("healthz", 0.10)]


def load(server: Server, run: Path, retrievers: list[str], clients: int, seconds: float, think_s: float,
         reload_folders: list[tuple[float, Path, bool]], seed: int) -> dict:
    from genrec.data.dataset import Dataset

    dataset = Dataset.load(run / "data")
    titles = dataset.items["title"].astype(str).tolist()
    item_ids = dataset.items["item_id"].tolist()
    user_ids = dataset.events["user_id"].drop_duplicates().tolist()
    return asyncio.run(_load(server, retrievers, titles, item_ids, user_ids, clients, seconds, think_s, reload_folders, seed))


async def _load(server, retrievers, titles, item_ids, user_ids, clients, seconds, think_s, reload_folders, seed):
    latencies: dict[str, list[float]] = {name: [] for name, _ in ROUTES}
    statuses: dict[int, int] = {}
    empty = {"answers": 0, "empty": 0}  # answers of the first retriever, and how many had no hits
    failures: list[str] = []
    reloads: list[dict] = []
    start = time.perf_counter()
    names, shares = zip(*ROUTES)

    def target(rng: random.Random) -> tuple[str, str, bytes | None, bool]:
        route, retriever = rng.choices(names, shares)[0], rng.choice(retrievers)
        return (*_target(rng, route, retriever), route in ("search", "recommend") and retriever == retrievers[0])

    def _target(rng: random.Random, route: str, retriever: str) -> tuple[str, str, bytes | None]:
        query = " ".join(rng.choice(titles).split()[:4])
        user = rng.choice(user_ids)
        if route == "search":
            return route, "/search?" + urlencode({"q": query, "user_id": user, "k": 10, "retriever": retriever}), None
        if route == "recommend":
            return route, "/recommend?" + urlencode({"user_id": user, "k": 10, "retriever": retriever}), None
        if route == "retrieve ×4":
            body = {"retriever": retriever, "requests": [{"query": query, "user_id": user, "k": 10}, {"user_id": user, "k": 10},
                                                          {"query": " ".join(rng.choice(titles).split()[:3]), "k": 5}, {"k": 5}]}
            return route, "/retrieve", json.dumps(body).encode()
        if route == "item":
            return route, f"/items/{rng.choice(item_ids)}", None
        if route == "user":
            return route, f"/users/{user}", None
        return route, "/healthz", None

    async def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            while time.perf_counter() - start < seconds:
                route, path, body, watched = target(rng)
                sent = time.perf_counter()
                try:
                    status, answer = await _request(reader, writer, path, body)
                    if watched and status == 200:
                        empty["answers"] += 1
                        empty["empty"] += b'"hits":[]' in answer
                except (OSError, ValueError, asyncio.IncompleteReadError) as error:
                    status = 0
                    failures.append(f"{route}: {type(error).__name__}")
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, server.port)
                latencies[route].append((time.perf_counter() - sent) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200 and len(failures) < 20:
                    failures.append(f"{route} {path[:60]}: {status}")
                await asyncio.sleep(rng.uniform(0, 2 * think_s))
        finally:
            writer.close()

    async def reloader() -> None:
        async with httpx.AsyncClient(timeout=600) as http:
            for at, folder, good in reload_folders:
                await asyncio.sleep(max(0.0, at - (time.perf_counter() - start)))
                t0 = time.perf_counter()
                answer = await http.post(server.url + "/admin/reload", json={"run": str(folder)}, headers={"X-Admin-Token": TOKEN})
                reloads.append({"at_s": at, "artefact": good, "status": answer.status_code, "seconds": time.perf_counter() - t0})

    cpu_before = server.cpu_seconds()
    await asyncio.gather(reloader(), *(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    return {"latencies": {k: np.asarray(v) for k, v in latencies.items()}, "statuses": statuses, "failures": failures,
            "empty": empty,
            "reloads": reloads, "seconds": elapsed, "server_cpu_s": server.cpu_seconds() - cpu_before}


async def _request(reader, writer, path: str, body: bytes | None) -> tuple[int, bytes]:
    method = "GET" if body is None else "POST"
    extra = "" if body is None else f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n".encode() + (body or b""))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), None)
    if length is None:
        raise ValueError("response without content-length")
    return int(lines[0].split()[1]), await reader.readexactly(length)


def costliest_call(server: Server, retriever: str, max_requests: int, max_k: int, titles: list[str]) -> float:
    """Seconds for the most expensive call the limits allow: max_requests searches at k = max_k."""
    body = {"retriever": retriever, "requests": [{"query": t, "k": max_k} for t in titles[:max_requests]]}
    start = time.perf_counter()
    answer = httpx.post(server.url + "/retrieve", json=body, timeout=120)
    answer.raise_for_status()
    return time.perf_counter() - start


# --- report ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a served run folder (RUN/data and what the retrievers load)")
    parser.add_argument("--retrievers", default="generative,bm25")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=45.0, help="length of the load phase")
    parser.add_argument("--think-ms", type=float, default=100.0, help="mean pause of a client between its requests")
    parser.add_argument("--idle", type=int, default=1500, help="idle connections opened in the connection phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline-ref", default=None,
                        help="a git commit whose src/ is probed too and shown beside (e.g. the code before a change)")
    args = parser.parse_args()

    from genrec.data.dataset import Dataset
    from genrec.serve.limits import ServeLimits

    limits = ServeLimits(admin_calls_per_minute=60)  # the probe reloads often; the rate limit itself is probed last
    retrievers = [n.strip() for n in args.retrievers.split(",") if n.strip()]
    run = args.run.resolve()
    now = probe(args, ROOT / "src", limits, run, retrievers)
    before = None
    if args.baseline_ref:
        with tempfile.TemporaryDirectory(prefix="genrec-baseline-") as tree:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline_ref, "src"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
            before = probe(args, Path(tree) / "src", limits, run, retrievers)
    counts = Dataset.load(run / "data").counts()
    args.out.write_text(report(args, counts, limits, now, before))
    print(f"wrote {args.out}", file=sys.stderr)
    clean = (all(r["ok"] for r in now["bad"]) and now["resets"] == 0 and all(r["ok"] for r in now["corrupt"])
             and set(now["load"]["statuses"]) == {200} and now["idle"]["closed"] == now["idle"]["opened"])
    return 0 if clean else 1


def probe(args, src: Path, limits, run: Path, retrievers: list[str]) -> dict:
    """Every phase against a server running the code in `src`."""
    from genrec.data.dataset import Dataset

    supported = subprocess.run([sys.executable, "-m", "genrec.cli", "serve", "--help"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(src)}).stdout
    extra = ["--admin-calls-per-minute", str(limits.admin_calls_per_minute)] if "--admin-calls-per-minute" in supported else []
    first = retrievers[0]
    out: dict = {"src": src, "limit_flags": bool(extra), "first": first}
    with tempfile.TemporaryDirectory(prefix="genrec-reliability-") as tmp, Server(run, retrievers, extra, src) as server:
        print(f"serving {run} from {src} on {server.url}", file=sys.stderr)
        probes = bad_inputs(first, limits.max_k, limits.max_requests_per_call, limits.max_query_chars, run)
        out["bad"], out["resets"] = run_bad_inputs(server, probes)
        out["bad"] += oversized_bodies(server, limits.max_body_bytes)
        print(f"bad inputs: {sum(r['ok'] for r in out['bad'])}/{len(out['bad'])} as expected, {out['resets']} resets", file=sys.stderr)
        out["idle"] = idle_connections(server, args.idle, limits.keep_alive_s)
        print(f"idle connections: {out['idle']}", file=sys.stderr)
        titles = Dataset.load(run / "data").items["title"].astype(str).tolist()
        out["costly"] = costliest_call(server, first, limits.max_requests_per_call, limits.max_k, titles)
        print(f"costliest allowed call: {out['costly']:.2f} s", file=sys.stderr)
        out["corrupt"] = run_corruptions(server, run, Path(tmp), first)
        print(f"corrupt artefacts: {sum(r['ok'] for r in out['corrupt'])}/{len(out['corrupt'])} rejected", file=sys.stderr)
        reload(server, run)  # start the load from the good model, whatever the corrupt reloads left behind
        corrupt_copy = mirror(run, Path(tmp) / "load-corrupt")
        corrupt_name, corrupt = next(iter(corruptions(run).items()))
        corrupt(corrupt_copy)
        step = args.seconds / 5
        schedule = [(step, run, "good"), (2 * step, corrupt_copy, corrupt_name),
                    (3 * step, run, "good"), (4 * step, corrupt_copy, corrupt_name)]
        out["load"] = load(server, run, retrievers, args.clients, args.seconds, args.think_ms / 1000, schedule, args.seed)
        print(f"load: {out['load']['statuses']} in {out['load']['seconds']:.1f} s", file=sys.stderr)
        out["rate"] = admin_rate_limit(server, limits.admin_calls_per_minute)
    return out


def _summary(r: dict, limits, clients: int) -> list[tuple[str, str, str]]:
    """(probe, tried, outcome) rows for one probed code tree."""
    bad, idle, loaded, rate = r["bad"], r["idle"], r["load"], r["rate"]
    fivexx = sum(1 for row in bad if row["status"] >= 500)
    total = sum(loaded["statuses"].values())
    all_ms = np.concatenate([v for v in loaded["latencies"].values() if len(v)])
    errors = total - loaded["statuses"].get(200, 0)
    return [
        ("bad inputs, one keep-alive connection", str(len(bad)),
         f"{sum(row['ok'] for row in bad)} as expected (clean 4xx, or the stated code); **{fivexx} × 5xx**, {r['resets']} connection resets"),
        ("idle + half-sent connections", str(idle["opened"]),
         f"{idle['closed']} closed after {limits.keep_alive_s:g} s + 2 s; healthy after: {idle['healthy_after']}"),
        ("corrupt artefacts reloaded", str(len(r["corrupt"])),
         f"{sum(row['ok'] for row in r['corrupt'])} rejected (422) with the old model still serving"),
        (f"load: {clients} clients, mixed routes, {loaded['seconds']:.0f} s, {len(loaded['reloads'])} reloads", f"{total} requests",
         f"**{errors} errors**; p50 {np.percentile(all_ms, 50):.0f} ms, **p99 {np.percentile(all_ms, 99):.0f} ms**; "
         f"{loaded['empty']['empty']} of {loaded['empty']['answers']} `{r['first']}` searches/recommendations answered no items"),
        (f"admin calls with a wrong token ({limits.admin_calls_per_minute}/min allowed)", str(rate["sent"]),
         f"{rate['401']} × 401, {rate['429']} × 429, {rate['other']} other"),
        (f"most expensive call the limits allow ({limits.max_requests_per_call} searches, k={limits.max_k})", "1",
         f"{r['costly']:.2f} s"),
    ]


def report(args, counts, limits, now: dict, before: dict | None) -> str:
    command = (f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reliability.py --run {args.run} --retrievers {args.retrievers} "
               f"--clients {args.clients} --seconds {args.seconds:g} --think-ms {args.think_ms:g} --idle {args.idle} --seed {args.seed}"
               + (f" --baseline-ref {args.baseline_ref}" if before else ""))
    first = args.retrievers.split(",")[0]
    lines = [
        "# Reliability probe of `genrec serve` (loopback only)",
        "",
        f"Command: `{command}`",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {platform.machine()}, {os.cpu_count()} CPUs "
        f"(shared with other jobs), Python {platform.python_version()}; server and client on the same machine, 127.0.0.1 only.",
        f"- Run: `{args.run}` — {counts['items']} items, {counts['users']} users, {counts['events']} events; "
        f"served retrievers: {args.retrievers} (bad inputs, the costly call and the canary search go to `{first}`).",
        f"- Server: `genrec serve` with the default limits ({_limits_text(limits)}), "
        f"except `--admin-calls-per-minute {limits.admin_calls_per_minute}` so the probe may reload often.",
    ]
    if before:
        lines.append(f"- Before: the same probe against the server code of commit `{args.baseline_ref}` (`git archive`; "
                     f"the code before these limits and checks, run with the options it has).")
    lines += ["", "## Summary", ""]
    rows_now = _summary(now, limits, args.clients)
    if before:
        rows_before = _summary(before, limits, args.clients)
        lines += ["| probe | tried | this code | before |", "|---|---|---|---|"]
        lines += [f"| {a[0]} | {a[1]} | {a[2]} | {b[2]} |" for a, b in zip(rows_now, rows_before)]
    else:
        lines += ["| probe | tried | outcome |", "|---|---|---|"]
        lines += [f"| {a[0]} | {a[1]} | {a[2]} |" for a in rows_now]
    if before:
        lines += ["", "The two code trees ran one after the other on a machine shared with other jobs, so their latencies "
                  "compare only roughly. During the load the earlier code accepts the corrupt reloads and serves that "
                  "model until the next good reload: its answers stay 200, but empty (the count in the load row), and "
                  "its `model_version` does not change, so monitoring cannot tell."]
    loaded = now["load"]
    total = sum(loaded["statuses"].values())
    lines += [
        "", "## Load (this code)", "",
        f"{total} requests in {loaded['seconds']:.1f} s ({total / loaded['seconds']:.0f}/s), mean think time "
        f"{args.think_ms:g} ms per client; server CPU {loaded['server_cpu_s']:.1f} s ({loaded['server_cpu_s'] / loaded['seconds']:.2f} "
        f"cores); statuses {dict(sorted(loaded['statuses'].items()))}. One server process; the reloads load a second "
        f"model beside the live one on the same CPU, which is most of the tail.",
        "", "| route | requests | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|",
    ]
    for route, values in loaded["latencies"].items():
        if len(values):
            lines.append(f"| {route} | {len(values)} | {np.percentile(values, 50):.0f} | {np.percentile(values, 99):.0f} | {values.max():.0f} |")
    lines += ["", "Reloads during the load (`good`: the served run again; otherwise a corrupt copy):", "",
              "| at s | artefact | status | seconds |", "|---|---|---|---|"]
    for r in loaded["reloads"]:
        lines.append(f"| {r['at_s']:.0f} | {r['artefact']} | {r['status']} | {r['seconds']:.1f} |")
    if loaded["failures"]:
        lines += ["", "First failures: " + "; ".join(loaded["failures"][:10])]
    lines += ["", "## Corrupt artefacts", "",
              "Each is a copy of the run with one artefact corrupted, sent to `POST /admin/reload`; after it, `/healthz` "
              "must show the same `model_version` and a search must still answer hits from the old model.", "",
              "| artefact | status | reason given (admin only) | reload s | same version | still serving |"
              + (" before: status, still serving |" if before else ""),
              "|---|---|---|---|---|---|" + ("---|" if before else "")]
    old = {r["name"]: r for r in before["corrupt"]} if before else {}
    for r in now["corrupt"]:
        was = old.get(r["name"])
        lines.append(f"| {r['name']} | {r['status']} | {r['reason'].replace('|', '/')} | {r['seconds']:.1f} | "
                     f"{r['same_version']} | {r['serving']} |" + (f" {was['status']}, {was['serving']} |" if was else ""))
    lines += ["", "## Bad inputs", "", "| input | expected | got |" + (" before |" if before else ""),
              "|---|---|---|" + ("---|" if before else "")]
    old = {r["name"]: r for r in before["bad"]} if before else {}
    for r in now["bad"]:
        was = old.get(r["name"])
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"| {r['name']} | {'/'.join(map(str, r['expect']))} | {_got(r)}{note} |" + (f" {_got(was)} |" if was else ""))
    lines += ["", "A status 0 is no answer: the connection was reset (after a 500) or nothing came back within 10 s."]
    return "\n".join(lines) + "\n"


def _got(row: dict) -> str:
    return f"{row['status']}{'' if row['ok'] else ' ✗'}"


def _limits_text(limits) -> str:
    from dataclasses import fields

    return ", ".join(f"{f.name}={getattr(limits, f.name)}" for f in fields(limits))


if __name__ == "__main__":
    sys.exit(main())
