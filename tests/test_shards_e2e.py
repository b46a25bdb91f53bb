"""Shards end to end: the real bot as an AutoShardedBot against the Discord emulator, which routes each
guild to shard ``(guild_id >> 22) % shard_count`` as Discord does (guild 1 is on shard 0 of 2, guild 2
on shard 1 of 2). Several processes sharing a database come with the storage work."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app.factory import GatecordBot, create_bot
from bot.app.settings import Settings
from sandbox.discord_emulator import DiscordEmulator, shard_of
from sandbox.gateways import GatewayEmulator, expected_reply
from tests.e2e import BOT_READY_TIMEOUT, final, settings_for, stop_bot

FOOTER = re.compile(r"\n-# [^\n]*$")


def answer_text(content: str) -> str:
    return FOOTER.sub("", content)


async def chat_in(emu: DiscordEmulator, guild_id: int, prompt: str) -> Any:
    """A /chat by alice in the guild's default channel, once its answer is final."""
    rec = await emu.inject_slash_command("chat", {"prompt": prompt}, user="alice", guild_id=guild_id)
    await rec.wait_final(final, timeout=15)
    return rec


async def ready(base_url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/ready") as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body


def identified_shards(emu: DiscordEmulator) -> list[tuple[int, int]]:
    return [(r.shard_id, r.shard_count) for r in emu.gateway.identifies]


@pytest.mark.bot_settings(discord={"shard_count": 2, "shard_ids": [0, 1]})
async def test_one_process_holding_both_shards_answers_a_chat_in_each_guild(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    assert shard_of(emu.guild_id, 2) == 0 and shard_of(emu.guild2_id, 2) == 1
    assert identified_shards(emu) == [(0, 2), (1, 2)]
    assert {g.id: g.shard_id for g in bot.guilds} == {emu.guild_id: 0, emu.guild2_id: 1}

    first = await chat_in(emu, emu.guild_id, "hello shard zero")
    second = await chat_in(emu, emu.guild2_id, "hello shard one")
    assert answer_text(first.original.content) == expected_reply("hello shard zero")
    assert first.original.channel_id == emu.channel_id
    assert answer_text(second.original.content) == expected_reply("hello shard one")
    assert second.original.channel_id == emu.other_guild_channel_id

    status, body = await ready(bot_env.http)
    assert status == 200 and body["ready"] is True
    assert body["checks"]["discord"]["ok"] is True
    assert body["checks"]["discord"]["detail"].startswith("shards 0,1 of 2 connected")


@pytest.mark.bot_settings(discord={"shard_count": 2, "shard_ids": [1]})
async def test_a_process_holding_shard_1_of_2_gets_only_the_guild_on_shard_1(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    assert identified_shards(emu) == [(1, 2)]
    assert [g.id for g in bot.guilds] == [emu.guild2_id]
    assert bot.get_guild(emu.guild_id) is None and bot.get_channel(emu.channel_id) is None

    # A /chat in guild 1 goes to shard 0, which no session holds: Discord would deliver it to nobody here.
    elsewhere = await emu.inject_slash_command("chat", {"prompt": "not for me"}, user="alice", guild_id=emu.guild_id)
    rec = await chat_in(emu, emu.guild2_id, "hello shard one")
    assert answer_text(rec.original.content) == expected_reply("hello shard one")
    delivered = {p["d"].get("id") for s in emu.gateway.sessions.values() for p in s.buffer}
    assert str(rec.id) in delivered and str(elsewhere.id) not in delivered
    assert elsewhere.response_type is None

    status, body = await ready(bot_env.http)
    assert status == 200
    assert body["checks"]["discord"]["detail"].startswith("shard 1 of 2 connected")


async def test_without_shard_settings_one_process_holds_the_one_shard_as_before(bot_env: Any) -> None:
    emu = bot_env.discord
    assert identified_shards(emu) == [(0, 1)]
    assert {g.id for g in bot_env.bot.guilds} == {emu.guild_id, emu.guild2_id}
    status, body = await ready(bot_env.http)
    assert status == 200 and body["checks"]["discord"]["detail"].startswith("shard 0 of 1 connected")


class HeldGate:
    """An identify gate that lets the shards in ``open_for`` through and holds the others until released."""

    def __init__(self, open_for: set[int]) -> None:
        self.open_for = open_for
        self.asked: list[int] = []
        self.released = asyncio.Event()
        self.waiting = asyncio.Event()

    async def wait_turn(self, shard_id: int) -> None:
        self.asked.append(shard_id)
        if shard_id not in self.open_for:
            self.waiting.set()
            await self.released.wait()


@contextlib.asynccontextmanager
async def started(settings: Settings, gate: HeldGate) -> AsyncIterator[tuple[GatecordBot, asyncio.Task[None]]]:
    """The real bot with ``gate`` deciding its IDENTIFYs; stopped after the block."""
    bot = create_bot(settings)
    bot.identify_gate = gate
    task = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()))
    try:
        yield bot, task
    finally:
        gate.released.set()  # a shard still waiting for its turn would hold up the close
        await stop_bot(bot, task)


async def wait_ready(bot: GatecordBot, task: asyncio.Task[None]) -> None:
    waiter = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({waiter, task}, timeout=BOT_READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        raise AssertionError(f"the bot was not ready: {task.exception() if task.done() else 'timed out'}")


async def test_ready_names_the_shard_not_yet_connected_and_the_identify_gate_decides_when_it_may(
    make_settings: Any,
) -> None:
    settings = make_settings(discord={"shard_count": 2, "shard_ids": [0, 1]})
    gate = HeldGate(open_for={0})
    async with started(settings, gate) as (bot, task):
        await asyncio.wait_for(gate.waiting.wait(), BOT_READY_TIMEOUT)  # shard 0 is up, shard 1 waits its turn
        status, body = await ready(bot.web.base_url)
        assert status == 503 and body["ready"] is False
        assert body["checks"]["discord"]["ok"] is False
        assert re.fullmatch(r"shard 0 of 2 connected(, latency \d+ ms)?; shard 1 of 2 not connected",
                            body["checks"]["discord"]["detail"])

        gate.released.set()
        await wait_ready(bot, task)
        status, body = await ready(bot.web.base_url)
        assert status == 200 and body["checks"]["discord"]["detail"].startswith("shards 0,1 of 2 connected")
        assert gate.asked == [0, 1]


async def test_without_shard_count_the_process_runs_discords_recommended_count(
    gateway_emu: GatewayEmulator, tmp_path: Path,
) -> None:
    async with DiscordEmulator(shards=2) as emu:
        gate = HeldGate(open_for={0, 1})
        async with started(settings_for(emu, gateway_emu, tmp_path / "g.db"), gate) as (bot, task):
            await wait_ready(bot, task)
            assert emu.requests_to("/gateway/bot", "GET")
            assert identified_shards(emu) == [(0, 2), (1, 2)] and gate.asked == [0, 1]
            assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
            rec = await chat_in(emu, emu.guild2_id, "recommended")
            assert answer_text(rec.original.content) == expected_reply("recommended")
            status, body = await ready(bot.web.base_url)
            assert status == 200 and body["checks"]["discord"]["detail"].startswith("shards 0,1 of 2 connected")


def run_config(path: Path, emu: DiscordEmulator, gateway: GatewayEmulator, *, shard_count: int) -> Path:
    path.write_text(
        f'[discord]\ntoken = "{emu.token}"\napi_base_url = "{emu.api_base_url}"\n'
        f'gateway_url = "{emu.gateway_url}"\ncdn_base_url = "{emu.cdn_base_url}"\nshard_count = {shard_count}\n'
        f'[gateway]\nprofile = "{gateway.profile}"\nbase_url = "{gateway.root_url}"\napi_key = "{gateway.api_key}"\n'
        f'[storage]\npath = "{path.parent / "gatecord.db"}"\n[http]\nhost = "127.0.0.1"\nport = 0\n',
        encoding="utf-8",
    )
    return path


async def test_gatecord_run_with_fewer_shards_than_discord_requires_says_so_in_one_line_and_exits_2(
    discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator, tmp_path: Path,
) -> None:
    discord_emu.gateway.guilds_per_shard_limit = 1  # two guilds on one shard: Discord closes it with 4011
    config = run_config(tmp_path / "config.toml", discord_emu, gateway_emu, shard_count=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    stderr = err.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (
        "gatecord: Discord requires more shards for this bot's servers (gateway close code 4011, sharding "
        "required): raise discord.shard_count (GATECORD_DISCORD__SHARD_COUNT), or leave it unset for Discord's "
        "recommended count"
    )
    assert discord_emu.token not in stderr + out.decode()
