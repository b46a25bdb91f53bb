"""The relay's limits shared by every process through the database: a key's posts a minute (two
limiters on one database, as two web processes), and the pace of deliveries (two pacers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.relay.ratelimit import KeyRateLimiter, Pacer
from bot.storage.buckets import TokenBuckets
from bot.storage.store import Store
from tests.clock_drive import drive, worst_window
from tests.fake_clock import FakeClock
from tests.store_pair import two_stores

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_key_gets_its_posts_a_minute_in_total_not_per_process(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock = Clock()
    async with two_stores(backend, tmp_path, request) as stores:
        limiters = [KeyRateLimiter(TokenBuckets(store, clock=clock), rate_per_minute=6, burst=6) for store in stores]
        answers = await asyncio.gather(*(limiters[i % 2].acquire("key1") for i in range(30)))
        assert sum(wait == 0.0 for wait in answers) == 6, "6 a minute with a burst of 6: 6 in all"
        assert {KeyRateLimiter.retry_after_header(wait) for wait in answers if wait} == {"10"}, "one every 10 s"
        assert await limiters[0].acquire("key2") == 0.0, "another key, its own budget"
        clock.now += 10
        again = await asyncio.gather(*(limiters[i % 2].acquire("key1") for i in range(10)))
        assert sum(wait == 0.0 for wait in again) == 1

        await limiters[1].forget("key1")  # revoked in one process: its row is gone for all
        assert await stores[0].fetchval("SELECT COUNT(*) FROM rate_buckets WHERE name = 'relay-key:key1'") == 0
        assert await limiters[0].acquire("key1") == 0.0


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [KeyRateLimiter.retry_after_header(s) for s in (0.001, 1.0, 1.2, 59.5)] == ["1", "1", "2", "60"]


async def test_deliveries_of_two_processes_keep_one_pace(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock(start=T0)
    async with two_stores(backend, tmp_path, request) as stores:
        pacers = [Pacer(10.0, buckets=TokenBuckets(store, clock=clock.now), clock=clock.now, sleep=clock.sleep)
                  for store in stores]
        starts: list[tuple[int, float]] = []

        async def deliver(side: int) -> None:
            await pacers[side].wait()
            starts.append((side, clock.now()))
            clock.changes.changed()

        groups = [[asyncio.create_task(deliver(side)) for _ in range(10)] for side in (0, 1)]
        await drive(clock, lambda: len(starts) == 20,
                    lambda: sum(any(not t.done() for t in group) for group in groups), "20 deliveries")
        times = [at for _, at in starts]
        assert worst_window(times, rate=10.0, burst=1) <= 1e-6, "never more than 10 a second between them"
        assert max(times) - T0 == pytest.approx(1.9, abs=1e-4), "and no slower: one every 0.1 s"
        assert {side for side, _ in starts} == {0, 1}


async def test_without_the_database_a_process_spaces_its_own_deliveries(store: Store) -> None:
    clock = FakeClock(start=T0)
    pacer = Pacer(10.0, buckets=TokenBuckets(store, clock=clock.now), clock=clock.now, sleep=clock.sleep)
    await store.execute("DROP TABLE rate_buckets")  # every take fails from now on
    starts: list[float] = []

    async def deliver() -> None:
        await pacer.wait()
        starts.append(clock.now())
        clock.changes.changed()

    tasks = [asyncio.create_task(deliver()) for _ in range(3)]
    await drive(clock, lambda: len(starts) == 3, lambda: int(any(not t.done() for t in tasks)), "3 deliveries")
    assert [round(at - T0, 6) for at in starts] == [0.0, 0.1, 0.2]
