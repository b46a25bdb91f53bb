"""User installs and DMs end to end: the real bot against the Discord emulator's user installs, DM channels,
servers without the bot (every channel call there is 403) and the 5 follow-up limit."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from sandbox.discord_emulator.installs import CommandNotAvailable
from sandbox.gateways import expected_reply
from tests.e2e import final, wait_reply, wait_shown

FOOTER = re.compile(r"\n-# [^\n]*$")
USER_ONLY = {"quotas": {"guild_chat_requests": 0, "member_chat_requests": 0, "user": {"chat_requests": 5}}}


def answer_text(content: str) -> str:
    return FOOTER.sub("", content)


def chat_prompts(gateway: Any) -> list[list[str]]:
    """The user turns of each chat call, in order."""
    calls = [r for r in gateway.requests if r.path.endswith("/chat/completions")]
    return [[m["content"] for m in r.json["messages"] if m["role"] == "user"] for r in calls]


async def friends_server(env: Any, user: str = "alice") -> tuple[int, int]:
    """A server Gatecord is not in, where ``user`` installed it to their account: (guild, channel)."""
    emu = env.discord
    guild = await emu.add_guild("Friends' server", bot_member=False)
    emu.install_for_user(user)
    return guild, emu.world.guilds[guild].channel_ids[0]


async def own_chat_requests(env: Any, user: str = "alice") -> float:
    line = (await env.bot.quotas.own_limits(env.discord.users[user].id)).line("member", "chat_requests")
    assert line is not None
    return line.used


async def settled(env: Any) -> None:
    await asyncio.wait_for(env.bot.chat.admission.wait_idle(), 10)


@pytest.mark.bot_settings(**USER_ONLY)
async def test_chat_where_only_the_member_installed_gatecord(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    guild, channel = await friends_server(bot_env)
    rec = await emu.inject_slash_command("chat", {"prompt": "hello from friends"}, guild_id=guild,
                                         channel_id=channel)
    shown = await wait_shown(rec)
    assert answer_text(shown.content) == expected_reply("hello from friends")
    await settled(bot_env)
    assert emu.forbidden_calls == []
    # charged to alice herself (a server's budget here is 0 requests and would have refused)
    assert await own_chat_requests(bot_env) == 1
    assert await bot_env.bot.quotas.counter("guild", guild, 0, "chat_requests") == (0, 0)

    # the next /chat there continues her conversation, kept in the bot's own store
    rec = await emu.inject_slash_command("chat", {"prompt": "and then?"}, guild_id=guild, channel_id=channel)
    await wait_shown(rec)
    assert chat_prompts(gw)[-1] == ["hello from friends", "and then?"]
    # bob's /chat there is his own conversation
    emu.install_for_user("bob")
    rec = await emu.inject_slash_command("chat", {"prompt": "bob here"}, guild_id=guild, channel_id=channel,
                                         user="bob")
    await wait_shown(rec)
    assert chat_prompts(gw)[-1] == ["bob here"]
    assert emu.forbidden_calls == []


async def test_a_long_answer_for_a_guest_keeps_within_five_follow_ups(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    guild, channel = await friends_server(bot_env)
    answer = "\n\n".join(f"Paragraph {i}: " + "explanation " * 30 for i in range(24))
    assert 8900 <= len(answer) <= 9400
    gw.queue_reply(answer, chunk_size=300)
    rec = await emu.inject_slash_command("chat", {"prompt": "tell me everything"}, guild_id=guild,
                                         channel_id=channel)
    await rec.wait_final(lambda r: r.original is not None and final(r.original)
                         and "is attached as `answer.txt`" in r.original.content, timeout=20)
    await settled(bot_env)
    assert len(rec.followups) <= 5
    live = [m for m in rec.messages if not m.deleted]
    assert live == [rec.original]
    (attached,) = rec.original.attachments
    assert attached.filename == "answer.txt" and attached.data.decode() == answer
    assert emu.forbidden_calls == []


async def test_a_guest_cannot_open_a_thread_and_is_told_privately(bot_env: Any) -> None:
    emu = bot_env.discord
    guild, channel = await friends_server(bot_env)
    rec = await emu.inject_slash_command("chat", {"prompt": "thread it", "thread": True}, guild_id=guild,
                                         channel_id=channel)
    await rec.wait_final(lambda r: any("No thread" in m.content for m in r.followups))
    note = next(m for m in rec.followups if "No thread" in m.content)
    assert note.ephemeral and "isn't a member here" in note.content
    assert answer_text(rec.original.content) == expected_reply("thread it")
    assert emu.forbidden_calls == []


async def test_media_commands_refuse_a_guest_privately(bot_env: Any) -> None:
    emu = bot_env.discord
    guild, channel = await friends_server(bot_env)
    rec = await emu.inject_slash_command("imagine create", {"prompt": "a cat"}, guild_id=guild, channel_id=channel)
    shown = await wait_shown(rec)
    assert shown.ephemeral and "`/imagine create` needs Gatecord to be in this conversation" in shown.content
    assert emu.forbidden_calls == []


@pytest.mark.bot_settings(**USER_ONLY)
async def test_chat_in_a_dm_and_the_dm_continues_like_a_thread(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    dm = emu.dm_channel_id("alice")
    rec = await emu.inject_slash_command("chat", {"prompt": "first in dm"}, channel_id=dm)
    shown = await wait_shown(rec)
    assert answer_text(shown.content) == expected_reply("first in dm")
    await settled(bot_env)
    # a plain message (no mention) continues the DM's conversation
    said = await emu.send_user_message("second in dm", channel_id=dm)
    reply = await wait_reply(emu, said)
    assert answer_text(reply.content) == expected_reply("second in dm")
    assert chat_prompts(gw)[-1] == ["first in dm", "second in dm"]
    await settled(bot_env)
    # a reply to the first answer goes on from the latest turn too, as in a thread
    said = await emu.send_user_message(f"<@{emu.bot_user_id}> third", channel_id=dm,
                                       reply_to=rec.original.id)
    await wait_reply(emu, said)
    assert chat_prompts(gw)[-1] == ["first in dm", "second in dm", "third"]
    await settled(bot_env)
    assert await own_chat_requests(bot_env) == 3
    assert emu.forbidden_calls == []


async def test_mylimits_in_a_dm_shows_the_members_own_budget(bot_env: Any) -> None:
    emu = bot_env.discord
    await bot_env.bot.quotas.set_user_limit(emu.users["alice"].id, "chat_requests", 7, actor_id=1)
    rec = await emu.inject_slash_command("mylimits", channel_id=emu.dm_channel_id("alice"))
    shown = await wait_shown(rec)
    assert shown.ephemeral
    assert shown.content.startswith("**Your own budgets today**")
    assert "Your own budget applies here (this is a DM)" in shown.content
    assert "chat requests: **7** of 7 left (set for you by the bot's owner)" in shown.content
    # in the server that installed Gatecord, the server's budgets apply
    rec = await emu.inject_slash_command("mylimits")
    shown = await wait_shown(rec)
    assert shown.content.startswith("**Your budgets today**") and "own budget" not in shown.content


async def test_admin_commands_are_not_offered_in_dms_and_member_commands_are_everywhere(bot_env: Any) -> None:
    emu = bot_env.discord
    for name in ("config show", "quota show", "usage", "credits", "relay"):
        schema, _ = emu.commands.find(name.split()[0], 1, None)
        assert (schema["integration_types"], schema["contexts"]) == ([0], [0]), name
        if name != "relay":  # a group: its sub-commands are injected, and are refused the same way
            with pytest.raises(CommandNotAvailable):
                await emu.inject_slash_command(name, channel_id=emu.dm_channel_id("admin"), user="admin")
    for name in ("chat", "vision", "imagine", "mylimits"):
        schema, _ = emu.commands.find(name, 1, None)
        assert (schema["integration_types"], schema["contexts"]) == ([0, 1], [0, 1, 2]), name
    describe, _ = emu.commands.find("Describe image", 3, None)
    assert (describe["integration_types"], describe["contexts"]) == ([0, 1], [0, 1, 2])


async def test_owner_sets_a_members_own_budget_with_a_command(bot_env: Any) -> None:
    emu = bot_env.discord
    alice = emu.users["alice"].id
    options = {"user": str(alice), "action": "set", "kind": "chat_requests", "limit": 3}
    rec = await emu.inject_slash_command("owner quota-user", options, channel_id=emu.dm_channel_id("admin"),
                                         user="admin")
    shown = await wait_shown(rec)
    assert shown.ephemeral and f"<@{alice}>'s own daily chat requests budget: unlimited → 3." in shown.content
    line = (await bot_env.bot.quotas.own_limits(alice)).line("member", "chat_requests")
    assert line is not None and (line.limit, line.source) == (3, "owner")
    # anyone else is refused, privately, and nothing changes
    rec = await emu.inject_slash_command("owner quota-user", {**options, "limit": 100},
                                         channel_id=emu.dm_channel_id("alice"))
    shown = await wait_shown(rec)
    assert shown.ephemeral and shown.content == "Only Gatecord's owner can use `/owner`."
    assert (await bot_env.bot.quotas.own_limits(alice)).remaining("chat_requests") == 3


async def test_a_server_install_still_charges_the_server(bot_env: Any) -> None:
    """Where the server installed Gatecord (and alice too), the server pays, as before."""
    emu = bot_env.discord
    emu.install_for_user("alice")
    rec = await emu.inject_slash_command("chat", {"prompt": "in the server"})
    await wait_shown(rec)
    await settled(bot_env)
    assert (await bot_env.bot.quotas.counter("guild", emu.guild_id, 0, "chat_requests"))[0] == 1
    assert await own_chat_requests(bot_env) == 0


async def test_chat_in_a_group_dm_goes_through_the_interaction_only(bot_env: Any) -> None:
    emu = bot_env.discord
    emu.install_for_user("alice")
    group = emu.private_channel_id(("alice", "bob"))
    rec = await emu.inject_slash_command("chat", {"prompt": "hi group"}, channel_id=group)
    shown = await wait_shown(rec)
    assert answer_text(shown.content) == expected_reply("hi group")
    await settled(bot_env)
    assert await own_chat_requests(bot_env) == 1
    assert emu.forbidden_calls == []
