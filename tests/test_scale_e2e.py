"""Gatecord at scale, end to end: one PostgreSQL (real, started by the tests), the Discord emulator with two
guilds on different shards, two `gatecord run` processes (shards 0 and 1 of 2) and one `gatecord web`.

The tests run in order on the same installation, as its operator would live through them: chats, a relay
key used on every port, /imagine buttons across a killed process, 2,000 posts while a process is SIGKILLed,
a key's rate shared by all processes, then everything stopped and started again as a single process.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.storage.store import Store
from sandbox.discord_emulator import DiscordEmulator, shard_of
from sandbox.gateways import GatewayEmulator, expected_reply
from tests.cluster import Cluster
from tests.e2e import final, wait_reply
from tests.pg_server import PgServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

KEY_RE = re.compile(r"gcr_[A-Za-z0-9_-]+")
FOOTER = re.compile(r"\n-# [^\n]*$")
POSTS = 2000
CLIENTS = 48


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    emu = DiscordEmulator()
    await emu.start()
    emu.set_rate_limits(enabled=False)  # keep 2,000 deliveries quick; pacing has tests of its own
    gateway = GatewayEmulator("openai")
    await gateway.start()
    url = pg_server.create_database("scale_e2e")
    cluster = Cluster(emu, gateway, url, tmp_path_factory.mktemp("cluster"))
    cluster.relay = {"rate_per_minute": 1_000_000, "burst": 100_000, "workers": 8, "retry_base_delay": 0.2}
    try:
        # both shard processes start at once on an empty database: one migrates, the other waits for it;
        # the web tier never migrates (it starts on a database at the code's version)
        await asyncio.gather(
            cluster.start("run0", discord={"shard_count": 2, "shard_ids": [0]}),
            cluster.start("run1", discord={"shard_count": 2, "shard_ids": [1]}),
        )
        await cluster.start("web", "web")
        yield cluster
    finally:
        await cluster.stop_all()
        await gateway.close()
        await emu.close()
        pg_server.drop_database("scale_e2e")


def answer_text(content: str) -> str:
    return FOOTER.sub("", content)


async def command(world: Cluster, name: str, options: dict[str, Any] | None = None, *, user: str = "admin",
                  guild_id: int | None = None) -> Any:
    rec = await world.discord.inject_slash_command(name, options or {}, user=user, guild_id=guild_id)
    await rec.wait_final(final, timeout=30)
    return rec


async def post(session: aiohttp.ClientSession, base: str, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(f"{base}/send-data", json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
        return resp.status, await resp.json()


async def new_key(world: Cluster, name: str) -> str:
    rec = await command(world, "relay key create", {"name": name}, guild_id=world.discord.guild_id)
    match = KEY_RE.search(rec.original.content)
    assert match, rec.original.content
    return match.group(0)


def ports(world: Cluster) -> list[str]:
    return [world["run0"].url, world["run1"].url, world["web"].url]


# -- 1. chats --------------------------------------------------------------------------------------------


async def test_processes_say_what_they_hold(world: Cluster) -> None:
    for name, shards in (("run0", "shard 0 of 2"), ("run1", "shard 1 of 2")):
        status, body = await world[name].ready()
        assert status == 200 and body["checks"]["discord"]["detail"].startswith(shards + " connected"), body
        assert body["checks"]["database"]["ok"] is True
    status, body = await world["web"].ready()
    assert status == 200 and "discord" not in body["checks"] and body["checks"]["database"]["ok"] is True


async def test_a_chat_in_each_guild_is_answered_once_by_the_process_holding_its_shard(world: Cluster) -> None:
    emu = world.discord
    assert (shard_of(emu.guild_id, 2), shard_of(emu.guild2_id, 2)) == (0, 1)
    for guild_id, prompt in ((emu.guild_id, "hello from guild one"), (emu.guild2_id, "hello from guild two")):
        rec = await command(world, "chat", {"prompt": prompt}, user="alice", guild_id=guild_id)
        assert answer_text(rec.original.content) == expected_reply(prompt)
        assert len(rec.callbacks) == 1 and rec.followups == []  # answered once: one acknowledgement, one message
        holders = [s for s in emu.gateway.sessions.values()
                   if any(p["d"].get("id") == str(rec.id) for p in s.buffer if isinstance(p.get("d"), dict))]
        assert [tuple(s.shard) for s in holders] == [(shard_of(guild_id, 2), 2)]


# -- 2. the relay: one key, every port ---------------------------------------------------------------------


async def test_a_key_made_in_one_guild_is_accepted_by_every_process(world: Cluster) -> None:
    emu = world.discord
    key = await new_key(world, "everywhere")
    async with aiohttp.ClientSession() as session:
        for i, base in enumerate(ports(world)):
            status, data = await post(session, base, key, {"channelId": str(emu.channel_id), "content": f"port {i}"})
            assert status == 202, data
    for i in range(3):
        await emu.wait_for(lambda i=i: [m for m in emu.channel_messages(emu.channel_id) if m.content == f"port {i}"],
                           timeout=30)
    await asyncio.sleep(0)
    assert Counter(m.content for m in emu.channel_messages(emu.channel_id) if m.content.startswith("port ")) == {
        "port 0": 1, "port 1": 1, "port 2": 1}


# -- 3. /imagine buttons outlive the process that made the job -----------------------------------------------


def buttons(message: Any) -> dict[str, str]:
    return {c["label"]: c["custom_id"] for row in message.components for c in row["components"]}


def has_result(rec: Any) -> bool:
    return rec.original is not None and bool(rec.original.attachments) and bool(rec.original.components)


def posted_file(rec: Any) -> Any:
    return next((m for m in reversed(rec.messages) if m.attachments and not m.loading), None)


async def test_imagine_buttons_pressed_after_the_jobs_process_was_killed_are_served_once_it_is_back(
    world: Cluster,
) -> None:
    emu = world.discord
    rec = await emu.inject_slash_command("imagine create", {"prompt": "a lighthouse"}, user="alice", guild_id=emu.guild_id)
    msg = await rec.wait_final(has_result, timeout=30)
    labels = buttons(msg)
    await world["run0"].kill()
    await world.start("run0", discord={"shard_count": 2, "shard_ids": [0]})
    press = await emu.press_button(msg.id, labels["U1"])  # this gateway's image model makes one image a job
    await press.wait_final(posted_file, timeout=30)
    assert posted_file(press).attachments and "a lighthouse" in posted_file(press).content


# -- 4. 2,000 posts over three ports while a delivering process is SIGKILLed ----------------------------------


async def test_posts_accepted_while_a_process_is_killed_are_delivered_exactly_once(world: Cluster) -> None:
    emu = world.discord
    channels = [emu.channel_id, emu.channel2_id, emu.thread_id]
    channels += [await emu.add_channel(f"scale-{i}") for i in range(9)]
    key = await new_key(world, "load")
    accepted: dict[str, str] = {}
    unanswered: set[str] = set()
    halfway = asyncio.Event()
    gate = asyncio.Semaphore(CLIENTS)
    bases = itertools.cycle(["run0", "run1", "web"])

    def relay_messages() -> list[Any]:
        return [m for c in channels for m in emu.channel_messages(c) if m.content.startswith("load #")]

    async def send(session: aiohttp.ClientSession, i: int, process: str) -> None:
        content = f"load #{i}"
        body = {"channelId": str(channels[i % len(channels)]), "content": content}
        async with gate:
            try:
                status, data = await post(session, world[process].url, key, body)
            except (aiohttp.ClientError, TimeoutError):
                unanswered.add(content)
                return
            if status == 202:
                accepted[content] = data["id"]
            else:
                unanswered.add(content)  # 503 while the killed process's port was down
            if len(accepted) >= POSTS // 2:
                halfway.set()

    async def kill_and_restart() -> None:
        await halfway.wait()
        await emu.wait_for(lambda: len(relay_messages()) >= 20, timeout=60)
        await world["run1"].kill()
        await world.start("run1", discord={"shard_count": 2, "shard_ids": [1]})

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        killer = asyncio.create_task(kill_and_restart())
        await asyncio.gather(*(send(session, i, next(bases)) for i in range(POSTS)))
        await killer
    assert len(accepted) >= POSTS // 2
    await emu.wait_for(lambda: set(accepted) <= {m.content for m in relay_messages()}, timeout=120)
    counts = Counter(m.content for m in relay_messages())
    assert [c for c, n in counts.items() if n > 1] == []              # nothing delivered twice
    assert set(accepted) <= set(counts)                                # every 202 delivered
    assert set(counts) <= set(accepted) | unanswered                   # nothing that was not sent


# -- 5. a key's rate is shared by all processes ---------------------------------------------------------------


async def test_a_key_limited_to_n_posts_a_minute_gets_n_in_total_across_the_processes(world: Cluster) -> None:
    emu = world.discord
    limit = 30
    world.relay = {**world.relay, "rate_per_minute": limit, "burst": limit}
    for name in ("run0", "run1", "web"):
        await world[name].stop()
    await asyncio.gather(
        world.start("run0", discord={"shard_count": 2, "shard_ids": [0]}),
        world.start("run1", discord={"shard_count": 2, "shard_ids": [1]}),
        world.start("web", "web"),
    )
    key = await new_key(world, "limited")
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(
            post(session, base, key, {"channelId": str(emu.channel2_id), "content": f"limited {i}"})
            for i, base in zip(range(3 * limit), itertools.cycle(ports(world)), strict=False)
        ))
    elapsed = loop.time() - started
    statuses = Counter(status for status, _ in results)
    refilled = int(elapsed * limit / 60) + 1  # tokens the bucket may have regained while the posts were sent
    assert limit <= statuses[202] <= limit + refilled, (statuses, elapsed)  # not `limit` per process
    assert statuses[202] + statuses[429] == 3 * limit
    assert {data["error"] for status, data in results if status == 429} == {"rate_limited"}


# -- 6. back to one process: nothing lost -----------------------------------------------------------------


async def count(world: Cluster, table: str) -> int:
    store = Store(url=world.database_url)
    await store.open(migrate=False)
    try:
        return int(await store.fetchval(f"SELECT COUNT(*) FROM {table}"))
    finally:
        await store.close()


def chat_requests(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/chat/completions")]


async def test_a_restart_as_one_process_keeps_budgets_settings_conversations_jobs_and_queued_posts(
    world: Cluster,
) -> None:
    emu, gateway = world.discord, world.gateway
    # guild 2 (shard 1): a member limit, a conversation, an image job; guild 1 (shard 0): a relay key
    limited = await command(world, "quota set", {"scope": "member", "kind": "images", "limit": 7},
                            guild_id=emu.guild2_id)
    assert limited.original.ephemeral and "7" in limited.original.content
    asked = await emu.send_user_message("remember the walrus", user="bob", channel_id=emu.other_guild_channel_id,
                                        mention_bot=True)
    answer = await wait_reply(emu, asked, timeout=30)
    job = await emu.inject_slash_command("imagine create", {"prompt": "a harbour"}, user="bob", guild_id=emu.guild2_id)
    job_msg = await job.wait_final(has_result, timeout=30)
    key = await new_key(world, "queued")

    # no process delivers: the web tier still accepts, and the post waits in the database
    await asyncio.gather(world["run0"].stop(), world["run1"].stop())
    async with aiohttp.ClientSession() as session:
        status, data = await post(session, world["web"].url, key,
                                  {"channelId": str(emu.channel_id), "content": "queued while no one delivers"})
    assert status == 202, data
    assert not [m for m in emu.channel_messages(emu.channel_id) if m.content == "queued while no one delivers"]
    jobs, limits = await count(world, "media_jobs"), await count(world, "quota_limits")

    # one process, one shard, the same database
    solo = await world.start("solo", discord={"shard_count": 1})
    status, body = await solo.ready()
    assert status == 200 and body["checks"]["discord"]["detail"].startswith("shard 0 of 1 connected"), body
    await emu.wait_for(lambda: [m for m in emu.channel_messages(emu.channel_id)
                                if m.content == "queued while no one delivers"], timeout=30)
    mine = await command(world, "mylimits", user="bob", guild_id=emu.guild2_id)
    assert re.search(r"\bimages\b[^\n]*\b7\b", mine.original.content, re.IGNORECASE), mine.original.content
    press = await emu.press_button(job_msg.id, buttons(job_msg)["U1"])
    await press.wait_final(posted_file, timeout=30)
    assert posted_file(press).attachments and "a harbour" in posted_file(press).content
    follow = await emu.send_user_message("what did I ask you to remember?", user="bob",
                                         channel_id=emu.other_guild_channel_id, reply_to=answer.id)
    await wait_reply(emu, follow, timeout=30)
    texts = [m["content"] for m in chat_requests(gateway)[-1].json["messages"] if isinstance(m["content"], str)]
    assert any("remember the walrus" in t for t in texts) and texts[-1] == "what did I ask you to remember?"
    assert (await count(world, "media_jobs"), await count(world, "quota_limits")) == (jobs, limits)
