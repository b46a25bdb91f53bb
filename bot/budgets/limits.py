"""Admin writes to the budgets: server and member-default limits, role overrides, a member's fresh
start. Every change is validated, audited and drops this process's cached limits (other processes
see it within ``LimitBook.ttl``)."""

from __future__ import annotations

import math

from bot.budgets.book import GuildLimitRows, LimitBook, load_rows, load_user_rows
from bot.budgets.engine import Clock
from bot.budgets.rules import KIND_NOUNS, KINDS, SCOPES, UNLIMITED, utc_day
from bot.guilds import audit
from bot.guilds.audit import InvalidSetting
from bot.storage.store import Store
from bot.storage.tx import for_update

__all__ = ["MAX_LIMIT", "LimitAdmin", "validate_limit"]

MAX_LIMIT = 10**12


def validate_limit(kind: str, value: float) -> float:
    """The limit as stored, or ``InvalidSetting`` naming what is wrong with it."""
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


def _checked(kind: str, value: float | None) -> float | None:
    if value is not None:
        return validate_limit(kind, value)
    if kind not in KINDS:
        validate_limit(kind, 0)  # raises: unknown kind
    return None


class LimitAdmin:
    def __init__(self, store: Store, book: LimitBook, now: Clock) -> None:
        self.store = store
        self.book = book
        self.now = now

    async def _current(self, guild_id: int) -> GuildLimitRows:
        """The guild's stored limits read now, inside the caller's transaction (not the cache)."""
        return await self.store.run(lambda tx: load_rows(tx, guild_id))

    async def set_limit(
        self, guild_id: int, scope: str, kind: str, value: float | None, actor_id: int
    ) -> tuple[float, float]:
        """Set the server's total (``scope="guild"``) or default per-member (``"member"``) limit.

        ``value`` None returns to the config default. Returns (old, new) effective limits; audited.
        """
        if scope not in SCOPES:
            raise InvalidSetting("scope", "The scope must be `guild` (the whole server) or `member` (each member).")
        value = _checked(kind, value)
        moment = self.now()
        async with self.store.transaction():
            rows = await self._current(guild_id)
            old = getattr(rows, scope).get(kind, self.book.default(scope, kind))
            if value is None:
                await self.store.execute(
                    "DELETE FROM quota_limits WHERE guild_id = ? AND scope = ? AND kind = ?", (guild_id, scope, kind)
                )
                new = self.book.default(scope, kind)
            else:
                await self.store.execute(
                    "INSERT INTO quota_limits(guild_id, scope, kind, value, updated_at, updated_by)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(guild_id, scope, kind) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    (guild_id, scope, kind, value, moment.timestamp(), actor_id),
                )
                new = value
            await audit.record(self.store, ts=moment.timestamp(), guild_id=guild_id, actor_id=actor_id,
                               target=f"quota:{scope}", field=kind, old=old, new=new)
        self.book.invalidate(guild_id)
        return old, new

    async def set_role_limit(
        self, guild_id: int, role_id: int, kind: str, value: float | None, actor_id: int
    ) -> tuple[float | None, float | None]:
        """Give a role its own member limit (-1 unlimited), or remove it with ``value=None``. Audited."""
        value = _checked(kind, value)
        moment = self.now()
        async with self.store.transaction():
            rows = await self._current(guild_id)
            old = rows.roles.get(role_id, {}).get(kind)
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
        self.book.invalidate(guild_id)
        return old, value

    async def reset_user(self, guild_id: int, user_id: int, actor_id: int) -> dict[str, float]:
        """Give a member a fresh budget for today (their settled usage goes to 0; the server's total stays).

        Returns what was cleared, per kind. Audited.
        """
        moment = self.now()
        day = utc_day(moment)
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT kind, used FROM quota_counters"
                " WHERE scope = 'member' AND guild_id = ? AND user_id = ? AND day = ? ORDER BY kind"
                + for_update(tx.dialect),
                (guild_id, user_id, day),
            )
            cleared = {r[0]: float(r[1]) for r in rows if r[1]}
            await tx.execute(
                "UPDATE quota_counters SET used = 0"
                " WHERE scope = 'member' AND guild_id = ? AND user_id = ? AND day = ?",
                (guild_id, user_id, day),
            )
            await audit.record(self.store, ts=moment.timestamp(), guild_id=guild_id, actor_id=actor_id,
                               target=f"user:{user_id}", field="usage_today", old=cleared, new={})
        return cleared

    # -- a member's own budget (DMs, user installs): the bot owner's overrides of [quotas.user] ---------

    async def set_user_limit(self, user_id: int, kind: str, value: float, actor_id: int) -> tuple[float, float]:
        """Give ``user_id`` their own daily ``kind`` limit (-1 unlimited) instead of ``[quotas.user]``.
        Returns (old, new) effective limits; audited (guild 0: no server's)."""
        value = validate_limit(kind, value)
        moment = self.now()
        async with self.store.transaction():
            rows = await self.store.run(lambda tx: load_user_rows(tx, user_id))
            old = rows.get(kind, self.book.default("user", kind))
            await self.store.execute(
                "INSERT INTO quota_user_limits(user_id, kind, value, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(user_id, kind) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (user_id, kind, value, moment.timestamp(), actor_id),
            )
            await audit.record(self.store, ts=moment.timestamp(), guild_id=0, actor_id=actor_id,
                               target=f"user:{user_id}", field=kind, old=old, new=value)
        self.book.invalidate_user(user_id)
        return old, value

    async def reset_user_limits(self, user_id: int, actor_id: int, kind: str | None = None) -> dict[str, float]:
        """Remove the owner's overrides for ``user_id`` (one ``kind``, or all): ``[quotas.user]`` applies
        again. Returns the overrides removed; audited."""
        if kind is not None:
            _checked(kind, None)  # an unknown kind is refused
        moment = self.now()
        async with self.store.transaction():
            rows = await self.store.run(lambda tx: load_user_rows(tx, user_id))
            removed = {k: v for k, v in rows.items() if kind is None or k == kind}
            if removed:
                await self.store.execute(
                    "DELETE FROM quota_user_limits WHERE user_id = ?" + (" AND kind = ?" if kind else ""),
                    (user_id, kind) if kind else (user_id,),
                )
                for name, old in sorted(removed.items()):
                    await audit.record(self.store, ts=moment.timestamp(), guild_id=0, actor_id=actor_id,
                                       target=f"user:{user_id}", field=name, old=old,
                                       new=self.book.default("user", name))
        self.book.invalidate_user(user_id)
        return removed
