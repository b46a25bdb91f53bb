"""Premium tiers end to end: the real bot against the Discord emulator's SKUs and entitlements.

A server subscription granted changes the server's limits at once (a /chat refused before passes,
/mylimits names the tier); revoked, they are back; a missed event is repaired by the reconciliation
(run through the service, no waiting); a consumable is counted once when its event arrives twice and
consumed once on Discord; a member refused by the free tier sees Discord's premium button.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.budgets.rules import Requester
from tests.e2e import wait_shown
from tests.waiting import store_writes

PRO_SKU = 1_300_000_000_000_000_001
BOOST_SKU = 1_300_000_000_000_000_002
EPHEMERAL = 64

pytestmark = pytest.mark.bot_settings(premium={
    "free": {"guild_chat_requests": 1},
    "tiers": [{"sku_id": PRO_SKU, "name": "Pro", "scope": "guild", "limits": {"guild_chat_requests": 50}}],
    "consumables": [{"sku_id": BOOST_SKU, "name": "Two more chats", "kind": "chat_requests", "amount": 2}],
    "upgrade_sku_id": PRO_SKU,
})


def chat_calls(env: Any) -> int:
    return len([r for r in env.gateway.requests if r.path.endswith("/chat/completions")])


async def chat(env: Any, user: str = "alice") -> Any:
    """/chat: what the member sees, and whether the gateway was asked."""
    before = chat_calls(env)
    rec = await env.discord.inject_slash_command("chat", {"prompt": "hello?"}, user=user)
    shown = await wait_shown(rec)
    return shown, chat_calls(env) > before


async def answered(env: Any) -> None:
    shown, asked = await chat(env)
    assert asked and not shown.content.startswith("⚠️"), shown.content
    await asyncio.wait_for(env.bot.chat.admission.wait_idle(), 10)  # settled: charged to the budget


async def refused(env: Any) -> Any:
    shown, asked = await chat(env)
    assert not asked and shown.flags & EPHEMERAL
    assert shown.content.startswith("⚠️ This server's daily chat request budget ("), shown.content
    return shown


async def mylimits(env: Any, user: str = "alice") -> str:
    rec = await env.discord.inject_slash_command("mylimits", {}, user=user)
    msg = await rec.wait_final(timeout=10)
    assert msg is not None
    return str(msg.content)


async def test_entitlements_change_the_servers_limits(bot_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    writes = store_writes(monkeypatch)
    emu.add_sku(PRO_SKU, "Pro", type=5, flags=1 << 7)
    emu.add_sku(BOOST_SKU, "Two more chats", type=3, flags=1 << 7)
    alice = emu.users["alice"].id
    member = Requester(emu.guild_id, emu.channel_id, alice)

    async def tier_names() -> set[str]:
        return {use.tier.name for use in (await bot.premium.status(member)).uses}

    # the free tier: one chat a day for the whole server; the refusal names it and offers Pro
    await answered(bot_env)
    refusal = await refused(bot_env)
    assert "(1, free tier) is used up" in refusal.content
    assert emu.premium_buttons(refusal) == [PRO_SKU]
    assert "Tier: free tier: this server has no subscription." in (await mylimits(bot_env)).splitlines()

    # granted: the event changes the limits at once
    pro = await emu.grant_entitlement(PRO_SKU, guild_id=emu.guild_id, user_id=emu.users["admin"].id)
    await writes.wait_until(lambda: tier_names(), what="the Pro entitlement handled")
    await answered(bot_env)
    text = await mylimits(bot_env)
    assert f"Tier: **Pro** — this server's subscription (SKU {PRO_SKU})" in text
    assert "• chat requests: **48** of 50 left (server-wide budget, tier Pro)" in text.splitlines()

    # revoked (ended now): back to the free tier
    await emu.end_entitlement(int(pro["id"]))
    await writes.wait_until(lambda: _not(tier_names()), what="the end of Pro handled")
    await refused(bot_env)

    # a missed event: nothing changes until the reconciliation lists it
    missed = await emu.grant_entitlement(PRO_SKU, guild_id=emu.guild_id, user_id=emu.users["admin"].id,
                                         dispatch=False)
    await refused(bot_env)
    report = await bot.premium.reconcile()
    assert report.listed >= 1
    await answered(bot_env)
    await emu.end_entitlement(int(missed["id"]), dispatch=False)  # ended without an event: reconciled too
    await bot.premium.reconcile()
    await refused(bot_env)
    assert emu.consume_calls == []

    # a consumable: two more chats today, counted once though its event arrives twice, consumed once
    boost = await emu.grant_entitlement(BOOST_SKU, guild_id=emu.guild_id, user_id=alice)
    boost_id = int(boost["id"])
    await writes.wait_until(lambda: emu.consume_calls == [boost_id], what="the consumable consumed")
    seen = await _updated_at(bot, boost_id)
    await emu.redispatch_entitlement(boost_id)
    await writes.wait_until(lambda: _changed(bot, boost_id, seen), what="the duplicate event handled")
    assert emu.consume_calls == [boost_id]
    assert await bot.premium.entitlements.pools(emu.guild_id) == {"chat_requests": (2.0, 2.0)}
    await answered(bot_env)
    await answered(bot_env)
    await refused(bot_env)
    assert await bot.premium.entitlements.pools(emu.guild_id) == {"chat_requests": (0.0, 2.0)}
    assert "Bonus from one-time purchases: 0 chat requests left of 2" in await mylimits(bot_env)


async def _not(names: Any) -> bool:
    return not await names


async def _updated_at(bot: Any, entitlement_id: int) -> float:
    return float(await bot.store.fetchval("SELECT updated_at FROM premium_entitlements WHERE entitlement_id = ?",
                                          (entitlement_id,)))


async def _changed(bot: Any, entitlement_id: int, seen: float) -> bool:
    return await _updated_at(bot, entitlement_id) > seen


@pytest.mark.bot_settings(premium={
    "free": {"guild_images": 0},
    "tiers": [{"sku_id": PRO_SKU, "name": "Pro", "scope": "guild", "limits": {"guild_images": 40}}],
    "upgrade_sku_id": PRO_SKU,
})
async def test_a_media_command_refused_by_the_free_tier_offers_the_premium_button(bot_env: Any) -> None:
    emu = bot_env.discord
    emu.add_sku(PRO_SKU, "Pro", type=5, flags=1 << 7)
    rec = await emu.inject_slash_command("imagine create", {"prompt": "a red fox"}, user="alice")
    shown = await wait_shown(rec)
    assert shown.flags & EPHEMERAL and "free tier" in shown.content, shown.content
    assert emu.premium_buttons(shown) == [PRO_SKU]
    assert not [r for r in bot_env.gateway.requests if "images" in r.path]
