"""Budgets stay exact across processes: 1,000 concurrent reservations from two OS processes (each
with its own Store on one PostgreSQL database) against a limit of 100 grant exactly 100, and the
counters and the ledger agree. Limits set by an admin in one process reach the others."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from bot.app.settings import Settings
from bot.budgets.book import LIMITS_TTL_SECONDS
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent
PER_PROCESS = 500
LIMIT = 100


async def start_racer(url: str, first_user: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.budget_racer", url, str(PER_PROCESS), str(first_user),
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def line_from(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
    if not line:
        assert process.stderr is not None
        raise AssertionError(f"racer exited early: {(await process.stderr.read()).decode()[-2000:]}")
    return line.decode().strip()


async def test_two_processes_thousand_reservations_grant_exactly_the_limit(pg_url: str) -> None:
    store = Store(url=pg_url)
    await store.open()
    try:
        await BudgetService(store, Settings()).set_limit(1, "guild", "chat_requests", LIMIT, actor_id=99)
        racers = [await start_racer(pg_url, 1000), await start_racer(pg_url, 2000)]
        try:
            assert [await line_from(p) for p in racers] == ["ready", "ready"]
            for p in racers:  # both start together: each is blocked reading this line
                assert p.stdin is not None
                p.stdin.write(b"go\n")
            await asyncio.gather(*(p.stdin.drain() for p in racers if p.stdin is not None))
            results = [json.loads(await line_from(p)) for p in racers]
            assert [await asyncio.wait_for(p.wait(), timeout=60) for p in racers] == [0, 0]
        finally:
            for p in racers:
                if p.returncode is None:
                    p.kill()
                    await p.wait()

        assert [r["errors"] for r in results] == [[], []]
        assert sum(r["granted"] for r in results) == LIMIT
        assert sum(r["refused"] for r in results) == 2 * PER_PROCESS - LIMIT
        assert all(r["granted"] > 0 for r in results), results  # both processes really raced

        guild = await store.fetchone(
            "SELECT used, reserved FROM quota_counters WHERE scope = 'guild' AND guild_id = 1 AND kind = ?",
            ("chat_requests",),
        )
        assert guild is not None and (guild["used"], guild["reserved"]) == (LIMIT, 0)
        tokens = await store.fetchval(
            "SELECT used FROM quota_counters WHERE scope = 'guild' AND guild_id = 1 AND kind = 'tokens'")
        members = await store.fetchval(
            "SELECT SUM(used) FROM quota_counters WHERE scope = 'member' AND guild_id = 1 AND kind = 'chat_requests'")
        assert members == LIMIT
        assert await store.fetchval("SELECT SUM(reserved) FROM quota_counters") == 0
        assert await store.fetchval("SELECT COUNT(*) FROM quota_reservations WHERE state = 'settled'") == LIMIT
        assert await store.fetchval("SELECT COUNT(*) FROM quota_reservations") == LIMIT
        ledger = await store.fetchone("SELECT COUNT(*), SUM(tokens) FROM usage_ledger WHERE charged = 1")
        assert ledger is not None and (ledger[0], ledger[1]) == (LIMIT, tokens) == (LIMIT, LIMIT * 10)
        assert await store.fetchval("SELECT COUNT(*) FROM usage_ledger") == LIMIT
    finally:
        await store.close()


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_a_limit_set_in_another_process_applies_after_the_cache_ttl(pg_url: str) -> None:
    admin_store, worker_store = Store(url=pg_url), Store(url=pg_url)  # two processes' stores
    await admin_store.open()
    await worker_store.open()
    try:
        ticks = Ticks()
        admin = BudgetService(admin_store, Settings())
        worker = BudgetService(worker_store, Settings(), monotonic=ticks)
        member = Requester(7, 70, 700)
        await worker.reserve(member, Feature.CHAT)  # unlimited: the worker caches that
        await admin.set_limit(7, "member", "chat_requests", 1, actor_id=99)
        await worker.reserve(member, Feature.CHAT)  # within the TTL the worker may still use its copy
        ticks.t += LIMITS_TTL_SECONDS
        with pytest.raises(BudgetExceeded) as refused:
            await worker.reserve(member, Feature.CHAT)
        assert (refused.value.scope, refused.value.kind, refused.value.limit) == ("member", "chat_requests", 1)
        assert (await worker.usage_limits(member)).line("member", "chat_requests").limit == 1
    finally:
        await admin_store.close()
        await worker_store.close()
