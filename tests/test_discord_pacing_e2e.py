"""Discord's global limit under a burst of answers: the real bot against an emulator that enforces it.

Discord allows 50 requests per second per bot (and, per channel, 5 message creates and 5 edits per
5 s); each 429 counts toward the invalid-request ban. Without a process-wide pacer, 40 mentions
answered at once send their replies, intermediate edits and final edits in the same second or two.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sandbox.discord_emulator.limits import GLOBAL_RATE_LIMIT
from tests.e2e import wait_reply

N = 40


@pytest.mark.bot_settings(chat={"max_concurrency": N, "max_queue": N})
async def test_a_burst_of_mentions_draws_no_429_and_every_answer_ends_final(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    assert GLOBAL_RATE_LIMIT == (50, 1.0)
    emu.set_rate_limits(enabled=True, scale=1.0)
    # One channel per answer: the per-channel buckets stay clear, only the global limit is at stake.
    channels = [await emu.add_channel(f"burst-{i}") for i in range(N)]
    gw.stream_chunk_count = 30
    gw.chunk_delay = 0.05  # about 1.5 s of streaming per answer: first text, intermediate edits, final edit
    users = ["alice", "bob", "admin"]
    msgs = await asyncio.gather(*[
        emu.send_user_message(f"burst question {i}", user=users[i % 3], channel_id=channels[i], mention_bot=True)
        for i in range(N)
    ])
    replies = await asyncio.gather(*[wait_reply(emu, m, timeout=60) for m in msgs])

    assert [hit.path for hit in emu.rate_limited] == []
    for reply in replies:
        assert " tokens" in reply.content.rsplit("\n", 1)[-1]  # the final edit (with its footer) arrived
