"""`genrec serve --workers N`: N server processes answering on one listening socket.

One server process answers HTTP on its event loop and runs each micro-batch's
beam search on a worker thread, and both need Python's GIL: the tokenizing,
trie gathers and bookkeeping between the matrix products wait while the loop
parses a request or writes an answer, and the loop waits while they run. So
one process leaves a second core mostly idle however many requests queue. N
processes have N GILs; the kernel hands each new connection to one of them
(the listening socket is shared), and each keeps its own micro-batcher, so a
batch holds the requests of the connections that process accepted.

Each worker is one `create_app(..., workers=N)` built in its own process by
`WorkerApp` (picklable, so uvicorn's supervisor can start it by `spawn`):
startup waits until the run folder is loaded and verified, and fails when it
cannot be, so the process only accepts connections once it can answer.
uvicorn's supervisor (`uvicorn.supervisors.Multiprocess`) restarts a worker
that dies and, on SIGHUP, replaces the workers one by one, each new one
loading the run folder before an old one stops: that is how a multi-worker
server reloads (`POST /admin/reload` would reach one worker only, so it is
refused). What one worker holds — the model, `/metrics` — is its own.

Every server process, one or N, also gets a short GIL switch interval
(`GIL_SWITCH_S`), malloc that keeps freed memory (`keep_freed_memory`) and its
torch thread count (`torch_threads`) from here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from genrec.malloc import keep_freed_memory
from genrec.serve.batching import BatchingConfig
from genrec.serve.limits import ServeLimits

WORKER_START_S = 180
"""How long a replacement worker may take to load and verify the run folder on SIGHUP before the
supervisor gives up on it and keeps the old one."""


GIL_SWITCH_S = 0.0005
"""How long a thread may hold the GIL while another waits for it (Python's default is 5 ms).

A server process runs two threads that both need the GIL: the event loop
(HTTP, answers) and the retrieve thread (the beam search's Python between its
torch calls, each of which lets the GIL go). While the loop writes a batch's
answers, the retrieve thread waited up to 5 ms to take the GIL back after
every torch call, so the model stood still exactly when it had work; at
0.5 ms it keeps going (measured at concurrency 32: 395-438 req/s before,
431-471 after, same machine, `benchmarks/serve_load.py`)."""


def use_short_gil_switch() -> None:
    sys.setswitchinterval(GIL_SWITCH_S)




def torch_threads(workers: int, threads: int | None) -> int | None:
    """The torch threads each worker uses: `threads` if given, else `$OMP_NUM_THREADS` (None: leave torch
    alone), else the CPU cores shared out among the workers; None for one worker and no setting (torch's own
    default)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be ≥ 1, got {threads}")
        return threads
    if "OMP_NUM_THREADS" in os.environ or workers == 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def use_torch_threads(threads: int | None) -> None:
    """Set this process's torch thread count before the model loads (torch reads `$OMP_NUM_THREADS` on import)."""
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@dataclass(frozen=True)
class WorkerApp:
    """Builds one worker's app inside the worker process (uvicorn calls it as an app factory)."""

    run: Path
    retrievers: tuple[str, ...]
    batching: BatchingConfig
    limits: ServeLimits
    workers: int
    threads: int | None

    def __call__(self):
        from genrec.serve.app import create_app

        use_torch_threads(self.threads)
        use_short_gil_switch()
        keep_freed_memory()
        return create_app(self.run, self.retrievers, batching=self.batching, limits=self.limits,
                          background_load=False, workers=self.workers)


def serve_workers(app: WorkerApp, host: str, port: int, log_level: str = "warning") -> None:
    """Bind `host:port` once and run `app.workers` worker processes on it until SIGINT/SIGTERM."""
    from uvicorn.supervisors import Multiprocess

    from genrec.serve.connections import uvicorn_config

    config = uvicorn_config(app, host, port, app.limits, log_level=log_level, workers=app.workers, factory=True)
    config.timeout_worker_healthcheck = WORKER_START_S
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
