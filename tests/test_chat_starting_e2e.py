"""Starting a conversation end to end (the real bot against the Discord and gateway emulators): ``listen``
channels keep each member's conversation apart, ``auto_thread`` answers in a thread named after the
prompt, trigger words count as mentions, bots and webhooks (the relay's posts too) are never answered,
and these turns meet the same admission limits as mentions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sandbox.discord_emulator import permissions as P
from sandbox.gateways import expected_reply
from tests.e2e import final, wait_reply
from tests.test_chat_e2e import answer_text, chat_requests, prompt_texts, recorded_reply
from tests.test_relay_e2e import create_key, post


async def configure(env: Any, channel_id: int, **options: Any) -> str:
    """``/config channel`` as the admin; returns the private reply."""
    rec = await env.discord.inject_slash_command("config channel", {"channel": channel_id, **options}, user="admin")
    msg = await rec.wait_final(timeout=10)
    assert msg.ephemeral
    return str(msg.content)


def texts_of_last_request(gw: Any) -> list[str]:
    """What the model was sent for the last answer, without the system prompt."""
    return [c for role, c in prompt_texts(chat_requests(gw)[-1]) if role != "system"]


async def answered_everything(env: Any) -> None:
    """Every turn admitted so far has finished (and recorded its exchange)."""
    await asyncio.wait_for(env.bot.chat.admission.wait_idle(), 10)


async def thread_answer(emu: Any, thread_id: int, after: int = 0) -> Any:
    """The bot's next finished message in ``thread_id`` (after message id ``after``)."""
    return await emu.wait_for_message(
        lambda m: m.channel_id == thread_id and m.author_id == emu.bot_user_id and m.id > after and final(m))


# --------------------------------------------------------------------------------------------------
# listen
# --------------------------------------------------------------------------------------------------


async def test_listen_answers_every_member_with_their_own_history_only(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    reply = await configure(bot_env, emu.channel_id, listen=True)
    assert reply == f"Updated <#{emu.channel_id}>:\n• listen: default → yes"
    before = len(chat_requests(gw))

    a1 = await emu.send_user_message("my secret number is 42", user="alice")  # no mention
    r1 = await recorded_reply(bot_env, a1)
    assert answer_text(r1.content) == expected_reply("my secret number is 42")
    b1 = await emu.send_user_message("my favourite colour is blue", user="bob")
    await recorded_reply(bot_env, b1)
    assert texts_of_last_request(gw) == ["my favourite colour is blue"]  # nothing of alice's

    # alice's next message (not a reply) continues her conversation, without bob's
    a2 = await emu.send_user_message("what is my number?", user="alice")
    await recorded_reply(bot_env, a2)
    assert texts_of_last_request(gw) == [
        "my secret number is 42", expected_reply("my secret number is 42"), "what is my number?"]

    # bob replying to alice's answer goes on with HIS conversation
    b2 = await emu.send_user_message("and what did I tell you?", user="bob", reply_to=r1.id)
    r_b2 = await recorded_reply(bot_env, b2)
    assert r_b2.channel_id == emu.channel_id
    assert texts_of_last_request(gw) == [
        "my favourite colour is blue", expected_reply("my favourite colour is blue"), "and what did I tell you?"]

    # a mention in a listen channel is the same conversation; the bot's own answers were never answered
    a3 = await emu.send_user_message("and doubled?", user="alice", mention_bot=True)
    await recorded_reply(bot_env, a3)
    texts = texts_of_last_request(gw)
    assert texts[0] == "my secret number is 42" and texts[-1] == "and doubled?"
    assert all("blue" not in t for t in texts)
    assert len(chat_requests(gw)) == before + 5


async def test_listen_ignores_bots_webhooks_and_relay_posts(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await configure(bot_env, emu.channel_id, listen=True, triggers="gatecord")
    before = len(chat_requests(gw))
    # the relay's posts: without Manage Webhooks as the bot itself, with it through the bot's own webhook
    key = await create_key(bot_env, name="ci")
    relayed = {"channelId": str(emu.channel_id), "content": f"gatecord, deploy done <@{emu.bot_user_id}>"}
    status, body = await post(bot_env, key, relayed, wait=True)
    assert status == 200, body
    as_bot = emu.messages[int(body["message_id"])]
    assert as_bot.author_id == emu.bot_user_id and as_bot.webhook_id is None
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    status, body = await post(bot_env, key, {**relayed, "content": "gatecord: order paid"}, wait=True)
    assert status == 200, body
    via_webhook = emu.messages[int(body["message_id"])]
    assert via_webhook.webhook_id is not None
    # another bot, mentioning us and saying the trigger word
    await emu.add_user("otherbot", bot=True)
    from_bot = await emu.send_user_message("gatecord, answer me", user="otherbot", mention_bot=True)
    # a member's message afterwards is answered: the ones before it were seen, and left alone
    m = await emu.send_user_message("anyone here?", user="alice")
    await recorded_reply(bot_env, m)
    assert len(chat_requests(gw)) == before + 1
    assert texts_of_last_request(gw) == ["anyone here?"]
    answered = {str((x.message_reference or {}).get("message_id")) for x in emu.bot_messages(emu.channel_id)}
    assert not answered & {str(as_bot.id), str(via_webhook.id), str(from_bot.id)}


async def test_listen_leaves_a_message_with_nothing_to_answer_alone(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await configure(bot_env, emu.channel_id, listen=True)
    before = len(chat_requests(gw))
    silent = await emu.send_user_message("", user="alice", attachments=[("data.bin", b"\x00\x01", "application/zip")])
    m = await emu.send_user_message("hello", user="alice")
    await recorded_reply(bot_env, m)
    assert len(chat_requests(gw)) == before + 1
    assert not [x for x in emu.bot_messages(emu.channel_id)
                if str((x.message_reference or {}).get("message_id")) == str(silent.id)]


@pytest.mark.bot_settings(chat={"max_concurrency": 1, "max_queue": 0})
async def test_a_busy_listen_channel_says_busy_as_mentions_do(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await configure(bot_env, emu.channel_id, listen=True)
    go_on = asyncio.Event()

    async def held(_seconds: float) -> None:
        await go_on.wait()

    gw.stream_tps, gw.sleep = 1000, held  # the answer's first piece, then the stream waits for the test
    before = len(chat_requests(gw))
    first = await emu.send_user_message("a long question", user="alice")
    await emu.wait_for_message(lambda x: (x.message_reference or {}).get("message_id") in (first.id, str(first.id))
                               and x.author_id == emu.bot_user_id)
    second = await emu.send_user_message("me too", user="bob")
    busy = await wait_reply(emu, second)
    assert "too many requests" in busy.content
    go_on.set()
    done = await recorded_reply(bot_env, first)
    assert answer_text(done.content) == expected_reply("a long question")
    assert len(chat_requests(gw)) == before + 1


async def test_listen_turns_spend_the_members_budget(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await configure(bot_env, emu.channel_id, listen=True)
    await bot_env.bot.quotas.set_limit(emu.guild_id, "member", "chat_requests", 1, actor_id=1)
    before = len(chat_requests(gw))
    await recorded_reply(bot_env, await emu.send_user_message("one", user="alice"))
    refusal = await recorded_reply(bot_env, await emu.send_user_message("two", user="alice"))
    assert refusal.content.startswith("⚠️ ") and "budget" in refusal.content.lower()
    assert len(chat_requests(gw)) == before + 1


# --------------------------------------------------------------------------------------------------
# triggers
# --------------------------------------------------------------------------------------------------


async def test_trigger_words_count_as_mentions_as_whole_words(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    reply = await configure(bot_env, emu.channel_id, triggers="Gatecord, hey bot")
    assert reply == f"Updated <#{emu.channel_id}>:\n• triggers: default → `gatecord`, `hey bot`"
    bad = await configure(bot_env, emu.channel_id, triggers="ok, <@1>")
    assert bad.startswith("Not changed: `<@1>` can't be a trigger")
    before = len(chat_requests(gw))
    ignored = await emu.send_user_message("gatecords are great, and so is mygatecord", user="alice")
    m = await emu.send_user_message("GATECORD, what is 2+2?", user="alice")
    r = await recorded_reply(bot_env, m)
    assert answer_text(r.content) == expected_reply("GATECORD, what is 2+2?")
    m2 = await emu.send_user_message("Hey   Bot: still there?", user="bob")
    await recorded_reply(bot_env, m2)
    assert len(chat_requests(gw)) == before + 2
    assert not [x for x in emu.bot_messages(emu.channel_id)
                if str((x.message_reference or {}).get("message_id")) == str(ignored.id)]
    # the other channel has no triggers
    other = await emu.send_user_message("gatecord?", user="alice", channel_id=emu.channel2_id)
    m3 = await emu.send_user_message("done", user="alice", mention_bot=True)
    await recorded_reply(bot_env, m3)
    assert len(chat_requests(gw)) == before + 3
    assert not emu.bot_messages(emu.channel2_id) and other.id


# --------------------------------------------------------------------------------------------------
# auto_thread
# --------------------------------------------------------------------------------------------------


async def test_auto_thread_answers_in_a_thread_named_from_the_prompt_and_continues_there(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await configure(bot_env, emu.channel_id, auto_thread=True)
    prompt = "**How** do I sort a `list` in Python? " + "Explain it slowly please. " * 6
    m = await emu.send_user_message(prompt, user="alice", mention_bot=True)
    thread_id = await emu.wait_for(lambda: emu.messages[m.id].thread_id)
    thread = emu.world.channels[thread_id]
    assert thread.parent_id == emu.channel_id and thread.type == 11
    assert thread.name.startswith("How do I sort a list in Python? Explain it slowly please.")
    assert len(thread.name) == 100 and thread.name.endswith("…") and "*" not in thread.name and "<@" not in thread.name
    first = await thread_answer(emu, thread_id)
    assert answer_text(first.content) == expected_reply(prompt.strip())
    assert not [x for x in emu.bot_messages(emu.channel_id) if not x.ephemeral]  # nothing answered in the channel
    await answered_everything(bot_env)
    # a follow-up in the thread (no mention) continues the thread's conversation
    f = await emu.send_user_message("and in reverse?", user="alice", channel_id=thread_id)
    second = await thread_answer(emu, thread_id, after=f.id)
    assert answer_text(second.content) == expected_reply("and in reverse?")
    assert texts_of_last_request(gw) == [prompt.strip(), expected_reply(prompt.strip()), "and in reverse?"]
    # a plain message in the channel is not for the bot (listen is off)
    requests = len(chat_requests(gw))
    await emu.send_user_message("just chatting", user="bob")
    m2 = await emu.send_user_message("another question", user="bob", mention_bot=True)
    thread2 = await emu.wait_for(lambda: emu.messages[m2.id].thread_id)
    assert emu.world.channels[thread2].name == "another question"
    await thread_answer(emu, thread2)
    assert len(chat_requests(gw)) == requests + 1


async def test_listen_with_auto_thread_opens_a_thread_for_any_message(bot_env: Any) -> None:
    emu = bot_env.discord
    await configure(bot_env, emu.channel2_id, listen=True, auto_thread=True)
    m = await emu.send_user_message("What's the __best__ pizza?", user="bob", channel_id=emu.channel2_id)
    thread_id = await emu.wait_for(lambda: emu.messages[m.id].thread_id)
    assert emu.world.channels[thread_id].name == "What's the best pizza?"
    answer = await thread_answer(emu, thread_id)
    assert answer_text(answer.content) == expected_reply("What's the __best__ pizza?")


async def test_auto_thread_without_the_permission_answers_in_place_and_says_why_once(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await configure(bot_env, emu.channel_id, auto_thread=True)
    await emu.deny_bot(emu.channel_id, P.CREATE_PUBLIC_THREADS)
    m1 = await emu.send_user_message("first question", user="alice", mention_bot=True)
    r1 = await recorded_reply(bot_env, m1)
    first_line, rest = r1.content.split("\n", 1)
    assert first_line.startswith("-# ⚠️ No thread: I'm missing the **Create Public Threads** permission")
    assert "`auto_thread` off with `/config channel`" in first_line
    assert answer_text(rest) == expected_reply("first question")
    m2 = await emu.send_user_message("second question", user="alice", mention_bot=True)
    r2 = await recorded_reply(bot_env, m2)
    assert answer_text(r2.content) == expected_reply("second question")  # told once
    assert texts_of_last_request(gw) == ["second question"]  # the note is not part of any conversation
    assert not [r for r in emu.requests if r.path.endswith("/threads")]
    assert emu.messages[m1.id].thread_id is None


async def test_auto_thread_refused_by_discord_answers_in_place_and_says_why(bot_env: Any) -> None:
    emu = bot_env.discord
    await configure(bot_env, emu.channel2_id, auto_thread=True)
    emu.inject_error("/threads", 403, code=50013, message="Missing Permissions")
    m = await emu.send_user_message("question", user="bob", channel_id=emu.channel2_id, mention_bot=True)
    r = await recorded_reply(bot_env, m)
    first_line, rest = r.content.split("\n", 1)
    assert first_line.startswith("-# ⚠️ No thread: I'm not allowed to open threads in this channel (Create Public "
                                 "Threads), so I'm answering here.")
    assert answer_text(rest) == expected_reply("question")
    # the next one opens its thread
    m2 = await emu.send_user_message("again", user="bob", channel_id=emu.channel2_id, mention_bot=True)
    thread_id = await emu.wait_for(lambda: emu.messages[m2.id].thread_id)
    assert answer_text((await thread_answer(emu, thread_id)).content) == expected_reply("again")


async def test_config_help_explains_the_settings(bot_env: Any) -> None:
    rec = await bot_env.discord.inject_slash_command("config help", {}, user="admin")
    msg = await rec.wait_final(timeout=10)
    assert msg.ephemeral
    assert "• **listen**: answer every message in the channel" in msg.content
    assert "• **auto thread**: a mention (with listen: any message) opens a public thread" in msg.content
    assert "• **triggers**: up to 10 words" in msg.content
