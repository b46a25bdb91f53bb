"""Relay keys end to end (the real bot against the Discord emulator, posts over real HTTP): the identity
a key's posts appear under, the channels a key reaches, the per-guild cap and the expiry."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sandbox.discord_emulator import permissions as P
from tests.test_relay_e2e import KEY_RE, create_key, post

AVATAR = "https://cdn.example/shop.png"


async def key_command(bot_env: Any, options: dict[str, Any], *, user: str = "admin", name: str = "relay key create") -> str:
    """The ephemeral reply to a /relay key command."""
    rec = await bot_env.discord.inject_slash_command(name, options, user=user)
    msg = await rec.wait_final()
    assert msg.ephemeral
    return str(msg.content)


# -- identity ---------------------------------------------------------------------------------------
async def test_posts_appear_under_the_keys_name_and_avatar(bot_env: Any) -> None:
    emu = bot_env.discord
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    key = await create_key(bot_env, name="Shop alerts", avatar=AVATAR)
    status, answer = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "Order #7 paid"}, wait=True)
    assert status == 200, answer
    msg = emu.messages[int(answer["message_id"])]
    assert msg.webhook_id is not None and msg.author_id != emu.bot_user_id
    assert msg.webhook_username == "Shop alerts" and msg.webhook_avatar_url == AVATAR
    assert msg.content == "Order #7 paid"


async def test_a_key_without_custom_identity_cannot_set_a_name_or_avatar(bot_env: Any) -> None:
    emu = bot_env.discord
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    key = await create_key(bot_env, name="ci")
    before = len(emu.channel_messages(emu.channel_id))
    for field, value in (("username", emu.users["alice"].username), ("avatar_url", AVATAR)):
        status, answer = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "hi", field: value})
        assert status == 400, answer
        assert answer["error"] == "invalid_body" and answer["errors"][0]["path"] == f"$.{field}"
        assert answer["errors"][0]["rule"] == "identity:fixed" and "custom_identity:true" in answer["message"]
    assert len(emu.channel_messages(emu.channel_id)) == before  # nothing went out under alice's name


async def test_a_custom_identity_key_posts_under_the_posts_name(bot_env: Any) -> None:
    emu = bot_env.discord
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    key = await create_key(bot_env, name="bridge", custom_identity=True)
    status, answer = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "hey", "username": "Ann"},
                                wait=True)
    assert status == 200, answer
    assert emu.messages[int(answer["message_id"])].webhook_username == "Ann"
    status, answer = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "plain"}, wait=True)
    assert status == 200 and emu.messages[int(answer["message_id"])].webhook_username == "bridge"


@pytest.mark.parametrize("name", ["@everyone", "here", "Discord Support", "clyde", "x" * 81])
async def test_names_discord_refuses_get_400_at_send_data(bot_env: Any, name: str) -> None:
    emu = bot_env.discord
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    key = await create_key(bot_env, custom_identity=True)
    status, answer = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "hi", "username": name})
    assert status == 400, answer
    assert answer["errors"][0]["path"] == "$.username"
    assert not emu.requests_to("/webhooks/", "POST")  # no delivery attempted


async def test_names_and_avatars_discord_would_refuse_are_refused_at_key_creation(bot_env: Any) -> None:
    reply = await key_command(bot_env, {"name": "discord-alerts"})
    assert "`name`" in reply and '"discord"' in reply and "No key was created" in reply
    assert not KEY_RE.search(reply)
    reply = await key_command(bot_env, {"name": "alerts", "avatar": "http://cdn.example/a.png"})
    assert "`avatar` must be an https:// URL" in reply and not KEY_RE.search(reply)
    reply = await key_command(bot_env, {}, name="relay key list")
    assert "no active relay keys" in reply


# -- channels -----------------------------------------------------------------------------------------
async def test_a_key_without_channels_reaches_only_what_its_creator_could_post_in(bot_env: Any) -> None:
    emu = bot_env.discord
    managers = await emu.add_role("Managers", P.MANAGE_GUILD)
    carol = await emu.add_user("carol", roles=[managers.id])
    staff = await emu.add_channel("staff-only")
    await emu.set_channel_permissions(staff, carol.id, deny=P.VIEW_CHANNEL, is_member=True)
    key = await create_key(bot_env, user="carol")
    status, answer = await post(bot_env, key, {"channelId": str(staff), "content": "sneaky"})
    assert status == 403 and answer["error"] == "forbidden", answer
    status, answer = await post(bot_env, key, {"channelId": str(emu.channel_id), "content": "fine"})
    assert status == 202, answer
    reply = await key_command(bot_env, {}, user="carol", name="relay key list")
    assert f"<#{emu.channel_id}>" in reply and "could post in at creation" in reply
    # naming the channel does not help either
    reply = await key_command(bot_env, {"channels": f"<#{staff}>"}, user="carol")
    assert f"You cannot post in <#{staff}> yourself" in reply and not KEY_RE.search(reply)


@pytest.mark.bot_settings(relay={"max_keys_per_guild": 2})
async def test_keys_per_guild_are_capped(bot_env: Any) -> None:
    await create_key(bot_env, name="one")
    await create_key(bot_env, name="two")
    reply = await key_command(bot_env, {"name": "three"})
    assert "already has 2 active relay keys" in reply and "relay.max_keys_per_guild" in reply
    assert not KEY_RE.search(reply)
    await key_command(bot_env, {"key": "one"}, name="relay key revoke")
    await create_key(bot_env, name="three")


# -- expiry -------------------------------------------------------------------------------------------
async def test_a_key_expires_and_says_so(bot_env: Any) -> None:
    emu = bot_env.discord
    keys = bot_env.bot.relay.keys
    key = await create_key(bot_env, name="temp", expires="1h")
    body = {"channelId": str(emu.channel_id), "content": "before"}
    status, answer = await post(bot_env, key, body)
    assert status == 202, answer
    row = await bot_env.bot.store.fetchone("SELECT created_at, expires_at FROM relay_keys WHERE name = 'temp'")
    assert row["expires_at"] == row["created_at"] + 3600
    reply = await key_command(bot_env, {}, name="relay key list")
    assert f"expires <t:{row['expires_at']}:R>" in reply

    later = time.time() + 3601
    keys.clock = lambda: later
    status, answer = await post(bot_env, key, {**body, "content": "after"})
    assert status == 401 and answer["error"] == "key_expired" and "expired" in answer["message"], answer
    reply = await key_command(bot_env, {}, name="relay key list")
    assert f"expired <t:{row['expires_at']}:R>" in reply


@pytest.mark.parametrize("junk", ["soon", "30", "1y", "0h", "99999w"])
async def test_junk_expiry_is_refused_with_what_is_accepted(bot_env: Any, junk: str) -> None:
    reply = await key_command(bot_env, {"name": "temp", "expires": junk})
    assert "`expires` must" in reply and "No key was created" in reply and not KEY_RE.search(reply)


# -- the address in the key's reply -------------------------------------------------------------------
async def test_the_key_reply_names_the_web_server_the_bot_listens_on(bot_env: Any) -> None:
    reply = await key_command(bot_env, {"name": "where"})
    assert f"curl -X POST {bot_env.bot.web.base_url}/send-data" in reply
    assert "<bot-url>" not in reply


@pytest.mark.bot_settings(http={"public_url": "https://relay.example.org/gatecord/"})
async def test_the_key_reply_names_the_configured_public_url(bot_env: Any) -> None:
    reply = await key_command(bot_env, {"name": "public"})
    assert "curl -X POST https://relay.example.org/gatecord/send-data" in reply


@pytest.mark.bot_settings(http={"host": "0.0.0.0"})
async def test_a_wildcard_address_says_how_to_fill_in_the_url(bot_env: Any) -> None:
    reply = await key_command(bot_env, {"name": "wild"})
    assert "curl -X POST <bot-url>/send-data" in reply
    assert "`[http] public_url` in the bot's configuration fills in <bot-url>" in reply
