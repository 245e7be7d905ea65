"""How `genrec serve` runs uvicorn: connection limits and an idle timeout that holds.

uvicorn closes a kept-alive connection `timeout_keep_alive` seconds after its
last response, but a connection that never sends a whole request — opened and
left silent, or a request line trickled in byte by byte — has no timer at all
and is held for ever; a few thousand of them exhaust the server's file
descriptors. `IdleTimeoutH11Protocol` starts the same timer when the
connection opens and whenever it waits for a request, and stops it only once
a whole request has arrived. It also turns Nagle's algorithm off on every
connection, which asyncio leaves on for `--workers`' shared socket, and sends
an answer's head and body in one system call (`CoalescedWrites`).

And it answers the request of a connection accepted just before a graceful
shutdown. uvicorn's shutdown closes at once every connection with no request
in progress, including one it accepted a moment ago whose request is still on
the way: that client gets a closed connection and no answer, and it does not
retry (it never sent on a kept-alive connection). With `--workers` a reload
stops old workers while the shared socket still hands them connections, so a
loaded server lost a request now and then during SIGHUP. Such a connection now
has `SHUTDOWN_GRACE_S` to send its request, which is answered, and the
connection then closed; a connection that has already been answered is closed
as before.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from genrec.serve.limits import ServeLimits

SHUTDOWN_GRACE_S = 2.0
"""How long a graceful shutdown waits for the first request of a connection it has just accepted."""


class IdleTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that waits `timeout_keep_alive` s for a whole request,
    and answering the first request of one accepted just before a graceful shutdown."""

    _idle_timer: asyncio.TimerHandle | None = None
    _shutting_down = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        _no_delay(transport)
        super().connection_made(CoalescedWrites(transport, self.loop))
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._shutting_down and self.cycle is not None:  # the one request it gets once shutdown has begun
            self.cycle.keep_alive = False
        if self._request_in_progress():
            self._cancel_idle_timer()
        elif self._idle_timer is None:  # a partial request does not reset the clock
            self._arm_idle_timer()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, except for a connection that has not sent a whole request yet:
        it gets `SHUTDOWN_GRACE_S` to send one (the server waits for it), then is closed. (uvicorn sets
        `cycle` at a connection's first whole request and never clears it.)"""
        if self.cycle is None and not self.transport.is_closing():
            self._shutting_down = True
            self._cancel_idle_timer()
            self._idle_timer = self.loop.call_later(SHUTDOWN_GRACE_S, self._close_if_idle)
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_idle_timer()
        super().connection_lost(exc)

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_idle_timer(self) -> None:
        self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._close_if_idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        if not self._request_in_progress() and not self.transport.is_closing():
            self.transport.close()


class CoalescedWrites:
    """A transport whose writes within one event-loop step leave in one `send`.

    uvicorn writes an answer's head and body separately, and a `send` system
    call costs about 0.1 ms on the machines genrec is measured on, as much as
    building the answer; writes made together (an answer's parts) now go
    together at the end of the step. Everything but `write` and `close` is the
    wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


def _no_delay(transport) -> None:
    """Send each write at once (TCP_NODELAY), whoever made the listening socket.

    asyncio sets it only on connections accepted from a socket whose `proto`
    says TCP; the socket `uvicorn.Config.bind_socket` makes for `--workers`
    says 0, so without this every kept-alive answer (head, then body) waited
    for the client's delayed ACK: 44 ms a request, whatever it cost to answer.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def uvicorn_config(app, host: str, port: int, limits: ServeLimits = ServeLimits(), log_level: str = "warning",
                   **options) -> uvicorn.Config:
    """The uvicorn configuration `genrec serve` runs `app` with (`options`: more `uvicorn.Config` arguments)."""
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=IdleTimeoutH11Protocol,
        timeout_keep_alive=limits.keep_alive_s, limit_concurrency=limits.max_connections, **options,
    )
