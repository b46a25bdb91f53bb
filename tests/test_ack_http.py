"""bot/ack_http.py: the keep-alive client interaction acknowledgements go through."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.ack_http import AckHttpError, HttpAnswer, KeepAlivePool
from bot.early_ack import AckRefused

UA = "DiscordBot (gatecord-test)"


class Recorder:
    """An aiohttp server that records what it receives and from which client port."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.client_ports: set[int] = set()
        self.answer: Callable[[web.Request], Awaitable[web.StreamResponse]] = self._no_content

    async def _no_content(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.client_ports.add(peer[1])
        self.requests.append({"method": request.method, "path": request.path, "headers": dict(request.headers),
                              "body": await request.read()})
        return await self.answer(request)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield rec, f"http://127.0.0.1:{port}/api/v10"
    finally:
        await runner.cleanup()


async def raw_server(reply: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> tuple[asyncio.Server, str]:
    """A bare TCP server whose every connection is handled by ``reply`` (for answers aiohttp won't give)."""
    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/api/v10"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


def replying(reply: bytes, *, hang_up_after: float = 0.0, seen: list[bytes] | None = None) -> Callable[
        [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A raw-server handler: read one request, write ``reply`` as is, close ``hang_up_after`` s later."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if seen is not None:
            seen.append(request)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(hang_up_after)
        writer.close()

    return handle


async def test_posts_the_json_body_to_the_path_under_the_base_url(recorder: tuple[Recorder, str]) -> None:
    rec, base = recorder
    pool = KeepAlivePool(base, user_agent=UA)
    answer = await pool.post_json("/interactions/123/a-token/callback", b'{"type":5}')
    pool.close()
    assert answer == HttpAnswer(204, b"")
    [req] = rec.requests
    assert req["method"] == "POST" and req["path"] == "/api/v10/interactions/123/a-token/callback"
    assert req["body"] == b'{"type":5}'
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["User-Agent"] == UA
    assert req["headers"]["Host"] == base.split("/")[2]


async def test_a_burst_shares_at_most_max_connections_and_they_are_kept(recorder: tuple[Recorder, str]) -> None:
    rec, base = recorder
    pool = KeepAlivePool(base, user_agent=UA, max_connections=4)
    answers = await asyncio.gather(*[pool.post_json(f"/n/{i}", b"{}") for i in range(100)])
    assert [a.status for a in answers] == [204] * 100
    assert sorted(r["path"] for r in rec.requests) == sorted(f"/api/v10/n/{i}" for i in range(100))
    assert pool.connections_opened <= 4 and len(rec.client_ports) == pool.connections_opened
    for i in range(20):  # later requests reuse the warm connections
        await pool.post_json(f"/later/{i}", b"{}")
    assert len(rec.client_ports) == pool.connections_opened <= 4
    pool.close()


async def test_an_error_answer_comes_back_with_its_body(recorder: tuple[Recorder, str]) -> None:
    rec, base = recorder

    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "Interaction has already been acknowledged.", "code": 40060}, status=400)

    rec.answer = refuse
    pool = KeepAlivePool(base, user_agent=UA)
    answer = await pool.post_json("/interactions/1/t/callback", b'{"type":5}')
    assert answer.status == 400 and json.loads(answer.body)["code"] == 40060
    assert str(AckRefused(answer)) == "HTTP 400, Discord code 40060"
    assert str(AckRefused(HttpAnswer(502, b"<html>bad gateway</html>"))) == "HTTP 502"
    rec.answer = rec._no_content  # the connection is still good after an error answer
    assert (await pool.post_json("/again", b"{}")).status == 204
    assert pool.connections_opened == 1
    pool.close()


async def test_a_chunked_answer_is_read_whole_and_the_connection_reused(recorder: tuple[Recorder, str]) -> None:
    rec, base = recorder

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"a":', b'"b"', b"}"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    rec.answer = chunked
    pool = KeepAlivePool(base, user_agent=UA)
    assert await pool.post_json("/x", b"{}") == HttpAnswer(200, b'{"a":"b"}')
    assert await pool.post_json("/y", b"{}") == HttpAnswer(200, b'{"a":"b"}')
    assert pool.connections_opened == 1
    pool.close()


async def test_connection_close_and_idle_timeout_open_a_fresh_connection() -> None:
    seen: list[bytes] = []
    server, base = await raw_server(replying(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", seen=seen))
    pool = KeepAlivePool(base, user_agent=UA)
    assert (await pool.post_json("/a", b"{}")).status == 204
    assert (await pool.post_json("/b", b"{}")).status == 204
    assert pool.connections_opened == 2 and len(seen) == 2
    server.close()


async def test_an_idle_connection_past_idle_timeout_is_not_reused(recorder: tuple[Recorder, str]) -> None:
    rec, base = recorder
    pool = KeepAlivePool(base, user_agent=UA, idle_timeout=0.05)
    await pool.post_json("/a", b"{}")
    await pool.post_json("/b", b"{}")
    assert pool.connections_opened == 1
    await asyncio.sleep(0.1)
    await pool.post_json("/c", b"{}")
    assert pool.connections_opened == 2
    pool.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    # keep-alive allowed, then the server's own keep-alive timeout closes the connection
    server, base = await raw_server(replying(b"HTTP/1.1 204 No Content\r\n\r\n", hang_up_after=0.02))
    pool = KeepAlivePool(base, user_agent=UA)
    assert (await pool.post_json("/a", b"{}")).status == 204
    await asyncio.sleep(0.1)
    assert (await pool.post_json("/b", b"{}")).status == 204
    assert pool.connections_opened == 2
    server.close()


async def test_a_silent_server_times_out_and_its_connection_is_closed() -> None:
    closed = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client gives up
        closed.set()

    server, base = await raw_server(never_answer)
    pool = KeepAlivePool(base, user_agent=UA, timeout=0.2)
    with pytest.raises(TimeoutError):
        await pool.post_json("/a", b"{}")
    await asyncio.wait_for(closed.wait(), 2)
    server.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "closed the connection before answering"),
        (b"SMTP ready\r\n\r\n", "malformed HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection before answering"),
    ],
    ids=["closed-without-answer", "not-http", "body-cut-short"],
)
async def test_broken_answers_raise_ack_http_error(reply: bytes, message: str) -> None:
    server, base = await raw_server(replying(reply))
    pool = KeepAlivePool(base, user_agent=UA)
    with pytest.raises(AckHttpError, match=message):
        await pool.post_json("/a", b"{}")
    server.close()


async def test_a_body_ended_by_closing_the_connection_is_an_answer() -> None:
    server, base = await raw_server(replying(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"))
    pool = KeepAlivePool(base, user_agent=UA)
    assert await pool.post_json("/a", b"{}") == HttpAnswer(200, b"all of it")
    server.close()


async def test_an_informational_answer_is_followed_by_the_real_one() -> None:
    async def early_hints_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await reader.read()

    server, base = await raw_server(early_hints_first)
    pool = KeepAlivePool(base, user_agent=UA)
    assert await pool.post_json("/a", b"{}") == HttpAnswer(204, b"")
    pool.close()
    server.close()


async def test_nothing_listening_raises_an_os_error() -> None:
    server, base = await raw_server(lambda r, w: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    pool = KeepAlivePool(base, user_agent=UA)
    with pytest.raises(OSError):
        await pool.post_json("/a", b"{}")


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        KeepAlivePool("ws://127.0.0.1/api", user_agent=UA)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_https_verifies_the_server_certificate(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client refused our certificate
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    base = f"https://localhost:{port}/api/v10"
    trusting = ssl.create_default_context(cafile=str(cert))
    pool = KeepAlivePool(base, user_agent=UA, ssl_context=trusting)
    assert (await pool.post_json("/a", b"{}")).status == 204
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's trust store doesn't know this certificate
        await KeepAlivePool(base, user_agent=UA).post_json("/a", b"{}")
    server.close()
