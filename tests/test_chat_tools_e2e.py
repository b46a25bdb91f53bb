"""Tools in chat end to end: the real bot against the Discord and gateway emulators. The gateway emulator's
model calls a tool when the prompt has a ``call <name> <arguments>`` line (sandbox/gateways/chat.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.budgets.rules import Requester
from bot.chat.tools.loop import MAX_ROUNDS, ROUNDS_NOTE
from sandbox.discord_emulator.models import FLAG_IS_VOICE_MESSAGE as IS_VOICE_MESSAGE
from sandbox.web_ui.views import message_view
from tests.e2e import final, wait_reply

POLL_ARGS = {"question": "Lunch today?", "answers": ["Pizza", "Soup", "Salad"], "hours": 2}


def chat_requests(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/chat/completions")]


def offered(request: Any) -> list[str]:
    return [t["function"]["name"] for t in request.json.get("tools") or []]


def tool_results(request: Any) -> list[str]:
    return [m["content"] for m in request.json["messages"] if m["role"] == "tool"]


async def run_chat(env: Any, prompt: str, *, user: str = "alice", timeout: float = 20.0) -> Any:
    rec = await env.discord.inject_slash_command("chat", {"prompt": prompt}, user=user)
    await rec.wait_final(final, timeout=timeout)
    await asyncio.wait_for(env.bot.chat.admission.wait_idle(), timeout)  # settled: the turn gave its slot back
    return rec


async def ledger(bot: Any) -> list[Any]:
    return await bot.store.fetchall("SELECT feature, images, outcome FROM usage_ledger ORDER BY ts")


@pytest.fixture(autouse=True)
async def all_tools(bot_env: Any) -> None:
    """The server allows every tool (the default is search_knowledge alone: see the test of the default)."""
    emu = bot_env.discord
    await bot_env.bot.guild_config.set_guild(emu.guild_id, emu.users["admin"].id, tools="all")


async def test_by_default_a_channel_offers_search_knowledge_alone(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    await env.bot.guild_config.set_guild(emu.guild_id, emu.users["admin"].id, tools=None)  # back to the default
    await run_chat(env, 'call generate_image {"prompt": "a red fox"}')
    (request,) = chat_requests(env.gateway)
    assert offered(request) == ["search_knowledge"]
    assert not [r for r in env.gateway.requests if "images" in r.path]


async def test_generate_image_is_attached_to_the_answer_and_charged_to_the_member(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await run_chat(env, 'call generate_image {"prompt": "a red fox in the snow"}')
    msg = rec.original
    assert [a.content_type for a in msg.attachments] == ["image/png"]
    assert "🔧 generated an image: “a red fox in the snow”" in msg.content
    assert "Tool result received: 1 image(s) generated" in msg.content  # streaming went on after the call
    assert msg.content.splitlines()[-1].startswith("-# ") and "🔧 generate_image" in msg.content.splitlines()[-1]
    (image_call,) = [r for r in env.gateway.requests if "images" in r.path and r.method == "POST"]
    assert image_call.json["prompt"] == "a red fox in the snow"
    alice = emu.users["alice"].id
    assert await env.bot.quotas.counter("member", emu.guild_id, alice, "images") == (1, 0)
    rows = [tuple(r) for r in await ledger(env.bot)]
    # every call is in the ledger: the tool call's own row, beside what it and the chat rounds spent
    assert sorted(rows) == sorted([("chat", 0, "tool_calls"), ("image", 1, "ok"), ("tool", 0, "ok"), ("chat", 0, "ok")])
    assert await env.bot.store.fetchval("SELECT model_requested FROM usage_ledger WHERE feature = 'tool'") == \
        "generate_image"
    second = chat_requests(env.gateway)[1].json
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "generate_image"


async def test_create_poll_posts_a_valid_poll_in_the_channel(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await run_chat(env, "call create_poll " + json.dumps(POLL_ARGS))
    polls = [m for m in emu.channel_messages(emu.channel_id) if m.poll is not None]
    assert len(polls) == 1
    poll = polls[0].poll
    assert poll["question"] == {"text": "Lunch today?"}
    assert [a["poll_media"]["text"] for a in poll["answers"]] == ["Pizza", "Soup", "Salad"]
    posted = [r for r in emu.requests if r.method == "POST" and r.path.endswith(f"/channels/{emu.channel_id}/messages")
              and isinstance(r.json, dict) and r.json.get("poll")]
    assert len(posted) == 1 and posted[0].status == 200 and posted[0].json["poll"]["duration"] == 2
    assert message_view(emu, polls[0])["poll"]["answers"][1]["text"] == "Soup"  # what the sandbox page draws
    assert "🔧 posted a poll: “Lunch today?”" in rec.original.content


async def test_a_disabled_tool_is_never_offered(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    admin = emu.users["admin"].id
    await env.bot.guild_config.set_channel(emu.guild_id, emu.channel_id, admin, tools="create_poll,read_channel")
    rec = await run_chat(env, 'call generate_image {"prompt": "a red fox"}')
    (request,) = chat_requests(env.gateway)
    assert offered(request) == ["create_poll", "read_channel"]
    assert not [r for r in env.gateway.requests if "images" in r.path]
    assert not rec.original.attachments and "🔧" not in rec.original.content

    await env.bot.guild_config.set_channel(emu.guild_id, emu.channel_id, admin, tools="off")
    await run_chat(env, "call create_poll " + json.dumps(POLL_ARGS))
    assert "tools" not in chat_requests(env.gateway)[-1].json
    # threads inherit the channel's setting
    await run_chat_in_thread(env, "call create_poll " + json.dumps(POLL_ARGS))
    assert "tools" not in chat_requests(env.gateway)[-1].json
    assert not [m for m in emu.channel_messages(emu.channel_id) if m.poll is not None]


async def run_chat_in_thread(env: Any, prompt: str) -> Any:
    emu = env.discord
    msg = await emu.send_user_message(prompt, channel_id=emu.thread_id, mention_bot=True)
    return await wait_reply(emu, msg, timeout=20)


@pytest.mark.parametrize(("arguments", "error"), [
    ('{"question": "Lunch?", "answers": ["Pizza", "Soup"', "error: the arguments are not valid JSON"),
    ('{"question": "Lunch?", "answers": ["Pizza"], "hours": 0}', "error: the arguments do not match the schema"),
])
async def test_a_malformed_call_gets_an_error_result_and_the_answer_completes(
    bot_env: Any, arguments: str, error: str
) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await run_chat(env, f"call create_poll {arguments}")
    first, second = chat_requests(env.gateway)
    (result,) = tool_results(second)
    assert result.startswith(error)
    content = rec.original.content
    assert "⚠️ create_poll: invalid arguments" in content
    assert "Tool result received: " + error in content and content.splitlines()[-1].startswith("-# ")
    assert not [m for m in emu.channel_messages(emu.channel_id) if m.poll is not None]


async def test_a_model_calling_tools_forever_is_stopped_after_four_rounds(bot_env: Any) -> None:
    env = bot_env
    env.gateway.faults.tool_loop()
    rec = await run_chat(env, 'call read_channel {"limit": 3}')
    requests = chat_requests(env.gateway)
    assert len(requests) == MAX_ROUNDS + 1
    assert [r.json.get("tool_choice") for r in requests] == [None] * MAX_ROUNDS + ["none"]
    content = rec.original.content
    assert content.count("🔧 read the last") == MAX_ROUNDS
    assert ROUNDS_NOTE in content.splitlines()[-1]
    rows = [r["outcome"] for r in await ledger(env.bot) if r["feature"] == "chat"]
    assert rows == ["tool_calls"] * MAX_ROUNDS + ["ok"]  # every round reserved and settled
    calls = [r["outcome"] for r in await ledger(env.bot) if r["feature"] == "tool"]
    assert calls == ["ok"] * MAX_ROUNDS  # and every call is in the ledger


async def test_read_channel_reads_only_the_current_channel_and_what_the_member_can_read(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    await emu.send_user_message("the secret plan is in random", user="bob", channel_id=emu.channel2_id)
    await emu.send_user_message("hello from general", user="bob")
    ask = await emu.send_user_message('call read_channel {"limit": 20}', mention_bot=True)
    reply = await wait_reply(emu, ask, timeout=20)
    (result,) = tool_results(chat_requests(env.gateway)[1])
    assert "Bob: hello from general" in result and "secret plan" not in result
    assert "🔧 read the last 1 message(s) of #general" in reply.content
    reads = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/messages")]
    assert reads and all(r.path.endswith(f"/channels/{emu.channel_id}/messages") for r in reads)

    # a channel argument is not part of the schema: refused, nothing read
    before = len(reads)
    ask = await emu.send_user_message(f'call read_channel {{"limit": 5, "channel_id": {emu.channel2_id}}}',
                                      mention_bot=True)
    await wait_reply(emu, ask, timeout=20)
    assert tool_results(chat_requests(env.gateway)[-1])[0].startswith("error: the arguments do not match")
    assert len([r for r in emu.requests if r.method == "GET" and r.path.endswith("/messages")]) == before

    # a member who may not read the history gets nothing from it
    await emu.set_channel_permissions(emu.channel_id, emu.users["alice"].id, deny=1 << 16, is_member=True)
    ask = await emu.send_user_message('call read_channel {"limit": 5}', mention_bot=True)
    await wait_reply(emu, ask, timeout=20)
    (refused,) = tool_results(chat_requests(env.gateway)[-1])
    assert refused == "error: The member who asked may not read this channel's history."


@pytest.mark.gateway_profile("aiproxy")
async def test_nothing_is_offered_on_a_gateway_without_tools(bot_env: Any) -> None:
    env = bot_env
    rec = await run_chat(env, "call create_poll " + json.dumps(POLL_ARGS))
    (request,) = chat_requests(env.gateway)
    assert "tools" not in request.json and "tool_choice" not in request.json
    assert "🔧" not in rec.original.content


async def test_speak_sends_a_voice_message_in_the_channel_charged_as_speech(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    ask = await emu.send_user_message('call speak {"text": "Hello everyone, lunch is ready."}', mention_bot=True)
    reply = await wait_reply(emu, ask, timeout=30)
    voices = [m for m in emu.channel_messages(emu.channel_id)
              if m.author_id == emu.bot_user_id and m.flags & IS_VOICE_MESSAGE]
    assert len(voices) == 1 and voices[0].attachments[0].content_type.startswith("audio/ogg")
    (speech,) = [r for r in env.gateway.requests if r.path.endswith("/audio/speech")]
    assert speech.json["input"] == "Hello everyone, lunch is ready."
    assert "🔧 spoke: “Hello everyone, lunch is ready.”" in reply.content
    alice = emu.users["alice"].id
    assert await env.bot.quotas.counter("member", emu.guild_id, alice, "speech_chars") == (31, 0)


async def test_search_knowledge_gives_the_model_passages_and_the_footer_cites_their_sources(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    link = f"https://discord.com/channels/{emu.guild_id}/{emu.channel_id}/1234"
    admin = Requester(emu.guild_id, None, emu.users["admin"].id, ())
    await env.bot.knowledge.add_text(admin, source="handbook.md", title="Handbook",
                                     text="# Holidays\n\nEveryone gets 30 days of holiday, and how many holidays "
                                          "are left is shown on the staff page.")
    await env.bot.knowledge.add_text(admin, source=link, title="Announcement",
                                     text="How many holidays are left this year? The office closes on Fridays.")
    other = Requester(emu.guild2_id, None, emu.users["admin"].id, ())  # another server's knowledge never shows
    await env.bot.knowledge.add_text(other, source="secret.md", title="Secret", text="how many holidays: 99")
    rec = await run_chat(env, 'call search_knowledge {"query": "how many holidays"}')
    (result,) = tool_results(chat_requests(env.gateway)[1])
    assert "Handbook › Holidays (source: handbook.md" in result and "30 days of holiday" in result
    assert "Announcement" in result and "99" not in result and "secret.md" not in result
    footer = rec.original.content.splitlines()[-1]
    assert "🔧 search_knowledge" in footer
    sources = rec.original.content.splitlines()[-2]
    assert sources in (f"-# 📚 Sources: handbook.md, [Announcement](<{link}>)",
                       f"-# 📚 Sources: [Announcement](<{link}>), handbook.md")
    assert "🔧 searched the knowledge base for “how many holidays”" in rec.original.content
