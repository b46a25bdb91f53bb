"""The limit book: the daily limits that apply to a requester (config defaults, server settings,
role overrides; for a member's own budget — DMs, user installs — ``[quotas.user]`` and the owner's
per-user overrides).

Each guild's rows are cached for ``ttl`` seconds: an admin's change made in this process drops the
entry at once (``invalidate``), one made by another process is seen within ``ttl``. Reads only;
admin writes go through ``bot.budgets.limits``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.budgets.rules import KINDS, UNLIMITED
from bot.storage.store import Store
from bot.storage.tx import SyncTx

if TYPE_CHECKING:
    from bot.app.settings import QuotaDefaults

__all__ = ["Limits", "GuildLimitRows", "LimitBook", "LIMITS_TTL_SECONDS", "load_rows", "load_user_rows"]

#: kind -> (limit, source) where source is "config" | "server" | "role" (a server member), or "user"
#: (``[quotas.user]``) | "owner" (the owner's override for this user) for a member's own budget; -1 is unlimited
Limits = dict[str, tuple[float, str]]

#: how long a guild's limits are reused before they are read again (changes by other processes)
LIMITS_TTL_SECONDS = 5.0


@dataclass(slots=True)
class GuildLimitRows:
    """One guild's stored settings: server totals, member defaults and role overrides."""

    guild: dict[str, float] = field(default_factory=dict)
    member: dict[str, float] = field(default_factory=dict)
    roles: dict[int, dict[str, float]] = field(default_factory=dict)
    #: (overriding role ids) -> what ``LimitBook.resolve`` made of these rows for them
    resolved: dict[tuple[int, ...], tuple[Limits, Limits]] = field(default_factory=dict)


def load_rows(tx: SyncTx, guild_id: int) -> GuildLimitRows:
    """The guild's stored limits, read now (``guild_id`` 0, a DM, has none)."""
    rows = GuildLimitRows()
    if guild_id:
        for scope, kind, value in tx.fetchall(
            "SELECT scope, kind, value FROM quota_limits WHERE guild_id = ?", (guild_id,)
        ):
            getattr(rows, scope)[kind] = float(value)
        for role_id, kind, value in tx.fetchall(
            "SELECT role_id, kind, value FROM quota_role_limits WHERE guild_id = ?", (guild_id,)
        ):
            rows.roles.setdefault(int(role_id), {})[kind] = float(value)
    return rows


def load_user_rows(tx: SyncTx, user_id: int) -> dict[str, float]:
    """The owner's overrides of ``[quotas.user]`` for one user, read now."""
    return {kind: float(value) for kind, value in tx.fetchall(
        "SELECT kind, value FROM quota_user_limits WHERE user_id = ?", (user_id,))}


class LimitBook:
    def __init__(
        self, store: Store, defaults: QuotaDefaults, *, ttl: float = LIMITS_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.defaults = defaults
        self.ttl = ttl
        self._monotonic = monotonic
        self._cache: dict[int, tuple[float, GuildLimitRows]] = {}  # guild -> (read at, rows)
        self._loading: dict[int, asyncio.Task[GuildLimitRows]] = {}
        self._generation: dict[int, int] = {}  # bumped by invalidate: a read started before is not cached
        self._users: dict[int, tuple[float, dict[str, float]]] = {}  # user -> (read at, overrides)

    def default(self, scope: str, kind: str) -> float:
        """The config file's limit for ``scope`` ("guild" | "member" | "user") and ``kind``."""
        if scope == "user":
            return float(getattr(self.defaults.user, kind))
        return float(getattr(self.defaults, f"{scope}_{kind}"))

    async def user_rows(self, user_id: int) -> dict[str, float]:
        """The owner's overrides for ``user_id`` (cached up to ``ttl`` seconds, like a guild's rows)."""
        cached = self._users.get(user_id)
        if cached is not None and self._monotonic() - cached[0] < self.ttl:
            return cached[1]
        started = self._monotonic()
        rows = await self.store.run(lambda tx: load_user_rows(tx, user_id))
        self._users[user_id] = (started, rows)
        return rows

    def invalidate_user(self, user_id: int) -> None:
        """Forget a user's overrides (after this process changed them)."""
        self._users.pop(user_id, None)

    async def user_limits(self, user_id: int) -> Limits:
        """A member's own budget (DMs, user installs): the owner's override, else ``[quotas.user]``."""
        rows = await self.user_rows(user_id)
        return {kind: (rows[kind], "owner") if kind in rows else (self.default("user", kind), "user")
                for kind in KINDS}

    async def rows(self, guild_id: int) -> GuildLimitRows:
        """The guild's stored limits (cached up to ``ttl`` seconds; one read at a time per guild)."""
        cached = self._cache.get(guild_id)
        if cached is not None and self._monotonic() - cached[0] < self.ttl:
            return cached[1]
        task = self._loading.get(guild_id)
        if task is None:
            task = asyncio.ensure_future(self._load(guild_id))
            self._loading[guild_id] = task
            task.add_done_callback(lambda done: self._forget_load(guild_id, done))
        return await asyncio.shield(task)

    def _forget_load(self, guild_id: int, done: asyncio.Task[GuildLimitRows]) -> None:
        if self._loading.get(guild_id) is done:
            del self._loading[guild_id]

    async def _load(self, guild_id: int) -> GuildLimitRows:
        generation = self._generation.get(guild_id, 0)
        started = self._monotonic()
        rows = await self.store.run(lambda tx: load_rows(tx, guild_id))
        if self._generation.get(guild_id, 0) == generation:
            self._cache[guild_id] = (started, rows)
        return rows

    def invalidate(self, guild_id: int) -> None:
        """Forget the guild's limits (after this process changed them)."""
        self._cache.pop(guild_id, None)
        self._loading.pop(guild_id, None)
        self._generation[guild_id] = self._generation.get(guild_id, 0) + 1

    async def effective(self, guild_id: int, role_ids: Iterable[int]) -> tuple[Limits, Limits]:
        """(server limits, member limits) for a member with ``role_ids`` (treat as read-only: shared)."""
        rows = await self.rows(guild_id)
        overriding = tuple(sorted(r for r in role_ids if r in rows.roles))  # the roles that matter here
        resolved = rows.resolved.get(overriding)
        if resolved is None:
            resolved = rows.resolved[overriding] = self.resolve(rows, overriding)
        return resolved

    async def granting_role(self, guild_id: int, role_ids: Iterable[int], kind: str) -> int | None:
        """The role whose override sets this member's ``kind`` limit (the most generous one, as in
        ``resolve``), so a refusal can name it; None when no role overrides ``kind``."""
        rows = await self.rows(guild_id)
        best: tuple[float, int] | None = None
        for role_id in role_ids:
            value = rows.roles.get(role_id, {}).get(kind)
            if value is not None and (best is None or value > best[0]):
                best = (value, role_id)
        return best[1] if best is not None else None

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
