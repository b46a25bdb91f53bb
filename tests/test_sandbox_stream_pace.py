"""The gateway emulator's stream pace: in the sandbox answers arrive token by token at a set rate, while
an emulator built by a test streams as fast as it writes unless the test asks for a pace.

The waits go through the emulator's injectable ``sleep``, recorded here: no wall clock is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.gateways import GatewayEmulator, expected_reply
from sandbox.gateways.answers import demo_reply
from tests.test_gateway_emulators import auth, chat_body, parse_sse, stream_text

pytestmark = pytest.mark.timeout(60)


class RecordingSleep:
    """Stands in for ``asyncio.sleep``: remembers every wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def stream(emu: GatewayEmulator, http: aiohttp.ClientSession, text: str) -> list[dict]:
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, text, stream=True),
                         headers=auth(emu)) as r:
        assert r.status == 200
        events, _, done = parse_sse(await r.text())
    assert done
    return events


def pieces(events: list[dict]) -> list[str]:
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    return [d["content"] for d in deltas if d.get("content")]


async def test_a_paced_emulator_streams_token_sized_pieces_at_the_rate(http: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    async with GatewayEmulator("digicord", stream_tps=40, sleep=sleep) as emu:
        events = await stream(emu, http, "what is 2+2?")
    text = pieces(events)
    assert "".join(text) == stream_text(events) == expected_reply("what is 2+2?")
    assert len(text) >= 20 and all(0 < len(p.strip()) <= 4 for p in text)  # token-sized, not 8 big chunks
    assert sleep.waits == [1 / 40] * len(text)  # one wait per piece, at 40 per second


async def test_an_emulator_built_by_a_test_streams_at_once(http: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    async with GatewayEmulator("digicord", sleep=sleep) as emu:
        events = await stream(emu, http, "what is 2+2?")
        assert len(pieces(events)) == 8 and sleep.waits == []
        emu.queue_reply("exact text, in pieces", chunk_size=5)  # a test's own chunking wins over a pace
        emu.stream_tps = 10
        events = await stream(emu, http, "ignored")
    assert pieces(events) == ["exact", " text", ", in ", "piece", "s"] and sleep.waits == [0.1] * 5


async def test_the_sandbox_answer_is_long_enough_to_be_seen_streaming(http: aiohttp.ClientSession) -> None:
    """Edits come at most once a second: at 40 tokens/s an answer needs well over 2 s of tokens."""
    sleep = RecordingSleep()
    async with GatewayEmulator("digicord", stream_tps=40, sleep=sleep, demo_answers=True) as emu:
        events = await stream(emu, http, "hi")
    assert stream_text(events) == demo_reply("hi", 40)
    assert stream_text(events).startswith(expected_reply("hi"))
    assert sum(sleep.waits) >= 2.5
