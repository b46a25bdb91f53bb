"""``gatecord web`` as a real process against a real PostgreSQL: the web tier alone (no Discord
connection) accepts relay posts into the shared outbox, and a ``gatecord run`` process on the same
database delivers them; its refusals (SQLite, a database older than the code, one it cannot reach)
are one line with their exit code; SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bench._relay_process import REPO, BotProcess, make_key, open_store, write_config
from bot.storage.migrations import latest_version
from sandbox.discord_emulator import DiscordEmulator
from tests import prometheus_text as metrics_text

pytestmark = pytest.mark.timeout(180)


async def put_channel(db: str, channel_id: int, guild_id: int, parent_id: int | None = None) -> None:
    """What a ``gatecord run`` process holding the guild's shard records in the channel directory."""
    store = open_store(db)
    await store.open()
    try:
        await store.execute(
            "INSERT INTO discord_channels(channel_id, guild_id, parent_id, messageable, updated_at)"
            " VALUES (?, ?, ?, 1, 0.0)", (channel_id, guild_id, parent_id))
    finally:
        await store.close()


async def outbox(db: str) -> dict[str, str]:
    store = open_store(db)
    await store.open()
    try:
        return {r["id"]: r["status"] for r in await store.fetchall("SELECT id, status FROM relay_outbox")}
    finally:
        await store.close()


async def web_tier(tmp_path: Path, emu: DiscordEmulator, db: str, **relay: Any) -> BotProcess:
    config = write_config(tmp_path / "web.toml", emu, db, **relay)
    proc = BotProcess(config, command="web")
    await proc.start()
    return proc


async def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=str(cwd), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def body(channel_id: int, content: str) -> dict[str, Any]:
    return {"channelId": str(channel_id), "content": content}


async def test_the_web_tier_alone_serves_health_ready_metrics_and_accepts_posts_into_postgresql(
    discord_emu: DiscordEmulator, tmp_path: Path, pg_url: str,
) -> None:
    emu = discord_emu
    key = await make_key(pg_url, emu.guild_id)  # migrates the database, as `gatecord migrate` would
    await put_channel(pg_url, emu.channel_id, emu.guild_id)
    web = await web_tier(tmp_path, emu, pg_url)
    auth = {"Authorization": f"Bearer {key}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{web.url}/health") as resp:
                assert (resp.status, await resp.json()) == (200, {"status": "ok"})
            async with http.get(f"{web.url}/ready") as resp:
                ready = await resp.json()
                assert resp.status == 200, ready
            assert ready["checks"]["database"] == {"ok": True,
                                                   "detail": f"schema version {latest_version()} (PostgreSQL)"}
            assert ready["checks"]["accepting"]["ok"] is True
            assert "discord" not in ready["checks"]  # no gateway connection here
            async with http.get(f"{web.url}/openapi.json") as resp:
                assert resp.status == 200 and "/send-data" in (await resp.json())["paths"]

            async with http.post(f"{web.url}/send-data", json=body(emu.channel_id, "from the web tier"),
                                 headers=auth) as resp:
                accepted = await resp.json()
                assert resp.status == 202, accepted
            assert accepted["status"] == "queued" and resp.headers["Location"] == f"/send-data/{accepted['id']}"
            assert await outbox(pg_url) == {accepted["id"]: "queued"}  # stored for the run processes
            async with http.get(f"{web.url}/send-data/{accepted['id']}", headers=auth) as resp:
                status = await resp.json()
                assert resp.status == 200 and status["status"] == "queued" and status["id"] == accepted["id"]

            # a channel no run process has recorded for this key's guild: the same 403 as in `gatecord run`
            async with http.post(f"{web.url}/send-data", json=body(emu.other_guild_channel_id, "elsewhere"),
                                 headers=auth) as resp:
                assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
            async with http.post(f"{web.url}/send-data", json=body(emu.channel_id, "no key")) as resp:
                assert resp.status == 401

            async with http.get(f"{web.url}/metrics") as resp:
                scraped = metrics_text.parse(await resp.text())
            assert metrics_text.value(scraped, "gatecord_relay_posts_total", result="accepted") == 1
            assert metrics_text.value(scraped, "gatecord_relay_posts_total", result="forbidden") == 1
            assert metrics_text.value(scraped, "gatecord_relay_queue_depth", status="queued") == 1
        assert emu.channel_messages(emu.channel_id) == []  # nothing delivered: no run process yet
        assert not any("Traceback" in line for line in web.log), "\n".join(web.log)
    finally:
        await web.terminate()
    assert web.proc is not None and web.proc.returncode == 0


async def test_a_post_accepted_by_the_web_tier_is_delivered_by_a_run_process(
    discord_emu: DiscordEmulator, tmp_path: Path, pg_url: str,
) -> None:
    emu = discord_emu
    emu.set_rate_limits(enabled=False)
    run = BotProcess(write_config(tmp_path / "run.toml", emu, pg_url, poll_interval=0.1))
    await run.start()  # migrates the empty database, holds the guilds and records their channels
    web: BotProcess | None = None
    try:
        await run.wait_ready()
        key = await make_key(pg_url, emu.guild_id)
        web = await web_tier(tmp_path, emu, pg_url, poll_interval=0.1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{run.url}/ready") as resp:
                checks = (await resp.json())["checks"]
            assert checks["database"]["detail"] == f"schema version {latest_version()} (PostgreSQL)"
            assert checks["discord"]["ok"] is True

            async with http.post(f"{web.url}/send-data?wait=true", json=body(emu.thread_id, "delivered elsewhere"),
                                 headers={"Authorization": f"Bearer {key}"}) as resp:
                answer = await resp.json()
                assert resp.status == 200, answer  # ?wait=true on the web tier sees the run process deliver
        assert answer["status"] == "delivered"
        [message] = [m for m in emu.channel_messages(emu.thread_id) if m.content == "delivered elsewhere"]
        assert answer["message_id"] == str(message.id) and message.nonce == answer["id"]
    finally:
        if web is not None:
            await web.terminate()
        await run.terminate()


async def test_sigterm_refuses_new_posts_lets_the_one_in_progress_finish_and_exits_0(
    discord_emu: DiscordEmulator, tmp_path: Path, pg_url: str,
) -> None:
    emu = discord_emu
    key = await make_key(pg_url, emu.guild_id)
    await put_channel(pg_url, emu.channel_id, emu.guild_id)
    # nobody delivers: a ?wait=true post stays in progress until its wait_timeout
    web = await web_tier(tmp_path, emu, pg_url, wait_timeout=3.0)
    auth = {"Authorization": f"Bearer {key}"}
    assert web.proc is not None
    async with aiohttp.ClientSession() as http:
        async def waiting_post() -> tuple[int, dict[str, Any]]:
            async with http.post(f"{web.url}/send-data?wait=true", json=body(emu.channel_id, "in progress"),
                                 headers=auth) as resp:
                return resp.status, await resp.json()

        async with outbox_inserts(pg_url) as stored:
            in_progress = asyncio.create_task(waiting_post())
            await asyncio.wait_for(stored.get(), 30)  # accepted: the request now waits for a delivery
        web.proc.terminate()
        await web.wait_log(r"draining: new relay posts are refused")
        async with http.post(f"{web.url}/send-data", json=body(emu.channel_id, "too late"), headers=auth) as resp:
            refused = await resp.json()
            assert (resp.status, refused["error"], resp.headers["Retry-After"]) == (503, "restarting", "30")
        async with http.get(f"{web.url}/ready") as resp:
            ready = await resp.json()
            assert resp.status == 503 and ready["checks"]["accepting"]["ok"] is False
        status, answer = await in_progress
    assert (status, answer["status"]) == (202, "queued")  # the wait ran out: accepted, not yet delivered
    assert await asyncio.wait_for(web.proc.wait(), 30) == 0
    await web.terminate()
    assert await outbox(pg_url) == {answer["id"]: "queued"}  # kept for the run processes; "too late" never stored
    drained = await web.wait_log(r"drained in")
    assert re.search(r": [1-9]\d* request\(s\) finished, 0 cut off$", drained), drained  # the waiting post among them
    assert not any("Traceback" in line for line in web.log), "\n".join(web.log)


@contextlib.asynccontextmanager
async def outbox_inserts(db: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The id of every post stored in the outbox from now on, by any process (a test-only trigger that
    NOTIFYs this connection: waiting on another process's write without polling)."""
    conn = await asyncpg.connect(db)
    queue: asyncio.Queue[str] = asyncio.Queue()
    try:
        await conn.execute(
            "CREATE FUNCTION test_notify_outbox() RETURNS trigger AS $$ BEGIN"
            " PERFORM pg_notify('test_outbox', NEW.id); RETURN NEW; END $$ LANGUAGE plpgsql;"
            " CREATE TRIGGER test_outbox_insert AFTER INSERT ON relay_outbox"
            " FOR EACH ROW EXECUTE FUNCTION test_notify_outbox()")
        await conn.add_listener("test_outbox", lambda *args: queue.put_nowait(args[3]))
        yield queue
    finally:
        await conn.close()


async def test_with_sqlite_storage_it_refuses_in_one_line_naming_storage_url(
    discord_emu: DiscordEmulator, tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "web.toml", discord_emu, tmp_path / "gatecord.db")
    code, out, err = await run_cli("web", "--config", str(config), cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err == (
        "gatecord: `gatecord web` needs PostgreSQL, shared with the `gatecord run` processes that deliver: set "
        "[storage] url (GATECORD_STORAGE__URL) to a postgresql:// URL. With SQLite (storage.path) there is one "
        "process, and `gatecord run` serves /send-data itself\n")
    assert not (tmp_path / "gatecord.db").exists()


async def test_a_database_older_than_the_code_is_refused_untouched(
    discord_emu: DiscordEmulator, tmp_path: Path, pg_url: str,
) -> None:
    config = write_config(tmp_path / "web.toml", discord_emu, pg_url)
    code, out, err = await run_cli("web", "--config", str(config), cwd=tmp_path)
    assert (code, out) == (2, "")
    shown = pg_url.replace("postgresql://", "")
    # (the last line: Alembic may log at INFO before, when it looks at the version)
    assert err.splitlines()[-1] == (
        f"gatecord: database postgresql://{shown} is at schema version 0, older than this gatecord "
        f"(latest {latest_version()}): run `gatecord migrate` first (`gatecord web` never migrates)")
    assert "Traceback" not in err
    store = open_store(pg_url)
    await store.open(migrate=False)  # still empty: the web tier migrated nothing
    try:
        assert store.schema_version == 0
    finally:
        await store.close()


async def test_a_database_it_cannot_reach_is_one_line_without_the_password(
    discord_emu: DiscordEmulator, tmp_path: Path,
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://gatecord:hunter2-secret@127.0.0.1:{port}/gatecord"
    config = write_config(tmp_path / "web.toml", discord_emu, url)
    code, out, err = await run_cli("web", "--config", str(config), cwd=tmp_path)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err  # it cannot start
    assert err.startswith(f"gatecord: database postgresql://gatecord:***@127.0.0.1:{port}/gatecord cannot be reached")
    assert "hunter2" not in err and "Traceback" not in err


def test_the_commands_list_names_web() -> None:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "bot", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "web" in proc.stdout and "needs PostgreSQL" in proc.stdout
