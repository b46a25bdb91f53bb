"""Relay retention: old delivered/failed posts are deleted in bounded batches (queued ones never), an
Idempotency-Key is honoured for relay.idempotency_hours only, and GET of a deleted post says why.

Real aiohttp server, a real database (each test on SQLite and on PostgreSQL), Discord replaced by a
transport that decides by content, and an injected wall clock that the tests move by days."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.relay.api import ChannelInfo
from bot.relay.transport import Delivered, PermanentError, RetryableError
from bot.relay.openapi import validate_response
from bot.relay.outbox import NewPost, PostRecord, new_post_id, post_id_time
from bot.relay.retention import RetentionSweeper
from bot.relay.service import RelayService
from bot.relay.validation import validate_payload
from bot.app.settings import RelaySettings, Settings
from bot.storage.store import Store

GUILD, CHAN, STUCK_CHAN = 1000, 1001, 1002
DAY, HOUR = 86400.0, 3600.0


class Clock:
    """Wall clock the tests move; starts 30 days in the past so nothing it stamps is in the future."""

    def __init__(self) -> None:
        self.now = time.time() - 30 * DAY

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Scope:
    async def ready(self) -> bool:
        return True

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        return ChannelInfo(GUILD, None, True) if channel_id in (CHAN, STUCK_CHAN) else None


class ContentTransport:
    """``content == "fail"``: refused for good; ``"stuck"``: retry in an hour; anything else delivered."""

    def __init__(self) -> None:
        self.next_id = 500_000
        self.stuck_tried = asyncio.Event()

    async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered:
        content = record.body.get("content")
        if content == "fail":
            raise PermanentError("missing_access", "the bot cannot see that channel")
        if content == "stuck":
            self.stuck_tried.set()
            raise RetryableError("rate_limited", "Discord answered 429", in_doubt=False, retry_after=HOUR)
        self.next_id += 1
        return Delivered(self.next_id)


class Env:
    def __init__(self, service: RelayService, client: TestClient, store: Store, clock: Clock, transport: ContentTransport) -> None:
        self.service, self.client, self.store, self.clock, self.transport = service, client, store, clock, transport
        self.secret = ""

    async def post(self, content: str, *, idempotency_key: str | None = None, wait: bool = False,
                   channel: int = CHAN) -> tuple[int, dict[str, Any], Any]:
        headers = {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        path = "/send-data?wait=true" if wait else "/send-data"
        resp = await self.client.post(path, data=json.dumps({"channelId": str(channel), "content": content}), headers=headers)
        body = await resp.json()
        validate_response(self.service.document, "/send-data", "post", resp.status, body)
        return resp.status, body, resp.headers

    async def get(self, post_id: str) -> tuple[int, dict[str, Any]]:
        resp = await self.client.get(f"/send-data/{post_id}", headers={"Authorization": f"Bearer {self.secret}"})
        body = await resp.json()
        validate_response(self.service.document, "/send-data/{id}", "get", resp.status, body)
        return resp.status, body

    async def rows(self) -> int:
        return int(await self.store.fetchval("SELECT COUNT(*) FROM relay_outbox"))


@pytest.fixture
async def env(tmp_path: Path, store: Store) -> AsyncIterator[Env]:
    clock = Clock()
    transport = ContentTransport()
    settings = Settings(storage={"path": str(tmp_path / "relay.db")},
                        relay={"rate_per_minute": 6000, "burst": 1000, "wait_timeout": 5.0})
    service = RelayService(None, store, settings, scope=Scope(), transport=transport, clock=clock)
    app = web.Application()
    service.add_routes(app.router)
    client = TestClient(TestServer(app))
    await client.start_server()
    await service.start()
    await asyncio.wait_for(service.retention.wait_for_sweeps(1), 5)  # the start-up pass is over
    e = Env(service, client, store, clock, transport)
    e.secret = (await service.keys.create(GUILD, name="retention", created_by=1)).secret
    try:
        yield e
    finally:
        await service.stop(1.0)
        await client.close()


async def test_sweep_deletes_old_finished_posts_keeps_recent_and_unfinished(env: Env) -> None:
    status, delivered, _ = await env.post("old and delivered", wait=True)
    assert status == 200 and delivered["status"] == "delivered"
    status, failed, _ = await env.post("fail", wait=True)
    assert status == 502 and failed["status"] == "failed"
    status, stuck, _ = await env.post("stuck", channel=STUCK_CHAN)  # its own channel: it holds up the ones after it
    assert status == 202
    await asyncio.wait_for(env.transport.stuck_tried.wait(), 5)

    env.clock.advance(6 * DAY)
    status, recent, _ = await env.post("recent", wait=True)
    assert status == 200
    env.clock.advance(1 * DAY + 60)  # the first three are now 7 days + 1 minute old; "recent" is 1 day old

    result = await env.service.retention.sweep()
    assert (result.posts_deleted, result.batches) == (2, 2)  # one short batch of keys, one of posts

    for gone in (delivered["id"], failed["id"]):
        status, body = await env.get(gone)
        assert status == 404
        assert body["reason"] == "retention" and body["retention_days"] == 7
        assert body["message"] == (f"post {gone} is older than the retention period (7 days): delivered and failed"
                                   " posts are deleted after that")
    status, body = await env.get(stuck["id"])
    assert status == 200 and body["status"] in ("queued", "sending") and body["last_error"]["code"] == "rate_limited"
    status, body = await env.get(recent["id"])
    assert status == 200 and body["status"] == "delivered" and body["message_id"] is not None
    assert await env.rows() == 2

    # an id that was never issued (recent time, or not our format) stays a plain 404
    for unknown in (new_post_id(env.clock()), "rp_" + "a" * 20):
        status, body = await env.get(unknown)
        assert status == 404 and body["message"] == "no post with that id was sent with this key" and "reason" not in body


async def _insert_old(store: Store, n: int, *, status: str, created_at: float, key_id: str) -> None:
    rows = [(new_post_id(created_at), key_id, GUILD, CHAN, '{"content":"x"}', "bot", status, created_at, created_at)
            for _ in range(n)]
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO relay_outbox(id, key_id, guild_id, channel_id, body, via, status, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


async def test_sweep_works_in_bounded_batches_and_lets_posts_in_between(env: Env) -> None:
    assert env.service.worker is not None
    await env.service.worker.stop()  # the old queued posts below stay queued (nothing delivers them)
    key_id = await env.store.fetchval("SELECT key_id FROM relay_keys")
    old = env.clock() - 8 * DAY
    await _insert_old(env.store, 1500, status="delivered", created_at=old, key_id=key_id)
    await _insert_old(env.store, 1000, status="failed", created_at=old, key_id=key_id)
    await _insert_old(env.store, 300, status="queued", created_at=old - DAY, key_id=key_id)
    await _insert_old(env.store, 200, status="delivered", created_at=env.clock() - 6 * DAY, key_id=key_id)

    outbox = env.service.outbox
    key = await env.service.keys.authenticate(env.secret)
    assert key is not None
    sizes: list[int] = []
    accepted_before: list[bool] = []
    post_task: asyncio.Task[Any] | None = None
    real = outbox.prune_finished

    async def counting(before: float, limit: int) -> int:
        nonlocal post_task
        if post_task is None:  # a post is accepted (group commit) while the sweep is running
            message = validate_payload({"channelId": str(CHAN), "content": "during the sweep"})
            post_task = asyncio.create_task(outbox.accept(NewPost(key, message)))
        accepted_before.append(post_task.done())
        n = await real(before, limit)
        sizes.append(n)
        return n

    sweeper = RetentionSweeper(outbox, retention=7 * DAY, idempotency_window=DAY, clock=env.clock, batch_size=1000)
    outbox.prune_finished = counting  # type: ignore[method-assign]
    try:
        result = await sweeper.sweep()
    finally:
        outbox.prune_finished = real  # type: ignore[method-assign]

    assert sizes == [1000, 1000, 500] and result.posts_deleted == 2500
    if env.store.dialect == "sqlite":  # one writer: the sweep must let the post in between its batches
        assert accepted_before == [False, True, True] or accepted_before == [False, False, True], \
            "the post waited for the whole sweep instead of one batch"
    # (PostgreSQL: a delete locks only the rows it deletes; the post is stored alongside, however fast)
    assert post_task is not None
    status, body = await env.get((await post_task).id)
    assert status == 200 and body["status"] in ("queued", "sending", "delivered")
    left = {(r["status"], r["age"]): int(r["n"]) for r in await env.store.fetchall(
        "SELECT status, ROUND((? - created_at) / 86400) AS age, COUNT(*) AS n FROM relay_outbox"
        " WHERE id != ? GROUP BY status, age", (env.clock(), (await post_task).id))}
    assert left == {("queued", 9.0): 300, ("delivered", 6.0): 200}  # old queued kept, recent finished kept


async def test_idempotency_key_is_honoured_for_the_window_then_makes_a_new_post(env: Env) -> None:
    status, first, _ = await env.post("deploy 1", idempotency_key="build-1")
    assert status == 202
    status, other, _ = await env.post("deploy 2", idempotency_key="build-2")
    assert status == 202

    env.clock.advance(23 * HOUR)
    status, again, headers = await env.post("deploy 1", idempotency_key="build-1")
    assert status == 202 and again["id"] == first["id"] and headers["Idempotent-Replayed"] == "true"
    status, conflict, _ = await env.post("something else", idempotency_key="build-1")
    assert status == 422 and conflict["error"] == "idempotency_key_reused"

    env.clock.advance(2 * HOUR)  # 25 hours after the first posts
    # build-1 expires at acceptance time (the sweep has not run yet) …
    status, fresh, headers = await env.post("deploy 1", idempotency_key="build-1")
    assert status == 202 and fresh["id"] != first["id"] and "Idempotent-Replayed" not in headers
    # … build-2 is released by the sweep, then reused with another body without a 422
    result = await env.service.retention.sweep()
    assert result.keys_released == 1 and result.posts_deleted == 0
    status, fresh2, headers = await env.post("deploy 2 (rebuilt)", idempotency_key="build-2")
    assert status == 202 and fresh2["id"] != other["id"] and "Idempotent-Replayed" not in headers

    # the new posts own the keys now; the first ones are still there (only their keys were dropped)
    status, replay, headers = await env.post("deploy 1", idempotency_key="build-1")
    assert replay["id"] == fresh["id"] and headers["Idempotent-Replayed"] == "true"
    assert (await env.get(first["id"]))[0] == 200 and (await env.get(other["id"]))[0] == 200
    assert await env.rows() == 4


async def test_sweeper_runs_at_start_and_then_periodically(env: Env) -> None:
    key_id = await env.store.fetchval("SELECT key_id FROM relay_keys")
    await _insert_old(env.store, 3, status="delivered", created_at=env.clock() - 8 * DAY, key_id=key_id)
    assert env.service.retention.sweeps == 1 and env.service.retention.interval == 3600  # at start, then hourly
    sweeper = RetentionSweeper(env.service.outbox, retention=7 * DAY, idempotency_window=DAY, clock=env.clock,
                               interval=0.01)
    sweeper.start()
    try:
        await asyncio.wait_for(sweeper.wait_for_sweeps(1), 5)
        assert await env.rows() == 0  # the first pass runs right away
        await _insert_old(env.store, 2, status="failed", created_at=env.clock() - 8 * DAY, key_id=key_id)
        await asyncio.wait_for(sweeper.wait_for_sweeps(sweeper.sweeps + 2), 5)  # a later pass, unprompted
    finally:
        await sweeper.stop()
    assert await env.rows() == 0


def test_post_ids_carry_their_creation_time() -> None:
    now = 1_750_000_000.123
    post_id = new_post_id(now)
    assert len(post_id) == 24 and post_id.startswith("rp_")  # Discord nonces are at most 25 characters
    assert post_id_time(post_id) == pytest.approx(now, abs=0.001)
    assert post_id_time("rp_" + "a" * 20) is None  # ids from before the time was embedded
    assert post_id_time("rp_" + "1" * 21) is None and post_id_time("xx_" + "a" * 21) is None


def test_settings_defaults_and_idempotency_window_within_retention() -> None:
    relay = RelaySettings()
    assert (relay.retention_days, relay.idempotency_hours) == (7, 24)
    with pytest.raises(pydantic.ValidationError, match="at most retention_days"):
        RelaySettings(retention_days=0.5, idempotency_hours=24)


async def test_one_process_sweeps_at_a_time(pg_migrated_url: str) -> None:
    """Two processes on one PostgreSQL database: a pass while the other holds the retention lock is
    skipped and deletes nothing; once the lock is free, the pass runs."""
    from bot.relay.outbox import Outbox
    from bot.relay.retention import LOCK_NAME

    mine, other = Store(url=pg_migrated_url), Store(url=pg_migrated_url)
    await mine.open()
    await other.open()
    try:
        clock = Clock()
        key = await RelayService(None, mine, Settings(), scope=Scope(), transport=ContentTransport()).keys.create(
            GUILD, name="k", created_by=1)
        await _insert_old(mine, 5, status="delivered", created_at=clock() - 8 * DAY, key_id=key.record.key_id)
        sweeper = RetentionSweeper(Outbox(mine, clock=clock), retention=7 * DAY, idempotency_window=DAY, clock=clock)
        async with other.lock(LOCK_NAME) as held:
            assert held
            skipped = await sweeper.sweep()
        assert skipped.skipped and skipped.posts_deleted == 0
        assert await mine.fetchval("SELECT COUNT(*) FROM relay_outbox") == 5
        done = await sweeper.sweep()
        assert not done.skipped and done.posts_deleted == 5
        assert await mine.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0
    finally:
        await mine.close()
        await other.close()
