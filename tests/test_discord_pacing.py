"""The process-wide Discord pacer on a fake clock: budget, priority, withdrawal, exemptions, and the
aiohttp trace hook that makes discord.py's session wait for its token before sending."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web

from bot.app.discord_pacing import DiscordPacer, Withdrawn, interaction_exempt
from tests.e2e import serve_app
from tests.fake_clock import FakeClock

APP_ID = 1111


def pacer(clock: FakeClock, **options: Any) -> DiscordPacer:
    options.setdefault("rate", 10.0)
    options.setdefault("burst", 2)
    return DiscordPacer(clock=clock, **options)


async def started(clock: FakeClock, log: list[str], n: int) -> None:
    """Until ``n`` requests have their token (``spawn`` logs each and pokes the clock's changes)."""
    await clock.changes.wait_until(lambda: len(log) >= n, what=f"{n} requests through")


def spawn(p: DiscordPacer, clock: FakeClock, log: list[str], name: str, *, low: bool = False) -> asyncio.Task[None]:
    async def go() -> None:
        if low:
            with p.deferrable():
                await p.acquire()
        else:
            await p.acquire()
        log.append(name)
        clock.changes.changed()

    task = asyncio.get_running_loop().create_task(go())
    _alive.add(task)
    task.add_done_callback(_alive.discard)
    return task


_alive: set[asyncio.Task[None]] = set()  # spawned requests stay referenced until done


async def test_a_burst_passes_then_requests_start_at_the_rate() -> None:
    clock = FakeClock()
    p = pacer(clock)
    log: list[str] = []
    for i in range(5):
        spawn(p, clock, log, f"r{i}")
    await started(clock, log, 2)
    await clock.changes.wait_until(lambda: clock.deadlines, what="the pacer asleep")
    assert log == ["r0", "r1"] and p.waiting == 3
    for expected in (3, 4, 5):
        clock.advance(0.1)
        await started(clock, log, expected)
    assert log == ["r0", "r1", "r2", "r3", "r4"], "first come, first served within one priority"
    assert clock.now() == pytest.approx(0.3)


async def test_first_messages_and_final_edits_go_before_intermediate_edits() -> None:
    clock = FakeClock()
    p = pacer(clock, burst=1)
    log: list[str] = []
    spawn(p, clock, log, "first")
    await started(clock, log, 1)
    spawn(p, clock, log, "intermediate", low=True)
    spawn(p, clock, log, "final")
    await clock.changes.wait_until(lambda: p.waiting == 2 and clock.deadlines, what="both queued")
    clock.advance(0.1)
    await started(clock, log, 2)
    assert log == ["first", "final"]
    clock.advance(0.1)
    await started(clock, log, 3)
    assert log == ["first", "final", "intermediate"]


async def test_a_withdrawn_request_gives_its_turn_to_the_next() -> None:
    clock = FakeClock()
    p = pacer(clock, burst=1)
    log: list[str] = []
    await p.acquire()  # the bucket is empty now

    async def intermediate() -> None:
        with p.deferrable() as deferral:
            waiting.set_result(deferral)
            await p.acquire()
        log.append("intermediate")

    waiting: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.get_running_loop().create_task(intermediate())
    deferral = await waiting
    await clock.changes.wait_until(lambda: p.waiting == 1, what="the edit queued")
    deferral.withdraw()
    with pytest.raises(Withdrawn):
        await task
    spawn(p, clock, log, "final")
    clock.advance(0.1)
    await started(clock, log, 1)
    assert log == ["final"] and p.stats.withdrawn == 1


async def test_congested_when_a_new_request_would_wait_too_long() -> None:
    clock = FakeClock()
    p = pacer(clock, burst=1, congestion_wait=0.25)
    assert not p.congested()
    await p.acquire()
    assert not p.congested(), "one request's wait (0.1 s) is fine"
    log: list[str] = []
    for i in range(3):
        spawn(p, clock, log, f"r{i}")
    await clock.changes.wait_until(lambda: p.waiting == 3, what="three queued")
    assert p.congested(), "a fourth would wait 0.4 s"
    for n in (1, 2):
        clock.advance(0.1)
        await started(clock, log, n)
    assert not p.congested(), "one left in the line: a new request would wait 0.2 s"


def test_only_interaction_endpoints_are_exempt() -> None:
    exempt = interaction_exempt(lambda: APP_ID)
    base = "https://discord.com/api/v10"

    def check(method: str, path: str) -> bool:
        return exempt(method, yarl.URL(base + path))

    assert check("POST", "/interactions/42/aW50ZXJhY3Rpb246/callback")
    assert check("PATCH", f"/webhooks/{APP_ID}/aW50ZXJhY3Rpb246/messages/@original")
    assert check("POST", f"/webhooks/{APP_ID}/aW50ZXJhY3Rpb246")
    assert not check("POST", "/webhooks/2222/relay-webhook-token"), "a channel webhook (the relay's) is paced"
    assert not check("POST", "/channels/3/messages")
    assert not check("PATCH", "/channels/3/messages/4")
    assert not interaction_exempt(lambda: None)("POST", yarl.URL(f"{base}/webhooks/{APP_ID}/t")), \
        "before login the application is unknown: paced"


async def test_the_trace_hook_holds_a_request_back_until_its_token() -> None:
    clock = FakeClock()
    p = pacer(clock, burst=1, exempt=interaction_exempt(lambda: APP_ID))
    received: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(request.path)
        clock.changes.changed()
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve_app(app) as base, aiohttp.ClientSession(trace_configs=[p.trace_config()]) as session:
        async def send(method: str, path: str) -> None:
            async with session.request(method, base + path) as resp:
                await resp.read()

        await send("POST", "/channels/1/messages")
        held = asyncio.get_running_loop().create_task(send("PATCH", "/channels/1/messages/9"))
        await clock.changes.wait_until(lambda: clock.deadlines, what="the edit waiting for its token")
        await send("POST", "/interactions/5/tok/callback")  # exempt: goes past the queue at once
        assert received == ["/channels/1/messages", "/interactions/5/tok/callback"]
        clock.advance(0.1)
        await held
        assert received[-1] == "/channels/1/messages/9"
    assert p.stats.exempt == 1 and p.stats.paced == 2


def test_relay_posts_share_the_one_budget_unless_given_a_lower_rate() -> None:
    from bot.relay.ratelimit import Pacer

    default = Pacer(45.0)
    default.share_client_budget(40.0)
    assert default.shared, "the relay's default rate is above the bot's budget: posts wait there only"
    lower = Pacer(10.0)
    lower.share_client_budget(40.0)
    assert not lower.shared, "an operator's lower relay rate still caps the relay"
