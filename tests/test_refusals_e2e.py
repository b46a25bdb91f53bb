"""Budget refusals of slash commands, end to end: private to the member (ephemeral, flags 64), never left
public, and naming whose budget ran out — the server's, each member's, or the member's role's."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.e2e import wait_shown

EPHEMERAL = 64


def chat_requests(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/chat/completions")]


def public_bot_messages(emu: Any) -> list[Any]:
    """What everyone in the channel sees from the bot (deleted and ephemeral messages left out)."""
    return [m for m in emu.channel_messages(emu.channel_id, include_ephemeral=False) if m.author_id == emu.bot_user_id]


async def refused_chat(env: Any, user: str = "alice", **options: Any) -> Any:
    rec = await env.discord.inject_slash_command("chat", {"prompt": "hello?", **options}, user=user)
    refusal = await wait_shown(rec)
    assert refusal.flags & EPHEMERAL, "a refusal is private to the member"
    assert public_bot_messages(env.discord) == [], "nothing of a refused /chat stays in the channel"
    assert chat_requests(env.gateway) == []
    return refusal


async def test_server_budget_refusal_is_private_and_says_it_is_the_servers(bot_env: Any) -> None:
    emu = bot_env.discord
    await bot_env.bot.quotas.set_limit(emu.guild_id, "guild", "chat_requests", 0, actor_id=1)
    refusal = await refused_chat(bot_env)
    assert refusal.content.startswith("⚠️ This server's daily chat request budget (0) is used up; it resets in ")


async def test_member_budget_set_by_the_server_is_named(bot_env: Any) -> None:
    emu = bot_env.discord
    await bot_env.bot.quotas.set_limit(emu.guild_id, "member", "chat_requests", 0, actor_id=1)
    refusal = await refused_chat(bot_env)
    assert refusal.content.startswith(
        "⚠️ Your daily chat request budget (0, set by this server for each member) is used up; it resets in ")


@pytest.mark.bot_settings(quotas={"member_chat_requests": 0})
async def test_member_budget_from_the_bots_config(bot_env: Any) -> None:
    refusal = await refused_chat(bot_env)
    assert refusal.content.startswith("⚠️ Your daily chat request budget (0) is used up; it resets in ")


async def test_role_budget_names_the_role(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    helpers = await emu.add_role("Helpers")
    await emu.add_user("helper", roles=[helpers.id])
    guild = bot.get_guild(emu.guild_id)
    assert guild is not None
    await emu.wait_for(lambda: guild.get_role(helpers.id) is not None)
    await bot.quotas.set_role_limit(emu.guild_id, helpers.id, "tokens", 10, actor_id=1)
    refusal = await refused_chat(bot_env, user="helper")
    assert refusal.content.startswith(
        f"⚠️ Your daily token budget (10, set for your role <@&{helpers.id}>) has only 10 left, not enough for"
        " this request; it resets in ")
    assert refusal.allowed_mentions == {"parse": []}  # the role is named, not pinged


async def test_private_chat_refusal_stays_private(bot_env: Any) -> None:
    emu = bot_env.discord
    await bot_env.bot.quotas.set_limit(emu.guild_id, "member", "chat_requests", 0, actor_id=1)
    refusal = await refused_chat(bot_env, private=True)
    assert "Your daily chat request budget" in refusal.content


async def test_vision_budget_refusal_is_private(bot_env: Any) -> None:
    emu = bot_env.discord
    await bot_env.bot.quotas.set_limit(emu.guild_id, "guild", "vision_requests", 0, actor_id=1)
    rec = await emu.inject_slash_command("vision", {}, attachments={"image": ("red.png", _png(), "image/png")})
    refusal = await wait_shown(rec)
    assert refusal.flags & EPHEMERAL
    assert refusal.content.startswith("⚠️ This server's daily image question budget (0) is used up")
    assert public_bot_messages(emu) == []


@pytest.mark.gateway_profile("digicord")
async def test_imagine_budget_refusal_is_private_and_names_the_budget(bot_env: Any) -> None:
    emu = bot_env.discord
    await bot_env.bot.quotas.set_limit(emu.guild_id, "member", "images", 1, actor_id=1)
    rec = await emu.inject_slash_command("imagine create", {"prompt": "a fox", "count": 2})
    refusal = await wait_shown(rec)
    assert refusal.flags & EPHEMERAL
    assert refusal.content.startswith(
        "Your daily image budget (1, set by this server for each member) has only 1 left, not enough")
    assert public_bot_messages(emu) == []


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(out, format="PNG")
    return out.getvalue()
