"""Micro-batching: concurrent requests for one retriever become one `retrieve` call.

A beam search over 32 requests costs far less than 32 beam searches over one,
so the server gathers concurrent requests (at most `max_batch`) and answers
them with one call. The call runs on the retriever's own worker thread — one
at a time, since the `Retriever` protocol promises nothing about thread
safety — so the event loop never blocks; while a batch runs, the next one
fills up, which makes batches grow with load by themselves.

Waiting for companions only pays under load, so the wait adapts: after a
batch of one (a quiet server), a request goes as soon as the event loop has
taken in what arrived with it; after a larger batch (a busy server), the
first request waits up to `max_wait_s` for others — also when it queued
behind a running batch, so the requests of the clients just answered can
join it. A lone request at low load therefore pays no batching delay, and no
request ever waits more than `max_wait_s` plus the batch already running.

Requests in one batch that ask for different `k` go to separate calls (one per
`k`), so a request's answer never depends on what else was in flight.

A small batch runs on one torch thread, a large one on all of the process's:
splitting a few requests' matrix products across cores costs more in thread
hand-offs than it gains, and the other core is better left to the event loop
and the clients; a batch of tens of requests fills both cores
(`benchmarks/results/batch_threads.md`). The thread count changes no
answer, only who computes it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from genrec.retrieval import Ranked, Request, Retriever

BatchObserver = Callable[[str, int, float], None]
"""Called after each `retrieve` call with (retriever name, batch size, seconds)."""


@dataclass(frozen=True)
class BatchingConfig:
    """`max_batch=1` switches micro-batching off (one `retrieve` call per request)."""

    max_batch: int = 64
    max_wait_s: float = 0.005
    parallel_from: int = 32
    """Batches of at least this many requests use every torch thread of the process; smaller ones use one."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {self.max_batch}")
        if self.parallel_from < 1:
            raise ValueError(f"parallel_from must be ≥ 1, got {self.parallel_from}")
        if not 0 <= self.max_wait_s <= 60:
            raise ValueError(f"max_wait_s must be in [0, 60] seconds, got {self.max_wait_s}")


class MicroBatcher:
    """Gathers `submit` calls into batched `retriever.retrieve` calls.

    All state is touched only from the event loop thread; the retriever runs
    on a single worker thread owned by this batcher.
    """

    def __init__(self, name: str, retriever: Retriever, config: BatchingConfig = BatchingConfig(),
                 observer: BatchObserver | None = None):
        self.name = name
        self.retriever = retriever
        self.config = config
        self.observer = observer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"retrieve-{name}")
        self._pending: list[tuple[Request, int, asyncio.Future]] = []
        self._timer: asyncio.Handle | None = None
        self._last_batch_size = 1
        self._busy = False
        self._closing = False
        self._shut_down = False
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, request: Request, k: int) -> Ranked:
        """Answer one request; waits at most `max_wait_s` for companions."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((request, k, future))
        self._schedule(loop)
        return await future

    def close(self) -> None:
        """Stop the worker thread once every request already submitted is answered.

        Called when a reload retires this batcher; requests still holding the
        old model keep working (a late `submit` starts a fresh worker).
        """
        self._closing = True
        self._shut_down_if_idle()

    def _shut_down_if_idle(self) -> None:
        if self._closing and not self._busy and not self._pending and not self._shut_down:
            self._executor.shutdown(wait=False)
            self._shut_down = True

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._busy or not self._pending:
            return
        if len(self._pending) >= self.config.max_batch:
            self._start(loop)
        elif self._timer is None:
            under_load = self._last_batch_size > 1 and self.config.max_wait_s > 0
            self._timer = (loop.call_later(self.config.max_wait_s, self._start, loop) if under_load
                           else loop.call_soon(self._start, loop))

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = [entry for entry in self._pending if not entry[2].done()]  # callers that gave up (timed out)
        if self._busy or not self._pending:
            return
        batch = self._pending[: self.config.max_batch]
        del self._pending[: self.config.max_batch]
        self._last_batch_size = len(batch)
        self._busy = True
        if self._shut_down:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"retrieve-{self.name}")
            self._shut_down = False
        task = loop.create_task(self._run(loop, batch))
        self._tasks.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._tasks.discard)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Request, int, asyncio.Future]]) -> None:
        try:
            by_k: dict[int, list[int]] = {}
            for index, (_, k, _) in enumerate(batch):
                by_k.setdefault(k, []).append(index)
            for k, indices in by_k.items():
                requests = [batch[i][0] for i in indices]
                try:
                    results = await loop.run_in_executor(self._executor, self._retrieve, requests, k)
                except Exception as error:
                    if len(indices) == 1:
                        _settle(batch[indices[0]][2], error=error)
                        continue
                    # One bad request must not fail its companions: answer each alone.
                    for i in indices:
                        try:
                            alone = await loop.run_in_executor(self._executor, self._retrieve, [batch[i][0]], k)
                            _settle(batch[i][2], result=alone[0])
                        except Exception as single_error:
                            _settle(batch[i][2], error=single_error)
                    continue
                for i, ranked in zip(indices, results):
                    _settle(batch[i][2], result=ranked)
        finally:
            self._busy = False
            # Requests that queued while this batch ran wait (at most `max_wait_s`) for the answered
            # clients' next requests, so the load stays one large batch instead of splitting into two
            # half-size ones that alternate: each batch has a fixed cost, and two batches' Python work
            # would take turns on the GIL with the event loop writing the other half's answers.
            if self._pending:  # after the answers just settled are written (the loop runs callbacks in order)
                loop.call_soon(self._schedule, loop)
            self._shut_down_if_idle()

    def _retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        start = time.perf_counter()
        _size_torch_threads(len(requests) >= self.config.parallel_from)
        results = self.retriever.retrieve(requests, k)
        if len(results) != len(requests):
            raise RuntimeError(f"retriever {self.name!r} returned {len(results)} answers for {len(requests)} requests")
        if self.observer is not None:
            self.observer(self.name, len(requests), time.perf_counter() - start)
        return results


_threads_lock = threading.Lock()
_process_threads: int | None = None  # the process's torch threads before any batch resized them


def _size_torch_threads(parallel: bool) -> None:
    """Give the calling (worker) thread's next products every torch thread of the process, or one.

    torch's thread count is process-wide state that this function changes, so the process's own
    count is read once, before the first change, and kept. A retriever that never imported torch
    has no threads to size.
    """
    global _process_threads
    torch = sys.modules.get("torch")
    if torch is None:
        return
    with _threads_lock:
        if _process_threads is None:
            _process_threads = int(torch.get_num_threads())
        torch.set_num_threads(_process_threads if parallel else 1)  # always: another batcher may have changed it


def _settle(future: asyncio.Future, result: Ranked | None = None, error: BaseException | None = None) -> None:
    """Answer a waiting request unless its client already gave up (cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
