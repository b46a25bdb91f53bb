"""What the budgets look like: a member's remaining budgets, a server's limits, daily usage from the
ledger and the top members. Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.budgets import counters, pool
from bot.budgets.book import LimitBook
from bot.budgets.ceiling import tighter
from bot.budgets.engine import BudgetEngine
from bot.budgets.expiry import Swept
from bot.budgets.rules import KIND_NOUNS, KINDS, Requester, format_amount, limit_text, next_reset, utc_day
from bot.storage.store import Store
from bot.storage.tx import SyncTx

__all__ = [
    "BudgetLine", "UsageLimits", "GuildLimits", "UsageReport", "BudgetReports", "describe_line", "own_budget_lines",
]


@dataclass(frozen=True, slots=True)
class BudgetLine:
    kind: str
    scope: str
    limit: float  # -1 unlimited
    used: float
    reserved: float
    source: str = "config"  # config | server | role; a member's own budget: user ([quotas.user]) | owner

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def remaining(self) -> float | None:
        return None if self.unlimited else max(0.0, self.limit - self.used - self.reserved)


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """A member's budgets for today (``usage_limits``); ``remaining(kind)`` is the tighter scope.
    ``guild_id`` None: the member's own budget (a DM, a user install)."""

    guild_id: int | None
    user_id: int
    day: str
    resets_at: datetime
    lines: tuple[BudgetLine, ...]

    def line(self, scope: str, kind: str) -> BudgetLine | None:
        return next((ln for ln in self.lines if ln.scope == scope and ln.kind == kind), None)

    def remaining(self, kind: str) -> float | None:
        values = [ln.remaining for ln in self.lines if ln.kind == kind and ln.remaining is not None]
        return min(values) if values else None


@dataclass(frozen=True, slots=True)
class GuildLimits:
    """What /quota show lists: effective guild and member-default limits, and role overrides."""

    guild: dict[str, tuple[float, str]]  # kind -> (limit, source "config"|"server")
    member: dict[str, tuple[float, str]]
    roles: dict[int, dict[str, float]]


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What /usage shows: charged use per day, the budget it is measured against, totals, top members."""

    series: list[tuple[str, dict[str, float]]]
    budget: dict[str, float]  # kind -> daily limit (-1 unlimited)
    totals: dict[str, float]
    top: list[tuple[int, dict[str, float]]]  # empty for one member's report


def describe_line(line: BudgetLine) -> str:
    """``chat requests: 3 of 20 left`` / ``tokens: unlimited``."""
    noun = KIND_NOUNS[line.kind][1]
    if line.unlimited:
        return f"{noun}: unlimited"
    return f"{noun}: {format_amount(line.kind, line.remaining or 0)} of {limit_text(line.kind, line.limit)} left"


def own_budget_lines(limits: UsageLimits) -> list[str]:
    """A member's own budget (``[quotas.user]`` or the owner's override), one line per kind, for the owner:
    ``• chat requests: 3 used of 20 (owner's override)``."""
    lines = []
    for kind in KINDS:
        line = limits.line("member", kind)
        if line is None:
            continue
        held = f", {format_amount(kind, line.reserved)} in progress" if line.reserved else ""
        source = "owner's override" if line.source == "owner" else "[quotas.user] default"
        lines.append(f"• {KIND_NOUNS[kind][1]}: {format_amount(kind, line.used)} used of "
                     f"{limit_text(kind, line.limit)}{held} ({source})")
    return lines


#: chat requests, vision requests, images, tokens, credits, speech characters, transcription, video and
#: music seconds, embedding tokens of the ledger rows summed (portable SQL), in the order of ``_SUMMED``
_PER_FEATURE = (
    "SUM(CASE WHEN feature = 'chat' THEN 1 ELSE 0 END), SUM(CASE WHEN feature = 'vision' THEN 1 ELSE 0 END),"
    " SUM(images), SUM(tokens), SUM(COALESCE(credits, 0)), SUM(speech_chars), SUM(transcription_seconds),"
    " SUM(video_seconds), SUM(music_seconds), SUM(embedding_tokens)"
)
_SUMMED = (
    "chat_requests", "vision_requests", "images", "tokens", "credits", "speech_chars", "transcription_seconds",
    "video_seconds", "music_seconds", "embedding_tokens",
)
#: the kinds /usage totals (credits are the gateway's business: /credits)
TOTALLED = tuple(k for k in _SUMMED if k != "credits")


def _usage(row: Any) -> dict[str, float]:
    """The ``_SUMMED`` columns (in that order, from index 1) of a ledger sum."""
    return {name: float(row[i] or 0) if row else 0.0 for i, name in enumerate(_SUMMED, start=1)}


class BudgetReports:
    def __init__(self, store: Store, book: LimitBook, engine: BudgetEngine) -> None:
        self.store = store
        self.book = book
        self.engine = engine

    async def usage_limits(self, requester: Requester) -> UsageLimits:
        """Today's budgets for this member (guild scope too when in a guild)."""
        moment = self.engine.now()
        day = utc_day(moment)
        gid = requester.guild_id or 0
        scopes, pools = await self.engine.limits_for(requester)

        def body(tx: SyncTx) -> tuple[Swept | None, dict[tuple[str, str], tuple[float, float]], dict[str, float]]:
            swept = self.engine.sweep_in(tx, moment.timestamp())  # expired holds are not shown as held
            left = pool.balances(tx, gid, pools, lock=False) if pools else {}
            return swept, counters.read(tx, gid, requester.user_id, day), left

        swept, today, left = await self.store.run(body)
        self.engine.learn(swept)
        lines = []
        for scope, limits in scopes:
            for kind in KINDS:
                used, reserved = today.get((scope, kind), (0.0, 0.0))
                limit, source = limits[kind]
                if scope == "guild" and kind in pools:  # a bonus pool extends the tier's ceiling
                    limit, source = pools[kind].limit(left.get(kind, 0.0), used)
                lines.append(BudgetLine(kind, scope, limit, used, reserved, source))
        return UsageLimits(requester.guild_id, requester.user_id, day, next_reset(moment), tuple(lines))

    async def guild_limits(self, guild_id: int) -> GuildLimits:
        """The server's limits and member defaults, each the tighter of the admin's and the tier's ceiling
        (a member's own subscription may lift their share: /mylimits shows theirs)."""
        rows = await self.book.rows(guild_id)
        guild, member = self.book.resolve(rows, ())
        if self.engine.ceilings is not None:
            ceiling = await self.engine.ceilings.ceiling(Requester(guild_id, None, 0))
            if ceiling is not None:
                guild, member = tighter(guild, ceiling.guild), tighter(member, ceiling.member)
        return GuildLimits(guild, member, {r: dict(v) for r, v in rows.roles.items()})

    async def counter(
        self, scope: str, guild_id: int, user_id: int, kind: str, day: str | None = None
    ) -> tuple[float, float]:
        """(used, reserved) of one counter (day defaults to today)."""
        return await counters.one(self.store, scope, guild_id, user_id, kind, day or utc_day(self.engine.now()))

    def _first_day(self, days: int) -> tuple[Any, str]:
        today = self.engine.now().astimezone(UTC).date()
        return today, (today - timedelta(days=days - 1)).isoformat()

    async def daily_usage(
        self, guild_id: int, days: int, user_id: int | None = None
    ) -> list[tuple[str, dict[str, float]]]:
        """Charged usage per UTC day (oldest first, ``days`` days ending today) from the ledger."""
        today, first = self._first_day(days)
        sql = (
            f"SELECT day, {_PER_FEATURE} FROM usage_ledger WHERE guild_id = ? AND charged = 1 AND day >= ?"
        )
        params: list[Any] = [guild_id, first]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        rows = {r[0]: r for r in await self.store.fetchall(sql + " GROUP BY day", params)}
        out = []
        for i in range(days):
            day = (today - timedelta(days=days - 1 - i)).isoformat()
            out.append((day, _usage(rows.get(day))))
        return out

    async def top_members(self, guild_id: int, days: int, limit: int = 5) -> list[tuple[int, dict[str, float]]]:
        """The members with the most charged requests over the period."""
        _, first = self._first_day(days)
        rows = await self.store.fetchall(
            f"SELECT user_id, {_PER_FEATURE}, COUNT(*) AS n FROM usage_ledger"
            " WHERE guild_id = ? AND charged = 1 AND day >= ? GROUP BY user_id"
            " ORDER BY n DESC, SUM(tokens) DESC LIMIT ?",
            (guild_id, first, limit),
        )
        return [(int(r[0]), _usage(r)) for r in rows]

    async def guild_today(self, guild_id: int) -> dict[str, float]:
        """What the whole server has used today, per kind (settled only)."""
        rows = await self.store.fetchall(
            "SELECT kind, used FROM quota_counters WHERE scope = 'guild' AND guild_id = ? AND user_id = 0 AND day = ?",
            (guild_id, utc_day(self.engine.now())),
        )
        used = {r[0]: float(r[1]) for r in rows}
        return {k: used.get(k, 0.0) for k in KINDS}

    async def usage_report(self, guild_id: int, days: int, member: Requester | None = None) -> UsageReport:
        """The server's use (with its top members) or one member's, against the matching budget."""
        series = await self.daily_usage(guild_id, days, member.user_id if member else None)
        top: list[tuple[int, dict[str, float]]] = []
        if member is not None:
            limits = await self.usage_limits(member)
            budget = {k: line.limit for k in KINDS if (line := limits.line("member", k)) is not None}
        else:
            guild_limits = await self.guild_limits(guild_id)
            budget = {k: guild_limits.guild[k][0] for k in KINDS}
            top = await self.top_members(guild_id, days)
        totals = {k: sum(v[k] for _, v in series) for k in TOTALLED}
        return UsageReport(series, budget, totals, top)
