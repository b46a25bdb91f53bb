"""SKUs, entitlements and the premium button in the Discord emulator, driven by the real discord.py
client: fetch_skus, entitlements() with its filters and pagination, consume, the ENTITLEMENT_* events,
Interaction.entitlements, test entitlements, and premium buttons accepted or refused as Discord does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.http import Route

from sandbox.discord_emulator import DiscordEmulator
from tests.entitlement_events import EntitlementListener
from tests.test_discord_emulator import TOKEN, running
from tests.test_discord_emulator_shards import TOKEN as SHARD_TOKEN
from tests.test_discord_emulator_shards import identified

PRO, CREDITS, LIFETIME, PLUS = (
    1_300_000_000_000_000_001,
    1_300_000_000_000_000_002,
    1_300_000_000_000_000_003,
    1_300_000_000_000_000_004,
)
GUILD_SUB, USER_SUB = 1 << 7, 1 << 8


class ShopBot(EntitlementListener):
    """Records entitlement events and interactions; ``/upgrade`` answers with a premium button."""

    def __init__(self) -> None:
        super().__init__()
        self.tree = app_commands.CommandTree(self)
        self.seen: asyncio.Queue[discord.Interaction] = asyncio.Queue()
        self.outcomes: asyncio.Queue[Any] = asyncio.Queue()

    async def setup_hook(self) -> None:
        @self.tree.command(name="upgrade", description="Shows the premium button")
        async def upgrade(interaction: discord.Interaction) -> None:
            await self.seen.put(interaction)
            view = discord.ui.View()
            view.add_item(discord.ui.Button(style=discord.ButtonStyle.premium, sku_id=PRO))
            await interaction.response.send_message("You reached your limit.", view=view)

        @self.tree.command(name="broken", description="A premium button with a label")
        async def broken(interaction: discord.Interaction) -> None:
            data = {
                "type": 4,
                "data": {
                    "content": "x",
                    "components": [
                        {"type": 1, "components": [{"type": 2, "style": 6, "sku_id": str(PRO), "label": "Buy"}]}
                    ],
                },
            }
            route = Route(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                interaction_id=interaction.id,
                interaction_token=interaction.token,
            )
            try:
                await self.http.request(route, json=data)
            except discord.HTTPException as exc:
                await self.outcomes.put(exc)
            else:
                await self.outcomes.put("accepted")

        await self.tree.sync()


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(token=TOKEN) as e:
        e.add_sku(PRO, "Pro")
        e.add_sku(CREDITS, "1,000 credits", type=3)
        e.add_sku(LIFETIME, "Lifetime", type=2, flags=USER_SUB)
        e.add_sku(PLUS, "Plus", flags=USER_SUB)
        yield e


@pytest.fixture
async def bot(emu: DiscordEmulator) -> AsyncIterator[ShopBot]:
    async with running(emu, ShopBot()) as b:
        yield b


async def next_event(bot: ShopBot) -> tuple[str, discord.Entitlement]:
    return await asyncio.wait_for(bot.events.get(), 5)


# -- SKUs and the list of entitlements -----------------------------------------------------------


async def test_fetch_skus_lists_the_applications_skus(emu: DiscordEmulator, bot: ShopBot) -> None:
    skus = {s.id: s for s in await bot.fetch_skus()}
    assert set(skus) == {PRO, CREDITS, LIFETIME, PLUS}
    assert (skus[PRO].name, skus[PRO].type, skus[PRO].flags.guild_subscription) == (
        "Pro",
        discord.SKUType.subscription,
        True,
    )
    assert skus[CREDITS].type is discord.SKUType.consumable
    assert skus[PLUS].flags.user_subscription and not skus[PLUS].flags.guild_subscription
    assert skus[PRO].application_id == emu.application_id


async def test_entitlements_are_filtered_by_user_guild_sku_ended_and_deleted(
    emu: DiscordEmulator, bot: ShopBot
) -> None:
    alice, bob = emu.users["alice"], emu.users["bob"]
    pro_g1 = await emu.grant_entitlement(PRO, guild_id=emu.guild_id, user_id=alice.id, dispatch=False)
    pro_g2 = await emu.grant_entitlement(PRO, guild_id=emu.guild2_id, dispatch=False)
    plus_bob = await emu.grant_entitlement(PLUS, user_id=bob.id, dispatch=False)
    credits = await emu.grant_entitlement(CREDITS, guild_id=emu.guild_id, user_id=bob.id, dispatch=False)
    ended = await emu.grant_entitlement(PLUS, user_id=alice.id, dispatch=False)
    await emu.end_entitlement(int(ended["id"]), dispatch=False)
    refunded = await emu.grant_entitlement(PRO, guild_id=emu.guild2_id, dispatch=False)
    await emu.end_entitlement(int(refunded["id"]), dispatch=False, delete=True)

    async def ids(**kwargs: Any) -> list[str]:
        return [str(e.id) async for e in bot.entitlements(**kwargs)]

    assert await ids() == [
        pro_g1["id"],
        pro_g2["id"],
        plus_bob["id"],
        credits["id"],
        ended["id"],
    ]  # not the deleted one
    # discord.py sends exclude_deleted only when paging with ``before`` (its ``after`` pages leave it out)
    after_all = discord.Object(int(refunded["id"]) + 1)
    assert await ids(exclude_deleted=False, before=after_all) == [
        pro_g1["id"],
        pro_g2["id"],
        plus_bob["id"],
        credits["id"],
        ended["id"],
        refunded["id"],
    ]
    assert await ids(exclude_ended=True) == [pro_g1["id"], pro_g2["id"], plus_bob["id"], credits["id"]]
    assert await ids(guild=discord.Object(emu.guild_id)) == [pro_g1["id"], credits["id"]]
    assert await ids(user=discord.Object(bob.id)) == [plus_bob["id"], credits["id"]]
    assert await ids(skus=[discord.Object(PRO)]) == [pro_g1["id"], pro_g2["id"]]
    assert await ids(skus=[discord.Object(PRO), discord.Object(CREDITS)], guild=discord.Object(emu.guild_id)) == [
        pro_g1["id"],
        credits["id"],
    ]

    [got] = [e async for e in bot.entitlements(guild=discord.Object(emu.guild2_id), exclude_ended=True)]
    assert (got.sku_id, got.guild_id, got.user_id, got.type) == (
        PRO,
        emu.guild2_id,
        None,
        discord.EntitlementType.application_subscription,
    )
    assert got.starts_at is not None and got.ends_at is None and not got.deleted
    [gone] = [e async for e in bot.entitlements(user=discord.Object(alice.id), skus=[discord.Object(PLUS)])]
    assert gone.is_expired()


async def test_entitlements_page_by_100_in_ascending_order_with_before_and_after(
    emu: DiscordEmulator, bot: ShopBot
) -> None:
    granted = [
        int((await emu.grant_entitlement(PLUS, user_id=emu.users["alice"].id, dispatch=False))["id"])
        for _ in range(230)
    ]
    before = len(emu.requests_to("/entitlements", "GET"))
    every = [e.id async for e in bot.entitlements(limit=None)]
    assert every == granted
    assert [int(r.query["limit"]) for r in emu.requests_to("/entitlements", "GET")[before:]] == [100, 100, 100]

    assert [e.id async for e in bot.entitlements(limit=150)] == granted[:150]
    assert [e.id async for e in bot.entitlements(limit=120, after=discord.Object(granted[99]))] == granted[100:220]
    # before: the entitlements just below it, newest pages first (discord.py yields each page as it comes)
    page = [e.id async for e in bot.entitlements(limit=50, before=discord.Object(granted[200]))]
    assert sorted(page) == granted[150:200]


async def test_list_limit_outside_1_to_100_is_refused_as_discord_does(emu: DiscordEmulator, bot: ShopBot) -> None:
    for limit, code in ((0, "NUMBER_TYPE_MIN"), (101, "NUMBER_TYPE_MAX")):
        route = Route("GET", "/applications/{application_id}/entitlements", application_id=emu.application_id)
        with pytest.raises(discord.HTTPException) as info:
            await bot.http.request(route, params={"limit": limit})
        assert (info.value.status, info.value.code) == (400, 50035)
        assert emu.requests[-1].response["errors"]["limit"]["_errors"][0]["code"] == code


# -- consuming --------------------------------------------------------------------------------


async def test_consume_answers_204_records_every_call_and_a_second_one_is_refused(
    emu: DiscordEmulator, bot: ShopBot
) -> None:
    granted = await emu.grant_entitlement(CREDITS, guild_id=emu.guild_id, user_id=emu.users["alice"].id, dispatch=False)
    eid = int(granted["id"])
    entitlement = await bot.fetch_entitlement(eid)
    assert not entitlement.consumed

    await entitlement.consume()
    assert emu.requests[-1].status == 204
    assert emu.entitlements[eid]["consumed"] is True
    assert (await bot.fetch_entitlement(eid)).consumed

    with pytest.raises(discord.NotFound) as info:  # already consumed: Discord no longer has it to consume
        await entitlement.consume()
    assert info.value.code == 10029
    assert emu.consume_calls == [eid, eid]


async def test_consume_refuses_a_subscription_and_an_unknown_entitlement(emu: DiscordEmulator, bot: ShopBot) -> None:
    sub = await emu.grant_entitlement(PRO, guild_id=emu.guild_id, dispatch=False)
    with pytest.raises(discord.HTTPException) as info:
        await (await bot.fetch_entitlement(int(sub["id"]))).consume()
    assert (info.value.status, info.value.code) == (400, 40018)
    with pytest.raises(discord.NotFound) as missing:
        await bot.http.consume_entitlement(emu.application_id, 42)
    assert missing.value.code == 10029
    assert emu.consume_calls == [int(sub["id"]), 42]
    assert emu.entitlements[int(sub["id"])]["consumed"] is False


# -- gateway events ------------------------------------------------------------------------------


async def test_grant_end_delete_and_a_duplicate_reach_the_client_as_events(emu: DiscordEmulator, bot: ShopBot) -> None:
    granted = await emu.grant_entitlement(PRO, guild_id=emu.guild_id, user_id=emu.users["admin"].id)
    kind, ent = await next_event(bot)
    assert (kind, ent.id, ent.sku_id, ent.guild_id, ent.user_id) == (
        "create",
        int(granted["id"]),
        PRO,
        emu.guild_id,
        emu.users["admin"].id,
    )

    await emu.redispatch_entitlement(ent.id)
    kind, again = await next_event(bot)
    assert (kind, again.id) == ("create", ent.id)

    await emu.end_entitlement(ent.id)
    kind, ended = await next_event(bot)
    assert (kind, ended.id) == ("update", ent.id)
    assert ended.ends_at is not None and ended.is_expired()

    credits = await emu.grant_entitlement(CREDITS, user_id=emu.users["bob"].id)
    await next_event(bot)
    await emu.end_entitlement(int(credits["id"]), delete=True)
    kind, deleted = await next_event(bot)
    assert (kind, deleted.id, deleted.deleted) == ("delete", int(credits["id"]), True)

    missed = await emu.grant_entitlement(PLUS, user_id=emu.users["bob"].id, dispatch=False)  # no event: only listed
    assert bot.events.empty()
    assert int(missed["id"]) in [e.id async for e in bot.entitlements(exclude_ended=True)]


async def test_entitlement_events_follow_their_guilds_shard_and_users_go_to_shard_0() -> None:
    async with aiohttp.ClientSession() as http, DiscordEmulator(token=SHARD_TOKEN) as emu:
        emu.add_sku(PRO, "Pro")
        emu.add_sku(PLUS, "Plus", flags=USER_SUB)
        shard0, _ = await identified(http, emu, [0, 2])
        shard1, _ = await identified(http, emu, [1, 2])
        in_guild2 = await emu.grant_entitlement(PRO, guild_id=emu.guild2_id)
        for_user = await emu.grant_entitlement(PLUS, user_id=emu.users["alice"].id)
        event, data = await shard1.next_dispatch()
        assert (event, data["id"]) == ("ENTITLEMENT_CREATE", in_guild2["id"])
        event, data = await shard0.next_dispatch()
        assert (event, data["id"]) == ("ENTITLEMENT_CREATE", for_user["id"])  # not the guild-2 one before it


async def test_test_entitlements_are_created_and_deleted_through_rest(emu: DiscordEmulator, bot: ShopBot) -> None:
    await bot.create_entitlement(discord.Object(PRO), discord.Object(emu.guild_id), discord.EntitlementOwnerType.guild)
    kind, ent = await next_event(bot)
    assert (kind, ent.type, ent.guild_id, ent.starts_at, ent.ends_at) == (
        "create",
        discord.EntitlementType.test_mode_purchase,
        emu.guild_id,
        None,
        None,
    )
    await ent.delete()
    kind, gone = await next_event(bot)
    assert (kind, gone.id, gone.deleted) == ("delete", ent.id, True)

    real = await emu.grant_entitlement(PRO, guild_id=emu.guild2_id, dispatch=False)
    with pytest.raises(discord.HTTPException) as info:
        await bot.http.delete_entitlement(emu.application_id, int(real["id"]))
    assert (info.value.status, info.value.code) == (400, 40019)


# -- interactions and the premium button -------------------------------------------------------------


async def test_interactions_carry_the_users_and_the_guilds_active_entitlements(
    emu: DiscordEmulator, bot: ShopBot
) -> None:
    alice = emu.users["alice"]
    guild_pro = await emu.grant_entitlement(PRO, guild_id=emu.guild_id, user_id=emu.users["admin"].id, dispatch=False)
    alice_plus = await emu.grant_entitlement(PLUS, user_id=alice.id, dispatch=False)
    other = await emu.grant_entitlement(PRO, guild_id=emu.guild2_id, dispatch=False)
    ended = await emu.grant_entitlement(LIFETIME, user_id=alice.id, dispatch=False)
    await emu.end_entitlement(int(ended["id"]), dispatch=False)

    await emu.inject_slash_command("upgrade", user="alice")
    interaction = await asyncio.wait_for(bot.seen.get(), 5)
    assert sorted(e.id for e in interaction.entitlements) == sorted([int(guild_pro["id"]), int(alice_plus["id"])])
    assert int(other["id"]) not in {e.id for e in interaction.entitlements}

    await emu.inject_slash_command("upgrade", user="admin", guild_id=emu.guild2_id)
    interaction = await asyncio.wait_for(bot.seen.get(), 5)
    assert [e.id for e in interaction.entitlements] == [int(other["id"])]


async def test_a_premium_button_is_accepted_and_recorded(emu: DiscordEmulator, bot: ShopBot) -> None:
    rec = await emu.inject_slash_command("upgrade", user="alice")
    msg = await rec.wait_final()
    assert msg.components[0]["components"][0] == {"type": 2, "style": 6, "sku_id": str(PRO), "disabled": False}
    assert emu.premium_buttons(msg) == [PRO]

    channel = bot.get_channel(emu.channel_id)
    assert isinstance(channel, discord.TextChannel)
    view = discord.ui.View()
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.premium, sku_id=CREDITS))
    sent = await channel.send("Top up", view=view)
    assert emu.premium_buttons(sent.id) == [CREDITS]
    assert sent.components[0].children[0].sku_id == CREDITS  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "button, field, code",
    [
        ({"custom_id": "buy"}, "custom_id", "BASE_TYPE_INVALID"),
        ({"label": "Buy Pro"}, "label", "BASE_TYPE_INVALID"),
        ({"url": "https://example.com"}, "url", "BASE_TYPE_INVALID"),
        ({"emoji": {"name": "💎"}}, "emoji", "BASE_TYPE_INVALID"),
        ({"sku_id": None}, "sku_id", "BASE_TYPE_REQUIRED"),
        ({"sku_id": "999"}, "sku_id", "BASE_TYPE_INVALID"),  # not one of the application's SKUs
    ],
)
async def test_a_malformed_premium_button_is_refused_with_discords_error_shape(
    emu: DiscordEmulator, bot: ShopBot, button: dict[str, Any], field: str, code: str
) -> None:
    component = {"type": 2, "style": 6, "sku_id": str(PRO), **button}
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=emu.channel_id)
    with pytest.raises(discord.HTTPException) as info:
        await bot.http.request(route, json={"content": "buy", "components": [{"type": 1, "components": [component]}]})
    assert (info.value.status, info.value.code) == (400, 50035)
    errors = emu.requests[-1].response["errors"]["components"]["0"]["components"]["0"]
    assert errors[field]["_errors"][0]["code"] == code
    assert not emu.bot_messages(emu.channel_id)


async def test_a_premium_button_with_a_label_is_refused_in_an_interaction_response(
    emu: DiscordEmulator, bot: ShopBot
) -> None:
    rec = await emu.inject_slash_command("broken", user="alice")
    outcome = await asyncio.wait_for(bot.outcomes.get(), 5)
    assert isinstance(outcome, discord.HTTPException) and outcome.code == 50035
    assert "data.components.0.components.0.label" in outcome.text
    assert rec.callbacks[-1]["status"] == 400


async def test_sku_id_only_belongs_on_a_premium_button(emu: DiscordEmulator, bot: ShopBot) -> None:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=emu.channel_id)
    component = {"type": 2, "style": 1, "custom_id": "x", "label": "X", "sku_id": str(PRO)}
    with pytest.raises(discord.HTTPException) as info:
        await bot.http.request(route, json={"content": "x", "components": [{"type": 1, "components": [component]}]})
    assert info.value.code == 50035 and "sku_id" in info.value.text


# -- the store: buying -------------------------------------------------------------------------------


async def test_buying_follows_the_skus_flags_and_the_stores_refusals(emu: DiscordEmulator, bot: ShopBot) -> None:
    alice = emu.users["alice"]
    pro = await emu.buy(PRO, user="alice", guild_id=emu.guild_id)
    assert (pro["guild_id"], pro["user_id"], pro["type"]) == (str(emu.guild_id), str(alice.id), 8)
    plus = await emu.buy(PLUS, user="alice", guild_id=emu.guild_id)
    assert "guild_id" not in plus and plus["user_id"] == str(alice.id)
    with pytest.raises(ValueError, match="already own"):
        await emu.buy(PRO, user="bob", guild_id=emu.guild_id)

    credits = await emu.buy(CREDITS, user="bob", guild_id=emu.guild_id)
    assert (credits["guild_id"], credits["type"]) == (str(emu.guild_id), 1)
    with pytest.raises(ValueError, match="until the app has used"):
        await emu.buy(CREDITS, user="bob", guild_id=emu.guild_id)
    await (await bot.fetch_entitlement(int(credits["id"]))).consume()
    again = await emu.buy(CREDITS, user="bob", guild_id=emu.guild_id)  # consumed: it can be bought again
    assert again["id"] != credits["id"]
    with pytest.raises(ValueError, match="for a server"):
        await emu.buy(PRO, user="alice", guild_id=None)
    kinds = [(await next_event(bot))[0] for _ in range(4)]
    assert kinds == ["create"] * 4
