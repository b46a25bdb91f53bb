"""A burst of mention answers against Discord's rate limits: the real bot against the emulators.

    python bench/chat_burst.py [--n 50] [--chunks 20] [--chunk-delay 0.1] [--profile openai] [--no-pin]

``--n`` members mention the bot at the same moment, each in a channel of their own; the bot
(``max_concurrency`` raised to ``--n``) answers all of them at once, as its own process
(``python -m bot run``, set up as in bench/chat_load.py). The Discord emulator enforces Discord's
limits: 50 requests per second in all (interaction endpoints exempt) and, per channel, 5 message
creates and 5 edits per 5 s. Each answer streams ``--chunks`` chunks ``--chunk-delay`` s apart.

Prints, from the emulators' own timestamps only:

* how many 429s the bot drew (target 0: on Discord each one counts toward the invalid-request ban)
  and the most requests that reached Discord in any one second (global limit 50);
* first gateway chunk → the reply visible in Discord (first text), p50/p99;
* last text chunk → final edit, p50/p99 (includes the emulator's 3 × chunk-delay of
  finish/usage/[DONE] pacing), and [DONE] → final edit;
* intermediate edits per answer (the ones with the "still writing" marker; fewer under load).

Figures only, no assertions (tests/test_discord_pacing_e2e.py is the test).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_load import (  # noqa: E402
    instrument_gateway,
    ms,
    pct,
    pin_processes,
    start_bot_process,
    stop_bot_process,
)
from bot.rendering.stream import WRITING_MARKER  # noqa: E402

PROMPT = "burst question #{i}."
EXEMPT = ("/interactions/", "/webhooks/")  # as the emulator (and Discord) count the global limit


def busiest_second(times: list[float]) -> int:
    """The most of ``times`` in any window of one second."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


async def run(n: int, chunks: int, chunk_delay: float, profile: str, pin: bool) -> int:
    from sandbox.discord_emulator import DiscordEmulator
    from sandbox.discord_emulator.limits import GLOBAL_RATE_LIMIT
    from sandbox.gateways import GatewayEmulator

    marks: dict[str, dict[str, float]] = {}
    instrument_gateway(marks)
    discord_emu = DiscordEmulator()
    await discord_emu.start()
    discord_emu.set_rate_limits(enabled=True, scale=1.0)
    gateway_emu = GatewayEmulator(profile)
    await gateway_emu.start()
    gateway_emu.stream_chunk_count = chunks
    gateway_emu.chunk_delay = chunk_delay
    tmp = tempfile.TemporaryDirectory(prefix="gatecord-burst-")
    proc = None
    pinning = "not pinned"
    try:
        proc = await start_bot_process(discord_emu, gateway_emu, Path(tmp.name), n)
        if pin:
            pinning = pin_processes(proc.pid)
        channels = [await discord_emu.add_channel(f"burst-{i}") for i in range(n)]
        warm = await discord_emu.send_user_message("warm-up", user="alice", mention_bot=True)
        await discord_emu.wait_for(lambda: reply_to(discord_emu, warm) is not None, timeout=60)
        await asyncio.sleep(1.1)  # let the warm-up's second pass out of the global window
        first_request = len(discord_emu.requests)
        limited_before = len(discord_emu.rate_limited)
        users = ["alice", "bob", "admin"]
        started = time.monotonic()
        sent = await asyncio.gather(*[
            discord_emu.send_user_message(PROMPT.format(i=i), user=users[i % 3], channel_id=channels[i],
                                          mention_bot=True)
            for i in range(n)
        ])
        replies = await asyncio.gather(*[
            discord_emu.wait_for(lambda m=m: reply_to(discord_emu, m), timeout=120 + n * chunk_delay) for m in sent
        ])
        wall = time.monotonic() - started
        requests = discord_emu.requests[first_request:]
        limited = discord_emu.rate_limited[limited_before:]
    finally:
        await stop_bot_process(proc)
        await gateway_emu.close()
        await discord_emu.close()
        tmp.cleanup()

    first_text: list[float] = []
    from_last_text: list[float] = []
    from_done: list[float] = []
    intermediate: list[int] = []
    for i, reply in enumerate(replies):
        mark = next((v for k, v in marks.items() if PROMPT.format(i=i) in k), {})
        messages = [reply]  # answers here fit in one message
        if "first_chunk" in mark:
            first_text.append(reply.created_at - mark["first_chunk"])
        final_at = max(m.edits[-1].at for m in messages)
        if "last_text_chunk" in mark:
            from_last_text.append(final_at - mark["last_text_chunk"])
        if "last_event" in mark:
            from_done.append(final_at - mark["last_event"])
        intermediate.append(sum(1 for e in reply.edits[1:] if WRITING_MARKER in e.content))
    counted = [r.at for r in requests if not r.path.startswith(tuple("/api/v10" + p for p in EXEMPT))
               and not any(p in r.path for p in EXEMPT)]
    glimit, gper = GLOBAL_RATE_LIMIT

    print(f"chat burst: {n} mentions at once, one channel each, {chunks} chunks × {chunk_delay * 1000:.0f} ms, "
          f"profile {profile}, bot as its own process ({pinning}); emulator enforcing {glimit}/{gper:g}s global "
          f"and 5 edits / 5 s per channel; all answers final after {wall:.2f} s")
    print(f"  429 answers from the Discord emulator: {len(limited)}   (target 0)")
    print(f"  most requests to Discord in one second: {busiest_second(counted)}   (global limit {glimit})")
    print(f"  first chunk → first text    p50 {ms(pct(first_text, 50))}   p99 {ms(pct(first_text, 99))}")
    print(f"  last text chunk → final     p50 {ms(pct(from_last_text, 50))}   p99 {ms(pct(from_last_text, 99))}"
          f"   (includes the emulator's {3 * chunk_delay * 1000:.0f} ms of finish/usage/[DONE] pacing)")
    print(f"  [DONE] → final edit         p50 {ms(pct(from_done, 50))}   p99 {ms(pct(from_done, 99))}")
    print(f"  intermediate edits / answer mean {statistics.mean(intermediate):.2f}   min {min(intermediate)}   "
          f"max {max(intermediate)}")
    return 0


def reply_to(emu: Any, user_msg: Any) -> Any:
    """The bot's finished reply to ``user_msg`` (its final edit carries the token footer)."""
    for m in emu.channel_messages(user_msg.channel_id):
        ref = m.message_reference or {}
        if (m.author_id == emu.bot_user_id and str(ref.get("message_id")) == str(user_msg.id)
                and m.content and WRITING_MARKER not in m.content and " tokens" in m.content):
            return m
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="mentions answered at once")
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per streamed answer")
    parser.add_argument("--chunk-delay", type=float, default=0.1, help="seconds between chunks")
    parser.add_argument("--profile", default="openai", help="gateway emulator profile")
    parser.add_argument("--no-pin", action="store_true", help="don't pin the bot and the emulators to separate CPUs")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(asyncio.run(run(args.n, args.chunks, args.chunk_delay, args.profile, pin=not args.no_pin)))


if __name__ == "__main__":
    main()
