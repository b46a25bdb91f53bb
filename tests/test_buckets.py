"""Token buckets in the database (bot/storage/buckets.py) on both backends, on an injected clock:
what a take answers (granted, or the seconds to wait), refill, the burst cap, and exactness when
many takers from two stores (two processes) ask at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.storage.buckets import TokenBuckets
from bot.storage.store import Store
from tests.store_pair import two_stores

T0 = 1_700_000_000.0  # a wall-clock time: the magnitude the processes really pass


def about(seconds: float) -> object:
    """A wait, to the microsecond (a refused take adds one clock tick of margin: 2.4e-7 s at T0)."""
    return pytest.approx(seconds, abs=1e-6)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def takes(buckets: TokenBuckets, n: int, name: str = "k", rate: float = 2.0, burst: float = 3,
                cost: float = 1) -> list[float]:
    return [await buckets.take(name, rate, burst, cost) for _ in range(n)]


async def test_a_new_bucket_grants_its_burst_then_says_how_long_to_wait(store: Store) -> None:
    buckets = TokenBuckets(store, clock=Clock())
    assert await takes(buckets, 3) == [0.0, 0.0, 0.0]
    assert await takes(buckets, 2) == [about(0.5), about(0.5)], \
        "2 tokens a second: the next one in 0.5 s, and a refused take took nothing"


async def test_tokens_come_back_with_the_time_elapsed(store: Store) -> None:
    clock = Clock()
    buckets = TokenBuckets(store, clock=clock)
    await takes(buckets, 3)
    clock.now += 0.25
    assert await takes(buckets, 1) == [about(0.25)], "half a token back: a quarter second to go"
    clock.now += 0.25
    assert await takes(buckets, 2) == [0.0, about(0.5)]
    clock.now += 1.0
    assert await takes(buckets, 3) == [0.0, 0.0, about(0.5)]


async def test_a_long_idle_bucket_holds_no_more_than_its_burst(store: Store) -> None:
    clock = Clock()
    buckets = TokenBuckets(store, clock=clock)
    await takes(buckets, 3)
    clock.now += 3600
    assert await takes(buckets, 4) == [0.0, 0.0, 0.0, about(0.5)]


async def test_a_take_of_several_tokens_is_all_or_nothing(store: Store) -> None:
    clock = Clock()
    buckets = TokenBuckets(store, clock=clock)
    await takes(buckets, 2)
    assert await takes(buckets, 1, cost=2) == [about(0.5)], "one token there, two wanted: 0.5 s for the other"
    assert await takes(buckets, 1) == [0.0], "the refused take of two left the one token"
    assert await takes(buckets, 1, cost=3) == [about(1.5)]


async def test_refusals_take_nothing_however_many(store: Store) -> None:
    clock = Clock()
    buckets = TokenBuckets(store, clock=clock)
    await takes(buckets, 3, rate=40.0, burst=3)
    refused = await takes(buckets, 300, rate=40.0, burst=3)
    assert all(wait == about(0.025) for wait in refused)
    clock.now += 0.025
    assert await takes(buckets, 2, rate=40.0, burst=3) == [0.0, about(0.025)]


async def test_waiting_the_answered_time_is_always_enough(store: Store) -> None:
    """The pacers sleep exactly the wait a refused take answers, then take again: that take must be
    granted, whatever the float rounding of a wall-clock time plus a fraction of a second."""
    clock = Clock()
    buckets = TokenBuckets(store, clock=clock)
    for rate in (3.0, 7.0, 40.0, 45.5):
        name = f"rate-{rate}"
        await takes(buckets, 1, name=name, rate=rate, burst=1)
        for _ in range(50):
            wait = (await takes(buckets, 1, name=name, rate=rate, burst=1))[0]
            assert wait > 0
            clock.now += wait
            assert await takes(buckets, 1, name=name, rate=rate, burst=1) == [0.0], f"at {rate}/s, {clock.now}"


async def test_buckets_are_apart_and_forget_refills_one(store: Store) -> None:
    buckets = TokenBuckets(store, clock=Clock())
    await takes(buckets, 3, name="a")
    assert await takes(buckets, 1, name="b") == [0.0], "another name, another bucket"
    await buckets.forget("a")
    assert await store.fetchval("SELECT COUNT(*) FROM rate_buckets WHERE name = 'a'") == 0
    assert await takes(buckets, 3, name="a") == [0.0, 0.0, 0.0], "a forgotten bucket starts full again"


async def test_a_clock_running_behind_sees_fewer_tokens_never_more(store: Store) -> None:
    ahead, behind = Clock(), Clock(T0 - 10)
    await takes(TokenBuckets(store, clock=ahead), 3)
    late = TokenBuckets(store, clock=behind)
    assert await takes(late, 1) == [about(10.5)], "its clock must catch up with the last take, then refill"
    ahead.now += 0.5
    assert await takes(TokenBuckets(store, clock=ahead), 2) == [0.0, about(0.5)]


async def test_a_take_that_can_never_be_granted_is_refused_at_once(store: Store) -> None:
    buckets = TokenBuckets(store, clock=Clock())
    for rate, burst, cost in ((2.0, 3, 4), (0.0, 3, 1), (2.0, 3, 0)):
        with pytest.raises(ValueError, match="rate > 0 and 0 < cost <= burst"):
            await buckets.take("k", rate, burst, cost)
    assert await store.fetchval("SELECT COUNT(*) FROM rate_buckets") == 0


async def test_many_takers_from_two_processes_get_exactly_the_burst(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    frozen = Clock()
    async with two_stores(backend, tmp_path, request) as (one, two):
        sides = (TokenBuckets(one, clock=frozen), TokenBuckets(two, clock=frozen))
        answers = await asyncio.gather(*(sides[i % 2].take("shared", 40.0, 50) for i in range(400)))
        granted = [i for i, wait in enumerate(answers) if wait == 0.0]
        assert len(granted) == 50, f"{len(granted)} granted at a frozen clock, with a burst of 50"
        if backend == "postgresql":  # (SQLite's one writer may well serve one store's queue first)
            assert {i % 2 for i in granted} == {0, 1}, "both processes took some"
        assert all(wait == about(0.025) for wait in answers if wait)
        frozen.now += 1.0
        again = await asyncio.gather(*(sides[i % 2].take("shared", 40.0, 50) for i in range(100)))
        assert sum(wait == 0.0 for wait in again) == 40, "one second later: 40 more, at 40 a second"
