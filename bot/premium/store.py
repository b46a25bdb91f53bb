"""The entitlements as last seen, consumable grants (once per entitlement) and bonus pools, in the store.

A grant is one row per entitlement id (its primary key): the first writer adds the amount to the guild's
pool in the same transaction, every later one (a duplicate event, the reconciliation racing the event,
another process) adds nothing. Consuming on Discord comes after, claimed by one caller at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.budgets import pool
from bot.storage.store import Store
from bot.storage.tx import SyncTx

__all__ = ["EntitlementRecord", "EntitlementStore", "GuildState", "CLAIM_SECONDS"]

#: a consume claim older than this (its process died mid-call) may be taken over
CLAIM_SECONDS = 300.0


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


@dataclass(frozen=True, slots=True)
class EntitlementRecord:
    entitlement_id: int
    sku_id: int
    guild_id: int | None
    user_id: int | None
    type: int
    starts_at: float | None = None
    ends_at: float | None = None
    deleted: bool = False
    consumed: bool = False

    @classmethod
    def of(cls, ent: Any) -> EntitlementRecord:
        """From a ``discord.Entitlement`` (public attributes only)."""
        kind = getattr(ent.type, "value", ent.type)
        return cls(int(ent.id), int(ent.sku_id), ent.guild_id, ent.user_id, int(kind), _ts(ent.starts_at),
                   _ts(ent.ends_at), bool(ent.deleted), bool(ent.consumed))

    def active(self, now: float) -> bool:
        return not self.deleted and (self.ends_at is None or self.ends_at > now)

    def ended(self, now: float) -> EntitlementRecord:
        return EntitlementRecord(self.entitlement_id, self.sku_id, self.guild_id, self.user_id, self.type,
                                 self.starts_at, self.ends_at if self.ends_at is not None and self.ends_at <= now
                                 else now, self.deleted, self.consumed)


@dataclass(frozen=True, slots=True)
class GuildState:
    own_gateway: bool
    active: tuple[EntitlementRecord, ...]
    pooled: bool


_COLUMNS = "entitlement_id, sku_id, guild_id, user_id, type, starts_at, ends_at, deleted, consumed"
_ACTIVE = "deleted = 0 AND (ends_at IS NULL OR ends_at > ?)"


def _record(row: Any) -> EntitlementRecord:
    return EntitlementRecord(int(row[0]), int(row[1]), None if row[2] is None else int(row[2]),
                             None if row[3] is None else int(row[3]), int(row[4]),
                             None if row[5] is None else float(row[5]), None if row[6] is None else float(row[6]),
                             bool(row[7]), bool(row[8]))


def _upsert(tx: SyncTx, rec: EntitlementRecord, now: float) -> None:
    tx.execute(
        f"INSERT INTO premium_entitlements({_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (entitlement_id) DO UPDATE SET sku_id = excluded.sku_id, guild_id = excluded.guild_id,"
        " user_id = excluded.user_id, type = excluded.type, starts_at = excluded.starts_at,"
        " ends_at = excluded.ends_at, deleted = excluded.deleted,"
        " consumed = CASE WHEN premium_entitlements.consumed = 1 THEN 1 ELSE excluded.consumed END,"
        " updated_at = excluded.updated_at",
        (rec.entitlement_id, rec.sku_id, rec.guild_id, rec.user_id, rec.type, rec.starts_at, rec.ends_at,
         int(rec.deleted), int(rec.consumed), now),
    )


class EntitlementStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def put(self, rec: EntitlementRecord, now: float) -> None:
        await self.store.run(lambda tx: _upsert(tx, rec, now))

    async def get(self, entitlement_id: int) -> EntitlementRecord | None:
        row = await self.store.fetchone(f"SELECT {_COLUMNS} FROM premium_entitlements WHERE entitlement_id = ?",
                                        (entitlement_id,))
        return _record(row) if row is not None else None

    async def guild_state(self, guild_id: int, now: float) -> GuildState:
        """Whether the guild uses its own gateway (a ``guild_gateways`` row), its active entitlements,
        whether it has a bonus pool — one read."""
        def body(tx: SyncTx) -> GuildState:
            own = tx.fetchval("SELECT 1 FROM guild_gateways WHERE guild_id = ?", (guild_id,)) is not None
            rows = tx.fetchall(f"SELECT {_COLUMNS} FROM premium_entitlements WHERE guild_id = ? AND {_ACTIVE}"
                               " ORDER BY entitlement_id", (guild_id, now))
            pooled = tx.fetchval("SELECT 1 FROM premium_pools WHERE guild_id = ? LIMIT 1", (guild_id,)) is not None
            return GuildState(own, tuple(_record(r) for r in rows), pooled)

        return await self.store.run(body)

    async def user_active(self, user_id: int, now: float) -> tuple[EntitlementRecord, ...]:
        rows = await self.store.fetchall(
            f"SELECT {_COLUMNS} FROM premium_entitlements WHERE user_id = ? AND {_ACTIVE} ORDER BY entitlement_id",
            (user_id, now))
        return tuple(_record(r) for r in rows)

    async def active_ids(self, now: float, *, seen_before: float | None = None) -> set[int]:
        """The active entitlements' ids (``seen_before``: only those last written before then)."""
        sql = f"SELECT entitlement_id FROM premium_entitlements WHERE {_ACTIVE}"
        params: tuple[float, ...] = (now,)
        if seen_before is not None:
            sql, params = sql + " AND updated_at < ?", (now, seen_before)
        rows = await self.store.fetchall(sql, params)
        return {int(r[0]) for r in rows}

    async def end(self, ids: list[int], now: float) -> list[EntitlementRecord]:
        """Mark entitlements ended now (the listing no longer has them); the records as they were."""
        def body(tx: SyncTx) -> list[EntitlementRecord]:
            ended = []
            for eid in sorted(ids):
                row = tx.fetchone(f"SELECT {_COLUMNS} FROM premium_entitlements WHERE entitlement_id = ?", (eid,))
                if row is not None:
                    ended.append(_record(row))
                    tx.execute("UPDATE premium_entitlements SET ends_at = ?, updated_at = ? WHERE entitlement_id = ?"
                               " AND (ends_at IS NULL OR ends_at > ?)", (now, now, eid, now))
            return ended

        return await self.store.run(body)

    async def grant(self, rec: EntitlementRecord, guild_id: int, kind: str, amount: float, now: float) -> bool:
        """Record the entitlement and, the first time only, add ``amount`` to the guild's pool. True when
        this call granted it."""
        def body(tx: SyncTx) -> bool:
            _upsert(tx, rec, now)
            inserted = tx.fetchone(
                "INSERT INTO premium_grants(entitlement_id, sku_id, guild_id, kind, amount, granted_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entitlement_id) DO NOTHING RETURNING entitlement_id",
                (rec.entitlement_id, rec.sku_id, guild_id, kind, float(amount), now),
            )
            if inserted is None:
                return False
            pool.credit(tx, guild_id, kind, amount, now)
            return True

        return await self.store.run(body)

    async def claim_consume(self, entitlement_id: int, now: float) -> bool:
        """Claim the Discord consume call of a granted, unconsumed entitlement (one caller at a time)."""
        changed = await self.store.execute(
            "UPDATE premium_grants SET consume_claimed_at = ? WHERE entitlement_id = ? AND consumed_at IS NULL"
            " AND (consume_claimed_at IS NULL OR consume_claimed_at < ?)",
            (now, entitlement_id, now - CLAIM_SECONDS),
        )
        return changed == 1

    async def consumed(self, entitlement_id: int, now: float) -> None:
        """Consumed on Discord (locks in the order every body here takes: entitlement, grant, pool)."""
        def body(tx: SyncTx) -> None:
            tx.execute("UPDATE premium_entitlements SET consumed = 1, updated_at = ? WHERE entitlement_id = ?",
                       (now, entitlement_id))
            tx.execute("UPDATE premium_grants SET consumed_at = ? WHERE entitlement_id = ? AND consumed_at IS NULL",
                       (now, entitlement_id))

        await self.store.run(body)

    async def unclaim(self, entitlement_id: int) -> None:
        await self.store.execute("UPDATE premium_grants SET consume_claimed_at = NULL WHERE entitlement_id = ?"
                                 " AND consumed_at IS NULL", (entitlement_id,))

    async def grant_row(self, entitlement_id: int) -> dict[str, Any] | None:
        row = await self.store.fetchone("SELECT * FROM premium_grants WHERE entitlement_id = ?", (entitlement_id,))
        return dict(row) if row is not None else None

    async def pools(self, guild_id: int) -> dict[str, tuple[float, float]]:
        """kind -> (balance, granted) of the guild's bonus pools."""
        rows = await self.store.fetchall("SELECT kind, balance, granted FROM premium_pools WHERE guild_id = ?",
                                         (guild_id,))
        return {r[0]: (float(r[1]), float(r[2])) for r in rows}
