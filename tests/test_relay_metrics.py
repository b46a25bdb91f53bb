"""``GET /metrics`` of the bot's web server, scraped over HTTP and read with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST

from bot.app.metrics import Metrics
from bot.app.settings import Settings
from bot.app.web import WebServer
from bot.relay.api import ChannelInfo
from bot.relay.outbox import PostRecord
from bot.relay.service import RelayService
from bot.relay.transport import Delivered
from bot.storage.store import Store
from tests import prometheus_text as metrics_text
from tests.test_relay_e2e import create_key, post

GUILD, CHAN = 1000, 1001


async def scrape(base_url: str) -> metrics_text.Samples:
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
            return metrics_text.parse(await resp.text())


# -- the real bot against the Discord emulator ---------------------------------------------------------

async def test_a_real_post_counts_in_the_request_counter(bot_env: Any) -> None:
    key = await create_key(bot_env)
    labels = {"route": "/send-data", "method": "POST", "status": "202"}
    before = await scrape(bot_env.http)
    assert metrics_text.value(before, "gatecord_http_requests_total", **labels) is None
    status, _ = await post(bot_env, key, {"channelId": str(bot_env.discord.channel_id), "content": "counted"})
    assert status == 202
    after = await scrape(bot_env.http)
    assert metrics_text.value(after, "gatecord_http_requests_total", **labels) == 1
    assert metrics_text.value(after, "gatecord_http_request_duration_seconds_count", route="/send-data", method="POST") == 1
    assert metrics_text.value(after, "gatecord_relay_posts_total", result="accepted") == 1
    # the first scrape is counted too: by its route pattern, not a raw path
    assert metrics_text.value(after, "gatecord_http_requests_total", route="/metrics", method="GET", status="200") == 1


async def test_a_failing_collector_is_logged_and_counted_and_the_scrape_still_answers(
    bot_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = bot_env.bot.relay.outbox

    async def broken_counts() -> dict[str, int]:
        raise RuntimeError("database is locked")

    first = await scrape(bot_env.http)
    assert metrics_text.value(first, "gatecord_metrics_collect_errors_total", collector="relay_queue_depth") == 0
    assert metrics_text.value(first, "gatecord_relay_queue_depth", status="queued") == 0
    outbox.counts = broken_counts  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="bot.app.metrics"):
        m = await scrape(bot_env.http)
    assert metrics_text.value(m, "gatecord_metrics_collect_errors_total", collector="relay_queue_depth") == 1
    assert metrics_text.value(m, "gatecord_http_requests_total", route="/metrics", method="GET", status="200") == 1
    assert metrics_text.value(m, "gatecord_relay_queue_depth", status="queued") == 0  # last refreshed value
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "relay_queue_depth" in warnings[0].getMessage() and "database is locked" in warnings[0].getMessage()


# -- the relay and the bot's web server, Discord replaced by a transport that holds posts -----------------

class Scope:
    async def ready(self) -> bool:
        return True

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        return ChannelInfo(GUILD, None, True) if channel_id == CHAN else None


class HeldTransport:
    """Holds every delivery until ``release`` is set; ``started`` is set when the first one begins."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.next_id = 700_000

    async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered:
        self.started.set()
        await self.release.wait()
        self.next_id += 1
        return Delivered(self.next_id)


class Relay:
    def __init__(self, service: RelayService, client: TestClient, transport: HeldTransport) -> None:
        self.service, self.client, self.transport = service, client, transport

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")


@pytest.fixture
async def relay(tmp_path: Path, store: Store) -> AsyncIterator[Relay]:
    """The relay on the bot's web server, on SQLite and on PostgreSQL (``store`` runs the test on both)."""
    web_server = WebServer("127.0.0.1", 0)
    transport = HeldTransport()
    settings = Settings(storage={"path": str(tmp_path / "relay.db")}, relay={"rate_per_minute": 600, "burst": 100})
    service = RelayService(None, store, settings, metrics=web_server.metrics, scope=Scope(), transport=transport)
    service.add_routes(web_server.router)
    client = TestClient(TestServer(web_server.app))
    await client.start_server()
    await service.start()
    try:
        yield Relay(service, client, transport)
    finally:
        transport.release.set()
        await service.stop(1.0)
        await client.close()


async def test_queue_depth_gauge_reflects_posts_waiting_for_discord(relay: Relay) -> None:
    key = (await relay.service.keys.create(GUILD, name="depth", created_by=1)).secret
    auth = {"Authorization": f"Bearer {key}"}
    ids = []
    for i in range(3):  # one channel: the first is being sent, the other two wait their turn
        resp = await relay.client.post("/send-data", json={"channelId": str(CHAN), "content": f"p{i}"}, headers=auth)
        assert resp.status == 202
        ids.append((await resp.json())["id"])
    await asyncio.wait_for(relay.transport.started.wait(), 5)
    m = await scrape(relay.url)
    assert metrics_text.value(m, "gatecord_relay_queue_depth", status="sending") == 1
    assert metrics_text.value(m, "gatecord_relay_queue_depth", status="queued") == 2
    assert metrics_text.value(m, "gatecord_relay_scheduled_posts") == 3

    done = relay.service.worker.waiter(ids[-1])
    relay.transport.release.set()
    assert await asyncio.wait_for(done, 5) == "delivered"
    m = await scrape(relay.url)
    assert metrics_text.value(m, "gatecord_relay_queue_depth", status="sending") == 0
    assert metrics_text.value(m, "gatecord_relay_queue_depth", status="queued") == 0
    assert metrics_text.value(m, "gatecord_relay_deliveries_total", outcome="delivered") == 3


# -- the registry itself -----------------------------------------------------------------------------------

async def test_a_hanging_collector_times_out_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(refresh_timeout=0.01)
    never = asyncio.Event()
    ran: list[str] = []

    async def hangs() -> None:
        await never.wait()

    async def works() -> None:
        ran.append("works")

    metrics.add_refresher("hangs", hangs)
    metrics.add_refresher("works", works)
    with caplog.at_level(logging.WARNING, logger="bot.app.metrics"):
        m = metrics_text.parse((await metrics.render()).decode())
    assert ran == ["works"]  # the others still refresh
    assert metrics_text.value(m, "gatecord_metrics_collect_errors_total", collector="hangs") == 1
    assert metrics_text.value(m, "gatecord_metrics_collect_errors_total", collector="works") == 0
    assert any("hangs" in r.getMessage() and "no answer within" in r.getMessage() for r in caplog.records)


def test_every_bot_has_its_own_registry() -> None:
    a, b = WebServer("127.0.0.1", 0), WebServer("127.0.0.1", 0)  # would raise "Duplicated timeseries" if shared
    assert a.metrics.registry is not b.metrics.registry
