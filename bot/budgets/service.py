"""``BudgetService``: the budgets use case, built once by the factory as ``bot.quotas``.

It puts together the engine (reserve/settle/release and the ``charge`` flow), the reports, the
admin writes and the price book, and runs the upkeep: a periodic sweep that returns expired
reservations (under the store's ``budgets-sweep`` lock: one process at a time), and one load of
the gateway's published prices. ``start()`` after the store opens, ``close()`` before it closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from bot.budgets.book import LimitBook
from bot.budgets.engine import BudgetEngine, Clock, ErrorCode, Reservation
from bot.budgets.limits import LimitAdmin, validate_limit
from bot.budgets.prices import PriceBook
from bot.budgets.reports import BudgetReports, GuildLimits, UsageLimits, UsageReport
from bot.budgets.rules import Feature, Requester
from bot.budgets.sweeper import Periodic, Sleep
from bot.storage.store import Store
from gateway_client.errors import Unsupported

if TYPE_CHECKING:
    from bot.app.settings import Settings
    from gateway_client.meta import CallMeta
    from gateway_client.models import CreditsBalance, ModelInfo

__all__ = ["BudgetService", "SWEEP_SECONDS", "SWEEP_LOCK", "PricedGateway"]

#: how often expired reservations are returned (at most half the reservation TTL)
SWEEP_SECONDS = 60.0
#: the advisory lock (PostgreSQL) that makes one process at a time run the periodic sweep
SWEEP_LOCK = "budgets-sweep"


class PricedGateway(Protocol):
    """What the budgets need from the AI gateway: its published prices and its credit balance."""

    async def list_models(self) -> Iterable[ModelInfo]: ...

    async def credits(self) -> CreditsBalance: ...


class BudgetService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        now: Clock | None = None,
        gateway: PricedGateway | None = None,
        error_code: ErrorCode | None = None,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        gateways: Any = None,
    ) -> None:
        self.store = store
        self.defaults = settings.quotas
        self.book = LimitBook(store, settings.quotas, monotonic=monotonic)  # its cache ages by ``monotonic``
        self.price_book = PriceBook()
        self.engine = BudgetEngine(store, settings.quotas, self.book, self.price_book, now=now, error_code=error_code)
        self.now: Clock = self.engine.now
        self.reports = BudgetReports(store, self.book, self.engine)
        self.limits = LimitAdmin(store, self.book, self.now)
        interval = min(SWEEP_SECONDS, settings.quotas.reservation_ttl_seconds / 2)
        self.sweeper = Periodic("gatecord-budget-sweep", self._sweep_if_open, interval, sleep=sleep)
        self.gateway = gateway
        #: the gateway serving a guild (``bot.gateways``: a ``GatewayDirectory``); None: always ``gateway``
        self.gateways = gateways
        self._prices_task: asyncio.Task[bool] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sweep, and load the published prices in the background (if a gateway was given)."""
        self.sweeper.start()
        if self.gateway is not None and self._prices_task is None:
            self._prices_task = asyncio.create_task(self.price_book.load(self.gateway.list_models),
                                                    name="gatecord-prices")

    async def close(self) -> None:
        await self.sweeper.stop()
        task, self._prices_task = self._prices_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _sweep_if_open(self) -> int:
        """One periodic pass, by one process at a time (the others skip theirs while it runs)."""
        if not self.store.is_open:
            return 0
        async with self.store.lock(SWEEP_LOCK) as held:
            return await self.engine.sweep_expired() if held else 0

    # -- the flow (engine) ----------------------------------------------------------------------------

    async def reserve(
        self, requester: Requester, feature: Feature | str, *, tokens: int = 0, images: int = 0,
        prompt_tokens: int = 0, min_tokens: int | None = None, credits: float = 0.0, model: str | None = None,
        speech_chars: int = 0, transcription_seconds: int = 0, video_seconds: int = 0, music_seconds: int = 0,
        embedding_tokens: int = 0, ttl_seconds: float | None = None,
    ) -> Reservation:
        """See ``BudgetEngine.reserve``; raises ``BudgetExceeded``. ``ttl_seconds``: this hold's own
        (longer) time to live, e.g. a video job's timeout."""
        return await self.engine.reserve(requester, feature, tokens=tokens, images=images, prompt_tokens=prompt_tokens,
                                         min_tokens=min_tokens, credits=credits, model=model,
                                         speech_chars=speech_chars, transcription_seconds=transcription_seconds,
                                         video_seconds=video_seconds, music_seconds=music_seconds,
                                         embedding_tokens=embedding_tokens, ttl_seconds=ttl_seconds)

    async def settle(
        self, reservation: Reservation, *, usage_tokens: int = 0, images: int | None = None,
        credits: float | None = None, meta: CallMeta | None = None, outcome: str = "ok",
        speech_chars: int | None = None, transcription_seconds: int | None = None, video_seconds: int | None = None,
        music_seconds: int | None = None, embedding_tokens: int | None = None,
    ) -> None:
        """See ``BudgetEngine.settle`` (the speech, transcription, video and music amounts default to the
        reserved; what is given is charged: a cancelled job's billed seconds, 0 for nothing)."""
        await self.engine.settle(reservation, usage_tokens=usage_tokens, images=images, credits=credits, meta=meta,
                                 outcome=outcome, speech_chars=speech_chars,
                                 transcription_seconds=transcription_seconds, video_seconds=video_seconds,
                                 music_seconds=music_seconds, embedding_tokens=embedding_tokens)

    async def release(
        self, reservation: Reservation, *, outcome: str, meta: CallMeta | None = None, error_code: str | None = None,
    ) -> None:
        await self.engine.release(reservation, outcome=outcome, meta=meta, error_code=error_code)

    @asynccontextmanager
    async def charge(
        self, requester: Requester, feature: Feature | str, *, tokens: int = 0, images: int = 0, **kwargs: Any
    ) -> AsyncIterator[Reservation]:
        """Reserve (``kwargs``: as ``reserve``); settle inside the block; an exception, a cancellation or
        no settle releases."""
        async with self.engine.charge(requester, feature, tokens=tokens, images=images, **kwargs) as hold:
            yield hold

    async def reopen(self, reservation_id: str) -> Reservation | None:
        """An OPEN reservation from before a restart, to settle or release (None: closed or expired);
        see ``BudgetEngine.reopen``."""
        return await self.engine.reopen(reservation_id)

    async def charge_after(
        self, requester: Requester, feature: Feature | str, *, model: str | None = None, meta: CallMeta | None = None,
        outcome: str = "ok", reservation_id: str | None = None, **amounts: float,
    ) -> bool:
        """Charge what a finished job used when its hold is gone: one ledger row, counters' used +=
        ``amounts``, never refused; with the job's ``reservation_id``, at most once (False: it was
        already charged). See ``BudgetEngine.charge_after``."""
        return await self.engine.charge_after(requester, feature, model=model, meta=meta, outcome=outcome,
                                              reservation_id=reservation_id, **amounts)

    async def sweep_expired(self) -> int:
        return await self.engine.sweep_expired()

    # -- reports --------------------------------------------------------------------------------------

    async def usage_limits(self, requester: Requester) -> UsageLimits:
        return await self.reports.usage_limits(requester)

    async def guild_limits(self, guild_id: int) -> GuildLimits:
        return await self.reports.guild_limits(guild_id)

    async def counter(
        self, scope: str, guild_id: int, user_id: int, kind: str, day: str | None = None
    ) -> tuple[float, float]:
        return await self.reports.counter(scope, guild_id, user_id, kind, day)

    async def daily_usage(
        self, guild_id: int, days: int, user_id: int | None = None
    ) -> list[tuple[str, dict[str, float]]]:
        return await self.reports.daily_usage(guild_id, days, user_id)

    async def top_members(self, guild_id: int, days: int, limit: int = 5) -> list[tuple[int, dict[str, float]]]:
        return await self.reports.top_members(guild_id, days, limit)

    async def guild_today(self, guild_id: int) -> dict[str, float]:
        return await self.reports.guild_today(guild_id)

    async def usage_report(self, guild_id: int, days: int, member: Requester | None = None) -> UsageReport:
        return await self.reports.usage_report(guild_id, days, member)

    async def balance(self, guild_id: int | None = None) -> CreditsBalance:
        """The credit balance of the gateway account serving ``guild_id`` (the guild's own gateway when it
        has one, else the operator's); raises ``Unsupported`` when that gateway has no balance endpoint."""
        return (await self.credits(guild_id))[1]

    async def credits(self, guild_id: int | None = None) -> tuple[Any, CreditsBalance]:
        """The gateway serving ``guild_id`` and its account's balance; raises ``Unsupported`` without any
        gateway or balance endpoint, the guild gateway's ``GuildGatewayUnavailable``, or the gateway's error."""
        gateway = self.gateway if self.gateways is None else await self.gateways.for_guild(guild_id)
        if gateway is None:
            raise Unsupported("no AI gateway configured")
        profile = getattr(gateway, "profile", None)
        if profile is not None and not profile.supports("credits"):
            raise Unsupported(f"the {profile.name} gateway has no balance endpoint", profile=profile.name)
        return gateway, await gateway.credits()

    # -- admin writes ---------------------------------------------------------------------------------

    validate_limit = staticmethod(validate_limit)

    async def set_limit(
        self, guild_id: int, scope: str, kind: str, value: float | None, actor_id: int
    ) -> tuple[float, float]:
        return await self.limits.set_limit(guild_id, scope, kind, value, actor_id)

    async def set_role_limit(
        self, guild_id: int, role_id: int, kind: str, value: float | None, actor_id: int
    ) -> tuple[float | None, float | None]:
        return await self.limits.set_role_limit(guild_id, role_id, kind, value, actor_id)

    async def reset_user(self, guild_id: int, user_id: int, actor_id: int) -> dict[str, float]:
        return await self.limits.reset_user(guild_id, user_id, actor_id)

    async def set_user_limit(self, user_id: int, kind: str, value: float, actor_id: int) -> tuple[float, float]:
        """The bot owner's override of ``[quotas.user]`` for one user (their own budget: DMs, user installs)."""
        return await self.limits.set_user_limit(user_id, kind, value, actor_id)

    async def reset_user_limits(self, user_id: int, actor_id: int, kind: str | None = None) -> dict[str, float]:
        return await self.limits.reset_user_limits(user_id, actor_id, kind)

    async def own_limits(self, user_id: int) -> UsageLimits:
        """A member's own budget today (what DMs and user installs are charged to)."""
        return await self.reports.usage_limits(Requester(None, None, user_id))

    # -- prices ---------------------------------------------------------------------------------------

    @property
    def prices(self) -> dict[str, tuple[float | None, float | None, float | None]]:
        return self.price_book.prices

    def set_prices(self, models: Iterable[ModelInfo]) -> None:
        self.price_book.set_prices(models)

    def estimate_credits(self, meta: CallMeta | None, model: str | None, tokens: int, images: int) -> float | None:
        return self.price_book.estimate_credits(meta, model, tokens, images)
