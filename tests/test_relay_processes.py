"""The relay split over processes: a web tier that only accepts (``RelayService(deliver=False)``, channel
facts from the ``discord_channels`` table) and delivery workers elsewhere; and two workers draining one
PostgreSQL outbox, each post sent exactly once. Each "process" has its own Store, as processes would."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app.settings import Settings
from bot.app.web import WebServer
from bot.relay.api import ChannelInfo
from bot.relay.directory import DatabaseChannelScope
from bot.relay.openapi import validate_response
from bot.relay.outbox import NewPost, PostRecord
from bot.relay.service import RelayService
from bot.relay.transport import Delivered
from bot.relay.validation import validate_payload
from bot.storage.store import Store
from tests.waiting import Changes, store_writes

GUILD, OTHER_GUILD = 1000, 2000
CHANNELS = [5000 + i for i in range(20)]


class RecordingTransport:
    """Delivers at once; counts sends per post and checks that no channel has two posts in flight."""

    def __init__(self, sends: Counter[str], order: dict[int, list[str]], in_flight: Counter[int]) -> None:
        self.sends, self.order, self.in_flight = sends, order, in_flight
        self.mine = 0
        self.overlaps = 0

    async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered:
        self.in_flight[record.channel_id] += 1
        if self.in_flight[record.channel_id] > 1:
            self.overlaps += 1
        try:
            await asyncio.sleep(0)  # let the other worker run in between
            self.sends[record.id] += 1
            self.order[record.channel_id].append(record.id)
            self.mine += 1
            return Delivered(800_000 + sum(self.sends.values()))
        finally:
            self.in_flight[record.channel_id] -= 1


class EveryChannel:
    async def ready(self) -> bool:
        return True

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        return ChannelInfo(GUILD, None, True) if channel_id in CHANNELS else None


def settings(**relay: Any) -> Settings:
    base = {"rate_per_minute": 1_000_000, "burst": 1_000_000, "wait_timeout": 5.0, "poll_interval": 0.05}
    return Settings(relay={**base, **relay})


async def open_store(db: dict[str, Any]) -> Store:
    store = Store(**db)
    await store.open()
    return store


async def test_two_workers_drain_200_posts_and_send_each_exactly_once(
    pg_migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = store_writes(monkeypatch)
    db = {"url": pg_migrated_url}
    web_store, store_a, store_b = await open_store(db), await open_store(db), await open_store(db)
    web = RelayService(None, web_store, settings(), scope=EveryChannel(), deliver=False)
    await web.start()
    sends: Counter[str] = Counter()
    order: dict[int, list[str]] = defaultdict(list)
    in_flight: Counter[int] = Counter()
    transports = [RecordingTransport(sends, order, in_flight) for _ in range(2)]
    workers = [RelayService(None, s, settings(workers=5), scope=EveryChannel(), transport=t)
               for s, t in zip((store_a, store_b), transports, strict=True)]
    try:
        key = (await web.keys.create(GUILD, name="load", created_by=1)).record
        accepted: dict[int, list[str]] = defaultdict(list)
        for i in range(200):  # queued while no worker runs: both start on a full outbox
            channel = CHANNELS[i % len(CHANNELS)]
            message = validate_payload({"channelId": str(channel), "content": f"post {i}"})
            accepted[channel].append((await web.outbox.accept(NewPost(key, message))).id)
        await asyncio.gather(*(w.start() for w in workers))

        async def drained() -> bool:
            return await web_store.fetchval("SELECT COUNT(*) FROM relay_outbox WHERE status = 'delivered'") == 200

        await writes.wait_until(drained, timeout=60, what="all 200 posts delivered")
    finally:
        await asyncio.gather(*(w.stop(1.0) for w in workers))
        await web.stop()
        for s in (web_store, store_a, store_b):
            await s.close()
    assert len(sends) == 200 and set(sends.values()) == {1}  # every post sent, none twice
    assert all(t.mine > 0 for t in transports), [t.mine for t in transports]  # both did a share
    assert sum(t.overlaps for t in transports) == 0  # never two posts of one channel at once
    assert dict(order) == dict(accepted)  # each channel in acceptance order, across both workers


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend == "sqlite":
        return {"path": tmp_path / "relay.db"}
    return {"url": request.getfixturevalue("pg_migrated_url")}


class Split:
    """A web tier (deliver=False, its own store, HTTP) and a worker process (its own store)."""

    def __init__(self, web: RelayService, worker: RelayService, client: TestClient, store: Store,
                 sends: Counter[str]) -> None:
        self.web, self.worker, self.client, self.store, self.sends = web, worker, client, store, sends

    async def post(self, key: str, body: dict[str, Any], path: str = "/send-data") -> tuple[int, dict[str, Any]]:
        resp = await self.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        answer = await resp.json()
        validate_response(self.web.document, "/send-data", "post", resp.status, answer)
        return resp.status, answer


@pytest.fixture
async def split(db: dict[str, Any]) -> AsyncIterator[Split]:
    web_store, worker_store = await open_store(db), await open_store(db)
    http = WebServer("127.0.0.1", 0)
    web = RelayService(None, web_store, settings(), metrics=http.metrics, deliver=False)  # scope: the table
    web.add_routes(http.router)
    sends: Counter[str] = Counter()
    worker = RelayService(None, worker_store, settings(), scope=EveryChannel(),
                          transport=RecordingTransport(sends, defaultdict(list), Counter()))
    client = TestClient(TestServer(http.app))
    await client.start_server()
    await web.start()
    await worker.start()
    try:
        yield Split(web, worker, client, web_store, sends)
    finally:
        await worker.stop(1.0)
        await web.stop()
        await client.close()
        await web_store.close()
        await worker_store.close()


async def add_channel(store: Store, channel_id: int, guild_id: int, *, parent: int | None = None,
                      messageable: bool = True) -> None:
    """What a gateway process writes for each channel it sees."""
    await store.execute(
        "INSERT INTO discord_channels(channel_id, guild_id, parent_id, messageable, updated_at) VALUES (?, ?, ?, ?, ?)",
        (channel_id, guild_id, parent, int(messageable), time.time()))


async def test_the_web_tier_accepts_and_another_process_delivers(split: Split) -> None:
    key = (await split.web.keys.create(GUILD, name="shop", created_by=1)).secret
    body = {"channelId": str(CHANNELS[0]), "content": "order #1"}
    status, answer = await split.post(key, body)
    assert status == 503 and answer["error"] == "not_ready"  # no gateway process has listed a channel yet

    await add_channel(split.store, CHANNELS[0], GUILD)
    await add_channel(split.store, CHANNELS[1], OTHER_GUILD)
    await add_channel(split.store, CHANNELS[2], GUILD, messageable=False)
    split.web.api.scope = DatabaseChannelScope(split.store)  # a fresh cache: as if a while had passed
    status, answer = await split.post(key, body, "/send-data?wait=true")
    assert status == 200 and answer["status"] == "delivered" and answer["message_id"] is not None
    assert split.sends[answer["id"]] == 1  # delivered by the worker process, once
    resp = await split.client.get(f"/send-data/{answer['id']}", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200 and (await resp.json())["status"] == "delivered"

    status, answer = await split.post(key, {**body, "channelId": str(CHANNELS[1])})
    assert status == 403  # another guild's channel
    status, answer = await split.post(key, {**body, "channelId": str(CHANNELS[3])})
    assert status == 403  # a channel no gateway process has seen
    status, answer = await split.post(key, {**body, "channelId": str(CHANNELS[2])})
    assert status == 400 and answer["errors"][0]["rule"] == "channel:messageable"


async def test_wait_on_the_web_tier_is_bounded_when_nothing_delivers(db: dict[str, Any]) -> None:
    store = await open_store(db)
    web = RelayService(None, store, settings(wait_timeout=0.2), scope=EveryChannel(), deliver=False)
    http = WebServer("127.0.0.1", 0)
    web.add_routes(http.router)
    client = TestClient(TestServer(http.app))
    await client.start_server()
    await web.start()
    try:
        assert web.worker is None and web.transport is None
        key = (await web.keys.create(GUILD, name="k", created_by=1)).secret
        resp = await client.post("/send-data?wait=true", json={"channelId": str(CHANNELS[0]), "content": "x"},
                                 headers={"Authorization": f"Bearer {key}"})
        answer = await resp.json()
        assert resp.status == 202 and answer["status"] == "queued"
        validate_response(web.document, "/send-data", "post", 202, answer)
    finally:
        await web.stop()
        await client.close()
        await store.close()


async def test_database_channel_scope_caches_briefly(store: Store) -> None:
    now = [0.0]
    scope = DatabaseChannelScope(store, ttl=5.0, clock=lambda: now[0])
    assert not await scope.ready() and await scope.lookup(7) is None
    await add_channel(store, 7, GUILD, parent=6)
    assert await scope.lookup(7) is None  # "no such channel" is cached too …
    now[0] = 5.1
    assert await scope.lookup(7) == ChannelInfo(GUILD, 6, True)  # … for ttl seconds
    assert await scope.ready()
    await store.execute("UPDATE discord_channels SET guild_id = ? WHERE channel_id = 7", (OTHER_GUILD,))
    assert (await scope.lookup(7) or ChannelInfo(0, None, True)).guild_id == GUILD
    now[0] = 10.3
    assert (await scope.lookup(7) or ChannelInfo(0, None, True)).guild_id == OTHER_GUILD


async def test_a_worker_finds_posts_accepted_elsewhere_by_polling(store: Store) -> None:
    """No news in the worker's process: the post is found by its periodic look, which the test drives."""
    polls: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
    poll_interval = settings().relay.poll_interval

    async def sleep(seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds == poll_interval:  # the poll's wait ends when the test says so; claim renewal's never
            await polls.put(future)
        await future

    sends: Counter[str] = Counter()
    changes = Changes()

    class Signalling(RecordingTransport):
        async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered:
            try:
                return await super().deliver(record, prior_doubt=prior_doubt)
            finally:
                changes.changed()

    worker = RelayService(None, store, settings(), scope=EveryChannel(), sleep=sleep,
                          transport=Signalling(sends, defaultdict(list), Counter()))
    web = RelayService(None, store, settings(), scope=EveryChannel(), deliver=False)
    await worker.start()
    await web.start()
    try:
        assert worker.worker is not None
        first_poll = await polls.get()  # started: its first look found nothing, it waits for the next
        passes = worker.worker.claim_passes
        key = (await web.keys.create(GUILD, name="k", created_by=1)).record
        message = validate_payload({"channelId": str(CHANNELS[0]), "content": "from the web tier"})
        post = await web.outbox.accept(NewPost(key, message))
        assert worker.worker.claim_passes == passes and not sends  # nobody told the worker
        first_poll.set_result(None)
        await changes.wait_until(lambda: sends[post.id], what="the post sent after the poll")
        assert sends[post.id] == 1 and worker.worker.claim_passes == passes + 1
    finally:
        await worker.stop(1.0)
        await web.stop()
