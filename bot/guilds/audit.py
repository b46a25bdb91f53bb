"""The audit trail of admin changes (who changed what, when, old -> new) and the validation error.

Both the budgets (bot/budgets/limits.py) and the guild configuration (bot/guilds/config.py) record every
change here, inside the same transaction as the change itself: ``add(tx, …)`` in a ``store.run`` body,
``await record(tx_or_store, …)`` in an async transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.storage.store import Store
from bot.storage.tx import SyncTx, Tx


class InvalidSetting(ValueError):
    """A change an admin asked for is not valid; ``str(exc)`` is the sentence to show them."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts: float
    guild_id: int
    actor_id: int
    target: str
    field: str
    old_value: Any
    new_value: Any


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _load(value: str | None) -> Any:
    return None if value is None else json.loads(value)


_INSERT = (
    "INSERT INTO audit_log(ts, guild_id, actor_id, target, field, old_value, new_value) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def add(tx: SyncTx, *, ts: float, guild_id: int, actor_id: int, target: str, field: str, old: Any, new: Any) -> None:
    """Append one audit row in the transaction ``tx`` (a ``store.run`` body) that makes the change."""
    tx.execute(_INSERT, (float(ts), guild_id, actor_id, target, field, _dump(old), _dump(new)))


async def record(
    db: Store | Tx, *, ts: float, guild_id: int, actor_id: int, target: str, field: str, old: Any, new: Any
) -> None:
    """Append one audit row (call inside the transaction that makes the change)."""
    await db.execute(_INSERT, (float(ts), guild_id, actor_id, target, field, _dump(old), _dump(new)))


async def recent(store: Store, guild_id: int, limit: int = 10) -> list[AuditEntry]:
    """The newest entries first."""
    rows = await store.fetchall(
        "SELECT id, ts, guild_id, actor_id, target, field, old_value, new_value FROM audit_log"
        " WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
        (guild_id, limit),
    )
    return [
        AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], _load(r[6]), _load(r[7])) for r in rows
    ]
