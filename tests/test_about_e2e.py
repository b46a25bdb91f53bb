"""The smallest end-to-end path: the real bot against the Discord emulator, in-process and as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bot.rendering.limits import INTERACTION_ACK_SECONDS

REPO = Path(__file__).resolve().parent.parent


async def test_about_replies_with_version_profile_uptime_and_latency(bot_env: Any) -> None:
    rec = await bot_env.discord.inject_slash_command("about", user="alice")
    message = await rec.wait_final(lambda m: "Gatecord" in (m.content or ""), timeout=10)
    assert f"**Gatecord** {bot_env.bot.version}" in message.content
    assert f"AI gateway: `{bot_env.settings.gateway.profile}`" in message.content
    assert "Uptime: " in message.content
    assert "Discord latency: " in message.content and " ms" in message.content
    assert rec.ack_latency is not None and rec.ack_latency < INTERACTION_ACK_SECONDS
    assert message.allowed_mentions == {"parse": []}


async def test_health_and_ready(bot_env: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bot_env.http}/health") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        async with http.get(f"{bot_env.http}/ready") as resp:
            body = await resp.json()
            assert resp.status == 200, body
            assert body["checks"]["database"]["ok"] and body["checks"]["discord"]["ok"]
    await bot_env.bot.store.close()  # the database going away makes the bot not ready
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bot_env.http}/ready") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["database"]["ok"] is False


async def test_every_cog_command_is_synced(bot_env: Any) -> None:
    names = {cmd["name"] for cmd in bot_env.discord.global_commands()}
    assert "about" in names
    assert names == {cmd.name for cmd in bot_env.bot.tree.get_commands()}


async def test_gatecord_run_as_a_process_connects_and_syncs(discord_emu: Any, gateway_emu: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        f"""
[discord]
api_base_url = "{discord_emu.api_base_url}"
gateway_url = "{discord_emu.gateway_url}"
cdn_base_url = "{discord_emu.cdn_base_url}"
[gateway]
profile = "{gateway_emu.profile}"
base_url = "{gateway_emu.root_url}"
[storage]
path = "{tmp_path / 'proc.db'}"
[http]
port = 0
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env["GATECORD_DISCORD__TOKEN"] = discord_emu.token
    env["GATECORD_GATEWAY__API_KEY"] = gateway_emu.api_key
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(cfg),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await discord_emu.wait_for(lambda: bool(discord_emu.global_commands()), timeout=30)
        names = {c["name"] for c in discord_emu.global_commands()}
        assert "about" in names
        rec = await discord_emu.inject_slash_command("about", user="bob")
        message = await rec.wait_final(lambda m: "Gatecord" in (m.content or ""), timeout=10)
        assert gateway_emu.profile in message.content
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    logs = (out + err).decode()
    assert discord_emu.token not in logs and gateway_emu.api_key not in logs
