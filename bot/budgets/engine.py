"""The budget engine: reserve before a paid call, settle or release after — the one budget flow.

Every check-and-increment runs in one ``store.transaction()`` (BEGIN IMMEDIATE under the store
lock), so concurrent requests never overspend. A reservation holds amounts in the counters'
``reserved`` column until it is settled (moved to ``used`` with the real numbers), released
(dropped), or expires after ``quotas.reservation_ttl_seconds`` — expired reservations are returned
lazily by every ``reserve()`` and by ``sweep_expired()`` (run periodically by the budget service).
Each closed reservation writes one row in ``usage_ledger``; rows with ``charged = 1`` are exactly
what the counters' ``used`` holds.

The flow every paid call uses::

    async with engine.charge(requester, Feature.IMAGE, images=4) as hold:   # or: hold = await reserve(…)
        result = await gateway_call(max_tokens=hold.granted_tokens)        #     async with hold: …
        await hold.settle(images=len(result.images), meta=result.meta)

Leaving the block with an exception (or cancelled) releases the hold, shielded; leaving it without
settling releases it as ``not_settled``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bot.budgets import counters
from bot.budgets.book import LimitBook, Limits
from bot.budgets.counters import Counters
from bot.budgets.prices import PriceBook
from bot.budgets.rules import REQUEST_KIND, TOKEN_FEATURES, BudgetExceeded, Feature, Requester, next_reset, utc_day
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.app.settings import QuotaDefaults
    from gateway_client.meta import CallMeta

__all__ = ["BudgetEngine", "Reservation", "MIN_PARTIAL_TOKENS", "Clock", "default_error_code"]

log = logging.getLogger(__name__)

#: below this many tokens a partial answer is not worth sending: refuse instead
MIN_PARTIAL_TOKENS = 16

Clock = Callable[[], datetime]
ErrorCode = Callable[[BaseException], str]


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_error_code(exc: BaseException) -> str:
    """The ledger's error code for a failed call: ``cancelled``, the exception's ``code``, or its type."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    code = getattr(exc, "code", None)
    return str(code) if code else type(exc).__name__


@dataclass(slots=True)
class Reservation:
    """A grant from ``reserve()``: send ``granted_tokens`` as max_tokens (None: no token cap asked).

    It is also the flow's guard: ``async with reservation:`` releases it when the block fails, is
    cancelled or ends without ``settle()``.
    """

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
    settled: bool = False
    engine: BudgetEngine | None = field(default=None, repr=False, compare=False)

    @property
    def partial(self) -> bool:
        """True when fewer tokens were granted than asked (the budget had only that much left)."""
        return self.granted_tokens is not None and self.granted_tokens < self.requested_tokens

    async def settle(
        self, *, usage_tokens: int = 0, images: int | None = None, credits: float | None = None,
        meta: CallMeta | None = None, outcome: str = "ok",
    ) -> None:
        """Charge what the call really used (see ``BudgetEngine.settle``)."""
        await self._engine().settle(self, usage_tokens=usage_tokens, images=images, credits=credits, meta=meta,
                                    outcome=outcome)

    async def release(self, *, outcome: str = "error", meta: CallMeta | None = None,
                      error_code: str | None = None) -> None:
        """Charge nothing and give the hold back (see ``BudgetEngine.release``)."""
        await self._engine().release(self, outcome=outcome, meta=meta, error_code=error_code)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.closed:
            return
        engine = self._engine()
        if exc is None:
            await engine.release_quietly(self, "not_settled", None, None)
        else:
            if isinstance(exc, asyncio.CancelledError):
                await engine.release_quietly(self, "cancelled", None, "cancelled")
            else:
                await engine.release_quietly(self, "error", getattr(exc, "meta", None), engine.error_code(exc))

    def _engine(self) -> BudgetEngine:
        if self.engine is None:
            raise RuntimeError("this reservation was not made by a budget engine")
        return self.engine


# -- the decision, step by step (pure: no I/O) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ask:
    """What one call asks for, validated."""

    feature: Feature
    tokens: int
    images: int
    prompt_tokens: int
    floor: int  # the smallest token grant worth making
    credits: float
    counted: dict[str, float]  # kinds every scope must have whole room for

    @classmethod
    def of(cls, feature: Feature, *, tokens: int, images: int, prompt_tokens: int, min_tokens: int | None,
           credits: float) -> _Ask:
        if tokens < 0 or images < 0 or prompt_tokens < 0 or credits < 0:
            raise ValueError("amounts must not be negative")
        floor = MIN_PARTIAL_TOKENS if min_tokens is None else max(1, min_tokens)
        floor = min(floor, tokens) if tokens else floor
        counted: dict[str, float] = {}
        request_kind = REQUEST_KIND[feature]
        if request_kind:
            counted[request_kind] = 1
        if images:
            counted["images"] = images
        return cls(feature, tokens, images, prompt_tokens, floor, credits, counted)


@dataclass(frozen=True, slots=True)
class _Room:
    """The limits and today's counters of every scope that applies (the guild's, then the member's)."""

    scopes: list[tuple[str, Limits]]
    counters: Counters
    moment: datetime

    def taken(self, scope: str, kind: str) -> float:
        used, reserved = self.counters.get((scope, kind), (0.0, 0.0))
        return used + reserved

    def exceeded(self, kind: str, scope: str, limit: float) -> BudgetExceeded:
        return BudgetExceeded(kind, scope, limit, self.taken(scope, kind), next_reset(self.moment), at=self.moment)

    def tightest(self, kind: str) -> tuple[str, float, float] | None:
        """(scope, limit, remaining) of the limited scope with the least left, or None if unlimited."""
        tight: tuple[str, float, float] | None = None
        for scope, limits in self.scopes:
            limit = limits[kind][0]
            if limit >= 0:
                remaining = limit - self.taken(scope, kind)
                if tight is None or remaining < tight[2]:
                    tight = (scope, limit, remaining)
        return tight


@dataclass(frozen=True, slots=True)
class _Grant:
    granted_tokens: int | None
    hold: dict[str, float]


def _check_counted(ask: _Ask, room: _Room) -> BudgetExceeded | None:
    """Requests and images: every scope must have room for the whole amount."""
    for kind, amount in ask.counted.items():
        for scope, limits in room.scopes:
            limit = limits[kind][0]
            if limit >= 0 and room.taken(scope, kind) + amount > limit + 1e-9:
                return room.exceeded(kind, scope, limit)
    return None


def _grant_tokens(ask: _Ask, room: _Room) -> tuple[int | None, int] | BudgetExceeded:
    """(granted max_tokens, tokens to hold): lowered to what remains in the tightest scope."""
    granted = ask.tokens or None
    if ask.feature not in TOKEN_FEATURES:
        return granted, 0
    need = ask.prompt_tokens + ask.tokens
    tight = room.tightest("tokens")
    if tight is None or (tight[2] >= need and tight[2] > 0):
        return granted, need
    scope, limit, remaining = tight
    left = int(remaining) - ask.prompt_tokens
    if remaining <= 0 or (ask.tokens and left < ask.floor) or (not ask.tokens and left <= 0):
        return room.exceeded("tokens", scope, limit)
    return (left, ask.prompt_tokens + left) if ask.tokens else (None, ask.prompt_tokens)


def _check_credits(ask: _Ask, room: _Room) -> BudgetExceeded | None:
    """Refuse once a scope's credits are spent, or when the estimate would pass the limit."""
    for scope, limits in room.scopes:
        limit = limits["credits"][0]
        taken = room.taken(scope, "credits")
        if limit >= 0 and (taken >= limit or taken + ask.credits > limit + 1e-9):
            return room.exceeded("credits", scope, limit)
    return None


def decide(ask: _Ask, room: _Room) -> _Grant | BudgetExceeded:
    """The grant for ``ask`` in ``room``, or the first budget that refuses it."""
    refused = _check_counted(ask, room)
    if refused is not None:
        return refused
    tokens = _grant_tokens(ask, room)
    if isinstance(tokens, BudgetExceeded):
        return tokens
    refused = _check_credits(ask, room)
    if refused is not None:
        return refused
    granted, token_hold = tokens
    hold = dict(ask.counted)
    if token_hold:
        hold["tokens"] = token_hold
    if ask.credits:
        hold["credits"] = ask.credits
    return _Grant(granted, hold)


# -- the engine ------------------------------------------------------------------------------------


class BudgetEngine:
    def __init__(
        self, store: Store, defaults: QuotaDefaults, book: LimitBook, prices: PriceBook, *,
        now: Clock | None = None, error_code: ErrorCode | None = None,
    ) -> None:
        self.store = store
        self.defaults = defaults
        self.book = book
        self.prices = prices
        self.now: Clock = now or utcnow
        self.error_code: ErrorCode = error_code or default_error_code
        # earliest expiry among open reservations (None: unknown, look in the database)
        self._next_expiry: float | None = None

    # -- reserve ------------------------------------------------------------------------------------

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
        ask = _Ask.of(Feature(feature), tokens=tokens, images=images, prompt_tokens=prompt_tokens,
                      min_tokens=min_tokens, credits=credits)
        moment = self.now()
        async with self.store.transaction():
            # a refusal is returned, not raised, so that the sweep above it still commits
            await self.sweep(moment.timestamp())
            outcome = decide(ask, await self._room(requester, moment))
            if isinstance(outcome, _Grant):
                return await self._record(requester, ask, outcome, moment, model)
        raise outcome

    async def _room(self, requester: Requester, moment: datetime) -> _Room:
        gid = requester.guild_id or 0
        guild_limits, member_limits = await self.book.effective(gid, requester.role_ids)
        scopes = [("guild", guild_limits)] if requester.guild_id is not None else []
        scopes.append(("member", member_limits))
        return _Room(scopes, await counters.read(self.store, gid, requester.user_id, utc_day(moment)), moment)

    async def _record(
        self, requester: Requester, ask: _Ask, grant: _Grant, moment: datetime, model: str | None
    ) -> Reservation:
        """Hold the grant in the counters and write the open reservation."""
        gid = requester.guild_id or 0
        with_guild = requester.guild_id is not None
        day = utc_day(moment)
        rid = uuid.uuid4().hex
        expires = moment + timedelta(seconds=self.defaults.reservation_ttl_seconds)
        await counters.add(self.store, gid, requester.user_id, day, with_guild, {}, grant.hold)
        await self.store.db.execute(
            "INSERT INTO quota_reservations(id, guild_id, channel_id, user_id, day, feature, model, amounts,"
            " check_guild, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, gid, requester.channel_id, requester.user_id, day, ask.feature.value, model,
             json.dumps(grant.hold), int(with_guild), moment.timestamp(), expires.timestamp()),
        )
        known = float("inf") if self._next_expiry is None else self._next_expiry
        self._next_expiry = min(known, expires.timestamp())
        return Reservation(
            id=rid, feature=ask.feature, requester=requester, day=day, granted_tokens=grant.granted_tokens,
            images=ask.images, requested_tokens=ask.tokens, model=model, expires_at=expires, engine=self,
        )

    # -- settle / release ---------------------------------------------------------------------------

    async def settle(
        self,
        reservation: Reservation,
        *,
        usage_tokens: int = 0,
        images: int | None = None,
        credits: float | None = None,
        meta: CallMeta | None = None,
        outcome: str = "ok",
    ) -> None:
        """Charge the real usage (the request, tokens, images, credits) and write the ledger row.

        ``images`` defaults to the number reserved for an image reservation (0 otherwise); pass the
        number actually delivered when it differs. ``credits`` defaults to ``meta.credits_used``,
        else an estimate from published prices, else nothing.
        """
        if images is None:
            images = reservation.images if reservation.feature is Feature.IMAGE else 0
        if credits is None and meta is not None:
            credits = meta.credits_used
        if credits is None:
            credits = self.prices.estimate_credits(meta, reservation.model, usage_tokens, images)
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

    async def release_quietly(
        self, reservation: Reservation, outcome: str, meta: CallMeta | None, error_code: str | None
    ) -> None:
        """Release even while being cancelled; if the store is gone the TTL returns the hold later."""
        try:
            await asyncio.shield(self.release(reservation, outcome=outcome, meta=meta, error_code=error_code))
        except Exception:
            log.warning("could not release reservation %s; it will expire", reservation.id, exc_info=True)

    @asynccontextmanager
    async def charge(
        self, requester: Requester, feature: Feature | str, *, tokens: int = 0, images: int = 0, **kwargs: Any
    ) -> AsyncIterator[Reservation]:
        """Reserve, then guard the block: settle inside it; an exception (or no settle) releases."""
        reservation = await self.reserve(requester, feature, tokens=tokens, images=images, **kwargs)
        async with reservation:
            yield reservation

    async def _close(
        self, reservation: Reservation, state: str, actual: dict[str, float], *,
        outcome: str, meta: CallMeta | None, error_code: str | None, credits: float | None,
    ) -> None:
        moment = self.now()
        async with self.store.transaction():
            found = await self.store.db.execute_fetchall(
                "SELECT state, amounts, check_guild, guild_id, user_id, day FROM quota_reservations WHERE id = ?",
                (reservation.id,),
            )
            row = next(iter(found), None)
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
            await counters.add(self.store, gid, uid, day, with_guild, actual, {k: -float(v) for k, v in held.items()})
            await self.store.db.execute(
                "UPDATE quota_reservations SET state = ?, closed_at = ? WHERE id = ?",
                (state, moment.timestamp(), reservation.id),
            )
            await self._write_ledger(reservation, prior, state, actual, moment, gid, uid, day,
                                     outcome=outcome, meta=meta, error_code=error_code, credits=credits)
        reservation.closed = True
        reservation.settled = state == "settled"

    async def _write_ledger(
        self, reservation: Reservation, prior: str, state: str, actual: dict[str, float], moment: datetime,
        gid: int, uid: int, day: str, *, outcome: str, meta: CallMeta | None, error_code: str | None,
        credits: float | None,
    ) -> None:
        values = (
            moment.timestamp(), day, gid, reservation.requester.channel_id, uid, reservation.feature.value,
            (meta.model_requested if meta else None) or reservation.model,
            meta.model_used if meta else None,
            int(actual.get("tokens", 0)), int(actual.get("images", 0)),
            credits if state == "settled" else None,
            meta.latency_ms if meta else None, meta.request_id if meta else None,
            outcome, int(state == "settled"), error_code, reservation.id,
        )
        if prior == "expired":  # the sweep wrote a placeholder row: complete it
            cursor = await self.store.db.execute(
                "UPDATE usage_ledger SET ts = ?, day = ?, guild_id = ?, channel_id = ?, user_id = ?, feature = ?,"
                " model_requested = ?, model_used = ?, tokens = ?, images = ?, credits = ?, latency_ms = ?,"
                " request_id = ?, outcome = ?, charged = ?, error_code = ? WHERE reservation_id = ?",
                values,
            )
            if cursor.rowcount:
                return
        await self.store.db.execute(
            "INSERT INTO usage_ledger(ts, day, guild_id, channel_id, user_id, feature, model_requested,"
            " model_used, tokens, images, credits, latency_ms, request_id, outcome, charged, error_code,"
            " reservation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )

    # -- expiry -------------------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Return the holds of every expired open reservation; the count returned."""
        async with self.store.transaction():
            return await self.sweep(self.now().timestamp())

    async def sweep(self, ts: float) -> int:
        """``sweep_expired`` for a caller already inside ``store.transaction()``."""
        if self._next_expiry is not None and ts < self._next_expiry:
            return 0  # nothing can have expired yet: skip the query
        rows = list(await self.store.db.execute_fetchall(
            "SELECT id, guild_id, channel_id, user_id, day, feature, model, amounts, check_guild"
            " FROM quota_reservations WHERE state = 'open' AND expires_at <= ?",
            (ts,),
        ))
        for rid, gid, channel_id, uid, day, feature, model, amounts, check_guild in rows:
            held = json.loads(amounts)
            await counters.add(self.store, int(gid), int(uid), day, bool(check_guild), {},
                               {k: -float(v) for k, v in held.items()})
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
        [(earliest,)] = list(await self.store.db.execute_fetchall(
            "SELECT MIN(expires_at) FROM quota_reservations WHERE state = 'open'"
        ))
        self._next_expiry = float(earliest) if earliest is not None else float("inf")
        return len(rows)
