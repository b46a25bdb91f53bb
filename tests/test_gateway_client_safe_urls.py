"""Result downloads: only http(s), only public addresses (checked after resolution and on every redirect),
except the configured gateway's own origin; size and redirect count capped. Two real servers on
127.0.0.1: the "gateway" and another local service a hostile URL would aim at. No test sends a packet to
a private or metadata address: those are refused before any connection is attempted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.rendering.errors import user_error_message
from gateway_client.config import ClientOptions, GatewayConfig
from gateway_client.errors import InvalidResponse, ResultDownloadFailed
from gateway_client.http import Gateway, Transport
from gateway_client.safe_urls import UnsafeURL, is_public_address
from tests.e2e import serve_app
from tests.pg_server import free_port

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class Servers:
    def __init__(self) -> None:
        self.gateway_hits: list[tuple[str, bool]] = []  # (path, had the API key)
        self.other_hits: list[str] = []
        self.gateway = ""
        self.other = ""


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    s = Servers()

    async def gateway(request: web.Request) -> web.StreamResponse:
        s.gateway_hits.append((request.path, "Authorization" in request.headers))
        tail = request.match_info["tail"]
        if tail.startswith("redirect-to/"):
            raise web.HTTPFound(tail.removeprefix("redirect-to/").replace("_", "/", 2))
        if tail == "hop":
            raise web.HTTPFound("/files/a.png")
        if tail == "loop":
            raise web.HTTPFound("/files/loop")
        return web.Response(body=PNG, content_type="image/png")

    async def other(request: web.Request) -> web.Response:
        s.other_hits.append(request.path)
        return web.Response(body=b"internal secret", content_type="text/plain")

    gw_app, other_app = web.Application(), web.Application()
    gw_app.router.add_get("/files/{tail:.*}", gateway)
    other_app.router.add_get("/{tail:.*}", other)
    async with contextlib.AsyncExitStack() as stack:
        s.gateway = await stack.enter_async_context(serve_app(gw_app))
        s.other = await stack.enter_async_context(serve_app(other_app))
        yield s


@pytest.fixture
async def transport(servers: Servers) -> AsyncIterator[tuple[Transport, Gateway]]:
    t = Transport(ClientOptions(total_timeout=10))
    await t.start()
    gw = Gateway.from_config(GatewayConfig(profile="openai", base_url=servers.gateway + "/v1", api_key="sk-test"))
    try:
        yield t, gw
    finally:
        await t.close()


async def refused(transport: tuple[Transport, Gateway], url: str) -> UnsafeURL:
    t, gw = transport
    with pytest.raises(UnsafeURL) as exc:
        await t.download(gw, url, cap=1_000_000)
    sentence = user_error_message(exc.value)
    assert sentence.startswith("The AI gateway sent its result as a link I won't open (")
    assert "sk-test" not in sentence and "Traceback" not in sentence
    return exc.value


async def test_the_gateways_own_urls_still_work_with_its_key(servers: Servers, transport: Any) -> None:
    t, gw = transport
    data, ctype = await t.download(gw, servers.gateway + "/files/a.png", cap=1000)
    assert data == PNG and ctype == "image/png"
    data, _ = await t.download(gw, servers.gateway + "/files/hop", cap=1000)  # a redirect within the origin
    assert data == PNG
    assert servers.gateway_hits == [("/files/a.png", True), ("/files/hop", True), ("/files/a.png", True)]


async def test_another_port_on_loopback_is_refused(servers: Servers, transport: Any) -> None:
    exc = await refused(transport, servers.other + "/admin")
    assert "loopback" in exc.user_message()
    await refused(transport, servers.other.replace("127.0.0.1", "localhost") + "/admin")  # a name, resolved
    assert servers.other_hits == []


async def test_a_redirect_from_the_gateway_to_a_private_address_is_refused(servers: Servers, transport: Any) -> None:
    target = servers.other.replace("://", ":__") + "/admin"  # the gateway redirects to the other local service
    await refused(transport, f"{servers.gateway}/files/redirect-to/{target}")
    assert servers.gateway_hits and servers.other_hits == []


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.1.2.3/x.png", "private"),
    ("http://192.168.0.7:8080/x.png", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    ("http://[::ffff:10.0.0.1]/x.png", "private"),
    ("http://[::1]/x.png", "loopback"),
    ("file:///etc/passwd", "not http(s)"),
    ("ftp://example.com/x.png", "not http(s)"),
    ("gopher://example.com/x", "not http(s)"),
])
async def test_non_public_or_non_http_urls_are_refused(transport: Any, url: str, reason: str) -> None:
    exc = await refused(transport, url)
    assert reason in exc.user_message()


async def test_redirects_are_bounded(servers: Servers, transport: Any) -> None:
    t, gw = transport
    with pytest.raises(InvalidResponse, match="redirected more than 5 times"):
        await t.download(gw, servers.gateway + "/files/loop", cap=1000)
    assert len(servers.gateway_hits) == 6


async def test_size_cap_still_applies(servers: Servers, transport: Any) -> None:
    t, gw = transport
    with pytest.raises(InvalidResponse, match="cap"):
        await t.download(gw, servers.gateway + "/files/a.png", cap=10)


def test_address_classification() -> None:
    public = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"]
    private = ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "169.254.1.1", "0.0.0.0",
               "100.64.0.1", "100.100.100.200", "224.0.0.1", "::1", "fe80::1", "fd00:ec2::254", "fc00::1",
               "::ffff:127.0.0.1", "2002:a00:1::1", "not an address"]
    assert [a for a in public if not is_public_address(a)] == []
    assert [a for a in private if is_public_address(a)] == []


async def test_a_result_host_that_does_not_answer_is_named(transport: Any) -> None:
    t, _ = transport
    port = free_port()  # nothing listens there: the gateway's own origin (loopback is refused elsewhere)
    gw = Gateway.from_config(GatewayConfig(profile="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-k"))
    with pytest.raises(ResultDownloadFailed) as exc:
        await t.download(gw, f"http://127.0.0.1:{port}/files/a.png", cap=1000)
    assert (exc.value.host, exc.value.status, exc.value.reason) == (f"127.0.0.1:{port}", None, "could not connect")
    assert user_error_message(exc.value).startswith(
        f"The AI gateway made the image, but downloading it from 127.0.0.1:{port} failed (could not connect).")
