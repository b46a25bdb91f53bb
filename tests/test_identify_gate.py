"""IDENTIFY turns through the database (bot/app/identify_gate.py): two gates (two processes) on one
database, on an injected clock and sleep; a shard in the same max_concurrency bucket as one that
just identified waits the interval, one in another bucket goes at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.identify_gate import DatabaseIdentifyGate
from bot.app.settings import Settings
from bot.storage.buckets import TokenBuckets
from bot.storage.store import Store
from tests.store_pair import two_stores

T0 = 1_700_000_000.0


class Time:
    """The clock the buckets read, and a sleep that records the wait and moves the clock past it."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gate(store: Store, time: Time, *, max_concurrency: int = 2, interval: float = 5.0) -> DatabaseIdentifyGate:
    return DatabaseIdentifyGate(TokenBuckets(store, clock=time.clock), max_concurrency=max_concurrency,
                                interval=interval, sleep=time.sleep)


async def test_the_same_bucket_waits_the_interval_another_does_not(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    time = Time()
    async with two_stores(backend, tmp_path, request) as (one, two):
        first, second = gate(one, time), gate(two, time)
        await first.wait_turn(0)
        await second.wait_turn(1)
        assert time.slept == [], "shards 0 and 1 are in buckets 0 and 1 (max_concurrency 2): both go at once"
        await second.wait_turn(2)
        assert time.slept == [pytest.approx(5.0, abs=1e-6)], "shard 2 shares bucket 0 with shard 0: 5 s later"
        time.now += 1.0
        await first.wait_turn(4)
        assert time.slept[1:] == [pytest.approx(4.0, abs=1e-6)], "and the next one 5 s after shard 2"
        assert time.now == pytest.approx(T0 + 10.0, abs=1e-6)


async def test_the_interval_is_a_setting(store: Store) -> None:
    assert Settings().discord.identify_interval_seconds == 5.0
    time = Time()
    slow = gate(store, time, max_concurrency=1, interval=Settings(discord={"identify_interval_seconds": 7.5})
                .discord.identify_interval_seconds)
    for shard in range(3):
        await slow.wait_turn(shard)
    assert time.slept == [pytest.approx(7.5, abs=1e-6)] * 2


async def test_without_the_database_a_shard_waits_a_whole_interval(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    time = Time()
    await store.execute("DROP TABLE rate_buckets")  # every take fails
    await gate(store, time).wait_turn(3)
    assert time.slept == [5.0]
    assert any("IDENTIFY turn could not be read" in r.getMessage() for r in caplog.records)
