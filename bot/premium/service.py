"""``PremiumService`` (``bot.premium``): the tier ceiling each requester gets, entitlement events, the
periodic reconciliation, consumables granted once and consumed on Discord.

The budgets ask ``ceiling(requester)`` on every reservation (``BudgetEngine.ceilings``): what a guild's
active entitlements (or the free tier) and the member's own allow; nothing for a guild that uses its
own AI gateway (a ``guild_gateways`` row: it pays for itself). A guild's and a user's state are cached
for ``ttl`` seconds; an event handled here drops them at once (other processes see it within ``ttl``).

Reconciliation (at start, then every ``reconcile_hours``, one process at a time under the store's
``premium-reconcile`` lock, as the budgets' sweep): list every unended entitlement (paginated by
discord.py), store what is missing, end what is no longer listed, grant and consume what was missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.budgets.ceiling import TierCeiling
from bot.budgets.rules import Requester
from bot.budgets.sweeper import Periodic, Sleep
from bot.premium.store import EntitlementRecord, EntitlementStore, GuildState
from bot.premium.tiers import Tier, TierTable
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.app.settings import Settings
    from bot.budgets.service import BudgetService

__all__ = ["PremiumService", "RECONCILE_LOCK", "EntitlementLister", "ReconcileReport", "TierStatus", "TierUse"]

log = logging.getLogger(__name__)

#: the advisory lock (PostgreSQL) that makes one process at a time reconcile
RECONCILE_LOCK = "premium-reconcile"
#: how long a guild's or user's premium state is reused before it is read again
STATE_TTL_SECONDS = 5.0


class EntitlementLister(Protocol):
    """What reconciliation needs of the bot: ``discord.Client.entitlements`` (public, paginated)."""

    def entitlements(self, *, limit: int | None = ..., exclude_ended: bool = ...) -> AsyncIterator[Any]: ...


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    listed: int = 0
    ended: int = 0
    granted: int = 0


@dataclass(frozen=True, slots=True)
class TierUse:
    """One tier that applies and why: whose subscription, and its entitlement."""

    tier: Tier
    whose: str  # "server" | "user"
    entitlement: EntitlementRecord


@dataclass(frozen=True, slots=True)
class TierStatus:
    """Which tier applies to a requester, for /mylimits and /quota show."""

    configured: bool
    own_gateway: bool = False
    uses: tuple[TierUse, ...] = ()
    pools: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind -> (left, granted)


class PremiumService:
    def __init__(
        self, store: Store, settings: Settings, *, client: EntitlementLister | None = None,
        clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep, ttl: float = STATE_TTL_SECONDS,
    ) -> None:
        self.settings = settings.premium
        self.table = TierTable(settings.premium)
        self.entitlements = EntitlementStore(store)
        self.store = store
        self.client = client
        self.clock = clock
        self.ttl = ttl
        self._monotonic = monotonic
        self._guilds: dict[int, tuple[float, GuildState]] = {}
        self._users: dict[int, tuple[float, tuple[EntitlementRecord, ...]]] = {}
        self.reconciler = Periodic("gatecord-premium-reconcile", self._reconcile_if_lead,
                                   self.settings.reconcile_hours * 3600, sleep=sleep)

    @property
    def upgrade_sku_id(self) -> int | None:
        return self.settings.upgrade_sku_id

    def attach(self, budgets: BudgetService) -> None:
        """Make the budgets apply the tiers (nothing changes without ``[premium]``)."""
        if self.table.configured:
            budgets.engine.ceilings = self
            budgets.engine.upgrade_sku_id = self.settings.upgrade_sku_id

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Reconcile now and every ``reconcile_hours`` (when tiers are configured and a client lists)."""
        if self.table.configured and self.client is not None:
            self.reconciler.start()

    async def close(self) -> None:
        await self.reconciler.stop()

    # -- state ----------------------------------------------------------------------------------------

    def invalidate(self, *, guild_id: int | None = None, user_id: int | None = None) -> None:
        """Forget a guild's or user's cached state (after an event, or a /gateway change in this process)."""
        if guild_id is not None:
            self._guilds.pop(guild_id, None)
        if user_id is not None:
            self._users.pop(user_id, None)

    async def _guild(self, guild_id: int) -> GuildState:
        cached = self._guilds.get(guild_id)
        if cached is not None and self._monotonic() - cached[0] < self.ttl:
            return cached[1]
        started = self._monotonic()
        state = await self.entitlements.guild_state(guild_id, self.clock())
        self._guilds[guild_id] = (started, state)
        return state

    async def _user(self, user_id: int) -> tuple[EntitlementRecord, ...]:
        cached = self._users.get(user_id)
        if cached is not None and self._monotonic() - cached[0] < self.ttl:
            return cached[1]
        started = self._monotonic()
        active = await self.entitlements.user_active(user_id, self.clock())
        self._users[user_id] = (started, active)
        return active

    def _uses(self, records: tuple[EntitlementRecord, ...], scope: str) -> list[TierUse]:
        now = self.clock()
        uses = []
        for rec in records:
            tier = self.table.tiers.get(rec.sku_id)
            if tier is not None and tier.scope == scope and rec.active(now):
                uses.append(TierUse(tier, "server" if scope == "guild" else "user", rec))
        return uses

    async def ceiling(self, requester: Requester) -> TierCeiling | None:
        """The tier ceiling for ``requester`` (``bot.budgets.ceiling.Ceilings``)."""
        if not self.table.configured:
            return None
        user_tiers = [u.tier for u in self._uses(await self._user(requester.user_id), "user")] \
            if requester.user_id else []
        if requester.guild_id is None:
            return self.table.user_ceiling(user_tiers)
        state = await self._guild(requester.guild_id)
        if state.own_gateway:
            return None
        guild_tiers = [u.tier for u in self._uses(state.active, "guild")]
        return self.table.guild_ceiling(guild_tiers, user_tiers, pooled=state.pooled)

    async def status(self, requester: Requester) -> TierStatus:
        """Which tiers apply to ``requester`` and why."""
        if not self.table.configured:
            return TierStatus(False)
        uses = self._uses(await self._user(requester.user_id), "user") if requester.user_id else []
        if requester.guild_id is None:
            return TierStatus(True, uses=tuple(uses))
        state = await self._guild(requester.guild_id)
        if state.own_gateway:
            return TierStatus(True, own_gateway=True)
        pools = await self.entitlements.pools(requester.guild_id) if state.pooled else {}
        return TierStatus(True, uses=tuple(self._uses(state.active, "guild") + uses), pools=pools)

    # -- events -------------------------------------------------------------------------------------------

    async def handle(self, entitlement: Any) -> None:
        """ENTITLEMENT_CREATE / UPDATE (or one listed by reconciliation): store it, drop the cached
        state it changes; a consumable is granted once and consumed on Discord."""
        rec = EntitlementRecord.of(entitlement)
        now = self.clock()
        item = self.table.consumables.get(rec.sku_id)
        if item is None or rec.guild_id is None or rec.consumed:
            if item is not None and rec.guild_id is None:
                log.warning("consumable entitlement %s (sku %s) has no server: nothing granted",
                            rec.entitlement_id, rec.sku_id)
            await self.entitlements.put(rec, now)
            if rec.consumed:  # consumed on Discord already: our grant (made before consuming) is done
                await self.entitlements.consumed(rec.entitlement_id, now)
        else:
            if await self.entitlements.grant(rec, rec.guild_id, item.kind, item.amount, now):
                log.info("consumable %s granted to guild %s: %g %s", item.name, rec.guild_id, item.amount, item.kind)
            await self._consume(entitlement, rec)
        self.invalidate(guild_id=rec.guild_id, user_id=rec.user_id)

    async def handle_delete(self, entitlement: Any) -> None:
        """ENTITLEMENT_DELETE: the entitlement no longer counts (refunded, removed)."""
        rec = EntitlementRecord.of(entitlement)
        await self.entitlements.put(EntitlementRecord(rec.entitlement_id, rec.sku_id, rec.guild_id, rec.user_id,
                                                      rec.type, rec.starts_at, rec.ends_at, True, rec.consumed),
                                    self.clock())
        self.invalidate(guild_id=rec.guild_id, user_id=rec.user_id)

    async def _consume(self, entitlement: Any, rec: EntitlementRecord) -> None:
        """Consume a granted consumable on Discord (``Entitlement.consume()``), once: one caller holds the
        claim; a failed call gives it back for the next reconciliation."""
        if not await self.entitlements.claim_consume(rec.entitlement_id, self.clock()):
            return
        try:
            await entitlement.consume()
        except Exception as exc:
            await self.entitlements.unclaim(rec.entitlement_id)
            log.warning("consumable entitlement %s: Discord did not consume it (%r); the next reconciliation "
                        "tries again", rec.entitlement_id, exc)
            return
        await self.entitlements.consumed(rec.entitlement_id, self.clock())

    # -- reconciliation -------------------------------------------------------------------------------

    async def _reconcile_if_lead(self) -> ReconcileReport | None:
        if not self.store.is_open:
            return None
        async with self.store.lock(RECONCILE_LOCK) as held:
            return await self.reconcile() if held else None

    async def reconcile(self) -> ReconcileReport:
        """Repair what events missed: every unended entitlement Discord lists is stored (and a consumable
        granted and consumed once); one stored as active that is no longer listed is ended."""
        if self.client is None:
            raise RuntimeError("no Discord client to list entitlements with")
        started = self.clock()
        listed = [e async for e in self.client.entitlements(limit=None, exclude_ended=True)]
        granted_before = await self._granted_count()
        for entitlement in listed:
            await self.handle(entitlement)
        gone = await self.entitlements.active_ids(started, seen_before=started) - {int(e.id) for e in listed}
        ended = await self.entitlements.end(sorted(gone), self.clock())
        for rec in ended:
            self.invalidate(guild_id=rec.guild_id, user_id=rec.user_id)
        report = ReconcileReport(len(listed), len(ended), await self._granted_count() - granted_before)
        log.info("premium reconciliation: %d listed, %d ended, %d consumable(s) granted",
                 report.listed, report.ended, report.granted)
        return report

    async def _granted_count(self) -> int:
        return int(await self.store.fetchval("SELECT COUNT(*) FROM premium_grants", (), default=0))
