"""The limit book: the daily limits that apply to a requester (config defaults, server settings,
role overrides), cached per guild until an admin changes them.

Reads only; admin writes go through ``bot.budgets.limits`` which calls ``invalidate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.budgets.rules import KINDS, UNLIMITED
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.app.settings import QuotaDefaults

#: kind -> (limit, source) where source is "config" | "server" | "role"; limit -1 is unlimited
Limits = dict[str, tuple[float, str]]


@dataclass(slots=True)
class GuildLimitRows:
    """One guild's stored settings: server totals, member defaults and role overrides."""

    guild: dict[str, float] = field(default_factory=dict)
    member: dict[str, float] = field(default_factory=dict)
    roles: dict[int, dict[str, float]] = field(default_factory=dict)


class LimitBook:
    def __init__(self, store: Store, defaults: QuotaDefaults) -> None:
        self.store = store
        self.defaults = defaults
        self._cache: dict[int, GuildLimitRows] = {}

    def default(self, scope: str, kind: str) -> float:
        """The config file's limit for ``scope`` ("guild" | "member") and ``kind``."""
        return float(getattr(self.defaults, f"{scope}_{kind}"))

    async def rows(self, guild_id: int) -> GuildLimitRows:
        """The guild's stored limits (cached; ``guild_id`` 0, a DM, has none)."""
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        rows = GuildLimitRows()
        if guild_id:
            for scope, kind, value in await self.store.fetchall(
                "SELECT scope, kind, value FROM quota_limits WHERE guild_id = ?", (guild_id,)
            ):
                getattr(rows, scope)[kind] = float(value)
            for role_id, kind, value in await self.store.fetchall(
                "SELECT role_id, kind, value FROM quota_role_limits WHERE guild_id = ?", (guild_id,)
            ):
                rows.roles.setdefault(int(role_id), {})[kind] = float(value)
        self._cache[guild_id] = rows
        return rows

    def invalidate(self, guild_id: int) -> None:
        self._cache.pop(guild_id, None)

    async def effective(self, guild_id: int, role_ids: Iterable[int]) -> tuple[Limits, Limits]:
        """(server limits, member limits) for a member with ``role_ids``."""
        return self.resolve(await self.rows(guild_id), role_ids)

    def resolve(self, rows: GuildLimitRows, role_ids: Iterable[int]) -> tuple[Limits, Limits]:
        guild: Limits = {}
        member: Limits = {}
        roles = [rows.roles[r] for r in role_ids if r in rows.roles]
        for kind in KINDS:
            guild[kind] = (
                (rows.guild[kind], "server") if kind in rows.guild else (self.default("guild", kind), "config")
            )
            overrides = [r[kind] for r in roles if kind in r]
            if overrides:
                # most generous wins; unlimited beats any number
                member[kind] = (UNLIMITED if any(v < 0 for v in overrides) else max(overrides), "role")
            elif kind in rows.member:
                member[kind] = (rows.member[kind], "server")
            else:
                member[kind] = (self.default("member", kind), "config")
        return guild, member
