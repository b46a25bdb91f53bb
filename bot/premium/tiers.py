"""The operator's tiers (``[premium]``), pure: which ceilings a set of active tiers gives a requester.

A tier's limit it does not name is the free tier's; the free tier's limit it does not name has no
ceiling (-1, today's behaviour). Where several tiers apply (the guild's and the member's own), the
most generous wins per kind, -1 beating any number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.budgets.ceiling import FREE_TIER, TierCeiling
from bot.budgets.rules import KINDS, UNLIMITED

if TYPE_CHECKING:
    from bot.app.settings import PremiumConsumable, PremiumSettings

__all__ = ["Tier", "TierTable"]


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    scope: str  # "guild" | "user" ("free" for the free tier)
    sku_id: int | None = None
    limits: dict[str, float] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """How a limit it sets is named ("tier Pro", "free tier")."""
        return FREE_TIER if self.sku_id is None else f"tier {self.name}"


def _more_generous(a: float, b: float) -> bool:
    return (a < 0 <= b) or (a >= 0 and b >= 0 and a > b)


class TierTable:
    def __init__(self, settings: PremiumSettings) -> None:
        self.free = Tier("free", "free", None, dict(settings.free))
        self.tiers: dict[int, Tier] = {t.sku_id: Tier(t.name, t.scope, t.sku_id, dict(t.limits))
                                       for t in settings.tiers}
        self.consumables: dict[int, PremiumConsumable] = {c.sku_id: c for c in settings.consumables}
        self.configured = bool(settings.tiers or settings.free or settings.consumables)

    def value(self, tier: Tier, scope: str, kind: str) -> float:
        key = f"{scope}_{kind}"
        return float(tier.limits.get(key, self.free.limits.get(key, UNLIMITED)))

    def best(self, tiers: Iterable[Tier], scope: str, kind: str) -> tuple[float, str] | None:
        """The most generous (value, source) of ``tiers`` for ``scope``/``kind``; None when unlimited."""
        best: tuple[float, str] | None = None
        for tier in tiers:
            value = self.value(tier, scope, kind)
            if best is None or _more_generous(value, best[0]):
                best = (value, tier.source)
        return best if best is not None and best[0] >= 0 else None

    def guild_ceiling(self, guild_tiers: list[Tier], user_tiers: list[Tier], *, pooled: bool) -> TierCeiling:
        """A server member's ceilings: the guild's total from the guild's tier (else free), the member's
        share from the more generous of the guild's tier and the member's own."""
        base = guild_tiers or [self.free]
        guild = {k: v for k in KINDS if (v := self.best(base, "guild", k)) is not None}
        member = {k: v for k in KINDS if (v := self.best([*base, *user_tiers], "member", k)) is not None}
        return TierCeiling(guild, member, pooled)

    def user_ceiling(self, user_tiers: list[Tier]) -> TierCeiling:
        """A member's own budget (DMs, user installs): the free tier's ``user_*`` or their tier's."""
        member = {k: v for k in KINDS if (v := self.best([self.free, *user_tiers], "user", k)) is not None}
        return TierCeiling({}, member, False)
