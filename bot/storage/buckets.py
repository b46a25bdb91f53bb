"""Token buckets in the database (``rate_buckets``), shared by every process of the bot.

``await buckets.take(name, rate_per_second, burst, cost)`` is one statement on either backend: an
upsert that refills the bucket by the time elapsed since ``updated_at`` (× rate, capped at ``burst``)
and takes ``cost`` tokens only when that many are there. The database serialises the statements on
the row (PostgreSQL's row lock of ``ON CONFLICT DO UPDATE``, SQLite's one writer), so the number of
takes granted is exact however many processes ask at once.

The row means: ``tokens`` tokens at time ``updated_at``, rising by ``rate`` a second up to ``burst``.
A granted take stores ``R - cost`` at ``now`` (``R``: the tokens refilled up to ``now``). A refused
one stores the same state written one clock tick later (``R + tick × rate`` at the next float after
``now``): nothing is taken, and ``RETURNING`` tells the two apart by ``updated_at``, with no second
statement; the refused take's wait (``(cost - R) / rate``) comes from the returned tokens.

Times are the callers' clocks (``time.time`` by default: the processes must agree on it, so their
hosts keep it synchronised). A process whose clock runs behind sees fewer tokens, never more than
were put in: the state is a straight line in time, the same whichever process last wrote it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bot.storage.store import Store

__all__ = ["TokenBuckets"]

_DOUBLE = "DOUBLE PRECISION"  # an untyped CASE branch is text to PostgreSQL; SQLite reads this as REAL

# the tokens at :now, refilled since updated_at and capped at :burst (CASE: no scalar MIN on SQLite)
_REFILLED = (
    "CASE WHEN rate_buckets.tokens + (:now - rate_buckets.updated_at) * :rate > :burst"
    f" THEN CAST(:burst AS {_DOUBLE})"
    " ELSE rate_buckets.tokens + (:now - rate_buckets.updated_at) * :rate END"
)

_TAKE = (
    "INSERT INTO rate_buckets (name, tokens, updated_at) VALUES (:name, :full, :now)"
    " ON CONFLICT (name) DO UPDATE SET"
    f" tokens = CASE WHEN {_REFILLED} >= :cost THEN {_REFILLED} - :cost ELSE {_REFILLED} + :nudge END,"
    f" updated_at = CASE WHEN {_REFILLED} >= :cost THEN CAST(:now AS {_DOUBLE}) ELSE CAST(:tick AS {_DOUBLE}) END"
    " RETURNING tokens, updated_at"
)


class TokenBuckets:
    """Named token buckets in ``store``; ``clock`` gives the time of a take unless the call passes ``now``."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def take(
        self, name: str, rate_per_second: float, burst: float, cost: float = 1.0, *, now: float | None = None
    ) -> float:
        """Take ``cost`` tokens from bucket ``name`` (created full): 0.0 when granted, else the seconds
        until ``cost`` tokens will be there (nothing was taken)."""
        if not rate_per_second > 0 or not 0 < cost <= burst:
            raise ValueError(f"a token bucket needs rate > 0 and 0 < cost <= burst (rate {rate_per_second}, "
                             f"burst {burst}, cost {cost})")
        at = self.clock() if now is None else now
        tick = math.nextafter(at, math.inf)  # a refused take's updated_at: the same state, one tick later
        nudge = (tick - at) * rate_per_second  # the tokens that tick adds
        params = {
            "name": name, "now": float(at), "tick": tick, "nudge": nudge,
            "rate": float(rate_per_second), "burst": float(burst), "cost": float(cost),
            "full": float(burst) - float(cost),
        }
        row = await self.store.fetchone(_TAKE, params)
        assert row is not None  # an upsert with RETURNING always returns its row
        if row["updated_at"] != tick:
            return 0.0
        refilled = float(row["tokens"]) - nudge
        # plus one tick of the clock: ``now + wait`` rounded to a float is then never short of the time
        # the tokens are there (a caller would wake a hair early, be refused, and ask again)
        return max((cost - refilled) / rate_per_second, 0.0) + math.ulp(max(abs(at), 1.0))

    async def forget(self, name: str) -> None:
        """Drop bucket ``name`` (its next take finds it full)."""
        await self.store.execute("DELETE FROM rate_buckets WHERE name = :name", {"name": name})
