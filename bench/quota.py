"""Budget reservations under load, side by side: SQLite, PostgreSQL, and a bare asyncpg loop.

Each of N concurrent guilds runs a loop of reserve → settle (one in ten released, as a failed call
would be) through the same ``BudgetService`` and ``Store`` the bot uses; guild limits are large
enough that nothing is refused. Reservations/s counts reserve calls over the whole run, so each one
includes its settle or release (two budget transactions). Then 1,000 concurrent reservations
against a limit of 100 time the refusals and check that exactly 100 are granted.

- SQLite: a WAL file, ``synchronous=FULL`` (the bot's settings), group commit.
- PostgreSQL: a server this script starts (tests/pg_server.py: fsync off, as in the tests).
- bare asyncpg: on the same server and with the same concurrency and pool size, one transaction per
  iteration doing the conditional counter update (``reserved + 1`` while under the limit), no SQLAlchemy.

    python bench/quota.py [--guilds 50] [--seconds 5] [--members 20] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from bot.app.settings import Settings  # noqa: E402
from bot.budgets.rules import BudgetExceeded, Feature, Requester, utc_day  # noqa: E402
from bot.budgets.service import BudgetService  # noqa: E402
from bot.storage.store import Store  # noqa: E402
from tests.pg_server import PgServer, PgUnavailable  # noqa: E402

POOL_SIZE = 10  # the Store's default [storage] pool_size
POOL_OVERFLOW = 20  # the PostgreSQL backend's max_overflow
LIMITS = {"guild_chat_requests": 10**9, "guild_tokens": 10**12, "member_chat_requests": 10**9}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Result:
    name: str
    elapsed: float = 0.0
    cpu: float = 0.0  # this process's CPU seconds during the timed loop (the database server's not included)
    reserve_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.reserve_ms) / self.elapsed if self.elapsed else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.reserve_ms, pct) if self.reserve_ms else float("nan")


async def guild_worker(q: BudgetService, guild_id: int, members: int, stop: float, out: list[float]) -> None:
    i = 0
    while time.perf_counter() < stop:
        req = Requester(guild_id, guild_id * 10, 1 + i % members, (guild_id,))
        t0 = time.perf_counter()
        r = await q.reserve(req, Feature.CHAT, tokens=512)
        out.append((time.perf_counter() - t0) * 1000)
        if i % 10 == 9:
            await q.release(r, outcome="error", error_code="bench")
        else:
            await q.settle(r, usage_tokens=300)
        i += 1


async def bench_store(name: str, store: Store, guilds: int, seconds: float, members: int) -> Result:
    """The budget service on ``store``: the reservation loop, then the burst against a limit of 100."""
    result = Result(name)
    await store.open()
    try:
        q = BudgetService(store, Settings(quotas=LIMITS))
        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(guild_worker(q, 1000 + g, members, start + seconds, result.reserve_ms)
                               for g in range(guilds)))
        result.elapsed = time.perf_counter() - start
        result.cpu = time.process_time() - cpu

        await q.set_limit(1, "guild", "chat_requests", 100, actor_id=0)
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(
            *(q.reserve(Requester(1, 1, u), Feature.CHAT) for u in range(1000)), return_exceptions=True
        )
        burst = time.perf_counter() - t0
        granted = sum(1 for r in outcomes if not isinstance(r, BaseException))
        refused = sum(1 for r in outcomes if isinstance(r, BudgetExceeded))
        result.notes.append(f"burst: 1,000 concurrent reservations vs limit 100 -> granted {granted}, "
                            f"refused {refused}, in {burst * 1000:.0f} ms")

        ledger = await store.fetchval("SELECT COUNT(*) FROM usage_ledger")
        settled = await store.fetchval("SELECT COUNT(*) FROM usage_ledger WHERE charged = 1 AND feature = 'chat'")
        used = await store.fetchval(
            "SELECT SUM(used) FROM quota_counters WHERE scope = 'guild' AND kind = 'chat_requests'")
        n = len(result.reserve_ms)
        result.notes.append(f"ledger rows {ledger:,} (= reservations: {ledger == n}); settled chat requests: "
                            f"counters {int(used or 0):,}, ledger {settled:,} (agree: {int(used or 0) == settled})")
    finally:
        await store.close()
    return result


async def bench_bare_asyncpg(url: str, guilds: int, seconds: float) -> Result:
    """The floor: one conditional counter update per transaction, raw asyncpg, same concurrency and pool."""
    result = Result("bare asyncpg")
    day = utc_day(datetime.now(UTC))
    setup = Store(url=url)
    await setup.open()  # the same schema (quota_counters) as the bot's
    await setup.close()
    pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE + POOL_OVERFLOW)
    try:
        await pool.executemany(
            "INSERT INTO quota_counters(scope, guild_id, user_id, day, kind, used, reserved)"
            " VALUES ('guild', $1, 0, $2, 'chat_requests', 0, 0) ON CONFLICT DO NOTHING",
            [(2000 + g, day) for g in range(guilds)],
        )
        update = (
            "UPDATE quota_counters SET reserved = reserved + 1 WHERE scope = 'guild' AND guild_id = $1"
            " AND user_id = 0 AND day = $2 AND kind = 'chat_requests' AND used + reserved + 1 <= $3"
        )

        async def worker(guild_id: int, stop: float) -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with pool.acquire() as conn, conn.transaction():
                    status = await conn.execute(update, guild_id, day, 10.0**9)
                if status != "UPDATE 1":
                    raise RuntimeError(f"the conditional update changed nothing: {status}")
                result.reserve_ms.append((time.perf_counter() - t0) * 1000)

        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(2000 + g, start + seconds) for g in range(guilds)))
        result.elapsed = time.perf_counter() - start
        result.cpu = time.process_time() - cpu
    finally:
        await pool.close()
    return result


def report(results: list[Result], guilds: int, members: int, seconds: float) -> None:
    print(f"budget reservations: {guilds} concurrent guilds, {members} members each, {seconds:g} s per backend")
    print(f"{'':<16}{'reservations/s':>16}{'p50 ms':>9}{'p99 ms':>9}{'bench CPU %':>13}{'CPU ms each':>13}")
    for r in results:
        share = r.cpu / r.elapsed * 100 if r.elapsed else 0.0
        each = r.cpu / len(r.reserve_ms) * 1000 if r.reserve_ms else 0.0
        print(f"{r.name:<16}{r.rate:>16,.0f}{r.p(50):>9.2f}{r.p(99):>9.2f}{share:>13.0f}{each:>13.3f}")
    by_name = {r.name: r for r in results}
    pg, bare = by_name.get("PostgreSQL"), by_name.get("bare asyncpg")
    if pg and bare and bare.rate:
        print(f"PostgreSQL / bare asyncpg: {pg.rate / bare.rate:.2f} (target >= 0.5)")
    if "SQLite" in by_name:
        print(f"SQLite: {by_name['SQLite'].rate:,.0f} reservations/s (target >= 5,000)")
    for r in results:
        for note in r.notes:
            print(f"{r.name}: {note}")
    print("(a reservation = reserve + its settle or release: two budget transactions; bare asyncpg = one"
          " conditional update per transaction. bench CPU % = this process's share of one core: below 100"
          " the machine was busy with other work)")


async def run_all(guilds: int, seconds: float, members: int, pg: PgServer | None) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(await bench_store("SQLite", Store(Path(tmp) / "bench.db"), guilds, seconds, members))
    if pg is not None:
        budget_url = pg.create_database("bench_budgets")
        bare_url = pg.create_database("bench_bare")
        results.append(await bench_store("PostgreSQL", Store(url=budget_url, pool_size=POOL_SIZE), guilds, seconds,
                                         members))
        results.append(await bench_bare_asyncpg(bare_url, guilds, seconds))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--guilds", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    try:
        pg = None if args.skip_postgres else PgServer.start()  # from the main thread (see PgServer.start)
    except PgUnavailable as exc:
        sys.exit(f"bench/quota.py: {exc} (or run with --skip-postgres)")
    try:
        results = asyncio.run(run_all(args.guilds, args.seconds, args.members, pg))
    finally:
        if pg is not None:
            pg.stop()
    report(results, args.guilds, args.members, args.seconds)


if __name__ == "__main__":
    main()
