"""Budgets on both backends (a SQLite file, a real PostgreSQL): reserve/settle/release, partial grants,
roles, day rollover, expiry, concurrency (1,000 reservations against a limit of 100) and ledger/counter
agreement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.app.settings import Settings
from bot.budgets.engine import Reservation
from bot.budgets.reports import describe_line
from bot.budgets.rules import KINDS, BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.guilds.audit import InvalidSetting
from bot.storage.store import Store
from gateway_client.meta import CallMeta

GUILD = 1000
ALICE = Requester(GUILD, 10, 1, ())
BOB = Requester(GUILD, 10, 2, ())


class Clock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 14, 20, 48, tzinfo=UTC))


def same_database(store: Store) -> Store:
    """Another Store on the database of ``store`` (a restarted process)."""
    return Store(store.path) if store.path is not None else Store(url=store.url)


def make_quotas(store: Store, clock: Clock, **quotas: float) -> BudgetService:
    return BudgetService(store, Settings(quotas=quotas), now=clock)


async def ledger(store: Store, **where: object) -> list[dict]:
    sql = "SELECT * FROM usage_ledger"
    if where:
        sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
    return [dict(r) for r in await store.fetchall(sql + " ORDER BY id", tuple(where.values()))]


async def test_reserve_settle_charges_real_usage_and_writes_ledger(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, guild_tokens=10_000, member_chat_requests=5)
    r = await q.reserve(ALICE, Feature.CHAT, tokens=500, model="m-asked")
    assert r.granted_tokens == 500 and not r.partial
    assert await q.counter("guild", GUILD, 0, "tokens") == (0, 500)
    assert await q.counter("member", GUILD, 1, "chat_requests") == (0, 1)
    meta = CallMeta(profile="openai", request_id="req-1", model_requested="m-asked", model_used="m-real",
                    credits_used=0.25, latency_ms=123.0)
    await q.settle(r, usage_tokens=321, meta=meta)
    assert await q.counter("guild", GUILD, 0, "tokens") == (321, 0)
    assert await q.counter("member", GUILD, 1, "chat_requests") == (1, 0)
    assert await q.counter("guild", GUILD, 0, "credits") == (0.25, 0)
    [row] = await ledger(store)
    assert row["guild_id"] == GUILD and row["channel_id"] == 10 and row["user_id"] == 1
    assert (row["feature"], row["model_requested"], row["model_used"]) == ("chat", "m-asked", "m-real")
    assert (row["tokens"], row["credits"], row["latency_ms"], row["request_id"]) == (321, 0.25, 123.0, "req-1")
    assert (row["outcome"], row["charged"]) == ("ok", 1)
    # settling twice changes nothing
    await q.settle(r, usage_tokens=999)
    assert await q.counter("guild", GUILD, 0, "tokens") == (321, 0)
    assert len(await ledger(store)) == 1


async def test_release_charges_nothing_and_records_outcome(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_images=4)
    r = await q.reserve(ALICE, Feature.IMAGE, images=4)
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.IMAGE, images=1)
    await q.release(r, outcome="error", error_code="upstream_unavailable")
    assert await q.counter("member", GUILD, 1, "images") == (0, 0)
    [row] = await ledger(store)
    assert (row["outcome"], row["charged"], row["images"], row["error_code"]) == ("error", 0, 0, "upstream_unavailable")
    r2 = await q.reserve(ALICE, Feature.IMAGE, images=4)  # the budget is whole again
    await q.settle(r2, usage_tokens=0, images=3)  # one of four images failed: three are charged
    assert await q.counter("member", GUILD, 1, "images") == (3, 0)
    await q.settle(await q.reserve(BOB, Feature.IMAGE, images=2), usage_tokens=0)  # default: as reserved
    assert await q.counter("member", GUILD, 2, "images") == (2, 0)


async def test_exhausted_budget_says_which_and_when(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, guild_images=20)
    r = await q.reserve(BOB, Feature.IMAGE, images=20)
    await q.settle(r, usage_tokens=0, images=20)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.IMAGE, images=1)
    exc = info.value
    assert (exc.kind, exc.scope, exc.limit, exc.used) == ("images", "guild", 20, 20)
    assert exc.resets_at == datetime(2025, 3, 15, tzinfo=UTC)
    assert exc.user_message() == (
        "This server's daily image budget (20) is used up; it resets in 3 h 12 min (00:00 UTC)."
    )


async def test_member_message_and_request_limit(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_chat_requests=2)
    for _ in range(2):
        await q.settle(await q.reserve(ALICE, Feature.CHAT), usage_tokens=10)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.CHAT, tokens=100)
    assert info.value.user_message().startswith("Your daily chat request budget (2) is used up; it resets in 3 h 12 min")
    await q.reserve(BOB, Feature.CHAT, tokens=100)  # another member is not affected


async def test_partial_grant_lowers_max_tokens(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_tokens=1000)
    r = await q.reserve(ALICE, Feature.CHAT, tokens=800)
    await q.settle(r, usage_tokens=700)
    r = await q.reserve(ALICE, Feature.CHAT, tokens=800)
    assert r.granted_tokens == 300 and r.partial
    assert await q.counter("member", GUILD, 1, "tokens") == (700, 300)
    await q.release(r, outcome="error")
    # with a prompt estimate the cap leaves room for the prompt
    r = await q.reserve(ALICE, Feature.CHAT, tokens=800, prompt_tokens=100)
    assert r.granted_tokens == 200
    await q.settle(r, usage_tokens=290)
    # 10 left: less than a useful answer -> refused, naming the token budget
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.CHAT, tokens=800)
    assert info.value.kind == "tokens"
    assert "has only 10 left" in info.value.user_message()
    # a caller that accepts very short answers still gets them
    r = await q.reserve(ALICE, Feature.CHAT, tokens=800, min_tokens=5)
    assert r.granted_tokens == 10


async def test_usage_above_grant_is_charged_then_refused(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_tokens=100)
    r = await q.reserve(ALICE, Feature.CHAT, tokens=100)
    await q.settle(r, usage_tokens=180)  # the prompt counts too: real usage is what is charged
    assert await q.counter("member", GUILD, 1, "tokens") == (180, 0)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.VISION)
    assert (info.value.kind, info.value.used) == ("tokens", 180)


async def test_role_overrides_most_generous_and_unlimited(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_images=1)
    await q.set_limit(GUILD, "member", "images", 2, actor_id=99)
    await q.set_role_limit(GUILD, 501, "images", 3, actor_id=99)
    await q.set_role_limit(GUILD, 502, "images", 5, actor_id=99)
    await q.set_role_limit(GUILD, 503, "images", -1, actor_id=99)
    plain = Requester(GUILD, 10, 7, ())
    helper = Requester(GUILD, 10, 8, (501, 502))
    vip = Requester(GUILD, 10, 9, (501, 503))
    assert (await q.usage_limits(plain)).line("member", "images").limit == 2
    assert (await q.usage_limits(helper)).line("member", "images").limit == 5
    assert (await q.usage_limits(vip)).line("member", "images").unlimited
    await q.reserve(helper, Feature.IMAGE, images=5)
    with pytest.raises(BudgetExceeded):
        await q.reserve(helper, Feature.IMAGE, images=1)
    await q.reserve(vip, Feature.IMAGE, images=500)
    with pytest.raises(BudgetExceeded):
        await q.reserve(plain, Feature.IMAGE, images=3)
    # removing the override returns the role's members to the server default
    await q.set_role_limit(GUILD, 502, "images", None, actor_id=99)
    assert (await q.usage_limits(helper)).line("member", "images").limit == 3
    entries = await store.fetchall("SELECT target, field, old_value, new_value FROM audit_log ORDER BY id")
    assert [tuple(e) for e in entries][:2] == [("quota:member", "images", "1.0", "2.0"), ("role:501", "images", None, "3.0")]
    assert tuple(entries[-1]) == ("role:502", "images", "5.0", None)


async def test_guild_limit_caps_even_unlimited_members(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock)
    await q.set_limit(GUILD, "guild", "chat_requests", 3, actor_id=99)
    for user in range(3):
        await q.reserve(Requester(GUILD, 10, 100 + user), Feature.CHAT)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(Requester(GUILD, 10, 200), Feature.CHAT)
    assert info.value.scope == "guild"


async def test_unlimited_default_never_refuses(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock)  # every default is -1
    for _ in range(50):
        r = await q.reserve(ALICE, Feature.CHAT, tokens=10_000)
        assert r.granted_tokens == 10_000
        await q.settle(r, usage_tokens=10_000)
    limits = await q.usage_limits(ALICE)
    assert limits.remaining("tokens") is None
    assert limits.line("guild", "tokens").used == 500_000
    assert describe_line(limits.line("member", "tokens")) == "tokens: unlimited"


async def test_day_rollover_resets_budgets_and_old_reservation_settles_on_its_day(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_chat_requests=1)
    late = await q.reserve(ALICE, Feature.CHAT)
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.CHAT)
    clock.advance(hours=3, minutes=13)  # 00:01 UTC next day
    fresh = await q.reserve(ALICE, Feature.CHAT)
    assert fresh.day == "2025-03-15" and late.day == "2025-03-14"
    await q.settle(late, usage_tokens=40)
    assert await q.counter("member", GUILD, 1, "chat_requests", day="2025-03-14") == (1, 0)
    assert await q.counter("member", GUILD, 1, "chat_requests", day="2025-03-15") == (0, 1)
    limits = await q.usage_limits(ALICE)
    assert limits.day == "2025-03-15" and limits.resets_at == datetime(2025, 3, 16, tzinfo=UTC)
    assert limits.remaining("chat_requests") == 0


async def test_expired_reservations_return_lazily_and_by_sweep(store: Store, clock: Clock) -> None:
    q = BudgetService(store, Settings(quotas={"member_images": 4, "reservation_ttl_seconds": 60}), now=clock)
    await q.reserve(ALICE, Feature.IMAGE, images=4)  # never settled: the bot crashed
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.IMAGE, images=1)
    clock.advance(seconds=61)
    r = await q.reserve(ALICE, Feature.IMAGE, images=4)  # lazily returned at reserve time
    assert await q.counter("member", GUILD, 1, "images") == (0, 4)
    clock.advance(seconds=61)
    assert await q.sweep_expired() == 1
    assert await q.counter("member", GUILD, 1, "images") == (0, 0)
    assert [row["outcome"] for row in await ledger(store)] == ["expired", "expired"]
    # an answer arriving after expiry is still charged, completing the same ledger row
    await q.settle(r, usage_tokens=0, images=2)
    assert await q.counter("member", GUILD, 1, "images") == (2, 0)
    rows = await ledger(store, reservation_id=r.id)
    assert len(rows) == 1 and (rows[0]["outcome"], rows[0]["images"], rows[0]["charged"]) == ("ok", 2, 1)


async def test_expired_reservation_survives_restart(store: Store, clock: Clock) -> None:
    s1 = same_database(store)
    await s1.open()
    q1 = BudgetService(s1, Settings(quotas={"guild_tokens": 1000, "reservation_ttl_seconds": 30}), now=clock)
    await q1.reserve(ALICE, Feature.CHAT, tokens=1000)
    await s1.close()  # crash mid-request
    s2 = same_database(store)
    await s2.open()
    q2 = BudgetService(s2, Settings(quotas={"guild_tokens": 1000, "reservation_ttl_seconds": 30}), now=clock)
    assert (await q2.usage_limits(ALICE)).remaining("tokens") == 0
    clock.advance(seconds=31)
    assert (await q2.usage_limits(ALICE)).remaining("tokens") == 1000
    await s2.close()


async def test_charge_context_releases_on_gateway_error_and_cancellation(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_chat_requests=1)

    class FakeGatewayError(Exception):
        code = "upstream_unavailable"

    with pytest.raises(FakeGatewayError):
        async with q.charge(ALICE, Feature.CHAT, tokens=100):
            raise FakeGatewayError()
    assert await q.counter("member", GUILD, 1, "chat_requests") == (0, 0)

    started = asyncio.Event()

    async def request() -> None:
        async with q.charge(ALICE, Feature.CHAT, tokens=100):
            started.set()
            await asyncio.Event().wait()  # the gateway never answers; the bot closes

    task = asyncio.create_task(request())
    await started.wait()
    assert await q.counter("member", GUILD, 1, "chat_requests") == (0, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await q.counter("member", GUILD, 1, "chat_requests") == (0, 0)
    async with q.charge(ALICE, Feature.CHAT, tokens=100) as r:
        await q.settle(r, usage_tokens=42)
    assert await q.counter("member", GUILD, 1, "chat_requests") == (1, 0)
    rows = await ledger(store)
    assert [(r["outcome"], r["error_code"], r["charged"]) for r in rows] == [
        ("error", "upstream_unavailable", 0), ("cancelled", "cancelled", 0), ("ok", None, 1)
    ]


async def test_thousand_concurrent_reservations_grant_exactly_limit(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, guild_chat_requests=100)
    requesters = [Requester(GUILD, 10, 5000 + i % 37) for i in range(1000)]
    results = await asyncio.gather(*(q.reserve(r, Feature.CHAT, tokens=50) for r in requesters), return_exceptions=True)
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(granted) == 100 and len(refused) == 900
    # settle half with varied usage, release the rest (some by failure)
    total_tokens = 0
    await asyncio.gather(*(
        q.settle(r, usage_tokens=10 + i) if i % 2 == 0 else q.release(r, outcome="error")
        for i, r in enumerate(granted)
    ))
    total_tokens = sum(10 + i for i in range(0, 100, 2))
    assert await q.counter("guild", GUILD, 0, "chat_requests") == (50, 0)
    assert await q.counter("guild", GUILD, 0, "tokens") == (total_tokens, 0)
    # ledger and counters agree, per member too
    assert await store.fetchval("SELECT COUNT(*) FROM usage_ledger") == 100
    assert await store.fetchval("SELECT COUNT(*) FROM usage_ledger WHERE charged = 1") == 50
    assert await store.fetchval("SELECT SUM(tokens) FROM usage_ledger WHERE charged = 1") == total_tokens
    per_member = await store.fetchall(
        "SELECT l.user_id, SUM(l.tokens), c.used FROM usage_ledger l JOIN quota_counters c"
        " ON c.scope = 'member' AND c.guild_id = l.guild_id AND c.user_id = l.user_id AND c.day = l.day AND c.kind = 'tokens'"
        " WHERE l.charged = 1 GROUP BY l.user_id, c.used"
    )
    assert per_member and all(row[1] == row[2] for row in per_member)
    assert await store.fetchval("SELECT SUM(reserved) FROM quota_counters") == 0


async def test_concurrent_partial_token_grants_never_overspend(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, guild_tokens=10_000)
    results = await asyncio.gather(
        *(q.reserve(Requester(GUILD, 1, i), Feature.CHAT, tokens=300) for i in range(100)), return_exceptions=True
    )
    granted = [r.granted_tokens for r in results if not isinstance(r, BaseException)]
    assert sum(granted) == 10_000  # 33 full grants and one of 100
    assert sorted(granted)[0] == 100


async def test_credits_from_header_and_from_prices(store: Store, clock: Clock) -> None:
    from gateway_client.models import ModelInfo, ModelKind

    q = make_quotas(store, clock, guild_credits=1.0)
    r = await q.reserve(ALICE, Feature.CHAT, tokens=10, model="priced")
    await q.settle(r, usage_tokens=1000, meta=CallMeta(profile="openai", credits_used=0.6))
    q.set_prices([ModelInfo(id="priced", kind=ModelKind.CHAT, input_price_per_1m=100.0, output_price_per_1m=300.0)])
    r = await q.reserve(ALICE, Feature.CHAT, tokens=10, model="priced")
    await q.settle(r, usage_tokens=2000)  # 2000 tokens * 200/1M = 0.4
    assert await q.counter("guild", GUILD, 0, "credits") == pytest.approx((1.0, 0))
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.CHAT, tokens=10)
    assert info.value.kind == "credits"
    assert info.value.user_message().startswith("This server's daily credit budget (1) is used up")


async def test_dm_uses_the_members_own_budget_only(store: Store, clock: Clock) -> None:
    q = BudgetService(store, Settings(quotas={"guild_chat_requests": 0, "member_chat_requests": 0,
                                              "user": {"chat_requests": 1}}), now=clock)
    dm = Requester(None, 55, 1)
    await q.reserve(dm, Feature.CHAT)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(dm, Feature.CHAT)
    assert info.value.scope == "member" and info.value.source == "user"
    assert [l.scope for l in (await q.usage_limits(dm)).lines] == ["member"] * len(KINDS)


async def test_reset_user_gives_fresh_budget_and_is_audited(store: Store, clock: Clock) -> None:
    q = make_quotas(store, clock, member_images=2)
    await q.settle(await q.reserve(ALICE, Feature.IMAGE, images=2), usage_tokens=0, images=2)
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.IMAGE, images=1)
    cleared = await q.reset_user(GUILD, ALICE.user_id, actor_id=99)
    assert cleared == {"images": 2.0}
    await q.reserve(ALICE, Feature.IMAGE, images=2)
    assert await q.counter("guild", GUILD, 0, "images") == (2, 2)  # the server's total keeps what was spent
    row = await store.fetchone("SELECT actor_id, target, field, old_value, new_value FROM audit_log")
    assert tuple(row) == (99, "user:1", "usage_today", '{"images": 2.0}', "{}")


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("images", -2, "A limit must be 0 or more, or -1 for unlimited."),
        ("tokens", 1.5, "The token limit must be a whole number."),
        ("bananas", 3, "Unknown budget `bananas`"),
        ("images", 10**13, "A limit must be at most 1,000,000,000,000."),
        ("images", float("nan"), "A limit must be a number"),
    ],
)
async def test_limit_validation_messages(store: Store, clock: Clock, kind: str, value: float, message: str) -> None:
    q = make_quotas(store, clock)
    with pytest.raises(InvalidSetting) as info:
        await q.set_limit(GUILD, "member", kind, value, actor_id=1)
    assert str(info.value).startswith(message)
    assert await store.fetchval("SELECT COUNT(*) FROM audit_log") == 0


async def test_requester_from_discord_like_objects() -> None:
    class Role:
        def __init__(self, id: int) -> None:
            self.id = id

    class Member:
        id = 7
        roles = [Role(11), Role(12)]

    class Interaction:
        guild_id = 1000
        channel_id = 20
        user = Member()

    assert Requester.from_interaction(Interaction()) == Requester(1000, 20, 7, (11, 12, 1000))


async def test_expiry_sweeps_racing_reservations_and_settles_stay_exact(store: Store, clock: Clock) -> None:
    """Two engines (on PostgreSQL two pools, as two processes) sweep lazily and periodically while
    reserving and settling across guilds: no deadlock, each expired hold returned once."""
    other = same_database(store) if store.dialect == "postgresql" else store
    if other is not store:
        await other.open()
    try:
        settings = Settings(quotas={"guild_chat_requests": 10_000, "reservation_ttl_seconds": 60})
        q1, q2 = BudgetService(store, settings, now=clock), BudgetService(other, settings, now=clock)
        members = [Requester(GUILD + g, 10, 100 + m) for g in range(3) for m in range(8)]
        stale = await asyncio.gather(*(q1.reserve(r, Feature.CHAT, tokens=10) for r in members))  # never settled
        clock.advance(seconds=61)
        settling = await asyncio.gather(*(q2.reserve(r, Feature.CHAT, tokens=10) for r in members))
        work = [
            *(q.reserve(r, Feature.CHAT, tokens=20) for r in members for q in (q1, q2)),
            *(q.settle(r, usage_tokens=5) for r, q in zip(settling, [q1, q2] * len(members), strict=False)),
            q1.sweep_expired(), q2.sweep_expired(),
        ]
        results = await asyncio.gather(*work, return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        fresh = [r for r in results if isinstance(r, Reservation)]
        assert len(fresh) == 2 * len(members)

        expired = await store.fetchall(
            "SELECT reservation_id, COUNT(*) FROM usage_ledger WHERE outcome = 'expired' GROUP BY reservation_id")
        assert sorted(row[0] for row in expired) == sorted(r.id for r in stale)
        assert all(row[1] == 1 for row in expired)
        for g in range(3):
            held_requests = sum(1 for r in fresh if r.requester.guild_id == GUILD + g)
            assert await q1.counter("guild", GUILD + g, 0, "chat_requests") == (8, held_requests)
            assert await q1.counter("guild", GUILD + g, 0, "tokens") == (8 * 5, 20 * held_requests)
        open_now = await store.fetchval("SELECT COUNT(*) FROM quota_reservations WHERE state = 'open'")
        assert open_now == len(fresh)
    finally:
        if other is not store:
            await other.close()
