"""The voice budgets (speech characters, transcription seconds) on both backends: whole-amount checks in
every scope, refusals in the member's words, role overrides, settle defaulting to what was reserved, the
ledger's amounts, expiry, concurrency and the reports."""

from __future__ import annotations

import asyncio
import typing
from datetime import UTC, datetime, timedelta

import pytest

from bot.app.settings import Settings
from bot.budgets.reports import describe_line
from bot.budgets.rules import KINDS, BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.guilds.audit import InvalidSetting
from bot.storage.store import Store
from cogs._admin_text import mylimits_text, quota_show_text, top_members_text, usage_totals_text
from cogs.admin import KindChoice
from gateway_client.meta import CallMeta

GUILD = 1000
ALICE = Requester(GUILD, 10, 1, ())
BOB = Requester(GUILD, 10, 2, ())
START = datetime(2025, 3, 14, 20, 48, tzinfo=UTC)  # 3 h 12 min before the reset


class Clock:
    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> datetime:
        return self.t


def quotas(store: Store, clock: Clock | None = None, **limits: float) -> BudgetService:
    return BudgetService(store, Settings(quotas=limits), now=clock or Clock())


async def ledger(store: Store) -> list[dict]:
    return [dict(r) for r in await store.fetchall("SELECT * FROM usage_ledger ORDER BY id")]


def test_the_new_kinds_are_budgets_like_the_others() -> None:
    assert KINDS[5:7] == ("speech_chars", "transcription_seconds")
    assert typing.get_args(KindChoice) == KINDS  # /quota set and /quota role offer every budget
    defaults = Settings().quotas
    for scope in ("guild", "member"):
        assert getattr(defaults, f"{scope}_speech_chars") == -1
        assert getattr(defaults, f"{scope}_transcription_seconds") == -1


@pytest.mark.parametrize(("feature", "kind"), [(Feature.SPEECH, "speech_chars"),
                                              (Feature.TRANSCRIPTION, "transcription_seconds")])
async def test_reserve_within_limit_settles_what_was_reserved_into_the_ledger(
    store: Store, feature: Feature, kind: str
) -> None:
    q = quotas(store, guild_speech_chars=1000, member_speech_chars=500,
               guild_transcription_seconds=1000, member_transcription_seconds=500)
    amount = {kind: 480}
    async with q.charge(ALICE, feature, model="m-asked", **amount) as hold:
        assert await q.counter("member", GUILD, 1, kind) == (0, 480)
        assert await q.counter("guild", GUILD, 0, kind) == (0, 480)
        await hold.settle(meta=CallMeta(profile="openai", request_id="req-9", model_used="m-real", credits_used=0.5))
    assert await q.counter("member", GUILD, 1, kind) == (480, 0)
    assert await q.counter("guild", GUILD, 0, kind) == (480, 0)
    [row] = await ledger(store)
    other = "transcription_seconds" if kind == "speech_chars" else "speech_chars"
    assert (row["feature"], row[kind], row[other], row["tokens"], row["images"]) == (feature.value, 480, 0, 0, 0)
    assert (row["outcome"], row["charged"], row["credits"], row["model_used"]) == ("ok", 1, 0.5, "m-real")
    assert await q.counter("member", GUILD, 1, "chat_requests") == (0, 0)  # not a request kind
    limits = await q.usage_limits(ALICE)
    assert limits.remaining(kind) == 20
    assert describe_line(limits.line("member", kind)).endswith(": 20 of 500 left")


async def test_settle_with_the_real_amount_and_release_charges_nothing(store: Store) -> None:
    q = quotas(store, member_transcription_seconds=600)
    hold = await q.reserve(ALICE, Feature.TRANSCRIPTION, transcription_seconds=600)  # the duration hint
    await q.settle(hold, transcription_seconds=42)  # what the audio really lasted
    assert await q.counter("member", GUILD, 1, "transcription_seconds") == (42, 0)
    with pytest.raises(RuntimeError):
        async with q.charge(ALICE, Feature.TRANSCRIPTION, transcription_seconds=100):
            raise RuntimeError("the gateway broke")
    assert await q.counter("member", GUILD, 1, "transcription_seconds") == (42, 0)
    rows = await ledger(store)
    assert [(r["outcome"], r["charged"], r["transcription_seconds"]) for r in rows] == [
        ("ok", 1, 42), ("error", 0, 0)
    ]
    assert (await q.usage_limits(ALICE)).remaining("transcription_seconds") == 558


async def test_a_limit_of_zero_refuses_in_the_members_words(store: Store) -> None:
    q = quotas(store, member_speech_chars=0, guild_transcription_seconds=0)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.SPEECH, speech_chars=1)
    assert (info.value.kind, info.value.scope, info.value.limit) == ("speech_chars", "member", 0)
    assert info.value.user_message() == (
        "Your daily speech character budget (0) is used up; it resets in 3 h 12 min (00:00 UTC)."
    )
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.TRANSCRIPTION, transcription_seconds=3)
    assert info.value.user_message() == (
        "This server's daily transcription second budget (0) is used up; it resets in 3 h 12 min (00:00 UTC)."
    )
    # the feature is refused even when the caller does not know the amount yet
    for feature in (Feature.SPEECH, Feature.TRANSCRIPTION):
        with pytest.raises(BudgetExceeded):
            await q.reserve(ALICE, feature)
    # other budgets are untouched, and a refusal holds nothing
    await q.reserve(ALICE, Feature.IMAGE, images=1)
    assert await store.fetchval(
        "SELECT COALESCE(SUM(reserved), 0) FROM quota_counters WHERE kind IN ('speech_chars', 'transcription_seconds')"
    ) == 0
    assert await store.fetchval("SELECT COUNT(*) FROM quota_reservations WHERE feature <> 'image'") == 0


async def test_the_whole_amount_must_fit_in_every_scope(store: Store) -> None:
    q = quotas(store, guild_speech_chars=2000, member_speech_chars=500)
    await q.settle(await q.reserve(ALICE, Feature.SPEECH, speech_chars=480))
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.SPEECH, speech_chars=21)
    exc = info.value
    assert (exc.kind, exc.scope, exc.limit, exc.used) == ("speech_chars", "member", 500, 480)
    assert exc.user_message() == (
        "Your daily speech character budget (500) has only 20 left, not enough for this request;"
        " it resets in 3 h 12 min (00:00 UTC)."
    )
    # exactly what is left fits; nothing more then
    await q.settle(await q.reserve(ALICE, Feature.SPEECH, speech_chars=20))
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.SPEECH, speech_chars=1)
    # the server's total caps a member with room of their own
    for user in range(3):
        await q.settle(await q.reserve(Requester(GUILD, 10, 100 + user), Feature.SPEECH, speech_chars=450))
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(BOB, Feature.SPEECH, speech_chars=200)
    assert info.value.scope == "guild"
    assert info.value.user_message().startswith(
        "This server's daily speech character budget (2,000) has only 150 left, not enough for this request;"
    )


async def test_role_overrides_apply_to_the_voice_budgets(store: Store) -> None:
    q = quotas(store, member_transcription_seconds=60, guild_transcription_seconds=1000)
    await q.set_role_limit(GUILD, 501, "transcription_seconds", 300, actor_id=99)
    await q.set_role_limit(GUILD, 502, "transcription_seconds", -1, actor_id=99)
    plain, helper, vip = Requester(GUILD, 10, 7), Requester(GUILD, 10, 8, (501,)), Requester(GUILD, 10, 9, (501, 502))
    assert (await q.usage_limits(plain)).line("member", "transcription_seconds").limit == 60
    line = (await q.usage_limits(helper)).line("member", "transcription_seconds")
    assert (line.limit, line.source) == (300, "role")
    with pytest.raises(BudgetExceeded):
        await q.reserve(plain, Feature.TRANSCRIPTION, transcription_seconds=61)
    await q.reserve(helper, Feature.TRANSCRIPTION, transcription_seconds=300)
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(helper, Feature.TRANSCRIPTION, transcription_seconds=1)
    assert info.value.scope == "member"
    await q.reserve(vip, Feature.TRANSCRIPTION, transcription_seconds=600)  # unlimited for the member...
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(vip, Feature.TRANSCRIPTION, transcription_seconds=101)  # ...not for the server
    assert info.value.scope == "guild"
    shown = await q.guild_limits(GUILD)
    assert shown.roles == {501: {"transcription_seconds": 300.0}, 502: {"transcription_seconds": -1.0}}


async def test_limits_are_validated_and_audited(store: Store) -> None:
    q = quotas(store)
    assert await q.set_limit(GUILD, "member", "speech_chars", 5000, actor_id=99) == (-1, 5000)
    with pytest.raises(InvalidSetting) as info:
        await q.set_limit(GUILD, "guild", "transcription_seconds", 1.5, actor_id=99)
    assert str(info.value).endswith("The transcription second limit must be a whole number.")
    assert (await q.usage_limits(ALICE)).line("member", "speech_chars").limit == 5000
    entries = await store.fetchall("SELECT target, field, old_value, new_value FROM audit_log")
    assert [tuple(e) for e in entries] == [("quota:member", "speech_chars", "-1.0", "5000.0")]


async def test_an_expired_hold_returns_and_a_late_settle_completes_its_ledger_row(store: Store) -> None:
    clock = Clock()
    q = BudgetService(store, Settings(quotas={"member_speech_chars": 100, "reservation_ttl_seconds": 60}), now=clock)
    hold = await q.reserve(ALICE, Feature.SPEECH, speech_chars=100)
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.SPEECH, speech_chars=1)
    clock.t += timedelta(seconds=61)
    assert await q.sweep_expired() == 1
    assert await q.counter("member", GUILD, 1, "speech_chars") == (0, 0)
    await hold.settle()  # the speech arrived after all: charged, in the sweep's row
    assert await q.counter("member", GUILD, 1, "speech_chars") == (100, 0)
    [row] = await ledger(store)
    assert (row["outcome"], row["charged"], row["speech_chars"], row["reservation_id"]) == ("ok", 1, 100, hold.id)


async def test_concurrent_reservations_never_overspend(store: Store) -> None:
    q = quotas(store, guild_speech_chars=500)
    results = await asyncio.gather(
        *(q.reserve(Requester(GUILD, 10, 300 + i % 7), Feature.SPEECH, speech_chars=30) for i in range(60)),
        return_exceptions=True,
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert (len(granted), len(refused)) == (16, 44)
    await asyncio.gather(*(r.settle() for r in granted))
    assert await q.counter("guild", GUILD, 0, "speech_chars") == (480, 0)
    assert await store.fetchval("SELECT SUM(speech_chars) FROM usage_ledger WHERE charged = 1") == 480


async def test_reports_show_the_voice_budgets(store: Store) -> None:
    q = quotas(store, guild_speech_chars=1000, member_transcription_seconds=120)
    await q.settle(await q.reserve(ALICE, Feature.SPEECH, speech_chars=250))
    await q.settle(await q.reserve(ALICE, Feature.TRANSCRIPTION, transcription_seconds=30))
    await q.settle(await q.reserve(BOB, Feature.SPEECH, speech_chars=40))
    await q.settle(await q.reserve(BOB, Feature.CHAT, tokens=100), usage_tokens=60)
    await q.reserve(BOB, Feature.TRANSCRIPTION, transcription_seconds=7)  # in progress: not in the ledger yet

    report = await q.usage_report(GUILD, 2)
    assert report.series[-1][1]["speech_chars"] == 290 and report.series[-1][1]["transcription_seconds"] == 30
    assert (report.totals["speech_chars"], report.totals["transcription_seconds"]) == (290, 30)
    assert report.budget["speech_chars"] == 1000 and report.budget["transcription_seconds"] == -1
    assert usage_totals_text(report.totals) == (
        "Totals: 1 chat, 0 vision, 0 images, 60 tokens, 290 speech characters, 30 transcription seconds,"
        " 0 video seconds, 0 music seconds, 0 embedding tokens."
    )
    top = top_members_text(report.top).splitlines()  # two charged calls each: more tokens first
    assert top[1] == ("1. <@2> — 1 chat, 0 vision, 0 images, 60 tokens, 40 speech characters, 0 transcription seconds,"
                      " 0 video seconds, 0 music seconds, 0 embedding tokens")
    assert top[2] == ("2. <@1> — 0 chat, 0 vision, 0 images, 0 tokens, 250 speech characters, 30 transcription"
                      " seconds, 0 video seconds, 0 music seconds, 0 embedding tokens")
    alone = await q.usage_report(GUILD, 1, BOB)
    assert alone.totals["speech_chars"] == 40 and alone.budget["transcription_seconds"] == 120

    today = await q.guild_today(GUILD)
    assert (today["speech_chars"], today["transcription_seconds"]) == (290, 30)
    shown = quota_show_text(await q.guild_limits(GUILD), today, {})
    assert "• speech characters: 290 used of 1,000 (config default)" in shown
    assert "• transcription seconds: 37 used of unlimited" not in shown  # settled use only
    assert "• transcription seconds: 30 used of unlimited (config default)" in shown
    assert "• transcription seconds: 120 (config default)" in shown.split("__Each member__")[1]

    mine = mylimits_text(await q.usage_limits(BOB), START).splitlines()
    assert "• speech characters: **710** of 1,000 left (server-wide budget)" in mine
    assert "• transcription seconds: **113** of 120 left, 7 in progress" in mine
    assert mine[-1] == ("• unlimited: chat requests, tokens, image questions, images, credits, video seconds,"
                        " music seconds, embedding tokens")
