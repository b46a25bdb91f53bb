"""SIGKILL the bot (``gatecord run`` as a subprocess) while 500 relay posts are in flight, restart it,
and prove that every post answered 202 was delivered exactly once and nothing else was."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.relay.keys import KeyStore
from bot.storage import Store

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"web server listening on (http://127\.0\.0\.1:\d+)")
POSTS = 500
CLIENT_CONCURRENCY = 32
KILL_AFTER_ACCEPTED = 250


def write_config(path: Path, emu: Any, db_path: Path, **relay: Any) -> Path:
    """A config.toml pointing the bot at the Discord emulator (test-only token)."""
    relay_lines = "\n".join(f"{k} = {v!r}" if not isinstance(v, bool) else f"{k} = {str(v).lower()}" for k, v in relay.items())
    path.write_text(
        "[discord]\n"
        f'token = "{emu.token}"\napi_base_url = "{emu.api_base_url}"\ngateway_url = "{emu.gateway_url}"\n'
        f'cdn_base_url = "{emu.cdn_base_url}"\n\n'
        f'[storage]\npath = "{db_path}"\n\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\n\n'
        '[gateway]\nprofile = "openai"\nbase_url = "http://127.0.0.1:9"\napi_key = "unused-in-this-test"\n\n'
        f"[relay]\n{relay_lines}\n\n"
        '[logging]\nlevel = "INFO"\n',
        encoding="utf-8",
    )
    return path


class BotProcess:
    """``gatecord run --config <file>`` in a subprocess; ``url`` is its web server once listening."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self.log: list[str] = []
        self._listening = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> str:
        exe = Path(sys.executable).with_name("gatecord")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bot"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, "run", "--config", str(self.config), cwd=str(REPO), env=env,
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


async def make_key(db_path: Path, guild_id: int, **options: Any) -> str:
    """Insert a relay key into the database (migrating it) before the bot starts."""
    store = Store(db_path)
    await store.open()
    try:
        return (await KeyStore(store).create(guild_id, name="bench", created_by=0, **options)).secret
    finally:
        await store.close()


@pytest.mark.timeout(180)
async def test_sigkill_loses_no_accepted_post_and_delivers_none_twice(discord_emu: Any, tmp_path: Path) -> None:
    emu = discord_emu
    emu.set_rate_limits(enabled=False)  # keep deliveries quick so many are in flight at the kill
    channels = [emu.channel_id, emu.channel2_id, emu.thread_id]
    channels += [await emu.add_channel(f"crash-{i}") for i in range(9)]
    db_path = tmp_path / "gatecord.db"
    key = await make_key(db_path, emu.guild_id)
    config = write_config(tmp_path / "cfg.toml", emu, db_path, rate_per_minute=1_000_000, burst=100_000,
                          workers=12, retry_base_delay=0.2)

    bot = BotProcess(config)
    url = await bot.start()
    await bot.wait_ready()

    accepted: dict[str, str] = {}   # content -> post id, for every 202
    unanswered: set[str] = set()     # sent, but the connection died before an answer
    killed = asyncio.Event()
    halfway = asyncio.Event()
    gate = asyncio.Semaphore(CLIENT_CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}

    async def send(session: aiohttp.ClientSession, i: int) -> None:
        content = f"crash-test #{i}"
        body = {"channelId": str(channels[i % len(channels)]), "content": content,
                "embeds": [{"title": f"post {i}", "fields": [{"name": "n", "value": str(i)}]}]}
        async with gate:
            if killed.is_set():
                return
            try:
                async with session.post(f"{url}/send-data", json=body, headers=headers) as resp:
                    data = await resp.json()
                    assert resp.status == 202, data
                    accepted[content] = data["id"]
                    if len(accepted) >= KILL_AFTER_ACCEPTED:
                        halfway.set()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                unanswered.add(content)

    def relay_messages() -> list[Any]:
        return [m for c in channels for m in emu.channel_messages(c) if m.content.startswith("crash-test #")]

    async def killer() -> None:
        # kill mid-stream: half the posts answered, deliveries flowing, more requests on the wire
        await asyncio.wait_for(halfway.wait(), 60)
        await emu.wait_for(lambda: len(relay_messages()) >= 5, timeout=60)
        killed.set()
        await bot.kill()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*(send(session, i) for i in range(POSTS)))
        await kill_task
    delivered_before = len(relay_messages())
    store = Store(db_path)
    await store.open()
    states = Counter(r["status"] for r in await store.fetchall("SELECT status FROM relay_outbox"))
    await store.close()
    assert KILL_AFTER_ACCEPTED <= len(accepted) < POSTS and delivered_before < len(accepted), (len(accepted), delivered_before)
    assert states["queued"] + states["sending"] > 0, states  # the kill left work in the outbox

    # restart on the same database: the worker resumes queued and in-flight posts
    bot2 = BotProcess(config)
    url = await bot2.start()
    try:
        async with aiohttp.ClientSession() as session:
            async def delivered(post_id: str) -> dict[str, Any]:
                while True:
                    async with session.get(f"{url}/send-data/{post_id}", headers=headers) as resp:
                        data = await resp.json()
                        assert resp.status == 200, data
                    if data["status"] == "delivered":
                        return data
                    assert data["status"] in ("queued", "sending"), data
                    await asyncio.sleep(0.1)

            results = await asyncio.wait_for(asyncio.gather(*(delivered(pid) for pid in accepted.values())), 90)
            # posts stored just before the kill whose 202 never reached the client are delivered too
            store = Store(db_path)
            await store.open()
            ids = [r["id"] for r in await store.fetchall("SELECT id FROM relay_outbox")]
            await store.close()
            await asyncio.wait_for(asyncio.gather(*(delivered(pid) for pid in ids)), 60)
        store = Store(db_path)
        await store.open()
        pending = await store.fetchval("SELECT COUNT(*) FROM relay_outbox WHERE status NOT IN ('delivered')")
        rows = await store.fetchall("SELECT id, message_id FROM relay_outbox")
        await store.close()
        assert pending == 0
    finally:
        await bot2.terminate()

    messages = relay_messages()
    counts = Counter(m.content for m in messages)
    duplicates = {c: n for c, n in counts.items() if n > 1}
    assert not duplicates, duplicates                                       # nothing delivered twice
    assert set(accepted) <= set(counts)                                     # every 202 delivered
    assert set(counts) <= set(accepted) | unanswered                        # nothing that was not sent
    by_content = {m.content: m for m in messages}
    for content, post_id in accepted.items():                               # and the status API agrees
        assert by_content[content].nonce == post_id
    assert {r["message_id"] for r in results} == {str(by_content[c].id) for c in accepted}
    assert len(rows) == len(messages)                                       # one outbox row per message
    assert {int(r["message_id"]) for r in rows} == {m.id for m in messages}
    resent = Counter((r.json or {}).get("nonce") for r in emu.requests_to("/messages", "POST") if r.status == 200)
    print(f"\naccepted {len(accepted)}, unanswered {len(unanswered)} (of which stored and delivered: "
          f"{len(rows) - len(accepted)}), delivered before kill {delivered_before},"
          f" outbox at kill {dict(states)}, re-sent after restart and de-duplicated by nonce"
          f" {sum(1 for n in resent.values() if n > 1)}")
