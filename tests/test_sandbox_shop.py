"""The sandbox page's shop: "buy" grants an entitlement (the server's or the member's, from the SKU's
flags) that the real discord.py client receives as an event; "end" ends or refunds it; the page's state
lists SKUs and active entitlements. The launcher sells the ``[premium]`` SKUs it configures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from pydantic import BaseModel

from bot.app.settings import Settings
from sandbox.discord_emulator import DiscordEmulator
from sandbox.launcher import (
    SANDBOX_CREDITS_SKU,
    SANDBOX_PRO_SKU,
    premium_section,
    sandbox_settings,
    shop_skus,
)
from sandbox.web_ui import WebUI
from tests.entitlement_events import EntitlementListener
from tests.test_discord_emulator import TOKEN, running

PRO, CREDITS, PLUS = SANDBOX_PRO_SKU, SANDBOX_CREDITS_SKU, 1_190_000_000_000_000_009


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(token=TOKEN) as e:
        e.add_sku(PRO, "Pro")
        e.add_sku(CREDITS, "1,000 credits", type=3)
        e.add_sku(PLUS, "Plus", flags=1 << 8)
        yield e


@pytest.fixture
async def page(emu: DiscordEmulator) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with WebUI(emu) as ui, aiohttp.ClientSession() as http:
        yield ui.url.rstrip("/"), http


async def call(page: tuple[str, aiohttp.ClientSession], path: str, body: dict[str, Any]) -> tuple[int, Any]:
    base, http = page
    async with http.post(base + path, json=body) as resp:
        return resp.status, await resp.json()


async def test_buy_on_the_page_grants_the_servers_subscription_and_the_bot_hears_it(
    emu: DiscordEmulator, page: tuple[str, aiohttp.ClientSession]
) -> None:
    async with running(emu, EntitlementListener()) as bot:
        status, answer = await call(
            page, "/api/buy", {"sku_id": str(PRO), "user": "alice", "channel_id": str(emu.channel2_id)}
        )
        assert status == 200
        kind, ent = await asyncio.wait_for(bot.events.get(), 5)
        assert (kind, ent.id, ent.sku_id, ent.guild_id, ent.user_id) == (
            "create",
            int(answer["entitlement_id"]),
            PRO,
            emu.guild_id,
            emu.users["alice"].id,
        )

        status, answer = await call(
            page, "/api/buy", {"sku_id": str(PLUS), "user": "bob", "channel_id": str(emu.channel_id)}
        )
        kind, plus = await asyncio.wait_for(bot.events.get(), 5)
        assert (kind, plus.sku_id, plus.guild_id, plus.user_id) == ("create", PLUS, None, emu.users["bob"].id)

        status, answer = await call(
            page, "/api/buy", {"sku_id": str(CREDITS), "user": "bob", "channel_id": str(emu.channel_id)}
        )
        kind, credits = await asyncio.wait_for(bot.events.get(), 5)
        assert (kind, credits.sku_id, credits.guild_id, credits.consumed) == ("create", CREDITS, emu.guild_id, False)

        # the store refuses what Discord's would: the page shows the reason
        status, refused = await call(
            page, "/api/buy", {"sku_id": str(PRO), "user": "bob", "channel_id": str(emu.channel_id)}
        )
        assert status == 400 and "already own Pro" in refused["error"]
        status, refused = await call(
            page, "/api/buy", {"sku_id": str(CREDITS), "user": "bob", "channel_id": str(emu.channel_id)}
        )
        assert status == 400 and "until the app has used the previous one" in refused["error"]
        status, refused = await call(page, "/api/buy", {"sku_id": "12345", "user": "bob"})
        assert status == 400 and "not for sale" in refused["error"]

        # "end": a subscription ends now (UPDATE), a consumable is refunded (DELETE)
        status, _ = await call(page, "/api/end-entitlement", {"entitlement_id": str(ent.id)})
        kind, ended = await asyncio.wait_for(bot.events.get(), 5)
        assert (status, kind, ended.id, ended.is_expired()) == (200, "update", ent.id, True)
        status, _ = await call(page, "/api/end-entitlement", {"entitlement_id": str(credits.id)})
        kind, refunded = await asyncio.wait_for(bot.events.get(), 5)
        assert (kind, refunded.id, refunded.deleted) == ("delete", credits.id, True)


async def test_the_pages_state_lists_skus_and_active_entitlements(
    emu: DiscordEmulator, page: tuple[str, aiohttp.ClientSession]
) -> None:
    pro = await emu.buy(PRO, user="admin", guild_id=emu.guild_id)
    ended = await emu.buy(PLUS, user="alice")
    await emu.end_entitlement(int(ended["id"]))
    base, http = page
    async with http.get(base + "/api/state") as resp:
        shop = (await resp.json())["shop"]
    assert [(s["id"], s["name"], s["kind"], s["scope"]) for s in shop["skus"]] == [
        (str(PRO), "Pro", "subscription", "server"),
        (str(CREDITS), "1,000 credits", "consumable", "server"),
        (str(PLUS), "Plus", "subscription", "user"),
    ]
    assert [(e["id"], e["sku_name"], e["guild_name"], e["user_name"]) for e in shop["entitlements"]] == [
        (pro["id"], "Pro", "Gatecord Test", "Admin")
    ]


async def test_a_premium_button_in_a_message_is_shown_with_its_skus_name(
    emu: DiscordEmulator, page: tuple[str, aiohttp.ClientSession]
) -> None:
    async with running(emu, discord.Client(intents=discord.Intents.default())) as bot:
        channel = bot.get_channel(emu.channel_id)
        assert isinstance(channel, discord.TextChannel)
        view = discord.ui.View()
        view.add_item(discord.ui.Button(style=discord.ButtonStyle.premium, sku_id=PRO))
        sent = await channel.send("Upgrade for more", view=view)
    base, http = page
    async with http.get(base + "/api/state") as resp:
        state = await resp.json()
    [msg] = [m for m in state["messages"] if m["id"] == str(sent.id)]
    assert msg["components"][0]["components"][0] == {"type": 2, "style": 6, "sku_id": str(PRO), "disabled": False}
    assert {"id": str(PRO), "name": "Pro", "kind": "subscription", "scope": "server"} in state["shop"]["skus"]


# -- the launcher's [premium] -------------------------------------------------------------------------


def test_the_launcher_sells_the_example_skus_and_writes_no_unknown_setting(
    tmp_path: Path, emu: DiscordEmulator
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    sandboxed = sandbox_settings(settings, emu, None, tmp_path / "sandbox.db")
    assert shop_skus(sandboxed) == [(PRO, "Pro", 5, 1 << 7), (CREDITS, "1,000 credits", 3, 1 << 7)]
    if "premium" not in Settings.model_fields:  # before the premium settings exist: nothing is written
        assert premium_section(settings) is None
        assert "premium" not in sandboxed.model_dump()


class FakeTier(BaseModel):
    sku_id: int
    name: str
    scope: str = "guild"
    limits: dict[str, float] = {}


class FakeConsumable(BaseModel):
    sku_id: int
    name: str
    kind: str = "credits"
    amount: float


class FakePremium(BaseModel):
    tiers: list[FakeTier] = []
    free: dict[str, float] = {}
    consumables: list[FakeConsumable] = []
    upgrade_sku_id: int | None = None


class SettingsWithPremium(Settings):
    premium: FakePremium = FakePremium()


def test_with_premium_settings_the_sandbox_configures_the_example_tiers_and_sells_their_skus(
    tmp_path: Path, emu: DiscordEmulator
) -> None:
    settings = SettingsWithPremium(_env_file=None)  # type: ignore[call-arg]
    sandboxed = sandbox_settings(settings, emu, None, tmp_path / "sandbox.db")
    premium = sandboxed.premium  # type: ignore[attr-defined]
    assert [(t.sku_id, t.name, t.scope) for t in premium.tiers] == [(PRO, "Pro", "guild")]
    assert [(c.sku_id, c.name, c.amount) for c in premium.consumables] == [(CREDITS, "1,000 credits", 1000)]
    assert premium.upgrade_sku_id == PRO
    assert shop_skus(sandboxed) == [(PRO, "Pro", 5, 1 << 7), (CREDITS, "1,000 credits", 3, 1 << 7)]

    own = SettingsWithPremium(_env_file=None, premium={"tiers": [{"sku_id": 7, "name": "Gold", "scope": "user"}]})  # type: ignore[call-arg]
    kept = sandbox_settings(own, emu, None, tmp_path / "sandbox.db")
    assert [t.name for t in kept.premium.tiers] == ["Gold"]  # type: ignore[attr-defined]
    assert shop_skus(kept) == [(7, "Gold", 5, 1 << 8)]
