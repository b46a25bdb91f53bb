"""Daily budgets per guild and per member: reserve before a gateway call, settle or release after.

Every check-and-increment runs in one ``store.transaction()`` (BEGIN IMMEDIATE under the store
lock), so concurrent requests never overspend. A reservation holds amounts in the counters'
``reserved`` column until it is settled (moved to ``used`` with the real numbers), released
(dropped), or expires after ``settings.quotas.reservation_ttl_seconds`` — expired reservations are
returned lazily by every ``reserve()`` and by ``sweep_expired()`` (run periodically by the admin cog).
Each closed reservation writes one row in ``usage_ledger``; rows with ``charged = 1`` are exactly
what the counters' ``used`` holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.guilds import audit
from bot.guilds.audit import InvalidSetting
from bot.budgets.rules import (
    KIND_NOUNS,
    KINDS,
    REQUEST_KIND,
    SCOPES,
    TOKEN_FEATURES,
    UNLIMITED,
    BudgetExceeded,
    Feature,
    Requester,
    format_amount,
    limit_text,
    next_reset,
    utc_day,
)
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.app.settings import Settings
    from gateway_client.meta import CallMeta
    from gateway_client.models import ModelInfo

__all__ = [
    "Feature",
    "Requester",
    "BudgetExceeded",
    "Reservation",
    "BudgetLine",
    "UsageLimits",
    "GuildLimits",
    "Quotas",
    "InvalidSetting",
    "KINDS",
    "MIN_PARTIAL_TOKENS",
]

log = logging.getLogger(__name__)

#: below this many tokens a partial answer is not worth sending: refuse instead
MIN_PARTIAL_TOKENS = 16
MAX_LIMIT = 10**12

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Reservation:
    """A grant from ``reserve()``. Send ``granted_tokens`` as max_tokens (None: no token cap asked)."""

    id: str
    feature: Feature
    requester: Requester
    day: str
    granted_tokens: int | None
    images: int
    requested_tokens: int
    model: str | None
    expires_at: datetime
    closed: bool = False

    @property
    def partial(self) -> bool:
        """True when fewer tokens were granted than asked (the budget had only that much left)."""
        return self.granted_tokens is not None and self.granted_tokens < self.requested_tokens


@dataclass(frozen=True, slots=True)
class BudgetLine:
    kind: str
    scope: str
    limit: float  # -1 unlimited
    used: float
    reserved: float
    source: str = "config"  # config | server | role

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def remaining(self) -> float | None:
        return None if self.unlimited else max(0.0, self.limit - self.used - self.reserved)


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """A member's budgets for today (``usage_limits``); ``remaining(kind)`` is the tighter scope."""

    guild_id: int | None
    user_id: int
    day: str
    resets_at: datetime
    lines: tuple[BudgetLine, ...]

    def line(self, scope: str, kind: str) -> BudgetLine | None:
        return next((l for l in self.lines if l.scope == scope and l.kind == kind), None)

    def remaining(self, kind: str) -> float | None:
        values = [l.remaining for l in self.lines if l.kind == kind and l.remaining is not None]
        return min(values) if values else None


@dataclass(frozen=True, slots=True)
class GuildLimits:
    """What /quota show lists: effective guild and member-default limits, and role overrides."""

    guild: dict[str, tuple[float, str]]  # kind -> (limit, source "config"|"server")
    member: dict[str, tuple[float, str]]
    roles: dict[int, dict[str, float]]


@dataclass(slots=True)
class _GuildLimitCache:
    guild: dict[str, float] = field(default_factory=dict)
    member: dict[str, float] = field(default_factory=dict)
    roles: dict[int, dict[str, float]] = field(default_factory=dict)


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    code = getattr(exc, "code", None)
    return str(code) if code else type(exc).__name__


class Quotas:
    def __init__(self, store: Store, settings: Settings, *, now: Clock | None = None) -> None:
        self.store = store
        self.defaults = settings.quotas
        self.now: Clock = now or _utcnow
        self._cache: dict[int, _GuildLimitCache] = {}
        self.prices: dict[str, tuple[float | None, float | None, float | None]] = {}
        # earliest expiry among open reservations (None: unknown, look in the database)
        self._next_expiry: float | None = None

    # ------------------------------------------------------------ in-transaction I/O

    async def _rows(self, sql: str, params: Any = ()) -> list[Any]:
        """One thread hop per query (the store lock is held by the surrounding transaction)."""
        return list(await self.store.db.execute_fetchall(sql, params))

    async def _write(self, sql: str, params: Any = ()) -> int:
        cursor = await self.store.db.execute(sql, params)
        return cursor.rowcount

    # ------------------------------------------------------------------ limits

    def _default(self, scope: str, kind: str) -> float:
        return float(getattr(self.defaults, f"{scope}_{kind}"))

    async def _guild_cache(self, guild_id: int) -> _GuildLimitCache:
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        cache = _GuildLimitCache()
        if guild_id:
            for scope, kind, value in await self.store.fetchall(
                "SELECT scope, kind, value FROM quota_limits WHERE guild_id = ?", (guild_id,)
            ):
                getattr(cache, scope)[kind] = float(value)
            for role_id, kind, value in await self.store.fetchall(
                "SELECT role_id, kind, value FROM quota_role_limits WHERE guild_id = ?", (guild_id,)
            ):
                cache.roles.setdefault(int(role_id), {})[kind] = float(value)
        self._cache[guild_id] = cache
        return cache

    def _resolve(self, cache: _GuildLimitCache, role_ids: Iterable[int]) -> tuple[dict[str, tuple[float, str]], dict[str, tuple[float, str]]]:
        guild: dict[str, tuple[float, str]] = {}
        member: dict[str, tuple[float, str]] = {}
        roles = [cache.roles[r] for r in role_ids if r in cache.roles]
        for kind in KINDS:
            guild[kind] = (cache.guild[kind], "server") if kind in cache.guild else (self._default("guild", kind), "config")
            overrides = [r[kind] for r in roles if kind in r]
            if overrides:
                # most generous wins; unlimited beats any number
                member[kind] = (UNLIMITED if any(v < 0 for v in overrides) else max(overrides), "role")
            elif kind in cache.member:
                member[kind] = (cache.member[kind], "server")
            else:
                member[kind] = (self._default("member", kind), "config")
        return guild, member

    # ---------------------------------------------------------------- counters

    async def _counters(self, guild_id: int, user_id: int, day: str) -> dict[tuple[str, str], tuple[float, float]]:
        rows = await self._rows(
            "SELECT scope, kind, used, reserved FROM quota_counters WHERE day = ? AND guild_id = ?"
            " AND ((scope = 'member' AND user_id = ?) OR (scope = 'guild' AND user_id = 0))",
            (day, guild_id, user_id),
        )
        return {(r[0], r[1]): (float(r[2]), float(r[3])) for r in rows}

    async def _apply(
        self, guild_id: int, user_id: int, day: str, with_guild: bool,
        used: dict[str, float], reserved: dict[str, float],
    ) -> None:
        """Add ``used`` and ``reserved`` deltas to the member (and guild) counters."""
        kinds = set(used) | set(reserved)
        rows = []
        for scope, uid in (("member", user_id), ("guild", 0)):
            if scope == "guild" and not with_guild:
                continue
            for kind in kinds:
                du, dr = used.get(kind, 0.0), reserved.get(kind, 0.0)
                if du or dr:
                    rows.append((scope, guild_id, uid, day, kind, du, dr))
        if rows:
            await self.store.executemany(
                "INSERT INTO quota_counters(scope, guild_id, user_id, day, kind, used, reserved)"
                " VALUES (?, ?, ?, ?, ?, ?, MAX(?, 0))"
                " ON CONFLICT(scope, guild_id, user_id, day, kind) DO UPDATE SET"
                " used = used + excluded.used,"
                " reserved = MAX(0, reserved + ?)",
                [(*r[:6], r[6], r[6]) for r in rows],
            )

    # ----------------------------------------------------------------- reserve

    async def reserve(
        self,
        requester: Requester,
        feature: Feature | str,
        *,
        tokens: int = 0,
        images: int = 0,
        prompt_tokens: int = 0,
        min_tokens: int | None = None,
        credits: float = 0.0,
        model: str | None = None,
    ) -> Reservation:
        """Grant room for one gateway call, or raise ``BudgetExceeded``.

        ``tokens`` is the max_tokens the caller would send; when less remains (but at least
        ``min_tokens``, default ``MIN_PARTIAL_TOKENS``), the grant is lowered to what remains.
        ``prompt_tokens`` (an estimate) is reserved too but never lowers the grant's cap by itself
        unless the budget is that tight. ``credits`` is an optional cost estimate to hold.
        """
        feature = Feature(feature)
        if tokens < 0 or images < 0 or prompt_tokens < 0 or credits < 0:
            raise ValueError("amounts must not be negative")
        floor = MIN_PARTIAL_TOKENS if min_tokens is None else max(1, min_tokens)
        floor = min(floor, tokens) if tokens else floor
        moment = self.now()
        ts = moment.timestamp()
        day = utc_day(moment)
        resets_at = next_reset(moment)
        gid = requester.guild_id or 0
        with_guild = requester.guild_id is not None
        want: dict[str, float] = {}
        request_kind = REQUEST_KIND[feature]
        if request_kind:
            want[request_kind] = 1
        if images:
            want["images"] = images
        failure: BudgetExceeded | None = None
        reservation: Reservation | None = None
        async with self.store.transaction():
            await self._sweep(ts)
            cache = await self._guild_cache(gid)
            guild_limits, member_limits = self._resolve(cache, requester.role_ids)
            scopes = [("guild", guild_limits)] if with_guild else []
            scopes.append(("member", member_limits))
            counters = await self._counters(gid, requester.user_id, day)

            def taken(scope: str, kind: str) -> float:
                used, reserved = counters.get((scope, kind), (0.0, 0.0))
                return used + reserved

            # counted kinds: every scope must have room for the whole amount
            for kind, amount in want.items():
                for scope, limits in scopes:
                    limit = limits[kind][0]
                    if limit >= 0 and taken(scope, kind) + amount > limit + 1e-9:
                        failure = failure or BudgetExceeded(kind, scope, limit, taken(scope, kind), resets_at, at=moment)
            # tokens: lower the grant to what remains in the tightest scope
            granted: int | None = tokens if tokens else None
            token_hold = 0
            if failure is None and feature in TOKEN_FEATURES:
                tight: tuple[str, float, float] | None = None  # scope, limit, remaining
                for scope, limits in scopes:
                    limit = limits["tokens"][0]
                    if limit >= 0:
                        remaining = limit - taken(scope, "tokens")
                        if tight is None or remaining < tight[2]:
                            tight = (scope, limit, remaining)
                need = prompt_tokens + tokens
                if tight is None or tight[2] >= need and tight[2] > 0:
                    token_hold = need
                else:
                    scope, limit, remaining = tight
                    room = int(remaining) - prompt_tokens
                    if remaining <= 0 or (tokens and room < floor) or (not tokens and room <= 0):
                        failure = BudgetExceeded("tokens", scope, limit, taken(scope, "tokens"), resets_at, at=moment)
                    else:
                        granted = room if tokens else None
                        token_hold = prompt_tokens + (room if tokens else 0)
            # credits: refuse once a scope's credits are spent; hold the estimate if one was given
            if failure is None:
                for scope, limits in scopes:
                    limit = limits["credits"][0]
                    if limit >= 0 and (taken(scope, "credits") >= limit or taken(scope, "credits") + credits > limit + 1e-9):
                        failure = BudgetExceeded("credits", scope, limit, taken(scope, "credits"), resets_at, at=moment)
                        break
            if failure is None:
                hold = dict(want)
                if token_hold:
                    hold["tokens"] = token_hold
                if credits:
                    hold["credits"] = credits
                rid = uuid.uuid4().hex
                expires = moment + timedelta(seconds=self.defaults.reservation_ttl_seconds)
                await self._apply(gid, requester.user_id, day, with_guild, {}, hold)
                await self._write(
                    "INSERT INTO quota_reservations(id, guild_id, channel_id, user_id, day, feature, model, amounts,"
                    " check_guild, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rid, gid, requester.channel_id, requester.user_id, day, feature.value, model,
                     json.dumps(hold), int(with_guild), ts, expires.timestamp()),
                )
                known = float("inf") if self._next_expiry is None else self._next_expiry
                self._next_expiry = min(known, expires.timestamp())
                reservation = Reservation(
                    id=rid, feature=feature, requester=requester, day=day, granted_tokens=granted,
                    images=images, requested_tokens=tokens, model=model, expires_at=expires,
                )
        if failure is not None:
            raise failure
        assert reservation is not None
        return reservation

    # ------------------------------------------------------- settle / release

    async def settle(
        self,
        reservation: Reservation,
        *,
        usage_tokens: int,
        images: int | None = None,
        credits: float | None = None,
        meta: CallMeta | None = None,
        outcome: str = "ok",
    ) -> None:
        """Charge the real usage (the request, tokens, images, credits) and write the ledger row.

        ``images`` defaults to the number reserved for an image reservation (0 otherwise); pass the
        number actually delivered when it differs. ``credits`` defaults to ``meta.credits_used``,
        else an estimate from published prices (``set_prices``), else nothing.
        """
        if images is None:
            images = reservation.images if reservation.feature is Feature.IMAGE else 0
        if credits is None and meta is not None:
            credits = meta.credits_used
        if credits is None:
            credits = self.estimate_credits(meta, reservation.model, usage_tokens, images)
        actual: dict[str, float] = {}
        request_kind = REQUEST_KIND[reservation.feature]
        if request_kind:
            actual[request_kind] = 1
        if usage_tokens:
            actual["tokens"] = max(0, int(usage_tokens))
        if images:
            actual["images"] = max(0, int(images))
        if credits:
            actual["credits"] = max(0.0, float(credits))
        await self._close(reservation, "settled", actual, outcome=outcome, meta=meta, error_code=None,
                          credits=credits)

    async def release(
        self,
        reservation: Reservation,
        *,
        outcome: str,
        meta: CallMeta | None = None,
        error_code: str | None = None,
    ) -> None:
        """The call failed or never happened: charge nothing, return the hold, write the ledger row."""
        await self._close(reservation, "released", {}, outcome=outcome, meta=meta, error_code=error_code,
                          credits=None)

    async def _close(
        self, reservation: Reservation, state: str, actual: dict[str, float], *,
        outcome: str, meta: CallMeta | None, error_code: str | None, credits: float | None,
    ) -> None:
        moment = self.now()
        async with self.store.transaction():
            found = await self._rows(
                "SELECT state, amounts, check_guild, guild_id, user_id, day FROM quota_reservations WHERE id = ?",
                (reservation.id,),
            )
            row = found[0] if found else None
            if row is None:
                log.warning("reservation %s not found; nothing to %s", reservation.id, state)
                reservation.closed = True
                return
            prior = row[0]
            if prior in ("settled", "released"):
                reservation.closed = True
                return  # idempotent: a second close changes nothing
            held = json.loads(row[1]) if prior == "open" else {}
            gid, uid, day, with_guild = int(row[3]), int(row[4]), row[5], bool(row[2])
            await self._apply(gid, uid, day, with_guild, actual, {k: -float(v) for k, v in held.items()})
            await self._write(
                "UPDATE quota_reservations SET state = ?, closed_at = ? WHERE id = ?",
                (state, moment.timestamp(), reservation.id),
            )
            values = (
                moment.timestamp(), day, gid, reservation.requester.channel_id, uid, reservation.feature.value,
                (meta.model_requested if meta else None) or reservation.model,
                meta.model_used if meta else None,
                int(actual.get("tokens", 0)), int(actual.get("images", 0)),
                credits if state == "settled" else None,
                meta.latency_ms if meta else None, meta.request_id if meta else None,
                outcome, int(state == "settled"), error_code, reservation.id,
            )
            changed = 0
            if prior == "expired":  # the sweep wrote a placeholder row: complete it
                changed = await self._write(
                    "UPDATE usage_ledger SET ts = ?, day = ?, guild_id = ?, channel_id = ?, user_id = ?, feature = ?,"
                    " model_requested = ?, model_used = ?, tokens = ?, images = ?, credits = ?, latency_ms = ?,"
                    " request_id = ?, outcome = ?, charged = ?, error_code = ? WHERE reservation_id = ?",
                    values,
                )
            if not changed:
                await self._write(
                    "INSERT INTO usage_ledger(ts, day, guild_id, channel_id, user_id, feature, model_requested,"
                    " model_used, tokens, images, credits, latency_ms, request_id, outcome, charged, error_code,"
                    " reservation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
        reservation.closed = True

    @asynccontextmanager
    async def charge(
        self, requester: Requester, feature: Feature | str, *, tokens: int = 0, images: int = 0, **kwargs: Any
    ) -> AsyncIterator[Reservation]:
        """Reserve; release on an exception (or if the body never settled). Settle inside the block."""
        reservation = await self.reserve(requester, feature, tokens=tokens, images=images, **kwargs)
        try:
            yield reservation
        except BaseException as exc:
            if not reservation.closed:
                outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
                await self._release_quietly(reservation, outcome, getattr(exc, "meta", None), _error_code(exc))
            raise
        else:
            if not reservation.closed:
                await self._release_quietly(reservation, "not_settled", None, None)

    async def _release_quietly(
        self, reservation: Reservation, outcome: str, meta: CallMeta | None, error_code: str | None
    ) -> None:
        """Release even while being cancelled; if the store is gone the TTL returns the hold later."""
        try:
            await asyncio.shield(self.release(reservation, outcome=outcome, meta=meta, error_code=error_code))
        except Exception:
            log.warning("could not release reservation %s; it will expire", reservation.id, exc_info=True)

    # ------------------------------------------------------------------ sweep

    async def sweep_expired(self) -> int:
        """Return the holds of every expired open reservation; the count returned."""
        async with self.store.transaction():
            return await self._sweep(self.now().timestamp())

    async def _sweep(self, ts: float) -> int:
        if self._next_expiry is not None and ts < self._next_expiry:
            return 0  # nothing can have expired yet: skip the query
        rows = await self._rows(
            "SELECT id, guild_id, channel_id, user_id, day, feature, model, amounts, check_guild"
            " FROM quota_reservations WHERE state = 'open' AND expires_at <= ?",
            (ts,),
        )
        for rid, gid, channel_id, uid, day, feature, model, amounts, check_guild in rows:
            held = json.loads(amounts)
            await self._apply(int(gid), int(uid), day, bool(check_guild), {}, {k: -float(v) for k, v in held.items()})
            await self.store.execute(
                "UPDATE quota_reservations SET state = 'expired', closed_at = ? WHERE id = ?", (ts, rid)
            )
            await self.store.execute(
                "INSERT INTO usage_ledger(ts, day, guild_id, channel_id, user_id, feature, model_requested,"
                " outcome, charged, reservation_id) VALUES (?, ?, ?, ?, ?, ?, ?, 'expired', 0, ?)",
                (ts, day, gid, channel_id, uid, feature, model, rid),
            )
        if rows:
            log.info("returned %d expired budget reservation(s)", len(rows))
        [(earliest,)] = await self._rows("SELECT MIN(expires_at) FROM quota_reservations WHERE state = 'open'")
        self._next_expiry = float(earliest) if earliest is not None else float("inf")
        return len(rows)

    # ------------------------------------------------------------------ reads

    async def usage_limits(self, requester: Requester) -> UsageLimits:
        """Today's budgets for this member (guild scope too when in a guild)."""
        moment = self.now()
        day = utc_day(moment)
        gid = requester.guild_id or 0
        async with self.store.transaction():
            await self._sweep(moment.timestamp())
            cache = await self._guild_cache(gid)
            guild_limits, member_limits = self._resolve(cache, requester.role_ids)
            counters = await self._counters(gid, requester.user_id, day)
        lines = []
        scopes = ([("guild", guild_limits)] if requester.guild_id is not None else []) + [("member", member_limits)]
        for scope, limits in scopes:
            for kind in KINDS:
                used, reserved = counters.get((scope, kind), (0.0, 0.0))
                limit, source = limits[kind]
                lines.append(BudgetLine(kind, scope, limit, used, reserved, source))
        return UsageLimits(requester.guild_id, requester.user_id, day, next_reset(moment), tuple(lines))

    async def guild_limits(self, guild_id: int) -> GuildLimits:
        cache = await self._guild_cache(guild_id)
        guild, member = self._resolve(cache, ())
        return GuildLimits(guild, member, {r: dict(v) for r, v in cache.roles.items()})

    async def counter(self, scope: str, guild_id: int, user_id: int, kind: str, day: str | None = None) -> tuple[float, float]:
        """(used, reserved) of one counter (day defaults to today)."""
        row = await self.store.fetchone(
            "SELECT used, reserved FROM quota_counters WHERE scope = ? AND guild_id = ? AND user_id = ? AND day = ? AND kind = ?",
            (scope, guild_id, user_id if scope == "member" else 0, day or utc_day(self.now()), kind),
        )
        return (float(row[0]), float(row[1])) if row else (0.0, 0.0)

    async def daily_usage(
        self, guild_id: int, days: int, user_id: int | None = None
    ) -> list[tuple[str, dict[str, float]]]:
        """Charged usage per UTC day (oldest first, ``days`` days ending today) from the ledger."""
        today = self.now().astimezone(UTC).date()
        first = (today - timedelta(days=days - 1)).isoformat()
        sql = (
            "SELECT day, SUM(feature = 'chat'), SUM(feature = 'vision'), SUM(images), SUM(tokens), SUM(COALESCE(credits, 0))"
            " FROM usage_ledger WHERE guild_id = ? AND charged = 1 AND day >= ?"
        )
        params: list[Any] = [guild_id, first]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        rows = {r[0]: r for r in await self.store.fetchall(sql + " GROUP BY day", params)}
        out = []
        for i in range(days):
            day = (today - timedelta(days=days - 1 - i)).isoformat()
            r = rows.get(day)
            out.append((day, {
                "chat_requests": float(r[1] or 0) if r else 0.0,
                "vision_requests": float(r[2] or 0) if r else 0.0,
                "images": float(r[3] or 0) if r else 0.0,
                "tokens": float(r[4] or 0) if r else 0.0,
                "credits": float(r[5] or 0) if r else 0.0,
            }))
        return out

    async def top_members(self, guild_id: int, days: int, limit: int = 5) -> list[tuple[int, dict[str, float]]]:
        """The members with the most charged requests over the period."""
        today = self.now().astimezone(UTC).date()
        first = (today - timedelta(days=days - 1)).isoformat()
        rows = await self.store.fetchall(
            "SELECT user_id, SUM(feature = 'chat'), SUM(feature = 'vision'), SUM(images), SUM(tokens),"
            " SUM(COALESCE(credits, 0)), COUNT(*) AS n FROM usage_ledger"
            " WHERE guild_id = ? AND charged = 1 AND day >= ? GROUP BY user_id ORDER BY n DESC, SUM(tokens) DESC LIMIT ?",
            (guild_id, first, limit),
        )
        return [
            (int(r[0]), {"chat_requests": float(r[1] or 0), "vision_requests": float(r[2] or 0),
                         "images": float(r[3] or 0), "tokens": float(r[4] or 0), "credits": float(r[5] or 0)})
            for r in rows
        ]

    # ------------------------------------------------------------ admin writes

    @staticmethod
    def validate_limit(kind: str, value: float) -> float:
        if kind not in KINDS:
            raise InvalidSetting("kind", f"Unknown budget `{kind}`; choose one of: {', '.join(KINDS)}.")
        if not math.isfinite(value):
            raise InvalidSetting("limit", "A limit must be a number (-1 for unlimited).")
        if value != UNLIMITED and value < 0:
            raise InvalidSetting("limit", "A limit must be 0 or more, or -1 for unlimited.")
        if value > MAX_LIMIT:
            raise InvalidSetting("limit", f"A limit must be at most {MAX_LIMIT:,}.")
        if kind != "credits" and value != int(value):
            raise InvalidSetting("limit", f"The {KIND_NOUNS[kind][0]} limit must be a whole number.")
        return float(value)

    async def set_limit(
        self, guild_id: int, scope: str, kind: str, value: float | None, actor_id: int
    ) -> tuple[float, float]:
        """Set the server's total (``scope="guild"``) or default per-member (``"member"``) limit.

        ``value`` None returns to the config default. Returns (old, new) effective limits; audited.
        """
        if scope not in SCOPES:
            raise InvalidSetting("scope", "The scope must be `guild` (the whole server) or `member` (each member).")
        if value is not None:
            value = self.validate_limit(kind, value)
        elif kind not in KINDS:
            self.validate_limit(kind, 0)
        moment = self.now()
        async with self.store.transaction():
            cache = await self._guild_cache(guild_id)
            old = getattr(cache, scope).get(kind, self._default(scope, kind))
            if value is None:
                await self.store.execute(
                    "DELETE FROM quota_limits WHERE guild_id = ? AND scope = ? AND kind = ?", (guild_id, scope, kind)
                )
                new = self._default(scope, kind)
            else:
                await self.store.execute(
                    "INSERT INTO quota_limits(guild_id, scope, kind, value, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(guild_id, scope, kind) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    (guild_id, scope, kind, value, moment.timestamp(), actor_id),
                )
                new = value
            await audit.record(self.store, ts=moment.timestamp(), guild_id=guild_id, actor_id=actor_id,
                               target=f"quota:{scope}", field=kind, old=old, new=new)
            self._cache.pop(guild_id, None)
        return old, new

    async def set_role_limit(
        self, guild_id: int, role_id: int, kind: str, value: float | None, actor_id: int
    ) -> tuple[float | None, float | None]:
        """Give a role its own member limit (-1 unlimited), or remove it with ``value=None``. Audited."""
        if value is not None:
            value = self.validate_limit(kind, value)
        elif kind not in KINDS:
            self.validate_limit(kind, 0)
        moment = self.now()
        async with self.store.transaction():
            cache = await self._guild_cache(guild_id)
            old = cache.roles.get(role_id, {}).get(kind)
            if value is None:
                await self.store.execute(
                    "DELETE FROM quota_role_limits WHERE guild_id = ? AND role_id = ? AND kind = ?",
                    (guild_id, role_id, kind),
                )
            else:
                await self.store.execute(
                    "INSERT INTO quota_role_limits(guild_id, role_id, kind, value, updated_at, updated_by)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(guild_id, role_id, kind) DO UPDATE SET"
                    " value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    (guild_id, role_id, kind, value, moment.timestamp(), actor_id),
                )
            await audit.record(self.store, ts=moment.timestamp(), guild_id=guild_id, actor_id=actor_id,
                               target=f"role:{role_id}", field=kind, old=old, new=value)
            self._cache.pop(guild_id, None)
        return old, value

    async def reset_user(self, guild_id: int, user_id: int, actor_id: int) -> dict[str, float]:
        """Give a member a fresh budget for today (their settled usage goes to 0; the server's total stays).

        Returns what was cleared, per kind. Audited.
        """
        moment = self.now()
        day = utc_day(moment)
        async with self.store.transaction():
            rows = await self.store.fetchall(
                "SELECT kind, used FROM quota_counters WHERE scope = 'member' AND guild_id = ? AND user_id = ? AND day = ?",
                (guild_id, user_id, day),
            )
            cleared = {r[0]: float(r[1]) for r in rows if r[1]}
            await self.store.execute(
                "UPDATE quota_counters SET used = 0 WHERE scope = 'member' AND guild_id = ? AND user_id = ? AND day = ?",
                (guild_id, user_id, day),
            )
            await audit.record(self.store, ts=moment.timestamp(), guild_id=guild_id, actor_id=actor_id,
                               target=f"user:{user_id}", field="usage_today", old=cleared, new={})
        return cleared

    # ---------------------------------------------------------------- credits

    def set_prices(self, models: Iterable[ModelInfo]) -> None:
        """Remember published prices, used to estimate credits when the gateway sends no figure."""
        for m in models:
            if m.input_price_per_1m is not None or m.output_price_per_1m is not None or m.image_price is not None:
                self.prices[m.id] = (m.input_price_per_1m, m.output_price_per_1m, m.image_price)

    def estimate_credits(self, meta: CallMeta | None, model: str | None, tokens: int, images: int) -> float | None:
        """Cost from published prices (token price = mean of input and output per 1M); None if unknown."""
        name = (meta.model_used or meta.model_requested if meta else None) or model
        price = self.prices.get(name or "")
        if price is None:
            return None
        inp, out, img = price
        per_token = [p for p in (inp, out) if p is not None]
        cost = 0.0
        if per_token and tokens:
            cost += tokens * (sum(per_token) / len(per_token)) / 1_000_000
        if img is not None and images:
            cost += images * img
        return cost


def describe_line(line: BudgetLine) -> str:
    """``chat requests: 3 of 20 left`` / ``tokens: unlimited``."""
    noun = KIND_NOUNS[line.kind][1]
    if line.unlimited:
        return f"{noun}: unlimited"
    return f"{noun}: {format_amount(line.kind, line.remaining or 0)} of {limit_text(line.kind, line.limit)} left"
