"""The bot as a subprocess (``gatecord run --config …``) pointed at the Discord emulator.

Shared by ``bench/relay.py`` and ``tests/test_relay_crash.py`` (the test imports it from here, so
the benchmark does not depend on the test suite).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.relay.keys import KeyStore
from bot.storage.store import Store

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"web server listening on (http://127\.0\.0\.1:\d+)")


Database = Path | str  # an SQLite file, or a postgresql:// URL


def open_store(db: Database) -> Store:
    """A (not yet opened) store on ``db``."""
    if isinstance(db, str) and db.startswith("postgresql"):
        return Store(url=db)
    return Store(db)


def _toml_lines(values: dict[str, Any]) -> str:
    return "\n".join(f"{k} = {str(v).lower()}" if isinstance(v, bool) else f"{k} = {v!r}" for k, v in values.items())


def write_config(path: Path, emu: Any, db: Database, *, gateway: Any = None,
                 sections: dict[str, dict[str, Any]] | None = None, **relay: Any) -> Path:
    """A config.toml pointing the bot at the Discord emulator (test-only token) and at ``db``; with
    ``gateway`` (a gateway emulator) at that gateway too; ``sections`` adds settings sections."""
    relay_lines = _toml_lines(relay)
    storage = f'url = "{db}"' if isinstance(db, str) and db.startswith("postgresql") else f'path = "{db}"'
    if gateway is None:
        gateway_lines = 'profile = "openai"\nbase_url = "http://127.0.0.1:9"\napi_key = "unused-in-this-test"'
    else:
        gateway_lines = _toml_lines({"profile": gateway.profile, "base_url": gateway.root_url,
                                     "api_key": gateway.api_key, "max_retries": 0})
    extra = "".join(f"[{name}]\n{_toml_lines(values)}\n\n" for name, values in (sections or {}).items())
    path.write_text(
        "[discord]\n"
        f'token = "{emu.token}"\napi_base_url = "{emu.api_base_url}"\ngateway_url = "{emu.gateway_url}"\n'
        f'cdn_base_url = "{emu.cdn_base_url}"\n\n'
        f"[storage]\n{storage}\n\n"
        '[http]\nhost = "127.0.0.1"\nport = 0\n\n'
        f"[gateway]\n{gateway_lines}\n\n"
        f"[relay]\n{relay_lines}\n\n"
        f"{extra}"
        '[logging]\nlevel = "INFO"\n',
        encoding="utf-8",
    )
    return path


class BotProcess:
    """``gatecord run --config <file>`` (or another ``command``, e.g. ``web``) in a subprocess; ``url``
    is its web server once listening."""

    def __init__(self, config: Path, command: str = "run") -> None:
        self.config = config
        self.command = command
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self.log: list[str] = []
        self._listening = asyncio.Event()
        self._logged = asyncio.Event()  # set (and replaced) after every stderr line
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> str:
        exe = Path(sys.executable).with_name("gatecord")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bot"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, self.command, "--config", str(self.config), cwd=str(REPO), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        waiter = asyncio.create_task(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise RuntimeError("the bot did not start:\n" + "\n".join(self.log[-30:]))
        assert self.url is not None
        return self.url

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.log.append(text)
            match = LISTENING.search(text)
            if match and not self._listening.is_set():
                self.url = match.group(1)
                self._listening.set()
            logged, self._logged = self._logged, asyncio.Event()
            logged.set()
        self._logged.set()  # the end of the output: waiters see it and stop waiting

    async def wait_log(self, pattern: str, timeout: float = 30.0) -> str:
        """The first line of its log matching the regular expression ``pattern`` (waiting for it)."""
        wanted = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                logged = self._logged
                found = next((line for line in self.log if wanted.search(line)), None)
                if found is not None:
                    return found
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"{pattern!r} never logged:\n" + "\n".join(self.log[-30:]))
                await logged.wait()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{self.url}/ready") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError("the bot did not become ready:\n" + "\n".join(self.log[-30:]))

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader


async def make_key(db: Database, guild_id: int, **options: Any) -> str:
    """Insert a relay key into the database (migrating it) before the bot starts."""
    store = open_store(db)
    await store.open()
    try:
        return (await KeyStore(store).create(guild_id, name="bench", created_by=0, **options)).secret
    finally:
        await store.close()
