"""Slow and idle clients can't hold the web server: head and body read timeouts, a connection cap.

aiohttp's server offers an idle keep-alive timeout (``keepalive_timeout``, passed to the runner) and
size limits, but no time limit on reading a request head or body and no cap on open connections:
300 connections that sent half a request head stayed open, and with few open files left ``/health``
stopped answering. What it lacks is added here through public API only, around aiohttp's own
protocol (no HTTP parsing of ours):

- ``GuardedConnection`` wraps the ``RequestHandler`` that aiohttp's ``Server`` makes for each
  connection (the listening socket is made with ``loop.create_server`` and this factory). It counts
  open connections: past ``max_connections`` a new one gets a short 503 and is closed before aiohttp
  sees it, so the ones being served are untouched. It closes a connection that has not delivered a
  complete request head within ``header_timeout`` of opening, or of the first byte after its
  previous answer (slowloris). It notes when bytes last arrived.
- ``ConnectionGuard.middleware`` tells the connection when a request starts and ends (a request
  reaching the app means its head is complete), caps requests per connection (the answer then
  says ``Connection: close``), and watches bodies: when no byte has arrived for ``body_timeout``
  while the server was reading and the body is unfinished, the body's reads fail with
  ``BodyTimeout`` and the client gets a 408 and the connection closes. Silence is what counts, so
  a slow upload that keeps sending is never cut; while aiohttp has paused reading (its buffer is
  full because the handler isn't reading yet) the client isn't blamed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from prometheus_client import Counter, Gauge

from bot.app.metrics import Metrics
from bot.app.settings import HttpSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OVER_CAPACITY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
                 b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 36\r\n\r\n"
                 b"too many connections; retry shortly\n")


class BodyTimeout(TimeoutError):
    """No byte of a request body arrived for ``body_timeout`` seconds."""


def open_file_limit() -> int | None:
    """The process's soft ``RLIMIT_NOFILE``, or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(configured: int, file_limit: int | None) -> int:
    """At most half the open-file limit goes to HTTP connections.

    The rest stays for the database, Discord's and the gateway's connections, logs, and the
    connections being refused; a cap above it would let idle clients exhaust the process's files
    (``/chat`` failing with "Too many open files").
    """
    if file_limit is None:
        return configured
    return max(1, min(configured, file_limit // 2))


class ConnectionGuard:
    """The state shared by every connection of one listening socket; see the module docstring."""

    def __init__(self, limits: HttpSettings, metrics: Metrics) -> None:
        self.limits = limits
        self.max_connections = limits.max_connections
        self.active = 0
        self.closed = Counter(
            "gatecord_http_connections_closed_total",
            "Connections the web server closed to protect itself, by reason",
            ("reason",), registry=metrics.registry,
        )
        for reason in ("head_timeout", "body_timeout", "over_capacity"):
            self.closed.labels(reason=reason)
        self.open = Gauge("gatecord_http_connections_open", "Open connections to the web server",
                          registry=metrics.registry)
        self.open.set_function(lambda: self.active)

    def apply_open_file_limit(self, file_limit: int | None) -> None:
        """Lower the cap below the open-file limit (warning once) when the configured one doesn't fit."""
        cap = connection_cap(self.limits.max_connections, file_limit)
        if cap < self.limits.max_connections:
            log.warning(
                "http.max_connections = %d does not fit the process's open-file limit (%d): serving at most %d "
                "connections; raise the limit (ulimit -n, LimitNOFILE=) to allow more",
                self.limits.max_connections, file_limit, cap,
            )
        self.max_connections = cap

    def protocol_factory(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """For ``loop.create_server``: ``make_handler`` is aiohttp's ``runner.server``."""
        return lambda: GuardedConnection(self, make_handler)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        conn = transport.get_protocol() if transport is not None else None
        if not isinstance(conn, GuardedConnection):  # served some other way (aiohttp's test server)
            return await handler(request)
        conn.request_started()
        watch = None
        if request.body_exists and not request.content.is_eof():  # a small body usually came with the head
            watch = _BodyWatch(request, conn, self.limits.body_timeout, self._body_timed_out)
        try:
            response = await handler(request)
        except BodyTimeout:
            response = web.json_response(
                {"error": "request_timeout",
                 "message": f"no part of the request body arrived for {self.limits.body_timeout:g} s"},
                status=408,
            )
            response.force_close()
            return response
        finally:
            if watch is not None:
                watch.stop()
            conn.request_finished()
        if conn.requests >= self.limits.max_requests_per_connection and not response.prepared:
            response.force_close()
        return response

    def _body_timed_out(self) -> None:
        self.closed.labels(reason="body_timeout").inc()


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the cap and the head timeout.

    Every protocol callback is passed on unchanged; aiohttp's handler is only made once the
    connection is admitted.
    """

    def __init__(self, guard: ConnectionGuard, make_handler: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self._make_handler = make_handler
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.last_data = self.loop.time()
        self.requests = 0
        self.in_request = False
        # When the awaited request head is due (None: no head awaited). One timer at most, not re-made
        # per request: when it fires early (the deadline moved on) it re-arms for the new deadline.
        self._head_deadline: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        guard = self.guard
        if guard.active >= guard.max_connections:
            guard.closed.labels(reason="over_capacity").inc()
            self.transport.write(OVER_CAPACITY)
            self.transport.close()
            return
        guard.active += 1
        self.inner = self._make_handler()
        self._await_head()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.inner is not None:
            self.guard.active -= 1
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        self.last_data = self.loop.time()
        if not self.in_request and self._head_deadline is None:  # the first byte of the next request
            self._await_head()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- request boundaries (from the middleware) ------------------------------------------------
    def request_started(self) -> None:
        """The app got a request: its head arrived complete."""
        self.in_request = True
        self.requests += 1
        self._head_deadline = None

    def request_finished(self) -> None:
        """Answered; the head timer restarts with the next request's first byte (idle time until then is
        aiohttp's ``keepalive_timeout``)."""
        self.in_request = False

    # -- head timeout ----------------------------------------------------------------------------
    def _await_head(self) -> None:
        self._head_deadline = self.loop.time() + self.guard.limits.header_timeout
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._check_head)

    def _check_head(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.in_request or self.transport is None or self.transport.is_closing():
            return
        if self.loop.time() < deadline:  # armed for an earlier head that arrived in time
            self._head_timer = self.loop.call_at(deadline, self._check_head)
            return
        self.guard.closed.labels(reason="head_timeout").inc()
        log.debug("closed a connection that sent no complete request head in %s s", self.guard.limits.header_timeout)
        self.transport.close()


class _BodyWatch:
    """Fails a request body's reads once no byte has arrived for ``timeout`` while the server was reading."""

    def __init__(self, request: web.Request, conn: GuardedConnection, timeout: float,
                 on_timeout: Callable[[], Any]) -> None:
        self.content = request.content
        self.conn = conn
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.quiet_since = conn.loop.time()  # the head just arrived; the body's clock starts now
        self.timer: asyncio.TimerHandle | None = conn.loop.call_later(timeout, self._check)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        self.timer = None
        if self.content.is_eof() or self.content.exception() is not None:
            return
        loop, transport = self.conn.loop, self.conn.transport
        now = loop.time()
        if transport is None or transport.is_closing():
            return
        if not transport.is_reading():  # aiohttp paused reading (buffer full): the client isn't silent
            self.quiet_since = now
        self.quiet_since = max(self.quiet_since, self.conn.last_data)
        if now - self.quiet_since >= self.timeout:
            self.on_timeout()
            self.content.set_exception(BodyTimeout(f"no body byte for {self.timeout:g} s"))
            return
        self.timer = loop.call_at(self.quiet_since + self.timeout, self._check)
