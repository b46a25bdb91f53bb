"""The relay end to end: the real bot (discord.py) against the Discord emulator, posts over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.relay.openapi import build_document, validate_response
from tests import prometheus_text as metrics_text
from tests.waiting import store_writes

DOC = build_document()
KEY_RE = re.compile(r"gcr_[0-9a-f]{12}_[A-Za-z0-9_-]+")


def digicord_example(channel_id: int) -> dict[str, Any]:
    """DigiCord's documented /send-data payload, unchanged except for a real channel id."""
    return {
        "channelId": str(channel_id),
        "content": "Hello",
        "embeds": [{
            "title": "Title here", "description": "", "url": "", "color": None, "image": {"url": ""},
            "author": {"name": ""}, "footer": {"text": "", "icon_url": ""},
            "fields": [{"name": "", "value": "", "inline": True}],
        }],
        "components": [],
    }


@pytest.fixture
async def bot_env(request: pytest.FixtureRequest, discord_emu: Any, gateway_emu: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """conftest's ``bot_env``, on SQLite, or on PostgreSQL for a test parametrized with
    ``@pytest.mark.parametrize("bot_env", ["sqlite", "postgresql"], indirect=True)``."""
    from tests.e2e import BotEnv, settings_for, start_bot

    marker = request.node.get_closest_marker("bot_settings")
    overrides = dict(marker.kwargs) if marker else {}
    backend = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        overrides["storage"] = {"url": request.getfixturevalue("pg_url")}
    db_path = tmp_path / "gatecord.db"
    settings = settings_for(discord_emu, gateway_emu, db_path, **overrides)
    running = await start_bot(settings)
    assert running.bot.store.dialect == backend
    env = BotEnv(discord=discord_emu, gateway=gateway_emu, settings=settings, running=running, db_path=db_path)
    try:
        yield env
    finally:
        await env.running.stop()


BOTH_BACKENDS = pytest.mark.parametrize("bot_env", ["sqlite", "postgresql"], indirect=True)


async def create_key(bot_env: Any, *, user: str = "admin", **options: Any) -> str:
    rec = await bot_env.discord.inject_slash_command("relay key create", options, user=user)
    msg = await rec.wait_final()
    assert msg.ephemeral
    match = KEY_RE.search(msg.content)
    assert match, msg.content
    return match.group(0)


async def post(bot_env: Any, key: str, body: Any, *, wait: bool = False, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = bot_env.http + "/send-data" + ("?wait=true" if wait else "")
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})}) as resp:
            data = await resp.json()
            validate_response(DOC, "/send-data", "post", resp.status, data)
            return resp.status, data


@BOTH_BACKENDS
async def test_digicord_example_is_delivered_with_its_embed(bot_env: Any) -> None:
    emu = bot_env.discord
    key = await create_key(bot_env, name="ci")
    status, body = await post(bot_env, key, digicord_example(emu.channel_id), wait=True)
    assert status == 200, body
    assert body["status"] == "delivered"
    msg = emu.messages[int(body["message_id"])]
    assert msg.channel_id == emu.channel_id
    assert msg.content == "Hello"
    assert [e.get("title") for e in msg.embeds] == ["Title here"]
    assert msg.author_id == emu.bot_user_id
    assert msg.nonce == body["id"]
    assert msg.mention_ids == [] if hasattr(msg, "mention_ids") else True


async def http_get(bot_env: Any, path: str, key: str | None = None) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(bot_env.http + path, headers=headers) as resp:
            text = await resp.text()
            data = json.loads(text) if resp.content_type == "application/json" else None
            return resp.status, data, text


@pytest.fixture(autouse=True)
def _signal_store_writes(bot_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's database writes poke ``bot_env.extra["store_writes"]`` (see ``wait_delivered``)."""
    bot_env.extra["store_writes"] = store_writes(monkeypatch)


async def wait_delivered(bot_env: Any, key: str, post_id: str, status: str = "delivered", timeout: float = 15.0) -> dict[str, Any]:
    """The post's API answer once it has ``status``, re-read after every write the bot makes."""
    if "store_writes" not in bot_env.extra:  # imported by another test module, without the fixture above
        # A write already under way when the patch goes in is not missed: the API reads through the
        # same Store, whose lock orders that read after the write.
        with pytest.MonkeyPatch.context() as mp:
            bot_env.extra["store_writes"] = store_writes(mp)
            try:
                return await wait_delivered(bot_env, key, post_id, status, timeout)
            finally:
                del bot_env.extra["store_writes"]

    async def answer() -> dict[str, Any] | None:
        code, body, _ = await http_get(bot_env, f"/send-data/{post_id}", key)
        assert code == 200
        if body["status"] != status:
            return None
        validate_response(DOC, "/send-data/{id}", "get", 200, body)
        return body
    return await bot_env.extra["store_writes"].wait_until(answer, timeout, what=f"post {post_id} {status}")


@BOTH_BACKENDS
async def test_key_commands_are_for_admins_and_revoke_takes_effect(bot_env: Any) -> None:
    emu = bot_env.discord
    schema, _ = emu.commands.find("relay", 1, emu.guild_id)
    assert int(schema["default_member_permissions"]) == 1 << 5  # Manage Server: hidden from others

    rec = await emu.inject_slash_command("relay key create", {"name": "nope"}, user="alice")
    denied = await rec.wait_final()
    assert denied.ephemeral and "Manage Server" in denied.content
    assert await bot_env.bot.store.fetchval("SELECT COUNT(*) FROM relay_keys") == 0

    key = await create_key(bot_env, name="shop", channels=f"<#{emu.channel2_id}>")
    stored = await bot_env.bot.store.fetchone("SELECT key_hash, channel_ids FROM relay_keys WHERE name = 'shop'")
    assert key not in tuple(stored) and json.loads(stored["channel_ids"]) == [emu.channel2_id]

    rec = await emu.inject_slash_command("relay key list", user="admin")
    listing = await rec.wait_final()
    assert listing.ephemeral and "shop" in listing.content and f"<#{emu.channel2_id}>" in listing.content
    assert key not in listing.content and key.split("_", 2)[2] not in listing.content

    status, body = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "not listed"})
    assert status == 403
    status, body = await post(bot_env, key, {"channelId": str(emu.channel2_id), "content": "listed"}, wait=True)
    assert status == 200 and emu.messages[int(body["message_id"])].content == "listed"

    rec = await emu.inject_slash_command("relay key revoke", {"key": "shop"}, user="admin")
    revoked = await rec.wait_final()
    assert revoked.ephemeral and "revoked" in revoked.content
    status, body = await post(bot_env, key, {"channelId": str(emu.channel2_id), "content": "after revoke"})
    assert status == 401 and body["error"] == "unauthorized"


async def test_cross_guild_and_unknown_channel_get_the_same_403(bot_env: Any) -> None:
    emu = bot_env.discord
    key = await create_key(bot_env)
    answers = []
    for channel in (emu.other_guild_channel_id, 4242424242424242):
        status, body = await post(bot_env, key, {"channelId": str(channel), "content": "hi"})
        assert status == 403
        answers.append(body)
    assert answers[0] == answers[1]
    assert not [m for m in emu.channel_messages(emu.other_guild_channel_id) if m.content == "hi"]


@BOTH_BACKENDS
async def test_rate_limit_and_server_error_during_delivery_deliver_once_later(bot_env: Any) -> None:
    emu = bot_env.discord
    key = await create_key(bot_env)
    emu.inject_rate_limit(f"/channels/{emu.channel_id}/messages", count=2, retry_after=0.3)
    status, body = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "after 429"}, wait=True)
    assert status == 200, body
    emu.inject_error(f"/channels/{emu.channel_id}/messages", 500, count=2)
    status, body2 = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "after 500"}, wait=True)
    assert status == 200, body2
    posts = emu.requests_to(f"/channels/{emu.channel_id}/messages", "POST")
    assert [r.status for r in posts if (r.json or {}).get("nonce") == body["id"]] == [429, 429, 200]
    assert [r.status for r in posts if (r.json or {}).get("nonce") == body2["id"]] == [500, 500, 200]
    contents = [m.content for m in emu.channel_messages(emu.channel_id)]
    assert contents.count("after 429") == 1 and contents.count("after 500") == 1


async def test_permanent_failures_are_recorded_with_the_reason(bot_env: Any) -> None:
    from sandbox.discord_emulator import permissions as P

    emu = bot_env.discord
    hidden = await emu.add_channel("staff-only")
    await emu.set_channel_permissions(hidden, emu.bot_user_id, deny=P.VIEW_CHANNEL, is_member=True)
    key = await create_key(bot_env)  # after the channel exists: a key reaches the channels its creator had
    status, body = await post(bot_env, key, {"channelId": str(hidden), "content": "secret"}, wait=True)
    assert status == 502 and body["status"] == "failed"
    assert body["error"]["code"] == "missing_access" and "50001" in body["error"]["message"]

    emu.inject_error(f"/channels/{emu.channel2_id}/messages", 404, code=10003, message="Unknown Channel")
    status, body = await post(bot_env, key, {"channelId": str(emu.channel2_id), "content": "gone"}, wait=True)
    assert status == 502 and body["error"]["code"] == "unknown_channel"
    record = await wait_delivered(bot_env, key, body["id"], "failed")
    assert record["attempts"] == 1


async def test_mentions_only_when_the_key_allows_them(bot_env: Any) -> None:
    emu = bot_env.discord
    alice = emu.users["alice"].id
    body = {"channelId": str(emu.channel_id), "content": f"<@{alice}> @everyone", "allowed_mentions": {"users": [str(alice)]}}
    quiet = await create_key(bot_env, name="quiet")
    status, answer = await post(bot_env, quiet, body, wait=True)
    msg = emu.messages[int(answer["message_id"])]
    assert status == 200 and msg.mention_ids == [] and not msg.mention_everyone
    loud = await create_key(bot_env, name="loud", allow_mentions=True)
    status, answer = await post(bot_env, loud, body, wait=True)
    msg = emu.messages[int(answer["message_id"])]
    assert status == 200 and msg.mention_ids == [alice] and not msg.mention_everyone


@BOTH_BACKENDS
async def test_idempotency_key_over_http(bot_env: Any) -> None:
    emu = bot_env.discord
    key = await create_key(bot_env)
    body = {"channelId": str(emu.channel_id), "content": "charge #77 paid"}
    headers = {"Idempotency-Key": "charge-77"}
    first = await post(bot_env, key, body, headers=headers)
    second = await post(bot_env, key, body, headers=headers)
    assert first == second and first[0] == 202
    await wait_delivered(bot_env, key, first[1]["id"])
    assert [m.content for m in emu.channel_messages(emu.channel_id)].count("charge #77 paid") == 1


async def test_link_buttons_are_delivered(bot_env: Any) -> None:
    emu = bot_env.discord
    key = await create_key(bot_env)
    row = {"type": 1, "components": [{"type": 2, "style": 5, "label": "Open order", "url": "https://shop.example/o/1"}]}
    status, body = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "New order", "components": [row]}, wait=True)
    assert status == 200
    msg = emu.messages[int(body["message_id"])]
    assert msg.components[0]["components"][0]["url"] == "https://shop.example/o/1"


async def test_web_server_documents_itself(bot_env: Any) -> None:
    key = await create_key(bot_env)
    await post(bot_env, key, {"channelId": str(bot_env.discord.channel_id), "content": "m"}, wait=True)
    for path in ("/health", "/ready", "/openapi.json"):
        status, body, _ = await http_get(bot_env, path)
        assert status == 200
        validate_response(DOC, path, "get", status, body)
    status, _, text = await http_get(bot_env, "/metrics")
    assert status == 200
    m = metrics_text.parse(text)
    assert metrics_text.value(m, "gatecord_http_requests_total", route="/send-data", method="POST", status="200") == 1
    assert metrics_text.value(m, "gatecord_http_requests_total", route="/health", method="GET", status="200") == 1
    assert metrics_text.value(m, "gatecord_relay_deliveries_total", outcome="delivered") == 1
    assert metrics_text.value(m, "gatecord_relay_queue_depth", status="queued") == 0
    assert metrics_text.value(m, "gatecord_relay_delivery_latency_seconds_bucket", le="+Inf") == 1


async def test_request_errors_over_the_real_web_server(bot_env: Any) -> None:
    key = await create_key(bot_env)
    url = bot_env.http + "/send-data"
    auth = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        big = json.dumps({"channelId": str(bot_env.discord.channel_id), "content": "x" * (2 * 1024 * 1024)})
        async with session.post(url, data=big, headers={**auth, "Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            validate_response(DOC, "/send-data", "post", 413, await resp.json())
        async with session.post(url, data="content=hi", headers={**auth, "Content-Type": "text/plain"}) as resp:
            body = await resp.json()
            assert resp.status == 415 and "application/json" in body["message"]
        async with session.post(url, data="{oops", headers={**auth, "Content-Type": "application/json"}) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["error"] == "invalid_json"
    status, body = await post(bot_env, key, {"channelId": str(bot_env.discord.channel_id), "embeds": [{"title": "t"}] * 11})
    assert status == 400 and body["errors"][0] == {"path": "$.embeds", "rule": "max_items:10",
                                                   "message": "must have at most 10 items (got 11)"}
    assert await bot_env.bot.store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0


async def test_reloading_the_relay_cog_keeps_the_relay_running(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    before = await create_key(bot_env, name="before")
    await bot.reload_extension("cogs.relay")
    status, body = await post(bot_env, before, {"channelId": str(emu.channel_id), "content": "after reload"}, wait=True)
    assert status == 200, body
    msg = emu.messages[int(body["message_id"])]
    assert msg.content == "after reload" and msg.channel_id == emu.channel_id
    after = await create_key(bot_env, name="after")  # the reloaded cog's commands answer
    rec = await emu.inject_slash_command("relay key list", user="admin")
    listing = await rec.wait_final()
    assert "before" in listing.content and "after" in listing.content and "delivered 1" in listing.content
    status, body = await post(bot_env, after, {"channelId": str(emu.channel_id), "content": "new key"}, wait=True)
    assert status == 200 and emu.messages[int(body["message_id"])].content == "new key"
