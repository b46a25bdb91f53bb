"""Discord's request budget shared by every process (PostgreSQL): two ``DiscordPacer``s on one
database, on a fake clock, never start more requests between them than the budget allows in any
window, still serve first messages before intermediate edits, and fall back to their own budget when
the database cannot answer (discord.py's login, before the store is open)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.app.discord_pacing import DiscordPacer
from bot.storage.buckets import TokenBuckets
from bot.storage.store import Store
from tests.clock_drive import drive, worst_window
from tests.fake_clock import FakeClock
from tests.store_pair import two_stores

T0 = 1_700_000_000.0
RATE, BURST = 10.0, 2

_alive: set[asyncio.Task[None]] = set()


def shared_pacer(store: Store, clock: FakeClock) -> DiscordPacer:
    return DiscordPacer(RATE, burst=BURST, clock=clock, buckets=TokenBuckets(store, clock=clock.now))


def spawn(p: DiscordPacer, clock: FakeClock, log: list[tuple[str, float]], name: str, *, low: bool = False) -> None:
    async def go() -> None:
        if low:
            with p.deferrable():
                await p.acquire()
        else:
            await p.acquire()
        log.append((name, clock.now()))
        clock.changes.changed()

    task = asyncio.get_running_loop().create_task(go())
    _alive.add(task)
    task.add_done_callback(_alive.discard)


async def test_two_processes_never_exceed_the_one_budget(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock(start=T0)
    async with two_stores(backend, tmp_path, request) as stores:
        pacers = [shared_pacer(store, clock) for store in stores]
        log: list[tuple[str, float]] = []
        for i in range(30):
            spawn(pacers[i % 2], clock, log, f"p{i % 2}-{i}")
        try:
            await drive(clock, lambda: len(log) == 30, lambda: sum(p.waiting > 0 for p in pacers), "30 requests")
        finally:
            for p in pacers:
                await p.close()
        starts = [at for _, at in log]
        assert sum(at == T0 for at in starts) == BURST, "at once: the burst, between both processes"
        assert worst_window(starts, RATE, BURST) <= 1e-6, f"more than {RATE:g}/s + burst {BURST} in some window"
        assert max(starts) - T0 == pytest.approx((30 - BURST) / RATE, abs=1e-3), "and the whole budget is used"
        assert {name[:2] for name, _ in log[-10:]} == {"p0", "p1"}, "neither process starves the other"


async def test_first_messages_still_go_before_intermediate_edits(store: Store) -> None:
    clock = FakeClock(start=T0)
    p = shared_pacer(store, clock)
    log: list[tuple[str, float]] = []
    try:
        for name in ("a", "b"):
            spawn(p, clock, log, name)
        await clock.changes.wait_until(lambda: len(log) == 2, what="the burst through")
        spawn(p, clock, log, "intermediate", low=True)
        spawn(p, clock, log, "final")
        await drive(clock, lambda: len(log) == 4, lambda: int(p.waiting > 0), "both edits")
    finally:
        await p.close()
    assert [name for name, _ in log] == ["a", "b", "final", "intermediate"]


async def test_before_the_store_opens_a_process_paces_itself(tmp_path: Path) -> None:
    clock = FakeClock()  # the process's own (monotonic) clock
    p = shared_pacer(Store(tmp_path / "not-open-yet.db"), clock)  # discord.py logs in before setup_hook opens it
    log: list[tuple[str, float]] = []
    try:
        for i in range(4):
            spawn(p, clock, log, f"r{i}")
        await drive(clock, lambda: len(log) == 4, lambda: int(p.waiting > 0), "4 requests")
    finally:
        await p.close()
    assert [round(at, 6) for _, at in log] == [0.0, 0.0, 0.1, 0.2]


async def test_when_the_database_fails_a_process_paces_itself(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    p = shared_pacer(store, clock)
    await store.execute("DROP TABLE rate_buckets")  # every take fails from now on
    log: list[tuple[str, float]] = []
    try:
        for i in range(4):
            spawn(p, clock, log, f"r{i}")
        await drive(clock, lambda: len(log) == 4, lambda: int(p.waiting > 0), "4 requests")
    finally:
        await p.close()
    assert [round(at, 6) for _, at in log] == [0.0, 0.0, 0.1, 0.2]
    warnings = [r.getMessage() for r in caplog.records if "shared budget could not be read" in r.getMessage()]
    assert len(warnings) == 1, "one warning for the outage, not one per request"


@pytest.mark.parametrize("storage", [{"path": "gatecord.db"}, {"url": "postgresql://gatecord@localhost:5432/gatecord"}])
async def test_the_bot_shares_its_budget_through_postgresql_only(storage: dict[str, str], tmp_path: Path) -> None:
    from bot.app.factory import create_bot
    from bot.app.settings import Settings

    if "path" in storage:
        storage = {"path": str(tmp_path / storage["path"])}
    bot = create_bot(Settings(storage=storage))  # nothing connects until start()
    try:
        shared = bot.discord_pacer.buckets
        assert (shared is not None) == ("url" in storage), "SQLite: one process, paced in memory"
        assert shared is None or shared.store is bot.store
        relay_shared = bot.relay.pacer.buckets
        assert (relay_shared is not None) == ("url" in storage)
    finally:  # (AutoShardedBot.close() before start() fails inside discord.py: close what was built)
        await bot.http.close()
        if bot.http.connector is not None:
            await bot.http.connector.close()
