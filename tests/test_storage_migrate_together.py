"""Several processes starting together on one empty PostgreSQL database: one migrates, the others wait
for it and then find the schema up to date (Alembic takes no lock of its own on PostgreSQL; ``Store``
holds an advisory lock around the upgrade). Real processes, released at the same moment."""

from __future__ import annotations

import asyncio
import sys

from bot.storage.migrations import latest_version
from bot.storage.store import Store

PROCESSES = 4
OPEN_STORE = """
import asyncio, sys
from bot.storage.store import Store

async def main() -> None:
    store = Store(url=sys.argv[1])
    print("loaded", flush=True)
    sys.stdin.readline()  # every process waits here until all are loaded
    try:
        print("version", await store.open(), flush=True)
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_processes_migrating_one_database_at_once_all_start_at_the_newest_version(pg_url: str) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", OPEN_STORE, pg_url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"loaded\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
    results = [await asyncio.wait_for(proc.communicate(), 60) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert (proc.returncode, out.decode()) == (0, f"version {latest_version()}\n"), err.decode()[-2000:]

    store = Store(url=pg_url)
    try:
        assert await asyncio.wait_for(store.open(), 30) == latest_version()  # the lock is free again
        rows = await store.fetchall("SELECT version_num FROM alembic_version")
        assert [r[0] for r in rows] == [f"{latest_version():04d}"]
    finally:
        await store.close()
