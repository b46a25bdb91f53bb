"""The Discord emulator's sharding, seen from the socket: which guilds and events reach which shard,
what ``GET /gateway/bot`` announces, and the IDENTIFYs it records."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.discord_emulator import DiscordEmulator, IdentifyRecord, shard_of

TOKEN = "shard-test-token"
INTENTS = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 15)  # guilds, guild messages, DMs, message content


class Shard:
    """A bare gateway client: HELLO, IDENTIFY with ``shard``, then the dispatches in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next_dispatch(self) -> tuple[str, dict[str, Any]]:
        while True:
            msg = await self.ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, self.ws.close_code)
            payload = json.loads(msg.data)
            if payload["op"] == 0:
                return payload["t"], payload["d"]

    async def until_ready(self) -> tuple[dict[str, Any], list[int]]:
        """READY, then the ids of the GUILD_CREATEs that follow it (up to the marker the test sends)."""
        event, ready = await self.next_dispatch()
        assert event == "READY"
        created = []
        for _ in ready["guilds"]:
            event, data = await self.next_dispatch()
            assert event == "GUILD_CREATE"
            created.append(int(data["id"]))
        return ready, created


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def connect(http: aiohttp.ClientSession, emu: DiscordEmulator, shard: Any) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(emu.gateway_url)
    hello = await ws.receive_json(timeout=5)
    assert hello["op"] == 10
    identify: dict[str, Any] = {"token": TOKEN, "intents": INTENTS, "properties": {}}
    if shard is not None:
        identify["shard"] = shard
    await ws.send_json({"op": 2, "d": identify})
    return ws


async def identified(http: aiohttp.ClientSession, emu: DiscordEmulator, shard: Any) -> tuple[Shard, list[int]]:
    client = Shard(await connect(http, emu, shard))
    ready, created = await client.until_ready()
    assert [int(g["id"]) for g in ready["guilds"]] == created
    if shard is not None:
        assert ready["shard"] == shard
    return client, created


async def test_each_shard_gets_ready_and_guild_create_only_for_its_guilds(session: aiohttp.ClientSession) -> None:
    async with DiscordEmulator(token=TOKEN) as emu:
        third = await emu.add_guild("Third", shard=(0, 2))
        _, on_0 = await identified(session, emu, [0, 2])
        _, on_1 = await identified(session, emu, [1, 2])
        _, unsharded = await identified(session, emu, None)
    assert on_0 == [emu.guild_id, third]
    assert on_1 == [emu.guild2_id]
    assert unsharded == [emu.guild_id, emu.guild2_id, third]  # no shard in IDENTIFY: every guild, as before


async def test_events_reach_only_the_shard_holding_their_guild_and_dms_go_to_shard_0(
    session: aiohttp.ClientSession,
) -> None:
    async with DiscordEmulator(token=TOKEN) as emu:
        shard0, _ = await identified(session, emu, [0, 2])
        shard1, _ = await identified(session, emu, [1, 2])
        # a message in guild 2 (shard 1), then one in guild 1 (shard 0): each socket's next event is its own
        in_guild2 = await emu.send_user_message("hello two", channel_id=emu.other_guild_channel_id)
        in_guild1 = await emu.send_user_message("hello one", channel_id=emu.channel_id)
        event, data = await shard0.next_dispatch()
        assert (event, data["id"]) == ("MESSAGE_CREATE", str(in_guild1.id))
        event, data = await shard1.next_dispatch()
        assert (event, data["id"]) == ("MESSAGE_CREATE", str(in_guild2.id))

        # an interaction follows its guild too
        emu.commands.upsert(None, {"name": "ping", "description": "Ping", "type": 1})
        rec = await emu.inject_slash_command("ping", guild_id=emu.guild2_id)
        event, data = await shard1.next_dispatch()
        assert (event, data["id"]) == ("INTERACTION_CREATE", str(rec.id))

        # a DM (no guild) goes to shard 0 only; a guild-1 role change after it proves shard 1 got nothing
        await emu.gateway.dispatch("MESSAGE_CREATE", {"id": "1", "channel_id": "2", "content": "dm",
                                                      "author": {"id": str(emu.users["alice"].id)}})
        await emu.add_role("Helpers", guild_id=emu.guild2_id)
        assert (await shard0.next_dispatch())[1]["content"] == "dm"
        event, data = await shard1.next_dispatch()
        assert (event, data["role"]["name"]) == ("GUILD_ROLE_CREATE", "Helpers")

        # a guild the bot joins later: GUILD_CREATE only on its shard
        later = await emu.add_guild("Later", shard=(1, 2))
        await emu.add_role("Marker", guild_id=emu.guild_id)
        event, data = await shard1.next_dispatch()
        assert (event, int(data["id"])) == ("GUILD_CREATE", later)
        event, data = await shard0.next_dispatch()
        assert (event, data["role"]["name"]) == ("GUILD_ROLE_CREATE", "Marker")


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [0], "0,1", [0.0, 2]])
async def test_a_shard_out_of_range_is_closed_with_4010(session: aiohttp.ClientSession, shard: Any) -> None:
    async with DiscordEmulator(token=TOKEN) as emu:
        ws = await connect(session, emu, shard)
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4010
        assert emu.gateway.identifies == [] and emu.gateway.sessions == {}


async def test_a_session_holding_too_many_guilds_is_closed_with_4011(session: aiohttp.ClientSession) -> None:
    async with DiscordEmulator(token=TOKEN) as emu:
        emu.gateway.guilds_per_shard_limit = 1
        ws = await connect(session, emu, [0, 1])
        await ws.receive(timeout=5)
        assert ws.close_code == 4011
        _, guilds = await identified(session, emu, [1, 2])  # one guild per shard of two is within the limit
        assert guilds == [emu.guild2_id]


async def test_gateway_bot_announces_the_shards_and_session_start_limit(session: aiohttp.ClientSession) -> None:
    async with DiscordEmulator(token=TOKEN, shards=4, max_concurrency=16) as emu:

        async def gateway_bot() -> dict[str, Any]:
            async with session.get(f"{emu.api_base_url}/gateway/bot", headers={"Authorization": f"Bot {TOKEN}"}) as r:
                assert r.status == 200
                body: dict[str, Any] = await r.json()
                return body

        first = await gateway_bot()
        assert first["url"] == emu.gateway_url and first["shards"] == 4
        limit = first["session_start_limit"]
        assert limit["max_concurrency"] == 16 and limit["remaining"] == limit["total"] == 1000
        assert limit["reset_after"] > 0
        await identified(session, emu, [3, 4])
        assert (await gateway_bot())["session_start_limit"]["remaining"] == 999


async def test_every_identify_is_recorded_with_its_shard_bucket_and_clock(session: aiohttp.ClientSession) -> None:
    ticks = iter([10.0, 15.5, 21.0])
    async with DiscordEmulator(token=TOKEN, max_concurrency=2, clock=lambda: next(ticks)) as emu:
        for shard in ([0, 4], [1, 4], [2, 4]):
            await identified(session, emu, shard)
        records = emu.gateway.identifies
        assert [(r.shard_id, r.shard_count, r.at, r.bucket) for r in records] == [
            (0, 4, 10.0, 0), (1, 4, 15.5, 1), (2, 4, 21.0, 0)]
        assert all(isinstance(r, IdentifyRecord) and r.session_id in emu.gateway.sessions for r in records)


@pytest.mark.parametrize("count", [1, 2, 3, 16])
async def test_guilds_land_on_the_shard_asked_for(count: int) -> None:
    emu = DiscordEmulator(token=TOKEN)
    ids = []
    for shard_id in reversed(range(count)):
        gid = await emu.add_guild(f"g{shard_id}", shard=(shard_id, count))
        assert shard_of(gid, count) == shard_id
        ids.append(gid)
    assert ids == sorted(set(ids))  # still strictly increasing snowflakes
    later = emu.ids.next()
    assert later > ids[-1]
    assert shard_of(emu.guild_id, 2) == 0 and shard_of(emu.guild2_id, 2) == 1
    with pytest.raises(ValueError, match="not in 0..1"):
        emu.ids.next_on_shard(2, 2)
