"""The /send-data HTTP API against a real aiohttp server and a real outbox (SQLite and PostgreSQL:
each test runs on both), with Discord replaced by a scripted transport (the end-to-end tests use the
Discord emulator)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.relay.api import ChannelInfo
from bot.relay.transport import Delivered, PermanentError, RetryableError
from bot.relay.openapi import validate_response
from prometheus_client import CONTENT_TYPE_LATEST
from bot.app.web import WebServer
from bot.relay.outbox import PostRecord
from bot.relay.service import RelayService
from bot.app.settings import Settings
from bot.storage.errors import StorageError
from bot.storage.store import Store
from tests import prometheus_text as metrics_text
from tests.waiting import Changes, SignallingStore

GUILD, OTHER_GUILD = 1000, 2000
CHAN, CHAN2, THREAD, OTHER_CHAN, CATEGORY = 1001, 1002, 1003, 2001, 1009


class FakeScope:
    def __init__(self) -> None:
        self.channels = {
            CHAN: ChannelInfo(GUILD, None, True), CHAN2: ChannelInfo(GUILD, None, True),
            THREAD: ChannelInfo(GUILD, CHAN, True), OTHER_CHAN: ChannelInfo(OTHER_GUILD, None, True),
            CATEGORY: ChannelInfo(GUILD, None, False),
        }
        self.is_ready = True
        self.failure: Exception | None = None  # raised by lookup (a channel directory whose database failed)

    async def ready(self) -> bool:
        return self.is_ready

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        if self.failure is not None:
            raise self.failure
        return self.channels.get(channel_id)


class ScriptedTransport:
    """Delivers unless a scripted exception is queued; records every attempt."""

    def __init__(self) -> None:
        self.script: list[BaseException] = []
        self.attempts: list[tuple[str, float | None]] = []
        self.changes = Changes()  # poked on every attempt
        self.delivered: dict[str, int] = {}
        self.gate: asyncio.Event | None = None
        self.next_id = 900_000

    async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered:
        self.attempts.append((record.id, prior_doubt))
        self.changes.changed()
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            raise self.script.pop(0)
        self.next_id += 1
        self.delivered[record.id] = self.next_id
        return Delivered(self.next_id)


class Env:
    def __init__(self, service: RelayService, client: TestClient, transport: ScriptedTransport, scope: FakeScope,
                 store: SignallingStore, web_server: WebServer) -> None:
        self.service, self.client, self.transport, self.scope, self.store = service, client, transport, scope, store
        self.web = web_server
        self.doc = service.document

    async def key(self, *, channels: tuple[int, ...] = (), guild: int = GUILD, allow_mentions: bool = False, name: str | None = None) -> str:
        new = await self.service.keys.create(guild, name=name, created_by=1, channel_ids=channels, allow_mentions=allow_mentions)
        return new.secret

    async def post(self, key: str | None, body: Any, *, path: str = "/send-data", headers: dict[str, str] | None = None,
                   raw: bytes | None = None, content_type: str = "application/json") -> tuple[int, Any, aiohttp.ClientResponse]:
        hdrs = {"Content-Type": content_type, **(headers or {})}
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else json.dumps(body).encode()
        resp = await self.client.post(path, data=data, headers=hdrs)
        payload = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, payload, resp

    async def get(self, key: str, post_id: str) -> tuple[int, Any]:
        resp = await self.client.get(f"/send-data/{post_id}", headers={"Authorization": f"Bearer {key}"})
        return resp.status, await resp.json()

    def check(self, path: str, method: str, status: int, body: Any) -> None:
        validate_response(self.doc, path, method, status, body)

    async def wait_status(self, key: str, post_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        """The post's API answer once it has ``status`` (re-read after every write to the outbox)."""
        async def answer() -> dict[str, Any] | None:
            _, body = await self.get(key, post_id)
            return body if body.get("status") == status else None
        return await self.store.changes.wait_until(answer, timeout, what=f"post {post_id} {status}")


def make_settings(tmp_path: Path, **relay: Any) -> Settings:
    base = {"rate_per_minute": 600, "burst": 100, "wait_timeout": 3.0, "retry_base_delay": 0.01, "retry_max_delay": 0.05,
            "max_attempts": 4}
    base.update(relay)
    return Settings(storage={"path": str(tmp_path / "relay.db")}, http={"max_body_bytes": 1024 * 1024}, relay=base)


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where the outbox lives: ``Store(**db)``; an SQLite file or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return {"path": tmp_path / "relay.db"}
    return {"url": request.getfixturevalue("pg_migrated_url")}


async def build(tmp_path: Path, db: dict[str, Any], *, deliver: bool = True, **relay: Any) -> tuple[Env, Any]:
    store = SignallingStore(**db)
    await store.open()
    transport = ScriptedTransport()
    scope = FakeScope()
    web_server = WebServer("127.0.0.1", 0)  # the bot's web server: /health, /ready, /metrics and the relay's routes
    service = RelayService(None, store, make_settings(tmp_path, **relay), metrics=web_server.metrics, scope=scope,
                           transport=transport, deliver=deliver)
    service.add_routes(web_server.router)
    client = TestClient(TestServer(web_server.app))
    await client.start_server()
    await service.start()

    async def close(grace: float = 5.0) -> None:
        await service.stop(grace)
        await client.close()
        await store.close()

    return Env(service, client, transport, scope, store, web_server), close


@pytest.fixture
async def env(tmp_path: Path, db: dict[str, Any]) -> AsyncIterator[Env]:
    e, close = await build(tmp_path, db)
    try:
        yield e
    finally:
        await close()


DIGICORD = {
    "channelId": str(CHAN), "content": "Hello",
    "embeds": [{"title": "Title here", "description": "", "url": "", "color": None, "image": {"url": ""},
                "author": {"name": ""}, "footer": {"text": "", "icon_url": ""},
                "fields": [{"name": "", "value": "", "inline": True}]}],
    "components": [],
}


async def test_accept_then_deliver_and_status(env: Env) -> None:
    key = await env.key(name="ci")
    status, body, resp = await env.post(key, DIGICORD)
    assert status == 202
    assert body == {"id": body["id"], "status": "queued"}
    assert resp.headers["Location"] == f"/send-data/{body['id']}"
    env.check("/send-data", "post", 202, body)
    done = await env.wait_status(key, body["id"], "delivered")
    assert done["message_id"] == str(env.transport.delivered[body["id"]])
    assert done["channel_id"] == str(CHAN) and done["attempts"] == 1
    env.check("/send-data/{id}", "get", 200, done)
    row = await env.store.fetchone("SELECT body FROM relay_outbox WHERE id = ?", (body["id"],))
    assert json.loads(row["body"]) == {"content": "Hello", "embeds": [{"title": "Title here"}], "allowed_mentions": {"parse": []},
                                       "username": "ci"}  # posts appear under the key's name


async def test_wait_true_answers_with_message_id(env: Env) -> None:
    key = await env.key()
    status, body, _ = await env.post(key, DIGICORD, path="/send-data?wait=true")
    assert status == 200
    assert body["status"] == "delivered" and body["message_id"] == str(env.transport.delivered[body["id"]])
    env.check("/send-data", "post", 200, body)


async def test_wait_is_bounded(tmp_path: Path, db: dict[str, Any]) -> None:
    env, close = await build(tmp_path, db, wait_timeout=0.2)
    try:
        env.transport.gate = asyncio.Event()
        key = await env.key()
        status, body, _ = await env.post(key, DIGICORD, path="/send-data?wait=true")
        assert status == 202 and body["status"] in ("queued", "sending") and body["message_id"] is None
        env.check("/send-data", "post", 202, body)
        env.transport.gate.set()
        await env.wait_status(key, body["id"], "delivered")
    finally:
        await close()


async def test_auth_errors(env: Env) -> None:
    key = await env.key()
    for header in (None, "Basic abc", "Bearer ", "Bearer gcr_nothex00000_x", "Bearer " + key[:-2] + "xx"):
        hdrs = {"Content-Type": "application/json"}
        if header is not None:
            hdrs["Authorization"] = header
        resp = await env.client.post("/send-data", data=json.dumps(DIGICORD), headers=hdrs)
        body = await resp.json()
        assert resp.status == 401, header
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert key not in json.dumps(body)
        env.check("/send-data", "post", 401, body)


async def test_revoked_key_gets_401_at_once(env: Env) -> None:
    key = await env.key(name="ci")
    status, first, _ = await env.post(key, DIGICORD)
    assert status == 202
    record = await env.service.keys.find(GUILD, "ci")
    assert record is not None and await env.service.keys.revoke(GUILD, record.key_id, revoked_by=1)
    status, body, _ = await env.post(key, DIGICORD)
    assert status == 401 and body["message"] == "unknown or revoked relay key"
    resp = await env.client.get(f"/send-data/{first['id']}", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 401


async def test_content_type_json_and_body_errors(env: Env) -> None:
    key = await env.key()
    status, body, _ = await env.post(key, None, raw=b"channelId=1", content_type="application/x-www-form-urlencoded")
    assert status == 415 and "application/json" in body["message"]
    env.check("/send-data", "post", 415, body)
    status, body, _ = await env.post(key, None, raw=b'{"channelId": ', content_type="application/json")
    assert status == 400 and body["error"] == "invalid_json" and "line 1" in body["message"]
    env.check("/send-data", "post", 400, body)
    status, body, _ = await env.post(key, {**DIGICORD, "embeds": [{"title": "x" * 300}]})
    assert status == 400 and body["error"] == "invalid_body"
    assert body["errors"] == [{"path": "$.embeds[0].title", "rule": "max_length:256",
                               "message": "must be at most 256 characters (got 300)"}]
    env.check("/send-data", "post", 400, body)
    status, body, _ = await env.post(key, {**DIGICORD, "components": [
        {"type": 1, "components": [{"type": 2, "style": 1, "label": "Buy", "custom_id": "buy"}]}]})
    assert status == 400 and body["errors"][0]["path"] == "$.components[0].components[0].style"
    assert "only link buttons" in body["errors"][0]["message"]
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0


async def test_two_megabyte_body_gets_413(env: Env) -> None:
    key = await env.key()
    big = json.dumps({"channelId": str(CHAN), "content": "x" * (2 * 1024 * 1024)}).encode()
    status, body, _ = await env.post(key, None, raw=big)
    assert status == 413 and body["max_bytes"] == 1024 * 1024
    env.check("/send-data", "post", 413, body)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap applies while reading
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    resp = await env.client.post("/send-data", data=chunks(), headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert resp.status == 413
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0


async def test_per_key_rate_limit(tmp_path: Path, db: dict[str, Any]) -> None:
    env, close = await build(tmp_path, db, rate_per_minute=60, burst=3)
    try:
        key, other = await env.key(name="a"), await env.key(name="b")
        for _ in range(3):
            assert (await env.post(key, DIGICORD))[0] == 202
        status, body, resp = await env.post(key, DIGICORD)
        assert status == 429 and resp.headers["Retry-After"] == "1" and 0 < body["retry_after"] <= 1
        env.check("/send-data", "post", 429, body)
        assert (await env.post(other, DIGICORD))[0] == 202  # per key
    finally:
        await close()


async def test_a_key_gets_its_posts_in_total_across_two_web_processes(tmp_path: Path, db: dict[str, Any]) -> None:
    """Two relay services on one database (two processes): the key's budget is one bucket there."""
    one, close_one = await build(tmp_path, db, rate_per_minute=1, burst=3)
    two, close_two = await build(tmp_path, db, rate_per_minute=1, burst=3)
    try:
        key = await one.key(name="a")
        answers = [await (one, two)[i % 2].post(key, DIGICORD) for i in range(8)]
        assert [status for status, _, _ in answers] == [202] * 3 + [429] * 5
        assert {resp.headers["Retry-After"] for _, _, resp in answers[3:]} == {"60"}
    finally:
        await close_two()
        await close_one()


async def test_a_rate_limit_the_database_cannot_check_is_a_503(env: Env) -> None:
    key = await env.key()
    await env.store.execute("DROP TABLE rate_buckets")  # the limiter's statement fails from now on
    status, body, resp = await env.post(key, DIGICORD)
    assert status == 503 and body["error"] == "unavailable" and resp.headers["Retry-After"] == "1"
    env.check("/send-data", "post", 503, body)
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0


async def test_channel_scope_403_reveals_nothing(env: Env) -> None:
    key = await env.key()
    answers = []
    for channel in (OTHER_CHAN, 999_999_999_999):  # another guild's channel, a channel that does not exist
        status, body, _ = await env.post(key, {**DIGICORD, "channelId": str(channel)})
        assert status == 403
        env.check("/send-data", "post", 403, body)
        answers.append(body)
    assert answers[0] == answers[1]
    listed = await env.key(channels=(CHAN,), name="listed")
    assert (await env.post(listed, {**DIGICORD, "channelId": str(CHAN2)}))[0] == 403
    assert (await env.post(listed, {**DIGICORD, "channelId": str(CHAN)}))[0] == 202
    assert (await env.post(listed, {**DIGICORD, "channelId": str(THREAD)}))[0] == 202  # a thread of a listed channel
    status, body, _ = await env.post(key, {**DIGICORD, "channelId": str(CATEGORY)})
    assert status == 400 and body["errors"][0]["rule"] == "channel:messageable"


async def test_not_ready_is_503(env: Env) -> None:
    key = await env.key()
    env.scope.is_ready = False
    status, body, resp = await env.post(key, {**DIGICORD, "channelId": "5"})
    assert status == 503 and resp.headers["Retry-After"] == "5"
    env.check("/send-data", "post", 503, body)


async def test_a_channel_check_the_database_cannot_answer_is_503_and_nothing_is_stored(env: Env) -> None:
    key = await env.key()
    env.scope.failure = StorageError("connection lost")
    status, body, resp = await env.post(key, DIGICORD)
    assert status == 503 and body["error"] == "unavailable" and resp.headers["Retry-After"] == "1"
    assert body["message"] == "the channel could not be checked; retry later"
    env.check("/send-data", "post", 503, body)
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0


async def test_get_with_another_key_is_404(env: Env) -> None:
    key, other = await env.key(name="a"), await env.key(name="b")
    _, body, _ = await env.post(key, DIGICORD)
    status, answer = await env.get(other, body["id"])
    assert status == 404
    env.check("/send-data/{id}", "get", 404, answer)


async def test_idempotency_key_returns_the_first_answer(env: Env) -> None:
    key = await env.key()
    headers = {"Idempotency-Key": "order-42"}
    first = await env.post(key, DIGICORD, headers=headers)
    again = await asyncio.gather(*(env.post(key, DIGICORD, headers=headers) for _ in range(5)))
    assert first[0] == 202
    for status, body, resp in again:
        assert status == 202 and body == first[1] and resp.headers["Idempotent-Replayed"] == "true"
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 1
    await env.wait_status(key, first[1]["id"], "delivered")
    assert [a for a, _ in env.transport.attempts] == [first[1]["id"]]
    status, body, _ = await env.post(key, {**DIGICORD, "content": "other"}, headers=headers)
    assert status == 422 and body["error"] == "idempotency_key_reused"
    env.check("/send-data", "post", 422, body)
    other_key = await env.key(name="other")
    assert (await env.post(other_key, DIGICORD, headers=headers))[1]["id"] != first[1]["id"]


async def test_retryable_errors_are_retried_then_delivered_once(env: Env) -> None:
    key = await env.key()
    env.transport.script = [RetryableError("discord_500", "boom", in_doubt=True),
                            RetryableError("rate_limited", "slow down", in_doubt=False, retry_after=0.05)]
    _, body, _ = await env.post(key, DIGICORD)
    done = await env.wait_status(key, body["id"], "delivered")
    assert done["attempts"] == 3
    attempts = [(pid, doubt) for pid, doubt in env.transport.attempts if pid == body["id"]]
    assert attempts[0][1] is None and attempts[1][1] is not None and attempts[2][1] == attempts[1][1]
    assert len(env.transport.delivered) == 1
    assert env.web.metrics.registry.get_sample_value("gatecord_relay_deliveries_total", {"outcome": "retried"}) == 2


async def test_permanent_failure_is_recorded_with_reason(env: Env) -> None:
    key = await env.key()
    env.transport.script = [PermanentError("missing_access", "Discord answered 403 (code 50001): Missing Access")]
    status, body, _ = await env.post(key, DIGICORD, path="/send-data?wait=1")
    assert status == 502 and body["status"] == "failed"
    assert body["error"] == {"code": "missing_access", "message": "Discord answered 403 (code 50001): Missing Access"}
    env.check("/send-data", "post", 502, body)
    status, answer = await env.get(key, body["id"])
    assert answer["status"] == "failed" and answer["attempts"] == 1
    env.check("/send-data/{id}", "get", 200, answer)


async def test_gives_up_after_max_attempts(env: Env) -> None:
    key = await env.key()
    env.transport.script = [RetryableError("discord_502", "bad gateway", in_doubt=True) for _ in range(4)]
    _, body, _ = await env.post(key, DIGICORD)
    failed = await env.wait_status(key, body["id"], "failed")
    assert failed["attempts"] == 4 and failed["error"]["message"].startswith("gave up after 4 attempts")


async def test_channel_order_is_kept_and_retry_blocks_only_its_channel(env: Env) -> None:
    key = await env.key()
    env.transport.script = [RetryableError("discord_500", "boom", in_doubt=True)]
    ids = []
    for i in range(5):
        _, body, _ = await env.post(key, {"channelId": str(CHAN), "content": f"m{i}"})
        ids.append(body["id"])
    for i in ids:
        await env.wait_status(key, i, "delivered")
    order = [pid for pid, _ in env.transport.attempts]
    assert order == [ids[0], *ids]  # first failed, was retried, then the rest in order
    delivered_ids = [env.transport.delivered[i] for i in ids]
    assert delivered_ids == sorted(delivered_ids)


async def test_group_commit_batches_concurrent_posts(env: Env) -> None:
    key = await env.key()
    env.service.limiter.capacity = 1000
    results = await asyncio.gather(*(env.post(key, {"channelId": str(CHAN2), "content": f"n{i}"}) for i in range(200)))
    assert all(status == 202 for status, _, _ in results)
    assert len({body["id"] for _, body, _ in results}) == 200
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 200
    assert env.service.outbox.batches_written < 100


async def test_restart_resumes_queued_and_in_doubt_posts(tmp_path: Path, db: dict[str, Any]) -> None:
    env, close = await build(tmp_path, db)
    env.transport.gate = asyncio.Event()  # nothing gets through before the "crash"
    key = await env.key()
    ids = [(await env.post(key, {"channelId": str(c), "content": "x"}))[1]["id"] for c in (CHAN, CHAN, CHAN2)]
    await env.transport.changes.wait_until(lambda: ids[0] in {pid for pid, _ in env.transport.attempts},
                                           what="the first post in flight")
    await close(0.05)  # stop: the in-flight attempts are cancelled and stay in the outbox
    rows = await _statuses(db, ids)
    assert set(rows.values()) <= {"queued", "sending"} and "sending" in rows.values()
    env2, close2 = await build(tmp_path, db)
    try:
        for i in ids:
            await env2.wait_status(key, i, "delivered")
        doubts = {pid: doubt for pid, doubt in env2.transport.attempts}
        assert doubts[ids[0]] is not None  # re-sent knowing an earlier attempt may have reached Discord
        assert doubts[ids[1]] is None
        assert sorted(env2.transport.delivered) == sorted(ids)
    finally:
        await close2()


async def _statuses(db: dict[str, Any], ids: list[str]) -> dict[str, str]:
    store = Store(**db)
    await store.open()
    try:
        rows = await store.fetchall("SELECT id, status FROM relay_outbox")
        return {r["id"]: r["status"] for r in rows if r["id"] in ids}
    finally:
        await store.close()


async def test_metrics_and_openapi(env: Env) -> None:
    key = await env.key()
    await env.post(key, DIGICORD, path="/send-data?wait=true")
    await env.post(key, {"channelId": "x"})
    await env.post(None, DIGICORD)
    env.transport.gate = asyncio.Event()
    await env.post(key, DIGICORD)
    resp = await env.client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
    m = metrics_text.parse(await resp.text())
    for status in ("200", "400", "401", "202"):
        assert metrics_text.value(m, "gatecord_http_requests_total", route="/send-data", method="POST", status=status) == 1
    depth = [metrics_text.value(m, "gatecord_relay_queue_depth", status=s) for s in ("queued", "sending")]
    assert sorted(depth) == [0, 1]
    assert metrics_text.value(m, "gatecord_relay_deliveries_total", outcome="delivered") == 1
    assert metrics_text.value(m, "gatecord_relay_delivery_latency_seconds_count") == 1
    assert metrics_text.value(m, "gatecord_relay_posts_total", result="accepted") == 2
    env.transport.gate.set()
    resp = await env.client.get("/openapi.json")
    doc = await resp.json()
    assert set(doc["paths"]) == {"/send-data", "/send-data/{id}", "/health", "/ready", "/metrics", "/openapi.json"}
    env.check("/openapi.json", "get", 200, doc)
    import jsonschema
    with pytest.raises(jsonschema.ValidationError):  # the document can reject a wrong answer
        env.check("/send-data", "post", 202, {"id": "nope", "status": "queued"})


async def test_stopping_answers_every_post_already_taken_and_refuses_later_ones(env: Env) -> None:
    key = await env.key()
    env.service.limiter.capacity = 1000
    env.transport.gate = asyncio.Event()
    posts = [asyncio.create_task(env.post(key, {"channelId": str(CHAN), "content": f"s{i}"})) for i in range(50)]
    await env.store.changes.wait_until(lambda: env.store.fetchval("SELECT COUNT(*) FROM relay_outbox"),
                                       what="a first batch in the outbox")
    await env.service.outbox.close()
    answers = await asyncio.gather(*posts)
    accepted = [body["id"] for status, body, _ in answers if status == 202]
    refused = [body for status, body, _ in answers if status != 202]
    assert all(body["error"] == "unavailable" for body in refused)
    rows = {r["id"] for r in await env.store.fetchall("SELECT id FROM relay_outbox")}
    assert set(accepted) == rows and accepted
    status, body, resp = await env.post(key, DIGICORD)
    assert status == 503 and resp.headers["Retry-After"] == "1"
    env.check("/send-data", "post", 503, body)
    env.transport.gate.set()
    env.service.outbox.start()  # for the fixture's orderly close


async def test_worker_restarts_cleanly(env: Env) -> None:
    key = await env.key()
    env.transport.gate = asyncio.Event()
    _, body, _ = await env.post(key, DIGICORD)
    await env.service.worker.stop(grace=0.01)
    env.transport.gate.set()
    await env.service.worker.start()
    await env.wait_status(key, body["id"], "delivered")


# -- one post cannot sink another (issue 15) ---------------------------------------------------------

async def test_batch_poisoning_twenty_good_posts_and_five_bad_ones_from_another_guild(env: Env) -> None:
    """The case from the review: lone surrogates from one guild's key in the same group commit as
    another guild's good posts. The good ones are stored and delivered, the bad ones get a 400."""
    good_key, bad_key = await env.key(name="good"), await env.key(guild=OTHER_GUILD, name="bad")
    good = [env.post(good_key, {"channelId": str(CHAN), "content": f"good {i}"}) for i in range(20)]
    bad = [env.post(bad_key, None, raw=b'{"channelId": "%d", "content": "bad \\ud800"}' % OTHER_CHAN)
           for _ in range(5)]
    answers = await asyncio.gather(*good, *bad)
    good_answers, bad_answers = answers[:20], answers[20:]
    assert [status for status, _, _ in good_answers] == [202] * 20
    assert [status for status, _, _ in bad_answers] == [400] * 5
    for _, body, _ in bad_answers:
        assert body["error"] == "invalid_body" and body["errors"][0]["path"] == "$.content"
        assert "surrogate" in body["errors"][0]["message"]
        env.check("/send-data", "post", 400, body)
    for _, body, _ in good_answers:
        await env.wait_status(good_key, body["id"], "delivered")
    assert len(env.transport.delivered) == 20
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 20


async def test_group_commit_isolates_a_post_the_database_refuses(env: Env) -> None:
    """A post that passes validation but that the database refuses (here: a trigger) fails alone, with a
    400 (its own data), while the posts committed in the same batch get their 202."""
    await poison_posts_containing(env.store, "poison")
    key = await env.key()
    outbox = env.service.outbox
    accept, arrived = outbox.accept, []

    async def noting(post: Any) -> Any:  # the order the posts reach the outbox in
        arrived.append(post.message.content)
        return await accept(post)

    outbox.accept = noting  # type: ignore[method-assign]
    bodies = [{"channelId": str(CHAN2), "content": "poison" if i == 3 else f"fine {i}"} for i in range(10)]
    answers = await asyncio.gather(*(env.post(key, b) for b in bodies))
    assert [status for status, _, _ in answers] == [202, 202, 202, 400, 202, 202, 202, 202, 202, 202]
    refused = answers[3][1]
    assert refused["error"] == "invalid_body" and refused["errors"][0]["rule"] == "storable"
    env.check("/send-data", "post", 400, refused)
    stored = await env.store.fetchall("SELECT id FROM relay_outbox ORDER BY seq")
    ids = {b["content"]: body["id"] for b, (status, body, _) in zip(bodies, answers, strict=True) if status == 202}
    assert [r["id"] for r in stored] == [ids[c] for c in arrived if c in ids]  # acceptance order kept
    accepted = list(ids.values())
    for post_id in accepted:
        await env.wait_status(key, post_id, "delivered")


async def test_group_commit_refuses_unencodable_text_that_skipped_validation(env: Env) -> None:
    """Defence in depth: the outbox itself refuses text that cannot be written, without the batch."""
    from bot.relay.outbox import NewPost, PostNotStorable
    from bot.relay.validation import RelayMessage

    key = await env.service.keys.authenticate(await env.key())
    assert key is not None
    posts = [NewPost(key, RelayMessage(channel_id=CHAN, content="ok" if i != 2 else "\udc80")) for i in range(5)]
    results = await asyncio.gather(*(env.service.outbox.accept(p) for p in posts), return_exceptions=True)
    assert isinstance(results[2], PostNotStorable)
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 2)
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 4


async def poison_posts_containing(store: Store, word: str) -> None:
    """A trigger that refuses to store a post whose body contains ``word`` (a constraint violation)."""
    if store.dialect == "sqlite":
        await store.execute(
            f"CREATE TEMP TRIGGER poison BEFORE INSERT ON relay_outbox WHEN NEW.body LIKE '%{word}%'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
        return
    await store.execute(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.body LIKE '%{word}%' THEN RAISE EXCEPTION 'poisoned' USING ERRCODE = 'check_violation'; END IF;"
        " RETURN NEW; END $$")
    await store.execute("CREATE TRIGGER poison BEFORE INSERT ON relay_outbox FOR EACH ROW EXECUTE FUNCTION poison()")


async def test_a_real_storage_failure_is_503_for_every_post_of_the_batch(env: Env) -> None:
    from bot.storage.errors import StorageError

    key = await env.key()
    assert await env.service.keys.authenticate(key) is not None  # cached: the key is known without the database

    async def broken(body: Any) -> Any:
        raise StorageError("disk I/O error")

    env.store.run = broken  # type: ignore[method-assign]
    answers = await asyncio.gather(*(env.post(key, {"channelId": str(CHAN), "content": f"x{i}"}) for i in range(5)))
    for status, body, resp in answers:
        assert status == 503 and body["error"] == "unavailable" and resp.headers["Retry-After"] == "1"


async def test_a_database_that_fails_on_reads_is_503_not_500(env: Env) -> None:
    from bot.storage.errors import StorageError

    key = await env.key()
    _, body, _ = await env.post(key, DIGICORD)

    async def broken(body: Any) -> Any:
        raise StorageError("connection refused")

    env.store.run = broken  # type: ignore[method-assign]
    resp = await env.client.get(f"/send-data/{body['id']}", headers={"Authorization": f"Bearer {key}"})
    answer = await resp.json()
    assert resp.status == 503 and answer["error"] == "unavailable" and resp.headers["Retry-After"] == "1"
    env.check("/send-data/{id}", "get", 503, answer)
    env.service.keys._cache.clear()  # the next post must look its key up
    status, answer, resp = await env.post(key, DIGICORD)
    assert status == 503 and answer["error"] == "unavailable"
    env.check("/send-data", "post", 503, answer)


# -- every malformed body is a JSON 400 ---------------------------------------------------------------

MALFORMED: dict[str, bytes] = {
    "nested 10,000 levels": b"[" * 10_000 + b"]" * 10_000,
    "nested 10,000 levels in a field": b'{"channelId": "1001", "content": "x", "extra": ' + b'{"a":' * 10_000
                                        + b"1" + b"}" * 10_000 + b"}",
    "nested 40 levels": b'{"channelId": "1001", "content": "x", "extra": ' + b"[" * 40 + b"]" * 40 + b"}",
    "integer of 5,000 digits": b'{"channelId": ' + b"1" * 5000 + b', "content": "x"}',
    "negative integer of 5,000 digits": b'{"channelId": "1001", "content": "x", "flags": -' + b"9" * 5000 + b"}",
    "snowflake string of 5,000 digits": b'{"channelId": "' + b"1" * 5000 + b'", "content": "x"}',
    "{} as a row type": b'{"channelId": "1001", "components": [{"type": {}, "components": []}]}',
    "[] as a row type": b'{"channelId": "1001", "components": [{"type": [], "components": []}]}',
    "{} as a button type": b'{"channelId": "1001", "components": [{"type": 1, "components": [{"type": {}}]}]}',
    "{} as a button style": b'{"channelId": "1001", "components": [{"type": 1, "components":'
                            b' [{"type": 2, "style": {}, "url": "https://a.example"}]}]}',
    "[] as a button style": b'{"channelId": "1001", "components": [{"type": 1, "components":'
                            b' [{"type": 2, "style": [1], "url": "https://a.example"}]}]}',
    "NaN": b'{"channelId": "1001", "content": "x", "flags": NaN}',
    "Infinity": b'{"channelId": "1001", "content": "x", "embeds": [{"title": "t", "color": -Infinity}]}',
    "array at the top": b"[]",
    "string at the top": b'"hello"',
    "null at the top": b"null",
    "invalid UTF-8": b'{"channelId": "1001", "content": "\xff\xfe"}',
    "UTF-16": '{"channelId": "1001", "content": "x"}'.encode("utf-16"),
    "empty": b"",
    "truncated": b'{"channelId": "1001", "content": "x',
    "trailing garbage": b'{"channelId": "1001", "content": "x"} {}',
    "lone surrogate in a key": b'{"channelId": "1001", "content": "x", "\\ud800": 1}',
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_every_malformed_body_gets_a_json_400(env: Env, raw: bytes) -> None:
    key = await env.key()
    status, body, resp = await env.post(key, None, raw=raw)
    if raw.endswith(b'"\\ud800": 1}'):  # an unknown field is ignored (with a warning), whatever its name
        assert status == 202 and body["warnings"] == ["$.\ud800 is not a known field and was ignored"]
        return
    assert status == 400 and resp.content_type == "application/json", body
    assert body["error"] in ("invalid_json", "invalid_body") and body["message"]
    env.check("/send-data", "post", 400, body)
    assert await env.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0
