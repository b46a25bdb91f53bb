"""The operator's tier ceiling over the admins' own limits (``[premium]``; bot/premium computes it).

The budgets only know this shape: for a requester, per scope and kind, the most the operator's tier
allows (``(ceiling, source)``, source "tier <name>" or "free tier"; a kind absent has no ceiling). The
effective limit is the tighter of the admin's (or the config default) and the tier's. A guild's bonus
pool (consumables) extends its guild-scope ceiling; ``pooled`` says it may have one, so that a
reservation reads it (bot/budgets/pool.py) only then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.budgets.book import Limits
    from bot.budgets.rules import Requester

__all__ = ["TierCeiling", "Ceilings", "PoolCeiling", "tighter", "is_tier_source"]

FREE_TIER = "free tier"


def is_tier_source(source: str) -> bool:
    """Whether a limit's source is the operator's tier (a refusal an upgrade could lift)."""
    return source == FREE_TIER or source.startswith("tier ")


@dataclass(frozen=True, slots=True)
class TierCeiling:
    #: kind -> (ceiling, source) of the guild's total; of the member's share (or a member's own budget)
    guild: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    member: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    #: the guild may have a bonus pool (a consumable was granted to it)
    pooled: bool = False


class Ceilings(Protocol):
    async def ceiling(self, requester: Requester) -> TierCeiling | None:
        """The tier ceiling for ``requester``; None when no tier applies (no ``[premium]``, own gateway)."""
        ...


@dataclass(frozen=True, slots=True)
class PoolCeiling:
    """A guild-scope kind whose tier ceiling binds (tighter than the admin's): its pool may extend it."""

    ceiling: float
    source: str
    admin: float  # -1 unlimited
    admin_source: str

    def limit(self, balance: float, used: float) -> tuple[float, str]:
        """The guild's limit today with ``balance`` left in its pool and ``used`` settled today: the
        ceiling plus what the pool has left plus what it already paid today, never above the admin's."""
        extended = self.ceiling + max(0.0, balance) + max(0.0, used - self.ceiling)
        if 0 <= self.admin <= extended:
            return self.admin, self.admin_source
        return extended, self.source


def tighter(admin: Limits, ceiling: Mapping[str, tuple[float, str]]) -> Limits:
    """Per kind the tighter of the admin's limit and the tier's ceiling (-1 is unlimited)."""
    out = dict(admin)
    for kind, (cap, source) in ceiling.items():
        if cap < 0 or kind not in out:
            continue
        value = out[kind][0]
        if value < 0 or cap < value:
            out[kind] = (cap, source)
    return out
