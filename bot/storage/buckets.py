"""Token buckets in the database (``rate_buckets``), shared by every process of the bot.

``await buckets.take(name, rate_per_second, burst, cost)`` is one statement on either backend: an
upsert that refills the bucket by the time elapsed since ``updated_at`` (× rate, capped at ``burst``)
and takes ``cost`` tokens only when that many are there. The database serialises the statements on
the row (PostgreSQL's row lock of ``ON CONFLICT DO UPDATE``, SQLite's one writer), so the number of
takes granted is exact however many processes ask at once.

The row means: ``tokens`` tokens at time ``updated_at``, rising by ``rate`` a second up to ``burst``.
A granted take stores ``R - cost`` at ``now`` (``R``: the tokens refilled up to ``now``) and returns
the row; a refused one changes nothing (the upsert's ``WHERE`` is false) and returns none, and only
then is the row read to tell how long until ``cost`` tokens are there. Takes may commit out of the
order of their times (several processes): time never moves backwards for a bucket.

Times are the callers' clocks (``time.time`` by default: the processes must agree on it, so their
hosts keep it synchronised). A process whose clock runs behind sees fewer tokens, never more than
were put in: the state is a straight line in time, the same whichever process last wrote it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bot.storage.store import Store
from bot.storage.tx import SyncTx

__all__ = ["TokenBuckets"]

_DOUBLE = "DOUBLE PRECISION"  # an untyped CASE branch is text to PostgreSQL; SQLite reads this as REAL

# time only moves forward for a bucket: a take stamped earlier than the row (processes' takes commit in
# any order) refills nothing and leaves updated_at where it is
_ELAPSED = ("CASE WHEN :now > rate_buckets.updated_at THEN :now - rate_buckets.updated_at"
            f" ELSE CAST(0 AS {_DOUBLE}) END")
# the tokens at :now, refilled since updated_at and capped at :burst (CASE: no scalar MIN on SQLite)
_REFILLED = (
    f"CASE WHEN rate_buckets.tokens + {_ELAPSED} * :rate > :burst"
    f" THEN CAST(:burst AS {_DOUBLE})"
    f" ELSE rate_buckets.tokens + {_ELAPSED} * :rate END"
)

# granted: the row is written and returned; refused: the WHERE leaves it alone and nothing is returned
_TAKE = (
    "INSERT INTO rate_buckets (name, tokens, updated_at) VALUES (:name, :full, :now)"
    " ON CONFLICT (name) DO UPDATE SET"
    f" tokens = {_REFILLED} - :cost,"
    f" updated_at = CASE WHEN :now > rate_buckets.updated_at THEN CAST(:now AS {_DOUBLE})"
    " ELSE rate_buckets.updated_at END"
    f" WHERE {_REFILLED} >= :cost"
    " RETURNING tokens"
)
_STATE = "SELECT tokens, updated_at FROM rate_buckets WHERE name = :name"


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
        at = float(self.clock() if now is None else now)
        params = {
            "name": name, "now": at, "rate": float(rate_per_second), "burst": float(burst), "cost": float(cost),
            "full": float(burst) - float(cost),
        }

        def body(tx: SyncTx) -> float:
            if tx.fetchone(_TAKE, params) is not None:
                return 0.0
            state = tx.fetchone(_STATE, {"name": name})  # refused: how long until ``cost`` tokens are there
            assert state is not None  # the upsert found the row
            stamped = float(state["updated_at"])
            behind = max(0.0, stamped - at)  # a clock behind the bucket's must first catch up with it
            refilled = min(float(burst), float(state["tokens"]) + max(0.0, at - stamped) * rate_per_second)
            # plus one tick of the clock: ``now + wait`` rounded to a float is then never short of the time
            # the tokens are there (a caller would wake a hair early, be refused, and ask again)
            return behind + max((cost - refilled) / rate_per_second, 0.0) + math.ulp(max(abs(at), 1.0))

        return await self.store.run(body)

    async def forget(self, name: str) -> None:
        """Drop bucket ``name`` (its next take finds it full)."""
        await self.store.execute("DELETE FROM rate_buckets WHERE name = :name", {"name": name})
