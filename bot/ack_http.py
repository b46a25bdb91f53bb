"""A small keep-alive HTTP/1.1 client for one job: POST a small JSON body, get the status back.

Interaction acknowledgements use it (bot/early_ack.py). Measured on a 2-core box against an
aiohttp server in another process, 200 concurrent POSTs over 32 keep-alive connections cost the
client about 220 µs of CPU each through ``aiohttp.ClientSession`` and about 80 µs here; in a
burst of 200 ``/chat`` the acknowledgements were the largest share of the bot's CPU, and CPU is
what delays the last of them. httptools (uvicorn's parser, llhttp) reads the answers, so status
lines, Content-Length, chunked bodies and keep-alive follow the HTTP/1.1 rules.

Scope: one origin (``http`` or ``https``), POST only, no redirects, cookies or proxies (Gatecord
configures none), at most ``max_connections`` connections, each idle one kept ``idle_timeout``
seconds. A connection is reused only after a complete answer that allows keep-alive; after a
timeout, a cancellation or a malformed answer it is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

__all__ = ["AckHttpError", "HttpAnswer", "KeepAlivePool"]

MAX_KEPT_BODY = 4096  # bytes of an answer's body kept (error details for the log)


class AckHttpError(Exception):
    """The connection broke, or the answer was not HTTP, before a complete answer arrived."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes  # at most MAX_KEPT_BODY bytes


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[HttpAnswer] | None = None
        self.closed = False
        self.keep_alive = False
        self.idle_since = 0.0
        self._status = 0
        self._framed = False  # the answer says where its body ends (Content-Length or chunked)
        self._body = bytearray()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(AckHttpError(f"malformed HTTP answer ({exc})"))
            self.close()

    def eof_received(self) -> bool | None:
        if self._status and not self._framed and self.waiter is not None:  # a body that ends with the connection
            waiter, self.waiter = self.waiter, None
            if not waiter.done():
                waiter.set_result(HttpAnswer(self._status, bytes(self._body)))
        self._fail(AckHttpError("the server closed the connection before answering"))
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(AckHttpError("the connection was lost before an answer"))

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._status = 0
        self._framed = False
        self._body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        room = MAX_KEPT_BODY - len(self._body)
        if room > 0:
            self._body += body[:room]

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # informational (103 Early Hints, say): the answer is still to come
            return
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(HttpAnswer(self._status, bytes(self._body)))
        elif waiter is None:  # an answer nobody asked for: the connection can't be trusted
            self.close()

    # -- use ---------------------------------------------------------------------------------
    def send(self, request: bytes, waiter: asyncio.Future[HttpAnswer]) -> None:
        assert self.transport is not None and self.waiter is None
        self.waiter = waiter
        self.keep_alive = False
        self.transport.write(request)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: AckHttpError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class KeepAlivePool:
    """POSTs to paths under ``base_url`` over at most ``max_connections`` keep-alive connections."""

    def __init__(
        self,
        base_url: str,
        *,
        user_agent: str,
        max_connections: int = 32,
        timeout: float = 3.0,
        idle_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        host_header = self._host if parts.port is None else f"{self._host}:{parts.port}"
        self._base_path = parts.path.rstrip("/")
        self._head = f"Host: {host_header}\r\nUser-Agent: {user_agent}\r\nContent-Type: application/json\r\n".encode()
        self._ssl_context = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.connections_opened = 0  # for tests and logs

    async def post_json(self, path: str, body: bytes) -> HttpAnswer:
        """POST ``body`` (JSON) to ``base_url + path``; raises TimeoutError, OSError or AckHttpError."""
        request = b"POST %s%s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            self._base_path.encode(), path.encode(), self._head, len(body), body,
        )
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout), self._slots:
            conn = self._idle_connection(loop.time()) or await self._connect()
            self._busy.add(conn)
            waiter: asyncio.Future[HttpAnswer] = loop.create_future()
            try:
                conn.send(request, waiter)
                answer = await waiter
            except BaseException:
                conn.close()  # state unknown (timeout, cancellation, broken answer)
                raise
            finally:
                self._busy.discard(conn)
            if conn.keep_alive and not conn.closed:
                conn.idle_since = loop.time()
                self._idle.append(conn)
            else:
                conn.close()
            return answer

    def close(self) -> None:
        """Close every connection (requests in flight fail with AckHttpError)."""
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()

    def _idle_connection(self, now: float) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be timed out
            if not conn.closed and now - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._https:
            if self._ssl_context is None:  # reading the system's trust store blocks: not on the loop
                context = await asyncio.to_thread(ssl.create_default_context)
                self._ssl_context = self._ssl_context or context
            _, conn = await loop.create_connection(
                _Connection, self._host, self._port, ssl=self._ssl_context, server_hostname=self._host
            )
        else:
            _, conn = await loop.create_connection(_Connection, self._host, self._port)
        self.connections_opened += 1
        return conn
