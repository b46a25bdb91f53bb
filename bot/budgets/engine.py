"""The budget engine: reserve before a paid call, settle or release after — the one budget flow.

Each of reserve, settle and release is one ``store.run()`` body: one transaction, one hop to the
database (SQLite's group commit shares the fsync between concurrent bodies). Exact with many
processes on PostgreSQL: a reservation locks the counter rows it reads and writes, all in its
first statement (``counters.add`` … ``RETURNING``), before deciding (see ``bot.budgets.counters``).
A reservation holds amounts in the counters' ``reserved`` column until it is settled (moved to
``used`` with the real numbers), released (dropped), or expires after
``quotas.reservation_ttl_seconds`` (or the longer time to live a reservation asked for: a video job
may run for an hour) — expired reservations are returned lazily by ``reserve()`` when one may be due
and by ``sweep_expired()`` (run periodically by the budget service). Each closed reservation writes
one row in ``usage_ledger`` (``charge_after`` too, for a job whose hold was gone); rows with
``charged = 1`` are exactly what the counters' ``used`` holds. After a restart, ``reopen()`` rebuilds
a reservation that is still open from its row, so that it can be settled or released.

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
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bot.budgets import counters, pool
from bot.budgets.book import LimitBook, Limits
from bot.budgets.ceiling import Ceilings, PoolCeiling, is_tier_source, tighter
from bot.budgets.expiry import Swept, take_expired
from bot.budgets.prices import PriceBook
from bot.budgets.rules import (
    AMOUNT_KINDS,
    FEATURE_AMOUNT_KIND,
    REQUEST_KIND,
    TOKEN_FEATURES,
    BudgetExceeded,
    Feature,
    Requester,
    next_reset,
    utc_day,
)
from bot.storage.store import Store
from bot.storage.tx import SyncTx, for_update

if TYPE_CHECKING:
    from bot.app.settings import QuotaDefaults
    from gateway_client.meta import CallMeta

__all__ = ["BudgetEngine", "Reservation", "MIN_PARTIAL_TOKENS", "Clock", "default_error_code", "CHARGEABLE"]

log = logging.getLogger(__name__)

#: below this many tokens a partial answer is not worth sending: refuse instead
MIN_PARTIAL_TOKENS = 16

#: what ``charge_after`` takes as amounts (besides the tokens and credits every feature may use)
CHARGEABLE: frozenset[str] = frozenset({"tokens", "credits", *AMOUNT_KINDS})

Clock = Callable[[], datetime]
#: (scope, kind) -> (used, reserved): the counters one decision reads
Taken = dict[tuple[str, str], tuple[float, float]]
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
    speech_chars: int = 0
    transcription_seconds: int = 0
    video_seconds: int = 0
    music_seconds: int = 0
    embedding_tokens: int = 0
    closed: bool = False
    settled: bool = False
    engine: BudgetEngine | None = field(default=None, repr=False, compare=False)

    @property
    def partial(self) -> bool:
        """True when fewer tokens were granted than asked (the budget had only that much left)."""
        return self.granted_tokens is not None and self.granted_tokens < self.requested_tokens

    async def settle(
        self, *, usage_tokens: int = 0, images: int | None = None, credits: float | None = None,
        meta: CallMeta | None = None, outcome: str = "ok", speech_chars: int | None = None,
        transcription_seconds: int | None = None, video_seconds: int | None = None, music_seconds: int | None = None,
        embedding_tokens: int | None = None,
    ) -> None:
        """Charge what the call really used (see ``BudgetEngine.settle``)."""
        await self._engine().settle(self, usage_tokens=usage_tokens, images=images, credits=credits, meta=meta,
                                    outcome=outcome, speech_chars=speech_chars,
                                    transcription_seconds=transcription_seconds, video_seconds=video_seconds,
                                    music_seconds=music_seconds, embedding_tokens=embedding_tokens)

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
    def of(cls, feature: Feature, *, tokens: int, prompt_tokens: int, min_tokens: int | None, credits: float,
           amounts: Mapping[str, int]) -> _Ask:
        """``amounts``: the all-or-nothing kinds asked (images, speech characters, …, see ``AMOUNT_KINDS``)."""
        if min(tokens, prompt_tokens, credits, *amounts.values()) < 0:
            raise ValueError("amounts must not be negative")
        floor = MIN_PARTIAL_TOKENS if min_tokens is None else max(1, min_tokens)
        floor = min(floor, tokens) if tokens else floor
        counted: dict[str, float] = {}
        request_kind = REQUEST_KIND[feature]
        if request_kind:
            counted[request_kind] = 1
        own_kind = FEATURE_AMOUNT_KIND.get(feature)
        if own_kind:  # checked even when nothing is asked, so that a used-up (or 0) budget refuses
            counted[own_kind] = 0
        for kind, amount in amounts.items():
            if amount:
                counted[kind] = amount
        return cls(feature, tokens, int(amounts.get("images", 0)), prompt_tokens, floor, credits, counted)

    def hold(self) -> dict[str, float]:
        """What a whole grant holds: the counted kinds, prompt and answer tokens, the credit estimate."""
        hold = dict(self.counted)
        need = self.prompt_tokens + self.tokens
        if self.feature in TOKEN_FEATURES and need:
            hold["tokens"] = need
        if self.credits:
            hold["credits"] = self.credits
        return hold

    def kinds(self, scopes: list[tuple[str, Limits]]) -> set[str]:
        """The kinds ``decide`` reads and a grant may hold (credits only when limited or estimated)."""
        kinds = set(self.counted)
        if self.feature in TOKEN_FEATURES:
            kinds.add("tokens")
        if self.credits or any(limits["credits"][0] >= 0 for _, limits in scopes):
            kinds.add("credits")
        return kinds


@dataclass(frozen=True, slots=True)
class _Room:
    """The limits and today's counters of every scope that applies (the guild's, then the member's)."""

    scopes: list[tuple[str, Limits]]
    counters: Taken
    moment: datetime

    def taken(self, scope: str, kind: str) -> float:
        used, reserved = self.counters.get((scope, kind), (0.0, 0.0))
        return used + reserved

    def exceeded(self, kind: str, scope: str, limit: float) -> BudgetExceeded:
        source = next((limits[kind][1] for name, limits in self.scopes if name == scope), "config")
        return BudgetExceeded(kind, scope, limit, self.taken(scope, kind), next_reset(self.moment), at=self.moment,
                              source=source)

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
    """Requests and the amount kinds (images, speech characters, transcription, video and music seconds):
    every scope must have room for the whole amount (a feature's own kind asked with 0 is refused once
    nothing is left)."""
    for kind, amount in ask.counted.items():
        for scope, limits in room.scopes:
            limit = limits[kind][0]
            taken = room.taken(scope, kind)
            if limit >= 0 and (taken + amount > limit + 1e-9 or (not amount and taken >= limit)):
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


@dataclass(frozen=True, slots=True)
class _Closed:
    """What a settle/release body found: ``state`` before it ("missing" when there is no such reservation)."""

    prior: str


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
        # no open reservation expires before this (None: unknown, look in the database)
        self._next_expiry: float | None = None
        #: the operator's tier ceilings (``[premium]``, set by the premium service); None: the admins' limits alone
        self.ceilings: Ceilings | None = None
        #: the SKU whose premium button a member refused by a tier's limit sees (``[premium] upgrade_sku_id``)
        self.upgrade_sku_id: int | None = None

    @property
    def ttl(self) -> float:
        """The default time to live of a reservation, and the shortest any reservation gets."""
        return float(self.defaults.reservation_ttl_seconds)

    def ttl_for(self, ttl_seconds: float | None) -> float:
        """A reservation's time to live: the default, or a longer one it asked for.

        Never shorter than the default: ``next_expiry`` relies on every reservation, made by any
        process, living at least the default TTL (so a shorter ask is raised to it).
        """
        if ttl_seconds is None:
            return self.ttl
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        return max(self.ttl, float(ttl_seconds))

    def sweep_due(self, ts: float) -> bool:
        """True when an open reservation may have expired by ``ts`` (then a body sweeps first)."""
        return self._next_expiry is None or ts >= self._next_expiry

    def _learn_expiry(self, swept: Swept | None, *expiries: float) -> None:
        """After a committed body: the sweep's fresh bound, lowered by the reservations it made."""
        known = swept.next_expiry if swept is not None else self._next_expiry
        self._next_expiry = min([float("inf") if known is None else known, *expiries])

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
        speech_chars: int = 0,
        transcription_seconds: int = 0,
        video_seconds: int = 0,
        music_seconds: int = 0,
        embedding_tokens: int = 0,
        ttl_seconds: float | None = None,
    ) -> Reservation:
        """Grant room for one gateway call, or raise ``BudgetExceeded``.

        ``tokens`` is the max_tokens the caller would send; when less remains (but at least
        ``min_tokens``, default ``MIN_PARTIAL_TOKENS``), the grant is lowered to what remains.
        ``prompt_tokens`` (an estimate) is reserved too but never lowers the grant's cap by itself
        unless the budget is that tight. ``credits`` is an optional cost estimate to hold.
        ``images``, ``speech_chars``, ``transcription_seconds``, ``video_seconds``, ``music_seconds``
        and ``embedding_tokens`` are all-or-nothing: every scope must have room for the whole amount.
        ``ttl_seconds`` gives this hold a longer life than ``quotas.reservation_ttl_seconds`` (a video
        job that may run for an hour); it is never made shorter than that default.
        """
        amounts = {"images": images, "speech_chars": speech_chars, "transcription_seconds": transcription_seconds,
                   "video_seconds": video_seconds, "music_seconds": music_seconds,
                   "embedding_tokens": embedding_tokens}
        ask = _Ask.of(Feature(feature), tokens=tokens, prompt_tokens=prompt_tokens, min_tokens=min_tokens,
                      credits=credits, amounts=amounts)
        ttl = self.ttl_for(ttl_seconds)
        moment = self.now()
        scopes, pools = await self.limits_for(requester)
        reservation = Reservation(
            id=uuid.uuid4().hex, feature=ask.feature, requester=requester, day=utc_day(moment), granted_tokens=None,
            images=ask.images, requested_tokens=ask.tokens, model=model,
            expires_at=moment + timedelta(seconds=ttl), speech_chars=speech_chars,
            transcription_seconds=transcription_seconds, video_seconds=video_seconds, music_seconds=music_seconds,
            embedding_tokens=embedding_tokens, engine=self,
        )
        sweep = self.sweep_due(moment.timestamp())

        def body(tx: SyncTx) -> tuple[_Grant | BudgetExceeded, Swept | None]:
            return self._reserve_in(tx, ask, scopes, reservation, moment, sweep, pools)

        # a refusal is returned, not raised, so that a sweep in the same body still commits
        outcome, swept = await self.store.run(body)
        if isinstance(outcome, BudgetExceeded):
            self._learn_expiry(swept)
            if self.upgrade_sku_id is not None and is_tier_source(outcome.source):
                outcome.upgrade_sku_id = self.upgrade_sku_id
            if outcome.source == "role" and requester.guild_id is not None:
                await self._name_role(outcome, requester.guild_id, requester.role_ids)
            raise outcome
        self._learn_expiry(swept, reservation.expires_at.timestamp())
        reservation.granted_tokens = outcome.granted_tokens
        return reservation

    async def book_scopes(self, requester: Requester) -> list[tuple[str, Limits]]:
        """The budgets a request is measured against: in a server, its total and the member's share of it;
        without one (a DM, a user install), the member's own budget (counted as guild 0's member rows).
        Each is the tighter of the admin's limit (or the config's) and the operator's tier ceiling."""
        return (await self.limits_for(requester))[0]

    async def limits_for(self, requester: Requester) -> tuple[list[tuple[str, Limits]], dict[str, PoolCeiling]]:
        """(``book_scopes``, the guild-scope kinds whose tier ceiling binds and a bonus pool may extend)."""
        if requester.guild_id is None:
            own = await self.book.user_limits(requester.user_id)
            admin: list[tuple[str, Limits]] = [("member", own)]
        else:
            guild_limits, member_limits = await self.book.effective(requester.guild_id, requester.role_ids)
            admin = [("guild", guild_limits), ("member", member_limits)]
        ceiling = await self.ceilings.ceiling(requester) if self.ceilings is not None else None
        if ceiling is None:
            return admin, {}
        scopes = [(scope, tighter(limits, ceiling.guild if scope == "guild" and requester.guild_id is not None
                                  else ceiling.member)) for scope, limits in admin]
        pools: dict[str, PoolCeiling] = {}
        if ceiling.pooled and requester.guild_id is not None:
            for kind, (cap, source) in ceiling.guild.items():
                value, admin_source = admin[0][1][kind]
                if cap >= 0 and (value < 0 or cap < value):
                    pools[kind] = PoolCeiling(cap, source, value, admin_source)
        return scopes, pools

    async def pools_for(self, requester: Requester) -> dict[str, PoolCeiling]:
        """The bonus pools a charge of ``requester`` may draw (none without tiers or outside a guild)."""
        if self.ceilings is None or requester.guild_id is None:
            return {}
        return (await self.limits_for(requester))[1]

    async def _name_role(self, refused: BudgetExceeded, guild_id: int, role_ids: tuple[int, ...]) -> None:
        """Say which role's override refused (an @everyone override reads as the server's own setting)."""
        role_id = await self.book.granting_role(guild_id, role_ids, refused.kind)
        if role_id == guild_id:
            refused.source = "server"
        else:
            refused.role_id = role_id

    def _reserve_in(
        self, tx: SyncTx, ask: _Ask, scopes: list[tuple[str, Limits]], reservation: Reservation,
        moment: datetime, sweep: bool, pools: Mapping[str, PoolCeiling] | None = None,
    ) -> tuple[_Grant | BudgetExceeded, Swept | None]:
        """The reservation's body: sweep if due, hold and read the counters (locking them), decide, correct."""
        requester = reservation.requester
        gid, uid, day = requester.guild_id or 0, requester.user_id, reservation.day
        with_guild = requester.guild_id is not None
        swept = take_expired(tx, moment.timestamp(), self.ttl) if sweep else None
        # Hold the whole ask at once, writing (so locking) and reading back every row the decision
        # reads; the rare partial grant or refusal then corrects rows this transaction already holds.
        deltas: counters.Deltas = dict(swept.deltas) if swept else {}
        wanted = ask.hold()
        counters.merge(deltas, gid, uid, day, with_guild, {}, wanted)
        now = counters.add(tx, deltas, returning=counters.keys_for(gid, uid, day, with_guild, ask.kinds(scopes)))
        taken: Taken = {(key[0], key[4]): (used, reserved - wanted.get(key[4], 0.0))
                        for key, (used, reserved) in now.items()}
        if pools and with_guild:
            scopes = _with_pools(tx, scopes, pools, ask.kinds(scopes), gid, taken)
        outcome = decide(ask, _Room(scopes, taken, moment))
        held = outcome.hold if isinstance(outcome, _Grant) else {}
        correction = {kind: held.get(kind, 0.0) - amount for kind, amount in wanted.items()}
        if any(correction.values()):
            fix: counters.Deltas = {}
            counters.merge(fix, gid, uid, day, with_guild, {}, correction)
            counters.add(tx, fix)
        if isinstance(outcome, _Grant):
            tx.execute(
                "INSERT INTO quota_reservations(id, guild_id, channel_id, user_id, day, feature, model, amounts,"
                " check_guild, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (reservation.id, gid, requester.channel_id, uid, day, ask.feature.value, reservation.model,
                 json.dumps(outcome.hold), int(with_guild), moment.timestamp(), reservation.expires_at.timestamp()),
            )
        return outcome, swept

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
        speech_chars: int | None = None,
        transcription_seconds: int | None = None,
        video_seconds: int | None = None,
        music_seconds: int | None = None,
        embedding_tokens: int | None = None,
    ) -> None:
        """Charge the real usage (the request, tokens, images, speech, transcription, video, music,
        embedding tokens, credits) and write the ledger row.

        ``images`` defaults to the number reserved for an image reservation (0 otherwise); pass the
        number actually delivered when it differs. ``speech_chars``, ``transcription_seconds``,
        ``video_seconds``, ``music_seconds`` and ``embedding_tokens`` default to what was reserved; what is given is
        charged, so a cancelled job settles with what the gateway billed (0: nothing charged, the
        ledger row says ``outcome``). ``credits`` defaults to ``meta.credits_used``, else an
        estimate from published prices, else nothing.
        """
        given = {"images": images, "speech_chars": speech_chars, "transcription_seconds": transcription_seconds,
                 "video_seconds": video_seconds, "music_seconds": music_seconds, "embedding_tokens": embedding_tokens}
        reserved = {"images": reservation.images if reservation.feature is Feature.IMAGE else 0,
                    "speech_chars": reservation.speech_chars,
                    "transcription_seconds": reservation.transcription_seconds,
                    "video_seconds": reservation.video_seconds, "music_seconds": reservation.music_seconds,
                    "embedding_tokens": reservation.embedding_tokens}
        amounts = {kind: reserved[kind] if value is None else value for kind, value in given.items()}
        actual, credits = self._actual(reservation.feature, reservation.model, meta, usage_tokens, amounts, credits)
        await self._close(reservation, "settled", actual, outcome=outcome, meta=meta, error_code=None,
                          credits=credits)

    def _actual(
        self, feature: Feature, model: str | None, meta: CallMeta | None, tokens: int, amounts: Mapping[str, int],
        credits: float | None,
    ) -> tuple[dict[str, float], float | None]:
        """(what to add to the counters' ``used``, the credits): the request, tokens, amounts, credits
        (``meta.credits_used`` when not given, else an estimate from published prices, else none)."""
        if credits is None and meta is not None:
            credits = meta.credits_used
        if credits is None:
            credits = self.prices.estimate_credits(meta, model, tokens, int(amounts.get("images", 0)))
        actual: dict[str, float] = {}
        request_kind = REQUEST_KIND[feature]
        if request_kind:
            actual[request_kind] = 1
        if tokens:
            actual["tokens"] = max(0, int(tokens))
        for kind in AMOUNT_KINDS:
            if amounts.get(kind):
                actual[kind] = max(0, int(amounts[kind]))
        if credits:
            actual["credits"] = max(0.0, float(credits))
        return actual, credits

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
        """Reserve (``kwargs``: the other arguments of ``reserve``), then guard the block: settle inside
        it; an exception (or no settle) releases."""
        reservation = await self.reserve(requester, feature, tokens=tokens, images=images, **kwargs)
        async with reservation:
            yield reservation

    # -- after a restart ------------------------------------------------------------------------------

    async def reopen(self, reservation_id: str) -> Reservation | None:
        """The reservation ``reservation_id`` as it was made, if it is still open (e.g. a job that
        outlived the process that reserved it); None when it is closed, expired or unknown.

        The requester comes from the row (no role ids: settling needs none); the amounts, feature,
        model and expiry too. ``granted_tokens`` is not kept in the row, so it reads None.
        """
        moment = self.now()
        ts = moment.timestamp()

        def body(tx: SyncTx) -> tuple[Swept | None, dict[str, Any] | None]:
            swept = self.sweep_in(tx, ts)  # an open row past its time is expired first
            row = tx.fetchone(
                "SELECT guild_id, channel_id, user_id, day, feature, model, amounts, check_guild, expires_at, state"
                " FROM quota_reservations WHERE id = ?",
                (reservation_id,),
            )
            return swept, dict(row) if row is not None else None

        swept, row = await self.store.run(body)
        self.learn(swept)
        if row is None or row["state"] != "open" or float(row["expires_at"]) <= ts:
            return None
        held = json.loads(row["amounts"])
        amount = {kind: int(held.get(kind, 0)) for kind in AMOUNT_KINDS}
        guild_id = int(row["guild_id"]) if row["check_guild"] else None
        channel_id = int(row["channel_id"]) if row["channel_id"] is not None else None
        return Reservation(
            id=reservation_id, feature=Feature(row["feature"]),
            requester=Requester(guild_id, channel_id, int(row["user_id"])), day=row["day"], granted_tokens=None,
            images=amount["images"], requested_tokens=0, model=row["model"],
            expires_at=datetime.fromtimestamp(float(row["expires_at"]), UTC), speech_chars=amount["speech_chars"],
            transcription_seconds=amount["transcription_seconds"], video_seconds=amount["video_seconds"],
            music_seconds=amount["music_seconds"], embedding_tokens=amount["embedding_tokens"], engine=self,
        )

    async def charge_after(
        self,
        requester: Requester,
        feature: Feature | str,
        *,
        model: str | None = None,
        meta: CallMeta | None = None,
        outcome: str = "ok",
        reservation_id: str | None = None,
        **amounts: float,
    ) -> bool:
        """Charge what a finished job used when its hold is gone (it expired while the bot was down):
        one ledger row and the counters' ``used`` += ``amounts``, in one transaction, never refused.

        ``amounts``: ``tokens``, ``credits`` and the amount kinds (``images``, ``video_seconds``, …);
        credits default as in ``settle``. Given the job's ``reservation_id``, the charge is made at
        most once for it: an open reservation is settled (its hold returned), an expired one's ledger
        row completed (as a late ``settle`` does), an already settled one charges nothing (False).
        """
        unknown = set(amounts) - CHARGEABLE
        if unknown:
            raise TypeError(f"charge_after() got unknown amounts: {', '.join(sorted(unknown))}")
        if min(amounts.values(), default=0) < 0:
            raise ValueError("amounts must not be negative")
        feature = Feature(feature)
        credits = amounts.get("credits")
        actual, credits = self._actual(feature, model, meta, int(amounts.get("tokens", 0)),
                                       {k: int(v) for k, v in amounts.items() if k in AMOUNT_KINDS}, credits)
        moment = self.now()
        ledger = _LedgerRow.of(requester, feature, model, reservation_id, "settled", actual, moment, outcome=outcome,
                               meta=meta, error_code=None, credits=credits)
        gid, uid, day = requester.guild_id or 0, requester.user_id, utc_day(moment)
        with_guild = requester.guild_id is not None
        pools = await self.pools_for(requester) if actual else {}

        def body(tx: SyncTx) -> _Closed:
            if reservation_id is not None:
                closed = self._close_in(tx, reservation_id, "settled", actual, moment.timestamp(), ledger, late=True,
                                        pools=pools)
                if closed.prior != "missing":
                    return closed
            deltas: counters.Deltas = {}
            counters.merge(deltas, gid, uid, day, with_guild, actual, {})
            _add_drawing(tx, deltas, gid, day, pools if with_guild else None, moment.timestamp())
            ledger.write(tx, "missing", gid, uid, day)
            return _Closed("missing")

        closed = await self.store.run(body)
        return closed.prior != "settled"

    async def _close(
        self, reservation: Reservation, state: str, actual: dict[str, float], *,
        outcome: str, meta: CallMeta | None, error_code: str | None, credits: float | None,
    ) -> None:
        moment = self.now()
        ledger = _LedgerRow.of(reservation.requester, reservation.feature, reservation.model, reservation.id, state,
                               actual, moment, outcome=outcome, meta=meta, error_code=error_code, credits=credits)
        pools = await self.pools_for(reservation.requester) if actual else {}

        def body(tx: SyncTx) -> _Closed:
            return self._close_in(tx, reservation.id, state, actual, moment.timestamp(), ledger, pools=pools)

        closed = await self.store.run(body)
        if closed.prior == "missing":
            log.warning("reservation %s not found; nothing to %s", reservation.id, state)
        reservation.closed = True
        if closed.prior in ("open", "expired"):
            reservation.settled = state == "settled"

    @staticmethod
    def _close_in(
        tx: SyncTx, rid: str, state: str, actual: dict[str, float], ts: float, ledger: _LedgerRow, *,
        late: bool = False, pools: Mapping[str, PoolCeiling] | None = None,
    ) -> _Closed:
        """The settle/release body: close the reservation (locking its row), move the hold, write the ledger.

        ``late`` (``charge_after``): a released reservation is charged too, in a ledger row of its own.
        """
        row = tx.fetchone(
            "UPDATE quota_reservations SET state = ?, closed_at = ? WHERE id = ? AND state = 'open'"
            " RETURNING amounts, check_guild, guild_id, user_id, day",
            (state, ts, rid),
        )
        prior = "open"
        if row is None:
            row = tx.fetchone(
                "SELECT state, check_guild, guild_id, user_id, day FROM quota_reservations WHERE id = ?"
                + for_update(tx.dialect),
                (rid,),
            )
            if row is None:
                return _Closed("missing")
            prior = row["state"]
            if prior != "expired" and not (late and prior == "released"):
                return _Closed(prior)  # idempotent: a second close changes nothing
            # the sweep returned the hold and wrote a placeholder ledger row: charge, complete the row
            tx.execute("UPDATE quota_reservations SET state = ?, closed_at = ? WHERE id = ?", (state, ts, rid))
        held = json.loads(row["amounts"]) if prior == "open" else {}
        gid, uid, day = int(row["guild_id"]), int(row["user_id"]), row["day"]
        deltas: counters.Deltas = {}
        counters.merge(deltas, gid, uid, day, bool(row["check_guild"]), actual, {})
        counters.merge(deltas, gid, uid, day, bool(row["check_guild"]), {}, held, sign=-1.0)
        _add_drawing(tx, deltas, gid, day, pools if row["check_guild"] else None, ts)
        ledger.write(tx, prior, gid, uid, day)
        return _Closed(prior)

    # -- expiry -------------------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Return the holds of every expired open reservation (of any process); the count returned."""
        ts = self.now().timestamp()

        def body(tx: SyncTx) -> Swept:
            swept = take_expired(tx, ts, self.ttl)
            counters.add(tx, swept.deltas)
            return swept

        swept = await self.store.run(body)
        self._learn_expiry(swept)
        if swept.count:
            log.info("returned %d expired budget reservation(s)", swept.count)
        return swept.count

    def sweep_in(self, tx: SyncTx, ts: float) -> Swept | None:
        """Inside a body that locks no counters itself: return expired holds if any may be due."""
        if not self.sweep_due(ts):
            return None
        swept = take_expired(tx, ts, self.ttl)
        counters.add(tx, swept.deltas)
        return swept

    def learn(self, swept: Swept | None) -> None:
        """Call after the body that ran ``sweep_in`` committed."""
        if swept is not None:
            self._learn_expiry(swept)
            if swept.count:
                log.info("returned %d expired budget reservation(s)", swept.count)


def _with_pools(
    tx: SyncTx, scopes: list[tuple[str, Limits]], pools: Mapping[str, PoolCeiling], kinds: set[str], gid: int,
    taken: Taken,
) -> list[tuple[str, Limits]]:
    """``scopes`` with the guild's limit of each pooled kind this ask reads extended by its bonus pool
    (the pool rows locked after the counters: see bot/budgets/pool.py)."""
    wanted = {kind: p for kind, p in pools.items() if kind in kinds}
    if not wanted:
        return scopes
    balance = pool.balances(tx, gid, wanted)
    out = []
    for scope, limits in scopes:
        if scope == "guild":
            limits = dict(limits)  # the book's are shared
            for kind, p in wanted.items():
                limits[kind] = p.limit(balance[kind], taken.get(("guild", kind), (0.0, 0.0))[0])
        out.append((scope, limits))
    return out


def _add_drawing(
    tx: SyncTx, deltas: counters.Deltas, gid: int, day: str, pools: Mapping[str, PoolCeiling] | None, ts: float
) -> None:
    """``counters.add(deltas)``; with pools, reading the guild's pooled counters back and drawing down
    what went past each ceiling, in the same transaction."""
    if not pools:
        counters.add(tx, deltas)
        return
    after = counters.add(tx, deltas, returning=pool.guild_keys(gid, day, pools))
    pool.draw(tx, gid, day, pools, after, deltas, ts)


@dataclass(frozen=True, slots=True)
class _LedgerRow:
    """The ledger row a settle or release writes (prepared before the body, written inside it)."""

    ts: float
    channel_id: int | None
    feature: str
    model_requested: str | None
    model_used: str | None
    tokens: int
    images: int
    speech_chars: int
    transcription_seconds: int
    video_seconds: int
    music_seconds: int
    embedding_tokens: int
    credits: float | None
    latency_ms: float | None
    request_id: str | None
    outcome: str
    charged: int
    error_code: str | None
    reservation_id: str | None
    #: the label of the gateway that served the call (``CallMeta.gateway``); None when no call was made
    gateway: str | None = None

    @classmethod
    def of(
        cls, requester: Requester, feature: Feature, model: str | None, reservation_id: str | None, state: str,
        actual: dict[str, float], moment: datetime, *, outcome: str, meta: CallMeta | None, error_code: str | None,
        credits: float | None,
    ) -> _LedgerRow:
        return cls(
            ts=moment.timestamp(), channel_id=requester.channel_id, feature=feature.value,
            model_requested=(meta.model_requested if meta else None) or model,
            model_used=meta.model_used if meta else None,
            tokens=int(actual.get("tokens", 0)), images=int(actual.get("images", 0)),
            speech_chars=int(actual.get("speech_chars", 0)),
            transcription_seconds=int(actual.get("transcription_seconds", 0)),
            video_seconds=int(actual.get("video_seconds", 0)), music_seconds=int(actual.get("music_seconds", 0)),
            embedding_tokens=int(actual.get("embedding_tokens", 0)),
            credits=float(credits) if credits is not None and state == "settled" else None,
            latency_ms=meta.latency_ms if meta else None, request_id=meta.request_id if meta else None,
            outcome=outcome, charged=int(state == "settled"), error_code=error_code, reservation_id=reservation_id,
            gateway=(meta.gateway or meta.profile or None) if meta else None,
        )

    def write(self, tx: SyncTx, prior: str, gid: int, uid: int, day: str) -> None:
        values = (
            self.ts, day, gid, self.channel_id, uid, self.feature, self.model_requested, self.model_used,
            self.tokens, self.images, self.speech_chars, self.transcription_seconds, self.video_seconds,
            self.music_seconds, self.embedding_tokens, self.credits, self.latency_ms, self.request_id, self.outcome,
            self.charged, self.error_code, self.gateway, self.reservation_id,
        )
        if prior == "expired" and tx.execute(  # complete the placeholder row the sweep wrote
            "UPDATE usage_ledger SET ts = ?, day = ?, guild_id = ?, channel_id = ?, user_id = ?, feature = ?,"
            " model_requested = ?, model_used = ?, tokens = ?, images = ?, speech_chars = ?,"
            " transcription_seconds = ?, video_seconds = ?, music_seconds = ?, embedding_tokens = ?, credits = ?,"
            " latency_ms = ?,"
            " request_id = ?, outcome = ?, charged = ?, error_code = ?, gateway = ? WHERE reservation_id = ?",
            values,
        ):
            return
        tx.execute(
            "INSERT INTO usage_ledger(ts, day, guild_id, channel_id, user_id, feature, model_requested,"
            " model_used, tokens, images, speech_chars, transcription_seconds, video_seconds, music_seconds,"
            " embedding_tokens, credits, latency_ms, request_id, outcome, charged, error_code, gateway,"
            " reservation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
