"""End-to-end harness: the real bot (``create_bot``) against the Discord and gateway emulators.

A test is a few lines::

    async def test_about(bot_env):
        rec = await bot_env.discord.inject_slash_command("about")
        msg = await rec.wait_final(lambda m: "Gatecord" in m.content)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.app.factory import GatecordBot, create_bot
from bot.rendering.stream import WRITING_MARKER
from bot.app.settings import Settings
from sandbox.discord_emulator import DiscordEmulator
from sandbox.gateways import GatewayEmulator

BOT_READY_TIMEOUT = 20.0


def final(message: Any) -> bool:
    """A bot message that has finished streaming (text shown, no "still writing" marker)."""
    return bool(message.content) and WRITING_MARKER not in message.content


def shown(rec: Any) -> Any:
    """What the member sees for a deferred command once it is finished: its answer (the original
    response), or the private followup a refusal sent after deleting the "thinking…" message; None yet."""
    if rec.original is not None and not rec.original.deleted:
        return rec.original if final(rec.original) else None
    return next((m for m in rec.followups if final(m)), None)


async def wait_shown(rec: Any, timeout: float = 10.0) -> Any:
    """``shown(rec)``, waited for."""
    await rec.wait_final(lambda r: shown(r) is not None, timeout)
    return shown(rec)


async def wait_reply(emu: DiscordEmulator, user_msg: Any, timeout: float = 10.0) -> Any:
    """The bot's finished reply to ``user_msg`` (a message that references it)."""

    def find() -> Any:
        for m in emu.messages.values():
            ref = m.message_reference or {}
            if (m.author_id == emu.bot_user_id and str(ref.get("message_id")) == str(user_msg.id)
                    and final(m) and not m.deleted):
                return m
        return None

    return await emu.wait_for(find, timeout)


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port for the block; yields its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def settings_for(
    discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator | None, db_path: Path, **overrides: Any
) -> Settings:
    """Settings pointing the bot at the emulators; ``overrides`` are nested dicts per section."""
    data: dict[str, Any] = {
        "discord": {
            "token": discord_emu.token,
            "api_base_url": discord_emu.api_base_url,
            "gateway_url": discord_emu.gateway_url,
            "cdn_base_url": discord_emu.cdn_base_url,
            "cdn_hosts": ["127.0.0.1"],
            "guild_ready_timeout": 0.2,  # the emulator sends every GUILD_CREATE at once
        },
        "storage": {"path": str(db_path)},
        "http": {"host": "127.0.0.1", "port": 0},
        # a server's own gateway in the tests is another emulator on 127.0.0.1
        "guild_gateways": {"allow_private_addresses": True},
    }
    if gateway_emu is not None:
        data["gateway"] = {
            "profile": gateway_emu.profile,
            "base_url": gateway_emu.root_url,
            "api_key": gateway_emu.api_key,
            "chat_model": gateway_emu.default_chat_model,
            "vision_model": gateway_emu.default_vision_model,
            "image_model": gateway_emu.default_image_model,
            "max_retries": 0,
        }
    return Settings(**deep_merge(data, overrides))


@dataclass
class RunningBot:
    bot: GatecordBot
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await stop_bot(self.bot, self.task)


async def start_bot(settings: Settings, *, timeout: float = BOT_READY_TIMEOUT) -> RunningBot:
    """Start the real bot and wait until it is READY with its commands synced."""
    bot = create_bot(settings)
    task = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()), name="gatecord-bot")

    waiter = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if task in done:
            task.result()  # raises the start-up error
        await stop_bot(bot, task)
        raise TimeoutError(f"bot not ready within {timeout} s")
    if not bot.commands_synced:  # synced in setup_hook, which discord.py runs before it connects
        await stop_bot(bot, task)
        raise RuntimeError("the bot was READY before its application commands were synced")
    return RunningBot(bot, task)


async def stop_bot(bot: GatecordBot, task: asyncio.Task[None] | None = None) -> None:
    await bot.close()
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)


@dataclass
class BotEnv:
    discord: DiscordEmulator
    gateway: GatewayEmulator
    settings: Settings
    running: RunningBot
    db_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bot(self) -> GatecordBot:
        return self.running.bot

    @property
    def http(self) -> str:
        """Base URL of the bot's own web server."""
        return self.bot.web.base_url

    async def restart(self, **overrides: Any) -> GatecordBot:
        """Close the bot and start a new one on the same database (restart-proof features)."""
        await self.running.stop()
        if overrides:
            self.settings = settings_for(self.discord, self.gateway, self.db_path, **overrides)
        self.running = await start_bot(self.settings)
        return self.bot
