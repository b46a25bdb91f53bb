"""Slow and idle clients can't hold the bot's web server (issue 15, "Web server").

The real server (``WebServer.start()``: its own listening socket on 127.0.0.1) with the relay's routes
and a real SQLite outbox, Discord replaced by a scripted transport. Raw sockets play the slow clients:
half-sent request heads, a chunked POST that stalls, idle connections past the cap. The server must
close them (a read returns ``b""`` or the connection is reset) while ``/health`` and a relay post
still answer. Timeouts are configured small; nothing waits on the clock: every wait is on a socket
being closed or an answer arriving, bounded only so that a hang fails instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.app.web import WebServer
from bot.app.settings import HttpSettings
from bot.app.web_guard import connection_cap
from bot.relay.service import RelayService
from tests.test_relay_api import DIGICORD, GUILD, FakeScope, ScriptedTransport, make_settings
from tests.waiting import SignallingStore

HANG = 10.0  # only turns a hang (the bug) into a failure; the server closes well before


@dataclass
class Served:
    web: WebServer
    key: str
    host: str
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def health(self, session: aiohttp.ClientSession) -> int:
        async with session.get(f"{self.web.base_url}/health") as resp:
            assert await resp.json() == {"status": "ok"}
            return resp.status

    async def relay_post(self, session: aiohttp.ClientSession) -> int:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        async with session.post(f"{self.web.base_url}/send-data", data=json.dumps(DIGICORD), headers=headers) as resp:
            body = await resp.json()
            assert body["status"] == "queued", body
            return resp.status


@asynccontextmanager
async def serve(tmp_path: Path, limits: HttpSettings,
                open_files: Callable[[], int | None] = lambda: None) -> AsyncIterator[Served]:
    store = SignallingStore(tmp_path / "relay.db")
    await store.open()
    web_server = WebServer("127.0.0.1", 0, limits=limits, open_files=open_files)
    service = RelayService(None, store, make_settings(tmp_path), metrics=web_server.metrics, scope=FakeScope(),
                           transport=ScriptedTransport())
    service.add_routes(web_server.router)
    await web_server.start()
    await service.start()
    try:
        key = await service.keys.create(GUILD, name="ci", created_by=1)
        assert web_server.bound_port is not None
        yield Served(web_server, key.secret, "127.0.0.1", web_server.bound_port)
    finally:
        await service.stop(5.0)
        await web_server.close()
        await store.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (a reset counts as closed)."""
    received = b""
    async with asyncio.timeout(HANG):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def closed(srv: Served, reason: str) -> float | None:
    """``gatecord_http_connections_closed_total{reason}`` as ``/metrics`` shows it."""
    return srv.web.metrics.registry.get_sample_value("gatecord_http_connections_closed_total", {"reason": reason})


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()


async def test_half_sent_heads_are_closed_while_health_and_relay_answer(tmp_path: Path) -> None:
    limits = HttpSettings(header_timeout=0.3, body_timeout=30, keepalive_timeout=30)
    async with serve(tmp_path, limits) as srv, aiohttp.ClientSession() as session:
        slow = [await srv.connect() for _ in range(100)]
        for _, writer in slow:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow")  # never finished
        # the server is busy with nothing: it answers others meanwhile
        assert await srv.health(session) == 200
        assert await srv.relay_post(session) == 202
        received = await asyncio.gather(*(closed_by_server(reader) for reader, _ in slow))
        assert received == [b""] * 100  # closed without an answer: there was no request
        assert closed(srv, "head_timeout") == 100
        close_all([writer for _, writer in slow])
        assert await srv.health(session) == 200


async def test_head_timer_restarts_with_the_next_request_on_a_kept_alive_connection(tmp_path: Path) -> None:
    limits = HttpSettings(header_timeout=0.3, keepalive_timeout=60)
    async with serve(tmp_path, limits) as srv:
        reader, writer = await srv.connect()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = await reader.readuntil(b'{"status": "ok"}')
        assert first.startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the second head is never finished
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_stalled_chunked_post_gets_408_and_is_closed(tmp_path: Path) -> None:
    limits = HttpSettings(header_timeout=30, body_timeout=0.3, keepalive_timeout=30)
    async with serve(tmp_path, limits) as srv, aiohttp.ClientSession() as session:
        reader, writer = await srv.connect()
        writer.write(
            b"POST /send-data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + srv.key.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\n{\"cha\r\n"  # …and nothing more
        )
        assert await srv.health(session) == 200
        assert await srv.relay_post(session) == 202
        answer = await closed_by_server(reader)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert b"Connection: close" in head
        assert json.loads(body) == {"error": "request_timeout",
                                    "message": "no part of the request body arrived for 0.3 s"}
        writer.close()
        metrics = await session.get(f"{srv.web.base_url}/metrics")
        text = await metrics.text()
        assert 'gatecord_http_connections_closed_total{reason="body_timeout"} 1.0' in text
        assert 'gatecord_http_requests_total{method="POST",route="/send-data",status="408"} 1.0' in text


async def test_slow_but_steady_upload_is_not_cut(tmp_path: Path) -> None:
    """Each gap is far below ``body_timeout``; the whole upload takes longer than it."""
    limits = HttpSettings(body_timeout=1.0)
    body = json.dumps(DIGICORD).encode()
    pieces = [body[i:i + 8] for i in range(0, len(body), 8)]
    async with serve(tmp_path, limits) as srv:

        async def trickle() -> AsyncIterator[bytes]:
            for piece in pieces:
                await asyncio.sleep(0.05)  # the client's pace (what is tested), not a synchronisation
                yield piece

        assert len(pieces) * 0.05 > limits.body_timeout
        headers = {"Authorization": f"Bearer {srv.key}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{srv.web.base_url}/send-data", data=trickle(), headers=headers) as resp:
                assert resp.status == 202, await resp.text()


async def test_past_the_connection_cap_new_connections_get_503_and_the_others_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Open-file limit 128, the default cap (512) doesn't fit: the server keeps to 64 and says so."""
    caplog.set_level(logging.WARNING, logger="bot.app.web_guard")
    limits = HttpSettings(header_timeout=60, keepalive_timeout=60)  # the idle ones stay for the test
    async with serve(tmp_path, limits, open_files=lambda: 128) as srv:
        assert srv.web.guard.max_connections == 64
        assert ("http.max_connections = 512 does not fit the process's open-file limit (128): serving at most 64 "
                "connections") in caplog.text
        # two clients already connected (kept alive, one connection each)
        monitor = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        poster = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        try:
            assert await srv.health(monitor) == 200
            assert await srv.relay_post(poster) == 202
            idle = [await srv.connect() for _ in range(62)]  # the cap is reached
            extra = [await srv.connect() for _ in range(40)]
            answers = await asyncio.gather(*(closed_by_server(reader) for reader, _ in extra))
            for answer in answers:  # each refused at once, with a reason (or reset if the 503 was lost)
                assert answer == b"" or answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
            assert any(answers)
            assert closed(srv, "over_capacity") == 40
            # the connections already being served are untouched
            assert await srv.health(monitor) == 200
            assert await srv.relay_post(poster) == 202
            # and once idle ones leave, new connections are served again
            for reader, writer in idle[:10]:
                writer.write_eof()
                assert await closed_by_server(reader) == b""
            async with aiohttp.ClientSession() as newcomer:
                assert await srv.health(newcomer) == 200
            close_all([writer for _, writer in idle + extra])
        finally:
            await monitor.close()
            await poster.close()


async def test_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    async with serve(tmp_path, HttpSettings(keepalive_timeout=0.3)) as srv:
        reader, writer = await srv.connect()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status": "ok"}')
        writer.close()


async def test_requests_per_connection_are_capped(tmp_path: Path) -> None:
    async with serve(tmp_path, HttpSettings(max_requests_per_connection=2)) as srv:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            seen = []
            for _ in range(3):
                async with session.get(f"{srv.web.base_url}/health") as resp:
                    assert resp.status == 200
                    seen.append(resp.headers.get("Connection", "keep-alive").lower())
            assert seen == ["keep-alive", "close", "keep-alive"]


def test_connection_cap_keeps_to_half_the_open_file_limit() -> None:
    assert connection_cap(512, None) == 512
    assert connection_cap(512, 1024) == 512
    assert connection_cap(512, 128) == 64
    assert connection_cap(10, 128) == 10
    assert connection_cap(512, 1) == 1
