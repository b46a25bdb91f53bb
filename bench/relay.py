"""Relay benchmark: ``python bench/relay.py`` (from the repository root, with the project's venv).

Starts the Discord emulator in this process (Discord's limits on: 50 requests/s global, 5 messages
per 5 s per channel), the bot as a subprocess (``gatecord run --config …``) and measures:

1. acceptance, open loop: POST /send-data at a fixed rate (default 1,000/s for 10 s); latency is
   measured from each request's scheduled send time (no coordinated omission) → accepted/s, p50/p99;
2. acceptance, closed loop: as fast as N concurrent clients can go → the ceiling;
3. delivery: messages/s reaching the emulator from the backlog, against its 50 requests/s limit.

Target (issue 8): at least 1,000 accepted posts/s with p99 under 50 ms.

The outbox is an SQLite file by default; ``--postgres`` starts a throwaway PostgreSQL server (the test
suite's ``tests/pg_server.py``, switched to durable commits: fsync and synchronous_commit on, as SQLite's
``synchronous=FULL``), ``--database-url postgresql://…`` uses an existing, empty database.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from sandbox.discord_emulator import DiscordEmulator  # noqa: E402
from bench._relay_process import BotProcess, make_key, write_config  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def payload(channels: list[int], i: int) -> bytes:
    return json.dumps({
        "channelId": str(random.choice(channels)),
        "content": f"bench post {i}",
        "embeds": [{"title": "Build finished", "description": f"pipeline #{i} passed", "color": 5814783,
                    "fields": [{"name": "branch", "value": "main", "inline": True}], "url": "", "image": {"url": ""}}],
    }).encode()


async def open_loop(url: str, key: str, channels: list[int], rate: float, seconds: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(i: int, scheduled: float) -> None:
            try:
                async with session.post(url, data=payload(channels, i), headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except aiohttp.ClientError:
                statuses[0] = statuses.get(0, 0) + 1
            latencies.append(time.perf_counter() - scheduled)

        total = int(rate * seconds)
        tasks = []
        start = time.perf_counter()
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"sent": total, "elapsed": elapsed, "statuses": statuses, "latencies": latencies}


async def closed_loop(
    url: str | list[str], key: str, channels: list[int], concurrency: int, seconds: float
) -> dict[str, Any]:
    """``concurrency`` clients posting as fast as answers come; with several ``url``s, each client is bound
    to one of them in turn (several web processes behind a load balancer)."""
    urls = [url] if isinstance(url, str) else url
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def client(c: int, target: str) -> None:
            i = c * 10_000_000
            while time.perf_counter() < deadline:
                i += 1
                t0 = time.perf_counter()
                async with session.post(target, data=payload(channels, i), headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(client(c, urls[c % len(urls)]) for c in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"sent": len(latencies), "elapsed": elapsed, "statuses": statuses, "latencies": latencies}


def report(title: str, result: dict[str, Any]) -> dict[str, Any]:
    lat = result["latencies"]
    accepted = result["statuses"].get(202, 0)
    summary = {
        "accepted_per_s": round(accepted / result["elapsed"], 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
        "statuses": result["statuses"],
    }
    print(f"{title}: {summary['accepted_per_s']:.0f} accepted posts/s over {result['elapsed']:.1f} s; "
          f"latency p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, max {summary['max_ms']} ms; "
          f"answers {result['statuses']}")
    return summary


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop posts per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each acceptance phase")
    parser.add_argument("--concurrency", type=int, default=32, help="clients in the closed-loop phase")
    parser.add_argument("--delivery-seconds", type=float, default=20.0, help="length of the delivery measurement")
    parser.add_argument("--channels", type=int, default=60, help="channels posted to (each has Discord's 5/5 s bucket)")
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("--postgres", action="store_true",
                         help="store the outbox in a throwaway PostgreSQL server (durable commits) instead of SQLite")
    backend.add_argument("--database-url", help="store the outbox in this (empty) PostgreSQL database")
    args = parser.parse_args()

    emu = DiscordEmulator()
    await emu.start()
    tmp = Path(tempfile.mkdtemp(prefix="gatecord-bench-"))
    bot: BotProcess | None = None
    pg: Any = None
    try:
        channels = [emu.channel_id, emu.channel2_id] + [await emu.add_channel(f"bench-{i}") for i in range(args.channels - 2)]
        db: Path | str = tmp / "gatecord.db"
        if args.database_url:
            db = args.database_url
        elif args.postgres:
            pg, db = start_postgres()
        key = await make_key(db, emu.guild_id)
        config = write_config(tmp / "cfg.toml", emu, db, rate_per_minute=100_000_000, burst=1_000_000)
        bot = BotProcess(config)
        base = await bot.start()
        await bot.wait_ready()
        url = f"{base}/send-data"
        print(f"bot pid {bot.proc.pid if bot.proc else '?'}, web {base}, {len(channels)} channels, outbox in "
              f"{'PostgreSQL' if isinstance(db, str) else 'SQLite'}; emulator enforcing "
              f"50 requests/s global and 5 messages / 5 s per channel")

        await closed_loop(url, key, channels, 8, 1.0)  # warm-up
        # This process is only the load generator (and the emulator): keep its own garbage collector
        # from pausing it mid-measurement, which would show up as server latency.
        gc.collect()
        gc.freeze()
        gc.disable()
        results = {"open_loop": report(f"open loop at {args.rate:.0f}/s", await open_loop(url, key, channels, args.rate, args.seconds))}
        results["closed_loop"] = report(f"closed loop, {args.concurrency} clients",
                                        await closed_loop(url, key, channels, args.concurrency, args.seconds))

        gc.enable()

        def delivered() -> int:
            return sum(1 for m in emu.messages.values() if m.content.startswith("bench post"))

        before, t0 = delivered(), time.perf_counter()
        await asyncio.sleep(args.delivery_seconds)
        after, elapsed = delivered(), time.perf_counter() - t0
        limited = len(emu.rate_limited)
        rate = (after - before) / elapsed
        results["delivery"] = {"messages_per_s": round(rate, 1), "delivered_total": after, "429s_seen": limited}
        print(f"delivery: {rate:.1f} messages/s into Discord (emulator limit 50 requests/s; relay paced at 45/s), "
              f"{after} delivered so far, {limited} rate-limited answers from the emulator")
        target = results["open_loop"]["accepted_per_s"] >= 0.98 * args.rate and results["open_loop"]["p99_ms"] < 50
        print(json.dumps(results))
        print(f"target (≥ 1,000 accepted/s, p99 < 50 ms at {args.rate:.0f}/s): {'met' if target else 'NOT met'}")
        return 0
    finally:
        if bot is not None:
            await bot.terminate()
        await emu.close()
        if pg is not None:
            pg.stop()


def start_postgres() -> tuple[Any, str]:
    """A throwaway PostgreSQL server with durable commits, and the URL of an empty database on it."""
    from tests.pg_server import PgServer

    pg = PgServer.start()
    for setting in ("fsync = on", "synchronous_commit = on", "full_page_writes = on"):
        pg.execute(f"ALTER SYSTEM SET {setting}")
    pg.execute("SELECT pg_reload_conf()")
    return pg, pg.create_database("gatecord_bench")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
