"""Names and avatars: delivered through a webhook the bot creates and owns in the channel (a bot
cannot post under another name otherwise); without Manage Webhooks the post goes out as the bot.
Per-post username/avatar_url need a key created with custom_identity:true."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp

from bot.app.logging_setup import SecretFilter
from sandbox.discord_emulator import permissions as P
from tests.test_relay_e2e import BOTH_BACKENDS, bot_env, create_key, post, wait_delivered  # noqa: F401 (a fixture)

AVATAR = "https://cdn.example/shop.png"


async def test_username_and_avatar_go_through_the_bots_webhook(bot_env: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="discord")
    caplog.handler.addFilter(SecretFilter())  # the filter `gatecord run` puts on its root handler
    emu = bot_env.discord
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    key = await create_key(bot_env, custom_identity=True)
    body = {"channelId": str(emu.channel_id), "content": "Order #1 paid", "username": "Shop", "avatar_url": AVATAR,
            "embeds": [{"title": "Order #1", "color": 5814783}]}
    status, answer = await post(bot_env, key, body, wait=True)
    assert status == 200, answer
    msg = emu.messages[int(answer["message_id"])]
    hooks = emu.channel_webhooks.live(emu.channel_id)
    assert len(hooks) == 1 and hooks[0].name == "Gatecord relay" and hooks[0].creator_id == emu.bot_user_id
    assert msg.webhook_id == hooks[0].id and msg.webhook_username == "Shop" and msg.webhook_avatar_url == AVATAR
    assert msg.content == "Order #1 paid" and msg.embeds[0]["title"] == "Order #1"
    assert msg.allowed_mentions == {"parse": []}

    # the same webhook serves the next post and a thread under the channel
    status, answer = await post(bot_env, key, {**body, "channelId": str(emu.thread_id), "content": "in thread"}, wait=True)
    assert status == 200, answer
    msg = emu.messages[int(answer["message_id"])]
    assert msg.channel_id == emu.thread_id and msg.webhook_id == hooks[0].id and msg.webhook_username == "Shop"
    assert len(emu.channel_webhooks.live()) == 1

    # someone deletes the webhook in Discord: the relay makes a new one and still delivers once
    emu.channel_webhooks.remove(hooks[0].id)
    status, answer = await post(bot_env, key, {**body, "content": "after delete"}, wait=True)
    assert status == 200, answer
    new_hooks = emu.channel_webhooks.live(emu.channel_id)
    assert len(new_hooks) == 1 and new_hooks[0].id != hooks[0].id
    assert [m.content for m in emu.channel_messages(emu.channel_id)].count("after delete") == 1
    # discord.py logs request URLs and (at DEBUG) the created webhook: its token never shows
    assert "/webhooks/" in caplog.text
    for hook in [*hooks, *new_hooks]:
        assert hook.token not in caplog.text


async def test_without_manage_webhooks_the_post_goes_out_as_the_bot(bot_env: Any) -> None:
    emu = bot_env.discord
    key = await create_key(bot_env, custom_identity=True)
    status, answer = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "hi", "username": "Shop"}, wait=True)
    assert status == 200, answer
    msg = emu.messages[int(answer["message_id"])]
    assert msg.author_id == emu.bot_user_id and msg.webhook_id is None and msg.nonce == answer["id"]
    assert "Manage Webhooks" in answer["note"]
    status, again = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "again", "username": "Shop"}, wait=True)
    assert status == 200 and "Manage Webhooks" in again["note"]
    # the bot's permissions (in discord.py's cache) say no: Discord is not even asked, since it counts
    # refused requests against the bot
    assert len(emu.requests_to(f"/channels/{emu.channel_id}/webhooks")) == 0


@BOTH_BACKENDS
async def test_a_webhook_post_whose_answer_was_lost_is_not_sent_twice(bot_env: Any) -> None:
    """Crash between Discord creating the webhook message and the outbox recording it: after the
    restart the worker finds the message in the channel's history instead of posting again."""
    emu = bot_env.discord
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    key = await create_key(bot_env, custom_identity=True)
    status, first = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "warm-up", "username": "Shop"}, wait=True)
    assert status == 200
    store = bot_env.bot.store
    hook = await store.fetchone("SELECT webhook_id, token FROM relay_webhooks WHERE channel_id = ?", (emu.channel_id,))
    key_id = await store.fetchval("SELECT key_id FROM relay_outbox WHERE id = ?", (first["id"],))
    await bot_env.running.stop()

    # the attempt that reached Discord, whose answer never came back
    body = {"content": "lost answer", "username": "Shop", "allowed_mentions": {"parse": []}}
    async with aiohttp.ClientSession() as session:
        url = f"{emu.api_base_url}/webhooks/{hook['webhook_id']}/{hook['token']}?wait=true"
        async with session.post(url, json=body) as resp:
            assert resp.status == 200
            created = await resp.json()
    from bot.storage.store import Store

    db = Store.from_settings(bot_env.settings.storage)
    await db.open()
    now = time.time()
    await db.execute(
        "INSERT INTO relay_outbox(id, key_id, guild_id, channel_id, body, via, fingerprint, status, attempts,"
        " next_attempt_at, in_doubt_since, created_at) VALUES (?, ?, ?, ?, ?, 'webhook', 'x', 'sending', 1, ?, ?, ?)",
        ("rp_" + "a" * 20, key_id, emu.guild_id, emu.channel_id, json.dumps(body), now, now - 1, now - 1),
    )
    await db.close()

    await bot_env.restart()
    record = await wait_delivered(bot_env, key, "rp_" + "a" * 20)
    assert record["message_id"] == created["id"]
    assert [m.content for m in emu.channel_messages(emu.channel_id)].count("lost answer") == 1
