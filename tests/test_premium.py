"""Premium tiers over the budgets, on SQLite and PostgreSQL: the tier ceiling over the admins' limits,
guild and user tiers, a guild with its own gateway exempt, the consumable bonus pool drawn down exactly
under concurrent charges (two stores: two processes), consumables granted once (duplicate events, an
event racing the reconciliation, a failed consume retried), and reconciliation repairing missed events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app.settings import ConfigError, Settings, load_settings
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.premium.service import PremiumService
from bot.rendering.premium import premium_view
from bot.storage.store import Store
from cogs._admin_text import mylimits_text, tier_text
from tests.store_pair import two_stores

GUILD, OTHER_GUILD = 1000, 2000
ALICE, BOB = 1, 2
PRO, PLUS, BOOST, UPGRADE = 501, 502, 503, 501
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

PREMIUM: dict[str, Any] = {
    "free": {"guild_tokens": 100, "member_tokens": 60, "user_tokens": 40},
    "tiers": [
        {"sku_id": PRO, "name": "Pro", "scope": "guild", "limits": {"guild_tokens": 1000, "member_tokens": 300}},
        {"sku_id": PLUS, "name": "Plus", "scope": "user", "limits": {"member_tokens": 500, "user_tokens": 700}},
    ],
    "consumables": [{"sku_id": BOOST, "name": "Boost", "kind": "tokens", "amount": 300}],
    "upgrade_sku_id": UPGRADE,
}


class Clock:
    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> datetime:
        return self.t

    def ts(self) -> float:
        return self.t.timestamp()


@dataclass
class FakeEntitlement:
    """What discord.py's ``Entitlement`` offers the service (public attributes and ``consume()``)."""

    id: int
    sku_id: int
    guild_id: int | None = None
    user_id: int | None = None
    type: int = 8
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    deleted: bool = False
    consumed: bool = False
    calls: list[int] = field(default_factory=list)
    fail: int = 0  # the next calls that fail

    async def consume(self) -> None:
        await asyncio.sleep(0)  # another task may run in between, as over HTTP
        self.calls.append(self.id)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("Discord said 500")
        self.consumed = True


class FakeDiscord:
    """``Client.entitlements``: what Discord lists (paginated by discord.py in the real client)."""

    def __init__(self, *entitlements: FakeEntitlement) -> None:
        self.items = list(entitlements)

    def entitlements(self, *, limit: int | None = 100, exclude_ended: bool = False) -> AsyncIterator[Any]:
        async def listing() -> AsyncIterator[Any]:
            for ent in list(self.items):
                if exclude_ended and ent.ends_at is not None and ent.ends_at <= datetime.now(UTC):
                    continue
                yield ent
        return listing()


def build(store: Store, clock: Clock, premium: dict[str, Any] | None = PREMIUM,
          client: FakeDiscord | None = None, **quotas: Any) -> tuple[BudgetService, PremiumService]:
    settings = Settings(quotas=quotas, premium=premium or {})
    budgets = BudgetService(store, settings, now=clock)
    service = PremiumService(store, settings, client=client, clock=clock.ts)
    service.attach(budgets)
    return budgets, service


async def tokens_limit(budgets: BudgetService, requester: Requester, scope: str) -> tuple[float, str]:
    line = (await budgets.usage_limits(requester)).line(scope, "tokens")
    assert line is not None
    return line.limit, line.source


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("toml", "message"), [
    ('[[premium.tiers]]\nsku_id = 5\nname = "Pro"\nlimits = {guild_tokenz = 5}\n',
     "premium.tiers[0] tier 'Pro' (sku 5): unknown limit `guild_tokenz`"),
    ('[[premium.tiers]]\nsku_id = 5\nname = "Solo"\nscope = "user"\nlimits = {guild_tokens = 5}\n',
     "tier 'Solo' (sku 5): `guild_tokens` cannot apply here"),
    ('[[premium.consumables]]\nsku_id = 7\nname = "Boost"\nkind = "gold"\namount = 5\n',
     "premium.consumables[0] consumable 'Boost' (sku 7): unknown kind `gold`"),
    ('[premium]\nfree = {member_images = 2.5}\n', "the free tier: `member_images` must be a whole number"),
    ('[[premium.tiers]]\nsku_id = 5\nname = "Pro"\n[[premium.consumables]]\nsku_id = 5\nname = "Boost"\namount = 1\n',
     "consumable 'Boost': sku 5 is already tier 'Pro'"),
])
def test_a_bad_premium_entry_is_named_in_one_line(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# -- the tier ceiling ----------------------------------------------------------------------------------


async def test_without_premium_nothing_changes(store: Store) -> None:
    budgets, service = build(store, Clock(), premium=None, guild_tokens=50)
    assert budgets.engine.ceilings is None
    member = Requester(GUILD, 10, ALICE)
    assert await tokens_limit(budgets, member, "guild") == (50, "config")
    assert tier_text(await service.status(member), in_server=True) == ""


async def test_the_tier_is_a_ceiling_over_the_admins_limits_and_an_event_changes_it_at_once(store: Store) -> None:
    clock = Clock()
    budgets, service = build(store, clock)
    member = Requester(GUILD, 10, ALICE)
    assert await tokens_limit(budgets, member, "guild") == (100, "free tier")
    assert await tokens_limit(budgets, member, "member") == (60, "free tier")
    # the admin's own tighter limit wins; a looser one is capped by the tier
    await budgets.set_limit(GUILD, "guild", "tokens", 80, actor_id=9)
    assert await tokens_limit(budgets, member, "guild") == (80, "server")
    await budgets.set_limit(GUILD, "guild", "tokens", 5000, actor_id=9)
    assert await tokens_limit(budgets, member, "guild") == (100, "free tier")
    with pytest.raises(BudgetExceeded) as refused:
        await budgets.reserve(member, Feature.CHAT, tokens=200, min_tokens=200)
    assert refused.value.source == "free tier" and refused.value.upgrade_sku_id == UPGRADE
    assert "(60, free tier)" in refused.value.user_message()
    view = premium_view(refused.value)
    assert view is not None and [(b.style.name, b.sku_id) for b in view.children] == [("premium", UPGRADE)]  # type: ignore[attr-defined]
    text = mylimits_text(await budgets.usage_limits(member), clock(),
                         tier=tier_text(await service.status(member), in_server=True))
    assert "Tier: free tier: this server has no subscription." in text

    ends = START + timedelta(days=30)
    await service.handle(FakeEntitlement(9001, PRO, guild_id=GUILD, user_id=BOB, ends_at=ends))
    assert await tokens_limit(budgets, member, "guild") == (1000, "tier Pro")  # at once: the cache was dropped
    assert await tokens_limit(budgets, member, "member") == (300, "tier Pro")
    hold = await budgets.reserve(member, Feature.CHAT, tokens=200, min_tokens=200)
    await hold.release(outcome="test")
    status = tier_text(await service.status(member), in_server=True)
    assert status == f"Tier: **Pro** — this server's subscription (SKU {PRO}), renews <t:{int(ends.timestamp())}:R>."
    # the other guild is still on the free tier; the admin's own limit refuses without a premium button
    assert await tokens_limit(budgets, Requester(OTHER_GUILD, 1, ALICE), "guild") == (100, "free tier")
    await budgets.set_limit(GUILD, "member", "tokens", 10, actor_id=9)
    with pytest.raises(BudgetExceeded) as own:
        await budgets.reserve(member, Feature.CHAT, tokens=50, min_tokens=50)
    assert own.value.source == "server" and own.value.upgrade_sku_id is None and premium_view(own.value) is None

    # ended (an update with ends_at now) → back to the free tier at once; deleted too
    await service.handle(FakeEntitlement(9001, PRO, guild_id=GUILD, user_id=BOB, ends_at=clock()))
    assert await tokens_limit(budgets, member, "guild") == (100, "free tier")
    await service.handle(FakeEntitlement(9001, PRO, guild_id=GUILD, user_id=BOB, ends_at=ends))
    assert await tokens_limit(budgets, member, "guild") == (1000, "tier Pro")
    await service.handle_delete(FakeEntitlement(9001, PRO, guild_id=GUILD, user_id=BOB, ends_at=ends, deleted=True))
    assert await tokens_limit(budgets, member, "guild") == (100, "free tier")


async def test_a_user_tier_lifts_the_members_share_everywhere_and_their_own_budget(store: Store) -> None:
    budgets, service = build(store, Clock())
    await service.handle(FakeEntitlement(1, PRO, guild_id=GUILD, user_id=BOB))  # the guild subscribes to Pro
    await service.handle(FakeEntitlement(2, PLUS, user_id=ALICE))  # Alice has her own Plus
    # the more generous of the guild's tier and her own, per kind; the guild's total is the guild's tier's
    assert await tokens_limit(budgets, Requester(GUILD, 1, ALICE), "member") == (500, "tier Plus")
    assert await tokens_limit(budgets, Requester(GUILD, 1, ALICE), "guild") == (1000, "tier Pro")
    assert await tokens_limit(budgets, Requester(OTHER_GUILD, 1, ALICE), "member") == (500, "tier Plus")
    assert await tokens_limit(budgets, Requester(OTHER_GUILD, 1, ALICE), "guild") == (100, "free tier")
    assert await tokens_limit(budgets, Requester(GUILD, 1, BOB), "member") == (300, "tier Pro")  # Bob bought Pro
    # her own budget (DMs, user installs): her tier's user_ limit; Bob's: the free tier's
    assert await tokens_limit(budgets, Requester(None, None, ALICE), "member") == (700, "tier Plus")
    assert await tokens_limit(budgets, Requester(None, None, BOB), "member") == (40, "free tier")
    text = tier_text(await service.status(Requester(GUILD, 1, ALICE)), in_server=True)
    assert "**Pro** — this server's subscription" in text and "**Plus** — your own subscription" in text
    assert "The more generous of them applies" in text


async def test_a_guild_with_its_own_gateway_has_no_tier_ceiling(store: Store) -> None:
    budgets, service = build(store, Clock(), guild_tokens=5000)
    await store.execute(
        "INSERT INTO guild_gateways(guild_id, profile, base_url, api_key_encrypted, key_last4, created_at,"
        " updated_at, updated_by) VALUES (?, 'openai', 'https://gw.example', 'token', 'abcd', 0, 0, 9)", (GUILD,))
    member = Requester(GUILD, 1, ALICE)
    assert await tokens_limit(budgets, member, "guild") == (5000, "config")  # only its own limits
    assert await tokens_limit(budgets, member, "member") == (-1, "config")
    assert tier_text(await service.status(member), in_server=True) == (
        "Tier: this server uses its own AI gateway: only its own limits apply (no tier ceiling).")
    assert await tokens_limit(budgets, Requester(OTHER_GUILD, 1, ALICE), "guild") == (100, "free tier")


# -- consumables and the bonus pool ------------------------------------------------------------------


async def pool_of(store: Store, guild_id: int = GUILD) -> tuple[float, float] | None:
    row = await store.fetchone("SELECT balance, granted FROM premium_pools WHERE guild_id = ? AND kind = 'tokens'",
                               (guild_id,))
    return (float(row[0]), float(row[1])) if row else None


async def test_a_consumable_is_granted_once_for_a_duplicate_event(store: Store) -> None:
    budgets, service = build(store, Clock())
    boost = FakeEntitlement(77, BOOST, guild_id=GUILD, user_id=ALICE, type=1)
    await asyncio.gather(service.handle(boost), service.handle(boost))
    await service.handle(boost)
    assert await pool_of(store) == (300, 300)
    assert boost.calls == [77]  # consumed once on Discord
    grant = await service.entitlements.grant_row(77)
    assert grant is not None and grant["consumed_at"] is not None
    text = tier_text(await service.status(Requester(GUILD, 1, ALICE)), in_server=True)
    assert "Bonus from one-time purchases: 300 tokens left of 300" in text


async def test_event_and_reconciliation_racing_grant_once_and_a_failed_consume_is_retried(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    boost = FakeEntitlement(78, BOOST, guild_id=GUILD, user_id=ALICE, type=1)
    failing = FakeEntitlement(88, BOOST, guild_id=OTHER_GUILD, user_id=ALICE, type=1, fail=1)
    discord_side = FakeDiscord(boost)
    async with two_stores(backend, tmp_path, request) as (one, two):
        _, events = build(one, Clock())
        _, reconciler = build(two, Clock(), client=discord_side)
        await asyncio.gather(events.handle(boost), reconciler.reconcile(), events.handle(boost))
        assert await pool_of(one) == (300, 300) and boost.calls == [78]
        # a consume call that fails gives its claim back: the next reconciliation consumes it, granting nothing
        await events.handle(failing)
        assert failing.calls == [88] and not failing.consumed and await pool_of(one, OTHER_GUILD) == (300, 300)
        discord_side.items.append(failing)
        report = await reconciler.reconcile()
        assert report.granted == 0 and failing.calls == [88, 88] and failing.consumed
        await reconciler.reconcile()  # listed as consumed now: nothing more
        assert failing.calls == [88, 88] and boost.calls == [78]
        assert await pool_of(two) == (300, 300) and await pool_of(two, OTHER_GUILD) == (300, 300)


async def test_the_pool_extends_the_ceiling_and_is_drawn_down_exactly_under_concurrent_charges(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    clock = Clock()
    async with two_stores(backend, tmp_path, request) as (one, two):
        first, service = build(one, clock)
        second, _ = build(two, clock)
        await service.handle(FakeEntitlement(79, BOOST, guild_id=GUILD, user_id=ALICE, type=1))
        # members' share is 60 (free tier): 20 members × up to 6 charges of 10 tokens, on two "processes"

        async def charge(budgets: BudgetService, user: int) -> bool:
            try:
                hold = await budgets.reserve(Requester(GUILD, 1, user), Feature.CHAT, tokens=10, min_tokens=10)
            except BudgetExceeded:
                return False
            await hold.settle(usage_tokens=10)
            return True

        outcomes = await asyncio.gather(*(charge(first if i % 2 else second, 100 + i % 20) for i in range(80)))
        # 100 (free tier's guild ceiling) + 300 (the pool): 40 charges of 10, whichever process made them
        assert sum(outcomes) == 40
        assert await first.counter("guild", GUILD, 0, "tokens") == (400, 0)
        assert await pool_of(one) == (0, 300)
        line = (await first.usage_limits(Requester(GUILD, 1, 999))).line("guild", "tokens")
        assert line is not None and (line.limit, line.remaining, line.source) == (400, 0, "free tier")
        # the next day: the ceiling again, the pool spent
        clock.t = START + timedelta(days=1)
        assert (await tokens_limit(first, Requester(GUILD, 1, ALICE), "guild")) == (100, "free tier")
        another = await asyncio.gather(*(charge(second, 100 + i % 20) for i in range(20)))
        assert sum(another) == 10 and await pool_of(two) == (0, 300)


async def test_settled_use_beyond_the_ceiling_draws_only_what_went_past_it(store: Store) -> None:
    budgets, service = build(store, Clock())
    await service.handle(FakeEntitlement(80, BOOST, guild_id=GUILD, user_id=ALICE, type=1))
    member = Requester(GUILD, 1, ALICE)
    hold = await budgets.reserve(member, Feature.CHAT, tokens=50, min_tokens=50)
    await hold.settle(usage_tokens=50)
    assert await pool_of(store) == (300, 300)  # 50 of the ceiling's 100: nothing drawn
    await budgets.charge_after(Requester(GUILD, 1, BOB), Feature.CHAT, tokens=70)
    assert await pool_of(store) == (280, 300)  # 120 used: 20 past the ceiling
    # the server pays for itself once it uses its own gateway: its pool is kept, not drawn
    await store.execute(
        "INSERT INTO guild_gateways(guild_id, profile, base_url, api_key_encrypted, key_last4, created_at,"
        " updated_at, updated_by) VALUES (?, 'openai', 'https://gw.example', 'token', 'abcd', 0, 0, 9)", (GUILD,))
    service.invalidate(guild_id=GUILD)
    await budgets.charge_after(Requester(GUILD, 1, BOB), Feature.CHAT, tokens=70)
    assert await pool_of(store) == (280, 300)


# -- reconciliation ---------------------------------------------------------------------------------


async def test_reconciliation_adds_what_events_missed_and_ends_what_is_gone(store: Store) -> None:
    missed = FakeEntitlement(90, PRO, guild_id=GUILD, user_id=BOB)
    discord_side = FakeDiscord(missed)
    clock = Clock()
    budgets, service = build(store, clock, client=discord_side)
    member = Requester(GUILD, 1, ALICE)
    stale = FakeEntitlement(91, PRO, guild_id=OTHER_GUILD, user_id=BOB)
    await service.handle(stale)  # stored as active, but Discord no longer lists it (its delete event was lost)
    clock.t += timedelta(minutes=1)
    assert await tokens_limit(budgets, member, "guild") == (100, "free tier")
    report = await service.reconcile()
    assert (report.listed, report.ended) == (1, 1)
    assert await tokens_limit(budgets, member, "guild") == (1000, "tier Pro")
    assert await tokens_limit(budgets, Requester(OTHER_GUILD, 1, ALICE), "guild") == (100, "free tier")
    # the periodic pass takes the store's lock (one process at a time) and does the same
    discord_side.items = []
    clock.t += timedelta(minutes=1)
    assert await service._reconcile_if_lead() is not None
    assert await tokens_limit(budgets, member, "guild") == (100, "free tier")
