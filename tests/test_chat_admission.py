"""bot/chat/admission.py: conversation lock, global slots, bounded queue with an immediate Busy."""

from __future__ import annotations

import asyncio

import pytest

from bot.chat.admission import Admission, Busy, Ticket


async def test_global_limit_and_bounded_queue() -> None:
    gate = Admission(max_concurrency=2, max_queue=1)
    release = asyncio.Event()
    running: list[str] = []
    two_running = asyncio.Event()

    async def job(ticket: Ticket) -> None:
        async with ticket:
            running.append(ticket.key)
            if len(running) == 2:
                two_running.set()
            await release.wait()

    tasks = [asyncio.create_task(job(gate.admit(k))) for k in ("a", "b", "c")]
    await two_running.wait()
    assert running == ["a", "b"] and gate.running == 2 and gate.waiting == 1
    with pytest.raises(Busy) as info:
        gate.admit("d")
    assert "try again" in info.value.user_message()
    release.set()
    await asyncio.gather(*tasks)
    assert running == ["a", "b", "c"]
    assert gate.running == 0 and gate.waiting == 0 and not gate._locks
    gate.admit("e").cancel()
    assert gate.waiting == 0


async def test_same_conversation_runs_one_turn_at_a_time() -> None:
    gate = Admission(max_concurrency=4, max_queue=4)
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def turn(name: str) -> None:
        async with gate.admit("thread:1"):
            order.append(f"{name}-start")
            first_in.set()
            await release.wait()
            order.append(f"{name}-end")

    t1 = asyncio.create_task(turn("one"))
    await first_in.wait()
    t2 = asyncio.create_task(turn("two"))
    other_done = asyncio.Event()

    async def other() -> None:
        async with gate.admit("thread:2"):
            other_done.set()

    t3 = asyncio.create_task(other())
    await asyncio.wait_for(other_done.wait(), 1)  # another conversation is not held up
    assert order == ["one-start"]
    release.set()
    await asyncio.gather(t1, t2, t3)
    assert order == ["one-start", "one-end", "two-start", "two-end"]


async def test_failed_turn_frees_its_place() -> None:
    gate = Admission(max_concurrency=1, max_queue=0)
    with pytest.raises(RuntimeError):
        async with gate.admit("k"):
            raise RuntimeError("gateway exploded")
    async with gate.admit("k"):
        assert gate.running == 1
    assert gate.running == 0 and gate.waiting == 0


async def test_cancelled_waiter_gives_its_place_back() -> None:
    gate = Admission(max_concurrency=1, max_queue=1)
    hold, held = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with gate.admit("a"):
            held.set()
            await hold.wait()

    h = asyncio.create_task(holder())
    await held.wait()

    async def waiter() -> None:
        async with gate.admit("b"):
            pass

    w = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # yield once: the waiter takes its place and blocks on the only slot
    assert gate.waiting == 1 and not w.done()
    w.cancel()
    with pytest.raises(asyncio.CancelledError):
        await w
    assert gate.waiting == 0
    gate.admit("c").cancel()  # the place is free again
    hold.set()
    await h
    assert gate.running == 0
