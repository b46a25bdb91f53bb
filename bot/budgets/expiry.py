"""Expired reservations: a crashed or stuck call's hold goes back to the budget after the TTL.

``take_expired`` runs inside a ``store.run()`` body: it closes every open reservation whose time is
up (one statement; on PostgreSQL ``SKIP LOCKED``, so processes sweeping at once split the rows and
never wait on each other), writes their ``expired`` ledger rows and returns the counter deltas.
The caller applies them (``counters.add``) in the same transaction, after locking them with its own
rows when it locks any (see ``bot.budgets.counters``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bot.budgets import counters
from bot.budgets.counters import Deltas
from bot.storage.tx import SyncTx, for_update

__all__ = ["Swept", "take_expired", "next_expiry"]


@dataclass(slots=True)
class Swept:
    count: int = 0
    deltas: Deltas = field(default_factory=dict)
    #: no open reservation (of any process) can expire before this timestamp
    next_expiry: float = float("inf")


def take_expired(tx: SyncTx, ts: float, ttl: float) -> Swept:
    """Close the open reservations expired at ``ts``; their holds, as deltas to apply."""
    rows = tx.fetchall(
        "UPDATE quota_reservations SET state = 'expired', closed_at = ?"
        " WHERE state = 'open' AND id IN (SELECT id FROM quota_reservations"
        " WHERE state = 'open' AND expires_at <= ?" + for_update(tx.dialect, skip_locked=True) + ")"
        " RETURNING id, guild_id, channel_id, user_id, day, feature, model, amounts, check_guild",
        (ts, ts),
    )
    swept = Swept(count=len(rows))
    for r in rows:
        counters.merge(swept.deltas, int(r["guild_id"]), int(r["user_id"]), r["day"], bool(r["check_guild"]), {},
                       json.loads(r["amounts"]), sign=-1.0)
    if rows:
        tx.executemany(
            "INSERT INTO usage_ledger(ts, day, guild_id, channel_id, user_id, feature, model_requested,"
            " outcome, charged, reservation_id) VALUES (?, ?, ?, ?, ?, ?, ?, 'expired', 0, ?)",
            [(ts, r["day"], int(r["guild_id"]), r["channel_id"], int(r["user_id"]), r["feature"], r["model"], r["id"])
             for r in rows],
        )
    swept.next_expiry = next_expiry(tx, ts, ttl)
    return swept


def next_expiry(tx: SyncTx, ts: float, ttl: float) -> float:
    """The earliest time a reservation can expire: the soonest ``expires_at`` of the open ones (each
    row has its own), or (none open) ``ts + ttl``.

    A reservation made later, by any process, expires at least ``ttl`` (the default TTL) after ``ts``:
    a reservation may ask for a longer life, never a shorter one (``BudgetEngine.ttl_for``).
    """
    earliest = tx.fetchval("SELECT MIN(expires_at) FROM quota_reservations WHERE state = 'open'")
    return min(float(earliest), ts + ttl) if earliest is not None else ts + ttl
