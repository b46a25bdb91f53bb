"""The IDENTIFY gate wired in: on PostgreSQL every shard of every process takes its IDENTIFY turn from
the database, per ``max_concurrency`` bucket as Discord announces it (``GET /gateway/bot``); on SQLite
(one process) discord.py paces its own IDENTIFYs as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.app.identify_gate import DatabaseIdentifyGate
from sandbox.discord_emulator import DiscordEmulator
from tests.e2e import settings_for, start_bot


async def identify_buckets(bot: Any) -> set[str]:
    rows = await bot.store.fetchall("SELECT name FROM rate_buckets WHERE name LIKE 'identify:%'")
    return {r["name"] for r in rows}


async def test_with_shard_settings_the_turns_follow_discords_max_concurrency(
    gateway_emu: Any, tmp_path: Path, pg_url: str,
) -> None:
    async with DiscordEmulator(max_concurrency=2) as emu:
        settings = settings_for(emu, gateway_emu, tmp_path / "unused.db", storage={"url": pg_url},
                                discord={"shard_count": 2, "shard_ids": [0, 1]})
        running = await start_bot(settings)
        try:
            bot = running.bot
            assert isinstance(bot.identify_gate, DatabaseIdentifyGate) and bot.identify_gate.max_concurrency == 2
            assert [(r.shard_id, r.bucket) for r in emu.gateway.identifies] == [(0, 0), (1, 1)]
            assert await identify_buckets(bot) == {"identify:0", "identify:1"}  # one bucket each, in the database
            assert emu.requests_to("/gateway/bot", "GET")  # the session start limits, asked of Discord
        finally:
            await running.stop()


async def test_with_discords_recommended_count_the_same_answer_gives_the_buckets(
    gateway_emu: Any, tmp_path: Path, pg_url: str,
) -> None:
    async with DiscordEmulator(shards=2, max_concurrency=1) as emu:
        settings = settings_for(emu, gateway_emu, tmp_path / "unused.db", storage={"url": pg_url},
                                discord={"identify_interval_seconds": 0.1})
        running = await start_bot(settings)
        try:
            bot = running.bot
            assert isinstance(bot.identify_gate, DatabaseIdentifyGate) and bot.identify_gate.max_concurrency == 1
            assert [(r.shard_id, r.bucket) for r in emu.gateway.identifies] == [(0, 0), (1, 0)]
            assert await identify_buckets(bot) == {"identify:0"}  # both shards took turns from one bucket
        finally:
            await running.stop()


async def test_on_sqlite_discord_py_paces_its_own_identifies(bot_env: Any) -> None:
    assert bot_env.bot.identify_gate is None
    assert [r.shard_id for r in bot_env.discord.gateway.identifies] == [0]
