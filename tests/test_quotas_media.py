"""The media budgets (video seconds, music seconds) on both backends: whole-amount checks in every scope,
refusals that name the kind, role overrides, a cancelled job settled with what was billed, a hold's own
time to live (injected clock), a hold reopened by a new engine after a restart, ``charge_after`` for a
job whose hold is gone, concurrency, and what /usage, /quota show and /mylimits say."""

from __future__ import annotations

import asyncio
import tomllib
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app.settings import Settings
from bot.budgets.reports import describe_line
from bot.budgets.rules import KIND_LABELS, KIND_NOUNS, KINDS, BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.storage.store import Store
from cogs._admin_text import mylimits_text, quota_show_text, top_members_text, usage_totals_text
from cogs.admin import KindChoice
from gateway_client.meta import CallMeta
from tests.fake_clock import FakeClock

GUILD = 2000
ALICE = Requester(GUILD, 20, 1, ())
BOB = Requester(GUILD, 20, 2, ())
START = datetime(2025, 3, 14, 20, 48, tzinfo=UTC)  # 3 h 12 min before the reset
ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """Engine time from a ``FakeClock`` (seconds since ``START``), moved only by the test."""

    def __init__(self) -> None:
        self.fake = FakeClock()

    def __call__(self) -> datetime:
        return START + timedelta(seconds=self.fake.now())

    def advance(self, seconds: float) -> None:
        self.fake.advance(seconds)


def quotas(store: Store, clock: Clock | None = None, **limits: float) -> BudgetService:
    return BudgetService(store, Settings(quotas=limits), now=clock or Clock())


async def ledger(store: Store) -> list[dict]:
    return [dict(r) for r in await store.fetchall("SELECT * FROM usage_ledger ORDER BY id")]


async def reserved(store: Store) -> float:
    return float(await store.fetchval(
        "SELECT COALESCE(SUM(reserved), 0) FROM quota_counters WHERE kind IN ('video_seconds', 'music_seconds')"))


def test_the_media_kinds_are_budgets_like_the_others() -> None:
    assert KINDS[-3:-1] == ("video_seconds", "music_seconds")
    assert typing.get_args(KindChoice) == KINDS  # /quota set and /quota role offer every budget
    assert (KIND_NOUNS["video_seconds"], KIND_LABELS["video_seconds"]) == (("video second", "video seconds"), "video")
    assert (KIND_NOUNS["music_seconds"], KIND_LABELS["music_seconds"]) == (("music second", "music seconds"), "music")
    assert (Feature("video"), Feature("music")) == (Feature.VIDEO, Feature.MUSIC)
    defaults = Settings().quotas
    example = tomllib.loads((ROOT / "config.example.toml").read_text())["quotas"]
    for scope in ("guild", "member"):
        for kind in ("video_seconds", "music_seconds"):
            assert getattr(defaults, f"{scope}_{kind}") == -1
            assert example[f"{scope}_{kind}"] == -1
    assert Settings(quotas=example).quotas.member_video_seconds == -1


@pytest.mark.parametrize(("feature", "kind"), [(Feature.VIDEO, "video_seconds"), (Feature.MUSIC, "music_seconds")])
async def test_reserve_within_limit_settles_what_was_reserved_into_the_ledger(
    store: Store, feature: Feature, kind: str
) -> None:
    q = quotas(store, guild_video_seconds=100, member_video_seconds=40,
               guild_music_seconds=100, member_music_seconds=40)
    async with q.charge(ALICE, feature, model="m-asked", **{kind: 32}) as hold:
        assert await q.counter("member", GUILD, 1, kind) == (0, 32)
        assert await q.counter("guild", GUILD, 0, kind) == (0, 32)
        await hold.settle(meta=CallMeta(profile="openai", request_id="req-7", model_used="m-real", credits_used=1.5))
    assert await q.counter("member", GUILD, 1, kind) == (32, 0)
    assert await q.counter("guild", GUILD, 0, kind) == (32, 0)
    [row] = await ledger(store)
    other = "music_seconds" if kind == "video_seconds" else "video_seconds"
    assert (row["feature"], row[kind], row[other], row["images"], row["tokens"]) == (feature.value, 32, 0, 0, 0)
    assert (row["outcome"], row["charged"], row["credits"], row["model_used"], row["reservation_id"]) == (
        "ok", 1, 1.5, "m-real", hold.id)
    limits = await q.usage_limits(ALICE)
    assert limits.remaining(kind) == 8
    assert describe_line(limits.line("member", kind)).endswith(": 8 of 40 left")


async def test_refusals_name_the_kind_and_whose_budget(store: Store) -> None:
    q = quotas(store, member_video_seconds=0, guild_music_seconds=60)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.VIDEO, video_seconds=4)
    assert (info.value.kind, info.value.scope, info.value.limit) == ("video_seconds", "member", 0)
    assert info.value.user_message() == (
        "Your daily video second budget (0) is used up; it resets in 3 h 12 min (00:00 UTC)."
    )
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.VIDEO)  # refused even before the duration is known
    await q.settle(await q.reserve(BOB, Feature.MUSIC, music_seconds=40))
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.MUSIC, music_seconds=30)
    assert info.value.user_message() == (
        "This server's daily music second budget (60) has only 20 left, not enough for this request;"
        " it resets in 3 h 12 min (00:00 UTC)."
    )
    await q.settle(await q.reserve(ALICE, Feature.MUSIC, music_seconds=20))  # exactly what is left fits
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.MUSIC)
    # an image edit is an image: untouched by the media budgets; a refusal holds nothing
    await q.settle(await q.reserve(ALICE, Feature.IMAGE, images=2))
    assert await reserved(store) == 0
    assert await store.fetchval("SELECT COUNT(*) FROM quota_reservations WHERE state = 'open'") == 0


async def test_role_overrides_apply_to_the_media_budgets(store: Store) -> None:
    q = quotas(store, member_video_seconds=10, guild_video_seconds=100)
    await q.set_role_limit(GUILD, 501, "video_seconds", 30, actor_id=99)
    await q.set_role_limit(GUILD, 502, "video_seconds", -1, actor_id=99)
    plain, maker, vip = Requester(GUILD, 20, 7), Requester(GUILD, 20, 8, (501,)), Requester(GUILD, 20, 9, (501, 502))
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(plain, Feature.VIDEO, video_seconds=12)
    assert info.value.user_message().startswith("Your daily video second budget (10) has only 10 left,")
    await q.reserve(maker, Feature.VIDEO, video_seconds=24)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(maker, Feature.VIDEO, video_seconds=8)
    assert info.value.user_message().startswith(
        "Your daily video second budget (30, set for your role <@&501>) has only 6 left, not enough for this request;")
    await q.reserve(vip, Feature.VIDEO, video_seconds=70)  # unlimited for the member...
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(vip, Feature.VIDEO, video_seconds=8)  # ...not for the server (24 + 70 held)
    assert info.value.user_message().startswith("This server's daily video second budget (100) has only 6 left")
    line = (await q.usage_limits(maker)).line("member", "video_seconds")
    assert (line.limit, line.source, line.reserved) == (30, "role", 24)


async def test_a_cancelled_job_is_charged_what_was_billed(store: Store) -> None:
    q = quotas(store, member_video_seconds=20)
    hold = await q.reserve(ALICE, Feature.VIDEO, video_seconds=12, model="vid-1")
    await hold.settle(video_seconds=0, outcome="cancelled", meta=CallMeta(profile="openai", credits_used=0.0))
    assert await q.counter("member", GUILD, 1, "video_seconds") == (0, 0)  # nothing charged
    hold = await q.reserve(ALICE, Feature.VIDEO, video_seconds=12, model="vid-1")
    await q.settle(hold, video_seconds=5, outcome="cancelled")  # cancelled while processing: billed 5 s
    assert await q.counter("member", GUILD, 1, "video_seconds") == (5, 0)
    rows = await ledger(store)
    assert [(r["outcome"], r["video_seconds"], r["model_requested"]) for r in rows] == [
        ("cancelled", 0, "vid-1"), ("cancelled", 5, "vid-1")]
    assert (await q.usage_limits(ALICE)).remaining("video_seconds") == 15
    assert (await q.usage_report(GUILD, 1)).totals["video_seconds"] == 5


async def test_a_hold_lives_as_long_as_it_asked(store: Store) -> None:
    clock = Clock()
    q = BudgetService(store, Settings(quotas={"member_video_seconds": 20, "reservation_ttl_seconds": 60}), now=clock)
    long = await q.reserve(ALICE, Feature.VIDEO, video_seconds=8, ttl_seconds=3600)  # a video job
    short = await q.reserve(ALICE, Feature.VIDEO, video_seconds=8)  # the default TTL
    assert (long.expires_at - START, short.expires_at - START) == (timedelta(hours=1), timedelta(seconds=60))
    raised = await q.reserve(BOB, Feature.MUSIC, ttl_seconds=5)  # never shorter than the default
    assert raised.expires_at - START == timedelta(seconds=60)
    with pytest.raises(ValueError):
        await q.reserve(BOB, Feature.MUSIC, ttl_seconds=0)
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.VIDEO, video_seconds=8)

    clock.advance(61)  # the short hold expired: reserve() returns it before deciding; the long one stays
    again = await q.reserve(ALICE, Feature.VIDEO, video_seconds=8)
    assert await q.counter("member", GUILD, 1, "video_seconds") == (0, 16)
    states = {r["id"]: r["state"] for r in await store.fetchall("SELECT id, state FROM quota_reservations")}
    assert (states[long.id], states[short.id], states[again.id]) == ("open", "expired", "open")

    clock.advance(3600 - 61 - 1)  # one second before the long hold's end: a sweep leaves it alone
    assert await q.sweep_expired() == 1  # only ``again`` (60 s)
    other = quotas(store, clock, member_video_seconds=20, reservation_ttl_seconds=60)  # another process
    assert await other.sweep_expired() == 0
    assert await q.counter("member", GUILD, 1, "video_seconds") == (0, 8)

    clock.advance(1)
    assert await other.sweep_expired() == 1
    assert await q.counter("member", GUILD, 1, "video_seconds") == (0, 0)
    await long.settle()  # the video arrived after all: charged in the sweep's ledger row
    assert await q.counter("member", GUILD, 1, "video_seconds") == (8, 0)
    rows = [r for r in await ledger(store) if r["reservation_id"] == long.id]
    assert [(r["outcome"], r["charged"], r["video_seconds"]) for r in rows] == [("ok", 1, 8)]


async def test_a_new_engine_reopens_an_open_hold_and_settles_it(store: Store) -> None:
    clock = Clock()
    before = quotas(store, clock, member_video_seconds=30, member_music_seconds=30)
    hold = await before.reserve(ALICE, Feature.VIDEO, video_seconds=8, model="vid-1", ttl_seconds=3600)
    dm = Requester(None, 5, 3)
    tune = await before.reserve(dm, Feature.MUSIC, music_seconds=20)
    gone = await before.reserve(BOB, Feature.VIDEO, video_seconds=4)
    await gone.release(outcome="error")

    clock.advance(600)  # the bot restarts: a new service on the same database
    after = quotas(store, clock, member_video_seconds=30, member_music_seconds=30)
    again = await after.reopen(hold.id)
    assert again is not None
    assert (again.id, again.feature, again.requester, again.day, again.model, again.expires_at) == (
        hold.id, Feature.VIDEO, Requester(GUILD, 20, 1), hold.day, "vid-1", hold.expires_at)
    assert (again.video_seconds, again.music_seconds, again.images, again.closed) == (8, 0, 0, False)
    await again.settle(video_seconds=8, meta=CallMeta(profile="openai", request_id="req-v", credits_used=2.0))
    assert await after.counter("member", GUILD, 1, "video_seconds") == (8, 0)
    assert await after.counter("guild", GUILD, 0, "video_seconds") == (8, 0)
    assert await after.reopen(hold.id) is None  # settled: closed
    assert await after.reopen(gone.id) is None  # released
    assert await after.reopen("no-such-reservation") is None

    music = await after.reopen(tune.id)  # a DM: member budgets only
    assert music is not None and music.requester == Requester(None, 5, 3) and music.music_seconds == 20
    await music.release(outcome="cancelled")
    assert await after.counter("member", 0, 3, "music_seconds") == (0, 0)

    late = await before.reserve(BOB, Feature.VIDEO, video_seconds=4)
    clock.advance(901)  # past the default TTL while the bot was down
    restarted = quotas(store, clock, member_video_seconds=30)
    assert await restarted.reopen(late.id) is None  # expired, and its hold is back
    assert await restarted.counter("member", GUILD, 2, "video_seconds") == (0, 0)
    rows = await ledger(store)
    assert [(r["outcome"], r["charged"], r["video_seconds"]) for r in rows if r["reservation_id"] == hold.id] == [
        ("ok", 1, 8)]
    assert [r["outcome"] for r in rows if r["reservation_id"] == late.id] == ["expired"]


async def test_charge_after_charges_a_finished_job_whose_hold_is_gone(store: Store) -> None:
    clock = Clock()
    q = quotas(store, clock, member_video_seconds=10, reservation_ttl_seconds=60)
    hold = await q.reserve(ALICE, Feature.VIDEO, video_seconds=8, model="vid-1")
    clock.advance(120)
    assert await q.sweep_expired() == 1
    assert await q.reopen(hold.id) is None
    meta = CallMeta(profile="openai", request_id="req-late", model_used="vid-1", credits_used=0.8)
    assert await q.charge_after(ALICE, Feature.VIDEO, model="vid-1", meta=meta, reservation_id=hold.id,
                                video_seconds=8) is True
    assert await q.counter("member", GUILD, 1, "video_seconds") == (8, 0)
    # charged once: again (a restart before the job was marked done) changes nothing
    assert await q.charge_after(ALICE, Feature.VIDEO, reservation_id=hold.id, video_seconds=8) is False
    assert await q.counter("member", GUILD, 1, "video_seconds") == (8, 0)
    [row] = await ledger(store)  # the sweep's row, completed
    assert (row["outcome"], row["charged"], row["video_seconds"], row["credits"], row["request_id"]) == (
        "ok", 1, 8, 0.8, "req-late")

    # never refused, even past the limit; one ledger row of its own without a reservation
    assert await q.charge_after(ALICE, Feature.VIDEO, video_seconds=6, outcome="cancelled") is True
    assert await q.counter("member", GUILD, 1, "video_seconds") == (14, 0)
    assert await q.counter("guild", GUILD, 0, "video_seconds") == (14, 0)
    last = (await ledger(store))[-1]
    assert (last["feature"], last["outcome"], last["charged"], last["video_seconds"], last["reservation_id"]) == (
        "video", "cancelled", 1, 6, None)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.VIDEO, video_seconds=1)
    assert info.value.user_message().startswith("Your daily video second budget (10) is used up;")

    # an open hold given by id is settled (its hold returned), a released one charged in a row of its own
    open_hold = await q.reserve(BOB, Feature.MUSIC, music_seconds=30)
    assert await q.charge_after(BOB, Feature.MUSIC, reservation_id=open_hold.id, music_seconds=25) is True
    released = await q.reserve(BOB, Feature.MUSIC, music_seconds=30)
    await released.release(outcome="error")
    assert await q.charge_after(BOB, Feature.MUSIC, reservation_id=released.id, music_seconds=10) is True
    assert await q.charge_after(BOB, Feature.MUSIC, reservation_id=released.id, music_seconds=10) is False
    assert await q.counter("member", GUILD, 2, "music_seconds") == (35, 0)
    assert [(r["outcome"], r["charged"], r["music_seconds"]) for r in await ledger(store)
            if r["reservation_id"] == released.id] == [("error", 0, 0), ("ok", 1, 10)]
    with pytest.raises(TypeError):
        await q.charge_after(BOB, Feature.MUSIC, music_secs=10)


async def test_concurrent_video_reservations_never_overspend(store: Store) -> None:
    q = quotas(store, guild_video_seconds=100)
    results = await asyncio.gather(
        *(q.reserve(Requester(GUILD, 20, 300 + i % 5), Feature.VIDEO, video_seconds=8, ttl_seconds=3600)
          for i in range(30)),
        return_exceptions=True,
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert (len(granted), len(refused)) == (12, 18)
    await asyncio.gather(*(r.settle() for r in granted))
    assert await q.counter("guild", GUILD, 0, "video_seconds") == (96, 0)
    assert await store.fetchval("SELECT SUM(video_seconds) FROM usage_ledger WHERE charged = 1") == 96


async def test_reports_show_the_media_budgets(store: Store) -> None:
    q = quotas(store, guild_video_seconds=200, member_music_seconds=120)
    await q.settle(await q.reserve(ALICE, Feature.VIDEO, video_seconds=12))
    await q.settle(await q.reserve(ALICE, Feature.MUSIC, music_seconds=30))
    await q.settle(await q.reserve(BOB, Feature.VIDEO, video_seconds=8))
    await q.settle(await q.reserve(BOB, Feature.CHAT, tokens=100), usage_tokens=60)
    await q.reserve(BOB, Feature.MUSIC, music_seconds=45)  # in progress: not in the ledger yet

    report = await q.usage_report(GUILD, 2)
    assert (report.series[-1][1]["video_seconds"], report.series[-1][1]["music_seconds"]) == (20, 30)
    assert (report.totals["video_seconds"], report.totals["music_seconds"]) == (20, 30)
    assert report.budget["video_seconds"] == 200 and report.budget["music_seconds"] == -1
    assert usage_totals_text(report.totals) == (
        "Totals: 1 chat, 0 vision, 0 images, 60 tokens, 0 speech characters, 0 transcription seconds,"
        " 20 video seconds, 30 music seconds, 0 embedding tokens."
    )
    top = top_members_text(report.top).splitlines()  # two charged calls each: more tokens first
    assert top[1].endswith("— 1 chat, 0 vision, 0 images, 60 tokens, 0 speech characters, 0 transcription seconds,"
                           " 8 video seconds, 0 music seconds, 0 embedding tokens")
    assert top[2].endswith("— 0 chat, 0 vision, 0 images, 0 tokens, 0 speech characters, 0 transcription seconds,"
                           " 12 video seconds, 30 music seconds, 0 embedding tokens")
    alone = await q.usage_report(GUILD, 1, BOB)
    assert alone.totals["video_seconds"] == 8 and alone.budget["music_seconds"] == 120

    today = await q.guild_today(GUILD)
    shown = quota_show_text(await q.guild_limits(GUILD), today, {})
    server, member = shown.split("__Each member__")
    assert "• video seconds: 20 used of 200 (config default)" in server
    assert "• music seconds: 30 used of unlimited (config default)" in server
    assert "• music seconds: 120 (config default)" in member

    mine = mylimits_text(await q.usage_limits(BOB), START).splitlines()
    assert "• video seconds: **180** of 200 left (server-wide budget)" in mine
    assert "• music seconds: **75** of 120 left, 45 in progress" in mine
    assert mine[-1] == ("• unlimited: chat requests, tokens, image questions, images, credits, speech characters,"
                        " transcription seconds, embedding tokens")
