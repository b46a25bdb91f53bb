"""SIGKILL the bot (``gatecord run`` as a subprocess) while 500 relay posts are in flight, restart it,
and prove that every post answered 202 was delivered exactly once and nothing else was; on SQLite and
on PostgreSQL (where the posts the killed process had claimed are taken over once their claim is
older than ``relay.claim_timeout``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench._relay_process import BotProcess, make_key, open_store, write_config

POSTS = 500
CLIENT_CONCURRENCY = 32
KILL_AFTER_ACCEPTED = 250


@pytest.mark.timeout(180)
async def test_sigkill_loses_no_accepted_post_and_delivers_none_twice(
    discord_emu: Any, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    emu = discord_emu
    emu.set_rate_limits(enabled=False)  # keep deliveries quick so many are in flight at the kill
    channels = [emu.channel_id, emu.channel2_id, emu.thread_id]
    channels += [await emu.add_channel(f"crash-{i}") for i in range(9)]
    db: Path | str = tmp_path / "gatecord.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    key = await make_key(db, emu.guild_id)
    config = write_config(tmp_path / "cfg.toml", emu, db, rate_per_minute=1_000_000, burst=100_000,
                          workers=12, retry_base_delay=0.2, claim_timeout=2.0, poll_interval=0.2)

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

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            kill_task = asyncio.create_task(killer())
            await asyncio.gather(*(send(session, i) for i in range(POSTS)))
            await kill_task
    finally:
        await bot.terminate()  # a failure above must not leave the bot running (after the kill: nothing to do)
    delivered_before = len(relay_messages())
    store = open_store(db)
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
            store = open_store(db)
            await store.open()
            ids = [r["id"] for r in await store.fetchall("SELECT id FROM relay_outbox")]
            await store.close()
            await asyncio.wait_for(asyncio.gather(*(delivered(pid) for pid in ids)), 60)
        store = open_store(db)
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
