"""`gatecord run` with a token but no Discord to reach: a line per failed try naming the host and the
error, a bounded number of tries with a doubling wait, then one line and exit 1 — no traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web

from bot.app.discord_reach import DiscordUnreachable, wait_for_discord
from bot.app.settings import Settings
from tests.e2e import serve_app
from tests.pg_server import free_port


async def run_gatecord(cfg: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env["GATECORD_DISCORD__TOKEN"] = "discord-token-xyz"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, "--config", str(cfg),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_run_retries_then_gives_up_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        f'[discord]\napi_base_url = "http://127.0.0.1:{port}/api/v10"\ngateway_url = "ws://127.0.0.1:{port}/"\n'
        "connect_retries = 3\nconnect_backoff_seconds = 0\n"
        f'[storage]\npath = "{tmp_path / "g.db"}"\n'
    )
    code, out, err = await run_gatecord(cfg, "run")
    lines = [line for line in err.splitlines() if line.startswith("gatecord: ")]
    assert code == 1, out + err
    assert "Traceback" not in err and "discord-token-xyz" not in out + err
    assert lines == [
        f"gatecord: cannot reach Discord at 127.0.0.1:{port} (connection refused); trying again in 0 s (try {i} of 4)"
        for i in (1, 2, 3)
    ] + [f"gatecord: cannot reach Discord at 127.0.0.1:{port} (connection refused) after 4 tries; check the network, "
         "or discord.api_base_url if the bot goes through a proxy"]


async def test_waits_double_up_to_a_minute_and_any_answer_is_reachable() -> None:
    port = free_port()
    waits: list[float] = []
    said: list[str] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with pytest.raises(DiscordUnreachable) as info:
        await wait_for_discord(f"http://127.0.0.1:{port}/api/v10", retries=6, backoff=5, say=said.append, sleep=sleep)
    assert waits == [5, 10, 20, 40, 60, 60]
    assert len(said) == 6 and info.value.attempts == 7

    async def unwell(request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/api/v10/gateway", unwell)  # there, if unwell: the login reports the rest
    async with serve_app(app) as url:
        await wait_for_discord(f"{url}/api/v10", retries=0, backoff=1, say=said.append, sleep=sleep)
    assert len(said) == 6


def test_defaults() -> None:
    discord = Settings().discord
    assert (discord.connect_retries, discord.connect_backoff_seconds) == (5, 2.0)
