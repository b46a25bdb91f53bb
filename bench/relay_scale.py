"""Relay acceptance, side by side: SQLite with one process; PostgreSQL with one and with two web processes.

``python bench/relay_scale.py`` (from the repository root, with the project's venv). Each setup runs a
closed loop (``--concurrency`` clients, spread over the setup's web ports) for ``--seconds`` and prints
accepted posts/s and latency percentiles. The PostgreSQL server is a throwaway one with durable commits
(fsync on), as production would have; a ``gatecord run`` process is up in every setup (it migrates and
delivers), the web tier (``gatecord web``) answers the posts in the PostgreSQL setups.

Target (issue 16): two web processes accept at least 1.7× what one does. The load generator runs in
this process and shares the machine's cores with the servers and PostgreSQL: the CPU count is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from bench._relay_process import BotProcess, make_key, write_config  # noqa: E402
from bench.relay import closed_loop, percentile, start_postgres  # noqa: E402
from sandbox.discord_emulator import DiscordEmulator  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its reaped children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU time of every PostgreSQL server process on the machine (the benchmark's own server)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


def line(name: str, result: dict[str, Any]) -> float:
    accepted = result["statuses"].get(202, 0) / result["elapsed"]
    lat = result["latencies"]
    cores = ", ".join(f"{who} {used / result['elapsed']:.2f}" for who, used in result["cpu"].items())
    print(f"{name:<34}{accepted:>12,.0f}{percentile(lat, 50) * 1000:>9.1f}{percentile(lat, 99) * 1000:>9.1f}"
          f"   {result['statuses']}; cores busy: {cores}")
    return accepted


async def measure(
    urls: list[str], key: str, channels: list[int], args: argparse.Namespace, servers: dict[str, BotProcess]
) -> dict[str, Any]:
    await closed_loop(urls, key, channels, 8, 1.0)  # warm-up
    gc.collect()
    gc.freeze()
    gc.disable()

    def usage() -> dict[str, float]:
        used = {name: cpu_seconds(p.proc.pid) for name, p in servers.items() if p.proc is not None}
        used["postgres"] = postgres_cpu()
        used["load generator + emulator"] = time.process_time()
        return used

    before = usage()
    try:
        result = await closed_loop(urls, key, channels, args.concurrency, args.seconds)
    finally:
        gc.enable()
    after = usage()
    result["cpu"] = {name: after[name] - before[name] for name in after if after[name] - before[name] > 0.005}
    return result


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=40)
    args = parser.parse_args()

    emu = DiscordEmulator()
    await emu.start()
    tmp = Path(tempfile.mkdtemp(prefix="gatecord-bench-"))
    processes: list[BotProcess] = []
    pg: Any = None
    print(f"relay acceptance, closed loop: {args.concurrency} clients, {args.seconds:g} s per setup, "
          f"{os.cpu_count()} CPUs shared by the load generator, the servers and PostgreSQL")
    print(f"{'':<34}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}   answers")
    try:
        channels = [emu.channel_id, emu.channel2_id] + [await emu.add_channel(f"scale-{i}") for i in range(args.channels - 2)]
        limits = {"rate_per_minute": 100_000_000, "burst": 1_000_000}

        named: dict[str, BotProcess] = {}

        async def start(config: Path, command: str) -> str:
            process = BotProcess(config, command)
            processes.append(process)
            named[f"{command} {sum(1 for n in named if n.startswith(command)) + 1}"] = process
            url = await process.start()
            await process.wait_ready()
            return f"{url}/send-data"

        # SQLite: the one `gatecord run` process answers and delivers
        sqlite_db = tmp / "gatecord.db"
        key = await make_key(sqlite_db, emu.guild_id)
        url = await start(write_config(tmp / "sqlite.toml", emu, sqlite_db, **limits), "run")
        sqlite = line("SQLite, one process", await measure([url], key, channels, args, named))
        for process in processes:
            await process.terminate()
        processes.clear()
        named.clear()

        # PostgreSQL: a `gatecord run` process delivering, web processes answering
        pg, database = start_postgres()
        key = await make_key(database, emu.guild_id)
        config = write_config(tmp / "pg.toml", emu, database, **limits)
        await start(config, "run")
        web1 = await start(config, "web")
        one = line("PostgreSQL, one web process", await measure([web1], key, channels, args, named))
        web2 = await start(config, "web")
        two = line("PostgreSQL, two web processes", await measure([web1, web2], key, channels, args, named))
        print(f"two web processes / one: {two / one:.2f} (target >= 1.7); SQLite one process: {sqlite:,.0f}/s")
        return 0
    finally:
        for process in processes:
            await process.terminate()
        await emu.close()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
