"""Budget reservations under load: reservations per second and latency with N concurrent guilds.

Each guild runs a loop of reserve → settle (one in ten released, as a failed call would be)
against a real SQLite file (WAL) through the same Store the bot uses; guild limits are large
enough that nothing is refused, then a last phase drives one guild past its limit to time refusals.

    python bench/quota.py [--guilds 50] [--seconds 5] [--members 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.budgets.rules import BudgetExceeded, Feature, Requester  # noqa: E402
from bot.budgets.service import BudgetService  # noqa: E402
from bot.app.settings import Settings  # noqa: E402
from bot.storage.store import Store  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def guild_worker(q: BudgetService, guild_id: int, members: int, stop: float, reserve_ms: list[float], cycle_ms: list[float]) -> None:
    i = 0
    while time.perf_counter() < stop:
        req = Requester(guild_id, guild_id * 10, 1 + i % members, (guild_id,))
        t0 = time.perf_counter()
        r = await q.reserve(req, Feature.CHAT, tokens=512)
        t1 = time.perf_counter()
        if i % 10 == 9:
            await q.release(r, outcome="error", error_code="bench")
        else:
            await q.settle(r, usage_tokens=300)
        reserve_ms.append((t1 - t0) * 1000)
        cycle_ms.append((time.perf_counter() - t0) * 1000)
        i += 1


async def main(guilds: int, seconds: float, members: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        await store.open()
        settings = Settings(quotas={"guild_chat_requests": 10**9, "guild_tokens": 10**12, "member_chat_requests": 10**9})
        q = BudgetService(store, settings)
        reserve_ms: list[float] = []
        cycle_ms: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(guild_worker(q, 1000 + g, members, start + seconds, reserve_ms, cycle_ms) for g in range(guilds)))
        elapsed = time.perf_counter() - start

        # refusals: 1,000 concurrent reservations against a limit of 100 in one guild
        await q.set_limit(1, "guild", "chat_requests", 100, actor_id=0)
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(q.reserve(Requester(1, 1, u), Feature.CHAT) for u in range(1000)), return_exceptions=True
        )
        burst = time.perf_counter() - t0
        granted = sum(1 for r in results if not isinstance(r, BaseException))
        refused = sum(1 for r in results if isinstance(r, BudgetExceeded))

        ledger = await store.fetchval("SELECT COUNT(*) FROM usage_ledger")
        settled = await store.fetchval("SELECT COUNT(*) FROM usage_ledger WHERE charged = 1 AND feature = 'chat'")
        used = await store.fetchval("SELECT SUM(used) FROM quota_counters WHERE scope = 'guild' AND kind = 'chat_requests'")
        await store.close()

    n = len(reserve_ms)
    print(f"guilds: {guilds} concurrent, {members} members each, {seconds:g} s, SQLite WAL file")
    print(f"reservations: {n:,} in {elapsed:.2f} s = {n / elapsed:,.0f} reservations/s "
          f"({n / elapsed * 2:,.0f} budget transactions/s incl. settle/release)")
    print(f"reserve latency ms: p50 {statistics.median(reserve_ms):.2f}  p95 {percentile(reserve_ms, 95):.2f}  "
          f"p99 {percentile(reserve_ms, 99):.2f}  max {max(reserve_ms):.2f}")
    print(f"reserve+settle ms:  p50 {statistics.median(cycle_ms):.2f}  p99 {percentile(cycle_ms, 99):.2f}")
    print(f"burst: 1,000 concurrent reservations vs limit 100 -> granted {granted}, refused {refused} in {burst * 1000:.0f} ms")
    print(f"ledger rows {ledger:,} (= reservations: {ledger == n}); settled chat requests: counters {int(used or 0):,},"
          f" ledger {settled:,} (agree: {int(used or 0) == settled})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guilds", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--members", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.guilds, args.seconds, args.members))
