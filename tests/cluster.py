"""Gatecord as an operator runs it at scale: several real ``gatecord run`` / ``gatecord web`` processes
on one PostgreSQL database, pointed at the Discord and gateway emulators of the test process.

Each process gets its own TOML file; its web server's address is read from its log ("web server
listening on …") and it counts as started once ``/ready`` answers 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"web server listening on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 60.0


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class Process:
    """One ``gatecord <command> --config <file>`` subprocess."""

    name: str
    command: str
    config: Path
    proc: asyncio.subprocess.Process | None = None
    url: str = ""
    log: list[str] = field(default_factory=list)
    _listening: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        exe = Path(sys.executable).with_name("gatecord")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
        self._listening = asyncio.Event()
        self.url = ""
        self.proc = await asyncio.create_subprocess_exec(
            str(exe), self.command, "--config", str(self.config), cwd=str(REPO), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        waiter = asyncio.create_task(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._reader}, timeout=START_TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise RuntimeError(f"{self.name} did not start:\n" + "\n".join(self.log[-40:]))
        await self.wait_ready()

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.log.append(f"[{self.name}] {text}")
            match = LISTENING.search(text)
            if match and not self._listening.is_set():
                self.url = match.group(1)
                self._listening.set()

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/ready") as resp:
            return resp.status, await resp.json()

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            try:
                status, _ = await self.ready()
                if status == 200:
                    return
            except aiohttp.ClientError:
                pass
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)  # polling a subprocess's readiness: start-up, not test synchronisation
        raise TimeoutError(f"{self.name} did not become ready:\n" + "\n".join(self.log[-40:]))

    async def kill(self) -> None:
        """SIGKILL: the process stops at once, mid-whatever (as a crash or an OOM kill would)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def stop(self) -> int | None:
        """SIGTERM: the process drains and exits; its exit code."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 40)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return None if self.proc is None else self.proc.returncode


class Cluster:
    """The processes of one installation: their shared settings plus each one's own."""

    def __init__(self, discord: Any, gateway: Any, database_url: str, folder: Path) -> None:
        self.discord = discord
        self.gateway = gateway
        self.database_url = database_url
        self.folder = folder
        self.processes: dict[str, Process] = {}
        self.relay: dict[str, Any] = {}

    def sections(self, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
        emu, gw = self.discord, self.gateway
        sections: dict[str, dict[str, Any]] = {
            "discord": {
                "token": emu.token, "api_base_url": emu.api_base_url, "gateway_url": emu.gateway_url,
                "cdn_base_url": emu.cdn_base_url, "cdn_hosts": ["127.0.0.1"], "guild_ready_timeout": 0.2,
                "identify_interval_seconds": 0.2,
            },
            "storage": {"url": self.database_url},
            "http": {"host": "127.0.0.1", "port": 0},
            "gateway": {
                "profile": gw.profile, "base_url": gw.root_url, "api_key": gw.api_key,
                "chat_model": gw.default_chat_model, "vision_model": gw.default_vision_model,
                "image_model": gw.default_image_model, "max_retries": 0,
            },
            "relay": dict(self.relay),
            "logging": {"level": "INFO"},
        }
        for section, values in overrides.items():
            sections.setdefault(section, {}).update(values)
        return sections

    async def start(self, name: str, command: str = "run", **overrides: dict[str, Any]) -> Process:
        config = write_toml(self.folder / f"{name}.toml", self.sections(**overrides))
        process = self.processes.get(name)
        if process is None or process.command != command:
            process = Process(name, command, config)
            self.processes[name] = process
        process.config = config
        await process.start()
        return process

    def __getitem__(self, name: str) -> Process:
        return self.processes[name]

    async def stop_all(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes.values()))

    def logs(self) -> str:
        return "\n".join(line for p in self.processes.values() for line in p.log[-30:])
