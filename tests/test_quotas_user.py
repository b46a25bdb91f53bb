"""A member's own budget (DMs, user installs): ``[quotas.user]`` defaults, the owner's per-user overrides,
who pays for an interaction, and what the member reads."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from bot.app.settings import Settings
from bot.budgets.rules import BudgetExceeded, Feature, Requester, guild_pays
from bot.budgets.service import BudgetService
from bot.guilds.audit import InvalidSetting
from bot.storage.store import Store
from cogs._admin_text import mylimits_text

NOW = datetime(2025, 3, 14, 20, 48, tzinfo=UTC)
GUILD = 1000
OWNER = 99


def quotas(store: Store, **user: float) -> BudgetService:
    return BudgetService(store, Settings(quotas={"guild_chat_requests": 0, "member_chat_requests": 0, "user": user}),
                         now=lambda: NOW)


async def test_user_budget_is_counted_apart_from_any_server(store: Store) -> None:
    q = quotas(store, chat_requests=2)
    alice_own = Requester(None, 55, 1)
    await q.reserve(alice_own, Feature.CHAT)
    await q.reserve(alice_own, Feature.CHAT)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(alice_own, Feature.CHAT)
    assert info.value.user_message(NOW).startswith("Your own daily chat request budget (2) is used up")
    # the server's budget (0 requests) is not the one that was used, nor the one that refuses
    with pytest.raises(BudgetExceeded) as in_server:
        await q.reserve(Requester(GUILD, 10, 1), Feature.CHAT)
    assert in_server.value.scope == "guild"
    assert await q.counter("guild", GUILD, 0, "chat_requests") == (0, 0)


async def test_owner_override_set_show_reset(store: Store) -> None:
    q = quotas(store, chat_requests=1)
    me = Requester(None, None, 7)
    assert await q.set_user_limit(7, "chat_requests", 3, OWNER) == (1, 3)
    for _ in range(3):
        await q.reserve(me, Feature.CHAT)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(me, Feature.CHAT)
    assert "(3, set for you by the bot's owner)" in info.value.user_message(NOW)
    line = (await q.own_limits(7)).line("member", "chat_requests")
    assert line is not None and (line.limit, line.source) == (3, "owner")
    other = (await q.own_limits(8)).line("member", "chat_requests")
    assert other is not None and (other.limit, other.source) == (1, "user")

    assert await q.reset_user_limits(7, OWNER) == {"chat_requests": 3}
    line = (await q.own_limits(7)).line("member", "chat_requests")
    assert line is not None and (line.limit, line.source) == (1, "user")
    audited = await store.fetchall("SELECT guild_id, actor_id, target, field FROM audit_log ORDER BY id")
    assert [tuple(r) for r in audited] == [(0, OWNER, "user:7", "chat_requests")] * 2


async def test_override_is_validated(store: Store) -> None:
    q = quotas(store)
    with pytest.raises(InvalidSetting, match="Unknown budget"):
        await q.set_user_limit(7, "bananas", 3, OWNER)
    with pytest.raises(InvalidSetting, match="whole number"):
        await q.set_user_limit(7, "tokens", 2.5, OWNER)
    with pytest.raises(InvalidSetting, match="Unknown budget"):
        await q.reset_user_limits(7, OWNER, "bananas")


def interaction(guild_id: int | None, owners: dict[int, int]) -> Any:
    user = SimpleNamespace(id=1, roles=())
    return SimpleNamespace(
        guild_id=guild_id, channel_id=55, user=user,
        is_guild_integration=lambda: guild_id is not None and owners.get(0) == guild_id,
        is_user_integration=lambda: owners.get(1) == user.id,
    )


@pytest.mark.parametrize(("guild_id", "owners", "pays"), [
    (GUILD, {0: GUILD}, True),  # installed in the server
    (GUILD, {0: GUILD, 1: 1}, True),  # both: the server that installed it pays
    (GUILD, {1: 1}, False),  # only the member installed it: a guest there
    (None, {1: 1}, False),  # a DM
    (None, {0: 0}, False),
])
def test_who_pays_for_an_interaction(guild_id: int | None, owners: dict[int, int], pays: bool) -> None:
    it = interaction(guild_id, owners)
    assert guild_pays(it) is pays
    assert Requester.from_interaction(it).guild_id == (GUILD if pays else None)


async def test_mylimits_says_which_budget_applies(store: Store) -> None:
    q = quotas(store, chat_requests=5)
    own = mylimits_text(await q.own_limits(7), NOW, reason="this is a DM")
    assert own.splitlines()[0].startswith("**Your own budgets today**")
    assert "this is a DM" in own and "[quotas.user]" not in own
    assert "• chat requests: **5** of 5 left" in own
    await q.set_user_limit(7, "chat_requests", 9, OWNER)
    assert "• chat requests: **9** of 9 left (set for you by the bot's owner)" in \
        mylimits_text(await q.own_limits(7), NOW, reason="this is a DM")
    in_server = mylimits_text(await q.usage_limits(Requester(GUILD, 10, 7)), NOW)
    assert in_server.splitlines()[0].startswith("**Your budgets today**") and "own budget" not in in_server
