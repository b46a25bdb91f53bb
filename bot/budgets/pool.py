"""A guild's bonus pool (``premium_pools``): what consumables added beyond its tier's ceiling, per kind.

Read and drawn inside the budget engine's bodies, after their counters (bot/budgets/counters.py), so
every transaction takes its locks in the same order: counters, then pool rows in kind order (a grant
locks one pool row and no counter). A reservation locks the pool rows it reads, so a hold beyond the
ceiling is never granted twice from the same balance; a settle draws down exactly the part of the
guild's settled use that went past the ceiling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bot.budgets.ceiling import PoolCeiling
from bot.budgets.counters import Counters, Deltas
from bot.storage.tx import SyncTx, for_update

__all__ = ["balances", "draw", "credit", "guild_keys"]


def guild_keys(guild_id: int, day: str, kinds: Iterable[str]) -> list[tuple[str, int, int, str, str]]:
    return [("guild", guild_id, 0, day, kind) for kind in sorted(kinds)]


def balances(tx: SyncTx, guild_id: int, kinds: Iterable[str], *, lock: bool = True) -> dict[str, float]:
    """The pool's balance per kind (0 where none), the rows locked until the transaction ends (``lock``)."""
    wanted = sorted(kinds)
    found: dict[str, float] = dict.fromkeys(wanted, 0.0)
    for kind in wanted:  # one row each, in kind order (the lock order)
        value = tx.fetchval(
            "SELECT balance FROM premium_pools WHERE guild_id = ? AND kind = ?"
            + (for_update(tx.dialect) if lock else ""),
            (guild_id, kind),
        )
        if value is not None:
            found[kind] = float(value)
    return found


def draw(
    tx: SyncTx, guild_id: int, day: str, pools: Mapping[str, PoolCeiling], after: Counters, deltas: Deltas,
    ts: float,
) -> dict[str, float]:
    """Take from the pool what this body's ``used`` deltas put past each kind's ceiling today.

    ``after``: the guild's counters as this body left them (read back by ``counters.add``). Returns
    what was drawn per kind. The balance never goes below 0 (a settle is never refused; a call that
    used more than it held overdraws by that much).
    """
    drawn: dict[str, float] = {}
    for kind in sorted(pools):
        key = ("guild", guild_id, 0, day, kind)
        if key not in after:
            continue
        cap = pools[kind].ceiling
        used_after = after[key][0]
        used_before = used_after - deltas.get(key, (0.0, 0.0))[0]
        amount = max(0.0, used_after - cap) - max(0.0, used_before - cap)
        if amount > 0:
            tx.execute(
                "UPDATE premium_pools SET balance = CASE WHEN balance > ? THEN balance - ? ELSE 0 END,"
                " updated_at = ? WHERE guild_id = ? AND kind = ?",
                (amount, amount, ts, guild_id, kind),
            )
            drawn[kind] = amount
    return drawn


def credit(tx: SyncTx, guild_id: int, kind: str, amount: float, ts: float) -> None:
    """Add ``amount`` to the guild's pool of ``kind``."""
    tx.execute(
        "INSERT INTO premium_pools(guild_id, kind, balance, granted, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (guild_id, kind) DO UPDATE SET balance = premium_pools.balance + excluded.balance,"
        " granted = premium_pools.granted + excluded.granted, updated_at = excluded.updated_at",
        (guild_id, kind, float(amount), float(amount), ts),
    )
