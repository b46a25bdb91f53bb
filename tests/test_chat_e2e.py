"""/chat, mentions, replies and threads end to end: the real bot against the Discord and gateway emulators."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from bot.rendering.limits import INTERACTION_ACK_SECONDS, MESSAGE_CONTENT
from bot.rendering.stream import WRITING_MARKER
from sandbox.gateways import MODEL_ROLES, expected_reply, expected_thought
from tests.e2e import BotEnv, final, wait_reply, wait_shown
from tests.waiting import Changes, store_writes

FOOTER = re.compile(r"\n-# [^\n]*$")


def answer_text(content: str) -> str:
    """The answer without its footer line."""
    return FOOTER.sub("", content)


def chat_requests(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/chat/completions")]


def prompt_texts(request: Any) -> list[tuple[str, str]]:
    return [(m["role"], m["content"] if isinstance(m["content"], str) else str(m["content"]))
            for m in request.json["messages"]]


def bot_write_requests(emu: Any) -> list[Any]:
    return [r for r in emu.requests if r.method in ("POST", "PATCH")
            and ("/messages" in r.path or r.path.endswith("/callback") or r.route.startswith("/webhooks"))]


async def recorded_reply(env: Any, user_msg: Any, timeout: float = 10.0) -> Any:
    """The bot's finished reply to ``user_msg``, once its exchange is recorded, so that a reply to it
    continues from it (a message turn records its exchange before it gives its admission slot back)."""
    reply = await wait_reply(env.discord, user_msg, timeout=timeout)
    await asyncio.wait_for(env.bot.chat.admission.wait_idle(), timeout)
    return reply


async def thread_recorded(changes: Changes, env: Any, thread_id: int) -> None:
    """A ``/chat thread:True`` turn is recorded in its new thread after the thread's intro is sent: wait for
    it (on the store's writes, see ``store_writes``) before the thread is spoken in."""
    await changes.wait_until(lambda: env.bot.chat.conversations.thread_history(f"thread:{thread_id}", limit=2),
                             what="the thread's first exchange recorded")


async def run_chat(env: Any, prompt: str, *, user: str = "alice", timeout: float = 10.0, **options: Any) -> Any:
    rec = await env.discord.inject_slash_command("chat", {"prompt": prompt, **options}, user=user)
    await rec.wait_final(final, timeout=timeout)
    return rec


# --------------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------------


async def test_streaming_paced_edits_final_text_and_no_marker(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    answer = " ".join(f"word{i}" for i in range(60)) + " — done."
    gw.queue_reply(answer, chunk_size=8)
    gw.chunk_delay = 0.05  # ~60 chunks over ~3 s
    rec = await run_chat(bot_env, "stream please")
    msg = rec.original
    assert answer_text(msg.content) == answer
    assert WRITING_MARKER not in msg.content
    assert msg.content.endswith("tokens · " + msg.content.rsplit(" · ", 1)[-1])  # footer present
    assert "`" + gw.default_chat_model + "`" in msg.content
    intermediate = [e for e in msg.edits if WRITING_MARKER in e.content]
    assert len(intermediate) >= 2, "the answer was visibly streamed"
    gaps = [b.at - a.at for a, b in zip(intermediate, intermediate[1:])]
    assert min(gaps) >= 1.0, gaps
    # every intermediate text is a prefix of the answer (no garbage while streaming)
    for e in intermediate:
        shown = e.content.replace("\n" + WRITING_MARKER, "")
        assert answer.startswith(shown), shown
    # the final edit went out promptly after the previous one allowed it
    assert msg.edits[-1].at - intermediate[-1].at < 1.6
    assert emu.rate_limited == []
    assert rec.ack_latency is not None and rec.ack_latency < INTERACTION_ACK_SECONDS


async def test_first_text_is_shown_with_the_first_chunk(bot_env: Any) -> None:
    gw = bot_env.gateway
    gw.queue_reply("First chunk then a pause and the rest of the answer.", chunk_size=12)
    gw.chunk_delay = 0.4
    rec = await bot_env.discord.inject_slash_command("chat", {"prompt": "hi"}, user="alice")
    first = await rec.wait_final(lambda m: m.content.startswith("First chunk"), timeout=5)
    assert WRITING_MARKER in first.content
    assert first.content.startswith("First chunk\n")
    await rec.wait_final(final, timeout=10)
    assert answer_text(rec.original.content) == "First chunk then a pause and the rest of the answer."


async def test_long_answer_with_code_block_is_split_readably(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    prose = "\n\n".join(f"Paragraph {i}: " + "explanation " * 25 for i in range(12))
    code = "\n".join(f"    total += compute_value({i}, factor)  # line {i}" for i in range(70))
    answer = prose + "\n\nHere is the code:\n\n```python\ndef run():\n" + code + "\n    return total\n```\n\n" + prose[:2000]
    assert 8500 <= len(answer) <= 10000
    gw.queue_reply(answer, chunk_size=400)
    rec = await run_chat(bot_env, "long one")
    # the footer goes on the last message, with the final edit (the webhook bucket may pace the followups)
    await emu.wait_for(lambda: all(final(m) for m in rec.messages) and " tokens" in rec.messages[-1].content,
                       timeout=15)
    messages = rec.messages
    contents = [m.content for m in messages]
    assert all(len(c) <= MESSAGE_CONTENT for c in contents)
    assert all(WRITING_MARKER not in c for c in contents)
    contents[-1] = answer_text(contents[-1])
    # code fences balanced in every message; the continuation reopens with the language tag
    for c in contents:
        assert c.count("```") % 2 == 0, c[-300:]
    reopened = [c for c in contents if c.startswith("```python\n")]
    assert reopened, "the code block continues in the next message with its language tag"
    # rejoin: drop the closing/reopening fences at the cut, then compare ignoring blank-line layout
    joined = contents[0]
    for c in contents[1:]:
        if joined.endswith("\n```") and c.startswith("```python\n") and joined.count("```") % 2 == 0:
            joined = joined[: -len("\n```")] + "\n" + c[len("```python\n"):]
        else:
            joined += "\n\n" + c
    assert re.sub(r"\s+", " ", joined) == re.sub(r"\s+", " ", answer)
    for m in messages:
        assert m.allowed_mentions == {"parse": []}


BARE_FENCE = re.compile(r"^ {0,3}```[A-Za-z0-9_+\-.#]*$")


def fence_open_after(text: str) -> bool:
    """True when ``text`` ends inside a code block (fences read line by line, as the bot splits)."""
    inside = False
    for line in text.split("\n"):
        m = re.match(r"^ {0,3}```(.*)$", line)
        if m and not inside:
            inside = "```" not in m.group(1)  # ```inline``` on one line opens nothing
        elif m and not m.group(1).strip():
            inside = False
    return inside


@pytest.mark.bot_settings(chat={"max_tokens": 900})
async def test_answer_cut_by_max_tokens_inside_code_is_balanced_with_the_footer_outside(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    opening = "```python print('starting the job now')  # " + "explained at length " * 8  # code on the fence line
    code = "\n".join(f"    total += compute_value({i}, factor)  # step {i}" for i in range(110))
    prose = "\n\n".join(f"Paragraph {i}: " + "the reason is simple " * 6 for i in range(4))
    answer = prose + "\n\nHere is the code:\n\n" + opening + "\ndef run():\n" + code + "\n    return total\n```\n\nDone."
    cut = answer[: 900 * 4]  # what the gateway sends: max_tokens stops the model inside the code block
    assert len(answer) > len(cut) > 2 * 1600 and fence_open_after(cut)
    gw.queue_reply(answer, chunk_size=300, cut_at_max_tokens=True)
    rec = await run_chat(bot_env, "write the job")
    await emu.wait_for(lambda: all(final(m) for m in rec.messages) and " tokens" in rec.messages[-1].content,
                       timeout=15)
    assert chat_requests(gw)[-1].json.get("max_tokens") == 900
    contents = [m.content for m in rec.messages]
    assert len(contents) >= 3
    for c in contents:
        assert len(c) <= MESSAGE_CONTENT
        assert c.count("```") % 2 == 0 and not fence_open_after(c), c[-300:]
    # the footer is the last line, after the closing fence: outside the code
    body, footer = contents[-1].rsplit("\n", 1)
    assert footer.startswith("-# ") and "stopped at the token limit" in footer
    assert body.endswith("\n```") and not fence_open_after(body)
    # a split reopens the block with the fence and its language only; no line is shown twice
    assert all(c.startswith("```python\n    total") for c in contents[1:]), [c[:60] for c in contents]
    shown = [line for c in contents[:-1] + [body] for line in c.split("\n") if not BARE_FENCE.match(line)]
    sent = [line for line in cut.split("\n") if not BARE_FENCE.match(line)]
    assert sum("print('starting the job now')" in line for line in shown) == 1
    code_lines = [line for line in shown if line.startswith("    total += ")]
    assert len(code_lines) == len(set(code_lines)), "a line is repeated at a split"
    assert re.sub(r"\s+", " ", " ".join(shown)) == re.sub(r"\s+", " ", " ".join(sent))


@pytest.mark.bot_settings(chat={"attach_as_file_over": 3000})
async def test_answer_past_threshold_is_attached_as_file(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    answer = "\n\n".join(f"Section {i}. " + "content " * 40 for i in range(20))
    gw.queue_reply(answer, chunk_size=500)
    rec = await run_chat(bot_env, "big")
    await emu.wait_for(lambda: rec.original.attachments and all(final(m) for m in rec.messages), timeout=10)
    live = [m for m in rec.messages if not m.deleted]
    assert len(live) == 1
    att = live[0].attachments[0]
    assert att.filename == "answer.txt" and att.data.decode() == answer
    assert "attached as `answer.txt`" in live[0].content
    assert len(live[0].content) <= MESSAGE_CONTENT


async def test_output_never_pings(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    alice = emu.users["alice"].id
    text = f"Hey @everyone and @here, <@&{emu.admin_role_id}> and <@{alice}>!"
    gw.queue_reply(text, chunk_size=10)
    rec = await run_chat(bot_env, "ping them")
    assert answer_text(rec.original.content) == text
    assert rec.original.mention_ids == [] and rec.original.mention_role_ids == []
    assert rec.original.mention_everyone is False
    # by mention too (a channel reply)
    gw.queue_reply(text, chunk_size=10)
    user_msg = await emu.send_user_message("ping them", user="bob", mention_bot=True)
    reply = await wait_reply(emu, user_msg)
    assert answer_text(reply.content) == text
    assert reply.mention_ids == [] and not reply.mention_everyone
    writes = [r for r in bot_write_requests(emu) if isinstance(r.json, dict) and
              ("content" in r.json or "data" in r.json)]
    assert writes
    for r in writes:
        body = r.json.get("data", r.json) if r.path.endswith("/callback") else r.json
        if body and "content" in body:
            sent = body.get("allowed_mentions")
            assert sent is not None and sent["parse"] == [] and not sent.get("replied_user"), (r.path, sent)
            assert not sent.get("users") and not sent.get("roles")


# --------------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------------


async def test_gateway_429_then_next_turn_works(bot_env: Any) -> None:
    gw = bot_env.gateway
    gw.faults.fail_next(1, status=429, retry_after=7)
    rec = await run_chat(bot_env, "first")
    assert rec.original.content.startswith("⚠️ ")
    assert "rate limiting" in rec.original.content and "try again in 7 s" in rec.original.content
    rec = await run_chat(bot_env, "second")
    assert answer_text(rec.original.content) == expected_reply("second")


async def test_gateway_500_then_next_turn_works(bot_env: Any) -> None:
    gw = bot_env.gateway
    gw.faults.fail_next(1, status=500)
    rec = await run_chat(bot_env, "first")
    assert "unavailable right now (HTTP 500)" in rec.original.content
    rec = await run_chat(bot_env, "second")
    assert answer_text(rec.original.content) == expected_reply("second")


@pytest.mark.bot_settings(gateway={"total_timeout": 1.0, "stream_idle_timeout": 1.0, "max_retries": 0})
async def test_gateway_timeout_then_next_turn_works(bot_env: Any) -> None:
    gw = bot_env.gateway
    gw.faults.slow_next(1, delay=3.0)
    rec = await run_chat(bot_env, "first", timeout=15)
    assert "did not answer in time" in rec.original.content
    rec = await run_chat(bot_env, "second")
    assert answer_text(rec.original.content) == expected_reply("second")


async def test_stream_cut_keeps_partial_text_marked_incomplete(bot_env: Any) -> None:
    gw = bot_env.gateway
    gw.queue_reply("Alpha beta gamma delta epsilon zeta eta theta.", chunk_size=6)
    gw.faults.cut_stream_next(1, after_chunks=4)
    rec = await run_chat(bot_env, "cut me")
    content = rec.original.content
    assert "Incomplete answer" in content
    shown = content.split("\n")[0]
    assert shown and "Alpha beta gamma delta epsilon zeta eta theta.".startswith(shown)
    assert shown != "Alpha beta gamma delta epsilon zeta eta theta."
    assert WRITING_MARKER not in content
    rec = await run_chat(bot_env, "next")
    assert answer_text(rec.original.content) == expected_reply("next")


async def test_unknown_model_suggests_close_names(bot_env: Any) -> None:
    gw = bot_env.gateway
    real = gw.default_chat_model
    typo = real[:-1] + ("x" if real[-1] != "x" else "y")
    rec = await run_chat(bot_env, "hello", model=typo)
    assert f"`{typo}` is not available" in rec.original.content
    assert f"`{real}`" in rec.original.content


@pytest.mark.bot_settings(chat={"max_concurrency": 1, "max_queue": 0})
async def test_busy_is_told_at_once(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    gw.queue_reply("slow answer " * 5, chunk_size=6)
    gw.chunk_delay = 0.1
    first = await emu.inject_slash_command("chat", {"prompt": "one"}, user="alice")
    await first.wait_final(lambda m: bool(m.content), timeout=5)
    second = await emu.inject_slash_command("chat", {"prompt": "two"}, user="bob")
    await second.wait_acked(timeout=3)
    assert second.ack_latency < 1.0
    assert "too many requests" in second.content and second.original.ephemeral
    await first.wait_final(final, timeout=15)


async def test_budget_exhausted_message(bot_env: Any) -> None:
    await bot_env.bot.quotas.set_limit(bot_env.discord.guild_id, "member", "chat_requests", 1, actor_id=1)
    rec = await run_chat(bot_env, "one")
    assert answer_text(rec.original.content) == expected_reply("one")
    rec = await bot_env.discord.inject_slash_command("chat", {"prompt": "two"}, user="alice")
    refusal = await wait_shown(rec)
    assert refusal.content.startswith("⚠️ ") and "budget" in refusal.content.lower() and refusal.ephemeral
    assert len(chat_requests(bot_env.gateway)) == 1


# --------------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------------


async def test_users_do_not_see_each_other_and_replies_continue(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    a1 = await emu.send_user_message("my secret number is 42", user="alice", mention_bot=True)
    r1 = await recorded_reply(bot_env, a1)
    assert answer_text(r1.content) == expected_reply("my secret number is 42")
    b1 = await emu.send_user_message("what is my secret number?", user="bob", mention_bot=True)
    await recorded_reply(bot_env, b1)
    bob_req = chat_requests(gw)[-1]
    assert all("42" not in c for _, c in prompt_texts(bob_req))
    # alice replies to her answer: the conversation continues
    a2 = await emu.send_user_message("and doubled?", user="alice", reply_to=r1.id)
    r2 = await recorded_reply(bot_env, a2)
    roles = prompt_texts(chat_requests(gw)[-1])
    assert [r for r, _ in roles] == ["system", "user", "assistant", "user"]
    assert "my secret number is 42" in roles[1][1] and roles[2][1] == expected_reply("my secret number is 42")
    assert roles[3][1] == "and doubled?"
    # a reply to the OLD answer continues from that answer (not from the newer one)
    a3 = await emu.send_user_message("halved instead?", user="alice", reply_to=r1.id)
    await recorded_reply(bot_env, a3)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert "and doubled?" not in texts and texts[-1] == "halved instead?"
    assert any("my secret number is 42" in t for t in texts)
    # bob replying to alice's answer sees that answer only, not alice's question
    b2 = await emu.send_user_message("what does that mean?", user="bob", reply_to=r2.id)
    await wait_reply(emu, b2)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[-2] == expected_reply("and doubled?")
    assert all("42" not in t for t in texts)


async def test_thread_keeps_its_history(bot_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    changes = store_writes(monkeypatch)
    rec = await run_chat(bot_env, "let's talk about cats", thread=True)
    thread_id = await emu.wait_for(lambda: rec.original.thread_id, timeout=5)
    intro = await emu.wait_for_message(lambda m: m.channel_id == thread_id and m.author_id == emu.bot_user_id)
    assert "continue here" in intro.content
    await thread_recorded(changes, bot_env, thread_id)
    m1 = await emu.send_user_message("how many legs?", user="alice", channel_id=thread_id)
    await recorded_reply(bot_env, m1)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[1:] == ["let's talk about cats", expected_reply("let's talk about cats"), "how many legs?"]
    m2 = await emu.send_user_message("and whiskers?", user="bob", channel_id=thread_id)  # shared on purpose
    await wait_reply(emu, m2)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[1:] == ["let's talk about cats", expected_reply("let's talk about cats"), "how many legs?",
                         expected_reply("how many legs?"), "and whiskers?"]


async def test_mention_in_a_plain_channel_message_is_ignored_without_mention(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    before = len(chat_requests(gw))
    await emu.send_user_message("just chatting, no bot here", user="alice")
    m = await emu.send_user_message("hello bot", user="alice", mention_bot=True)
    await wait_reply(emu, m)
    assert len(chat_requests(gw)) == before + 1


async def test_text_attachment_is_read_into_the_prompt(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    m = await emu.send_user_message("summarise this", user="alice", mention_bot=True,
                                    attachments=[("notes.md", b"# Notes\nThe launch is on Friday.", "text/markdown")])
    await wait_reply(emu, m)
    last_user = prompt_texts(chat_requests(gw)[-1])[-1][1]
    assert last_user.startswith("summarise this")
    assert "notes.md" in last_user and "The launch is on Friday." in last_user


async def test_chat_file_option_reads_a_text_file(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    rec = await emu.inject_slash_command(
        "chat", {"prompt": "what does this do?"}, user="alice",
        attachments={"file": ("main.py", b"print('hello from the file')\n", "text/x-python")},
    )
    await rec.wait_final(final, timeout=10)
    last_user = prompt_texts(chat_requests(gw)[-1])[-1][1]
    assert last_user.startswith("what does this do?")
    assert "```python\nprint('hello from the file')" in last_user
    assert answer_text(rec.original.content) == expected_reply(last_user)


async def test_reasoning_is_removed_and_attached(bot_env: Any) -> None:
    bot_env.bot.settings.chat.attach_reasoning = True
    gw = bot_env.gateway
    gw.queue_reply("The answer is 4.", reasoning="2 plus 2 is 4", chunk_size=5)
    rec = await run_chat(bot_env, "2+2?")
    await bot_env.discord.wait_for(lambda: rec.original.attachments, timeout=5)
    assert answer_text(rec.original.content) == "The answer is 4."
    assert "2 plus 2" not in rec.original.content
    assert rec.original.attachments[0].filename == "reasoning.txt"
    assert rec.original.attachments[0].data.decode() == "2 plus 2 is 4"


async def test_private_answer_is_ephemeral(bot_env: Any) -> None:
    rec = await run_chat(bot_env, "secret", private=True)
    assert rec.original.ephemeral
    assert answer_text(rec.original.content) == expected_reply("secret")


# --------------------------------------------------------------------------------------------------
# Acknowledgement under load, /models, autocomplete
# --------------------------------------------------------------------------------------------------


async def test_fifty_at_once_are_all_acknowledged_quickly(bot_env: Any) -> None:
    emu = bot_env.discord
    recs = await asyncio.gather(*[
        emu.inject_slash_command("chat", {"prompt": f"q{i}"}, user="alice" if i % 2 else "bob") for i in range(50)
    ])
    await asyncio.gather(*[r.wait_final(final, timeout=30) for r in recs])
    assert max(r.ack_latency for r in recs) < INTERACTION_ACK_SECONDS
    answered = 0
    for i, r in enumerate(recs):
        got_answer = answer_text(r.original.content) == expected_reply(f"q{i}")
        assert got_answer or "too many requests" in r.content
        answered += got_answer
    assert answered >= 40, f"only {answered} of 50 got their answer; the others were refused as too many"
    assert emu.rate_limited == []


@pytest.mark.bot_settings(discord={"http_connections": 3})
async def test_a_burst_shares_a_few_kept_alive_connections_to_discord(bot_env: Any) -> None:
    emu = bot_env.discord
    before = len(emu.requests)
    recs = await asyncio.gather(*[
        emu.inject_slash_command("chat", {"prompt": f"burst {i}"}, user="alice" if i % 2 else "bob")
        for i in range(20)
    ])
    await asyncio.gather(*[r.wait_final(final, timeout=30) for r in recs])
    for i, r in enumerate(recs):
        assert answer_text(r.original.content) == expected_reply(f"burst {i}")
    peers = {r.peer for r in emu.requests[before:] if r.peer is not None}
    assert 1 <= len(peers) <= 3  # 60+ requests (deferrals, edits) over at most three connections


async def wait_admission_idle(bot: Any, timeout: float = 5.0) -> None:
    """Every admitted turn has given its slot and conversation lock back."""
    await asyncio.wait_for(bot.chat.admission.wait_idle(), timeout)


def callbacks_of(rec: Any) -> list[tuple[Any, Any]]:
    """(type, status) of every interaction callback the bot sent for ``rec``."""
    return [(c["type"], c.get("status")) for c in rec.callbacks]


async def test_chat_is_acknowledged_once_by_a_deferral(bot_env: Any) -> None:
    emu = bot_env.discord
    public = await run_chat(bot_env, "deferred public")
    private = await run_chat(bot_env, "deferred private", private=True)
    for rec, text in ((public, "deferred public"), (private, "deferred private")):
        assert callbacks_of(rec) == [(5, 200)]  # one deferral, never a second "already acknowledged"
        assert answer_text(rec.original.content) == expected_reply(text)
    assert not public.original.ephemeral and private.original.ephemeral
    callback_bodies = [r.json for r in emu.requests if r.path.endswith("/callback")][-2:]
    assert [{k: v for k, v in b.items() if k != "data" or v.get("flags")} for b in callback_bodies] == [
        {"type": 5}, {"type": 5, "data": {"flags": 64}}]


async def test_a_refused_deferral_tells_the_member_and_gives_the_slot_back(bot_env: Any) -> None:
    emu = bot_env.discord
    emu.inject_error("/callback", 400, code=50035, message="Invalid Form Body", count=1)
    rec = await emu.inject_slash_command("chat", {"prompt": "after a refused deferral"}, user="alice")
    msg = await rec.wait_final(lambda m: "Discord refused" in m.content, timeout=10)
    assert msg.ephemeral
    statuses = [r.status for r in emu.requests if r.path.endswith("/callback") and f"/{rec.id}/" in r.path]
    assert statuses == [400, 200]  # the deferral refused, then the error is the response
    assert callbacks_of(rec) == [(4, 200)]
    assert not any(r.path.endswith("/chat/completions") for r in bot_env.gateway.requests
                   if "after a refused deferral" in str(r.json))
    await wait_admission_idle(bot_env.bot)
    again = await run_chat(bot_env, "after a refused deferral, again")
    assert answer_text(again.original.content) == expected_reply("after a refused deferral, again")


@pytest.mark.bot_settings(chat={"max_concurrency": 1, "max_queue": 0})
async def test_busy_is_answered_at_once_and_gives_no_ticket_away(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    gw.queue_reply("slow answer " * 5, chunk_size=6)
    gw.chunk_delay = 0.1
    first = await emu.inject_slash_command("chat", {"prompt": "one"}, user="alice")
    await first.wait_final(lambda m: bool(m.content), timeout=5)
    second = await emu.inject_slash_command("chat", {"prompt": "two"}, user="bob")
    await second.wait_acked(timeout=3)
    assert callbacks_of(second) == [(4, 200)]  # the busy message is the first and only response
    assert "too many requests" in second.content and second.original.ephemeral
    await first.wait_final(final, timeout=15)
    await wait_admission_idle(bot_env.bot)
    third = await run_chat(bot_env, "three", user="bob")  # the slot is free again
    assert answer_text(third.original.content) == expected_reply("three")


async def test_models_lists_and_pages(bot_env: Any) -> None:
    emu = bot_env.discord
    rec = await emu.inject_slash_command("models", {"kind": "all"}, user="alice")
    msg = await rec.wait_final(lambda m: bool(m.embeds), timeout=10)
    embed = msg.embeds[0]
    listed = await bot_env.bot.gateway.list_models()
    assert "models" in embed["title"].lower()
    first_ids = re.findall(r"`([^`]+)`", embed["description"])
    assert first_ids and set(first_ids) <= {m.id for m in listed}
    if len(listed) > 15:
        nxt = [cid for cid in msg.custom_ids()][-1]
        press = await emu.press_button(msg.id, nxt, user="alice")
        await press.wait_acked()
        await emu.wait_for(lambda: msg.embeds[0]["description"] != embed["description"], timeout=5)
        assert "Page 2/" in msg.embeds[0]["footer"]["text"]


async def test_model_autocomplete_filters_chat_models(bot_env: Any) -> None:
    emu = bot_env.discord
    listed = await bot_env.bot.gateway.list_models()
    chat_ids = {m.id for m in listed if m.kind.value in ("chat", "vision")}
    choices = await emu.inject_autocomplete("chat", {"prompt": "x", "model": ""}, "model", user="alice")
    assert 0 < len(choices) <= 25
    assert {c["value"] for c in choices} <= chat_ids
    needle = sorted(chat_ids)[0].split("/")[-1][:4]
    choices = await emu.inject_autocomplete("chat", {"prompt": "x", "model": needle}, "model", user="alice")
    assert choices and all(needle.lower() in c["value"].lower() for c in choices)


# --------------------------------------------------------------------------------------------------
# Settings, models, profiles
# --------------------------------------------------------------------------------------------------


async def test_channel_settings_apply_and_threads_inherit(bot_env: Any) -> None:
    emu, gw, bot = bot_env.discord, bot_env.gateway, bot_env.bot
    other_model = MODEL_ROLES[gw.profile]["non_vision"]
    await bot.guild_config.set_channel(
        emu.guild_id, emu.channel_id, emu.users["admin"].id, chat_model=other_model,
        system_prompt="You are terse. Server {server}, channel {channel}, user {user}.", temperature=0.2,
        max_tokens=300,
    )
    rec = await run_chat(bot_env, "configured?")
    body = chat_requests(gw)[-1].json
    assert body["model"] == other_model
    assert body["temperature"] == 0.2 and body.get("max_tokens", body.get("max_completion_tokens")) == 300
    assert body["messages"][0] == {"role": "system",
                                   "content": "You are terse. Server Gatecord Test, channel general, user Alice."}
    assert f"`{other_model}`" in rec.original.content
    # a thread of #general inherits the channel's settings (mention inside the existing public thread)
    m = await emu.send_user_message("in the thread", user="bob", channel_id=emu.thread_id, mention_bot=True)
    await wait_reply(emu, m)
    body = chat_requests(gw)[-1].json
    assert body["model"] == other_model and body["temperature"] == 0.2


async def test_mentions_can_be_turned_off_per_channel(bot_env: Any) -> None:
    emu, gw, bot = bot_env.discord, bot_env.gateway, bot_env.bot
    await bot.guild_config.set_channel(emu.guild_id, emu.channel2_id, emu.users["admin"].id, answer_mentions=False)
    before = len(chat_requests(gw))
    await emu.send_user_message("are you there?", user="alice", channel_id=emu.channel2_id, mention_bot=True)
    m = await emu.send_user_message("and here?", user="alice", mention_bot=True)  # #general still answers
    await wait_reply(emu, m)
    assert len(chat_requests(gw)) == before + 1
    assert prompt_texts(chat_requests(gw)[-1])[-1][1] == "and here?"
    assert not [x for x in emu.bot_messages(emu.channel2_id)]


async def test_fallback_model_is_shown_in_the_footer(bot_env: Any) -> None:
    gw = bot_env.gateway
    fallback = MODEL_ROLES[gw.profile]["fallback"]
    rec = await run_chat(bot_env, "who answers?", model=fallback)
    footer = rec.original.content.rsplit("\n", 1)[-1]
    assert footer.startswith("-# ")
    assert f"fallback from `{fallback}`" in footer
    assert f"`{gw.default_chat_model}`" in footer


async def test_think_blocks_are_not_shown(bot_env: Any) -> None:
    gw = bot_env.gateway
    model = MODEL_ROLES[gw.profile]["reasoning"]
    rec = await run_chat(bot_env, "think first", model=model)
    assert answer_text(rec.original.content) == expected_reply("think first")
    assert expected_thought("think first") not in rec.original.content and "<think>" not in rec.original.content
    assert not rec.original.attachments  # attach_reasoning is off by default


async def test_context_too_long_says_what_to_do(bot_env: Any) -> None:
    gw = bot_env.gateway
    small = MODEL_ROLES[gw.profile]["small"]
    rec = await run_chat(bot_env, "word " * 1500, model=small)
    assert "too long for" in rec.original.content and "new conversation" in rec.original.content
    rec = await run_chat(bot_env, "short", model=small)
    assert answer_text(rec.original.content) == expected_reply("short")


@pytest.mark.parametrize("gateway_emu", ["aicordcloud", "digicord", "aicredits", "aiproxy", "openai"], indirect=True)
async def test_chat_streams_on_every_gateway(bot_env: Any) -> None:
    gw = bot_env.gateway
    gw.queue_reply("One two three four five six seven.", chunk_size=4)
    rec = await run_chat(bot_env, "hello")
    assert answer_text(rec.original.content) == "One two three four five six seven."
    footer = rec.original.content.rsplit("\n", 1)[-1]
    assert footer.startswith("-# `") and " tokens" in footer  # the model the gateway says answered


# --------------------------------------------------------------------------------------------------
# Interaction token expiry (Discord's 15-minute limit) while the answer is still streaming
# --------------------------------------------------------------------------------------------------


def answer_messages(emu: Any, rec: Any) -> list[Any]:
    """What the member sees of one answer in the channel: the interaction's messages, then any bot
    message posted in the channel after the answer began (the fallback once the token is gone)."""
    start = rec.original.id
    return sorted((m for m in emu.messages.values()
                   if m.channel_id == emu.channel_id and m.author_id == emu.bot_user_id
                   and m.id >= start and not m.deleted), key=lambda m: m.id)


def shown_answer(messages: list[Any]) -> str | None:
    """The whole answer once every message is final and the footer is on the last one, else None."""
    if not messages or not all(final(m) for m in messages) or " tokens" not in messages[-1].content:
        return None
    return "\n\n".join([m.content for m in messages[:-1]] + [answer_text(messages[-1].content)])


async def test_answer_still_arrives_after_the_token_expires_mid_stream(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    answer = " ".join(f"token{i}" for i in range(80)) + " — the end."
    gw.queue_reply(answer, chunk_size=10)
    gw.chunk_delay = 0.05  # ~60 chunks: about 3 s of streaming
    rec = await emu.inject_slash_command("chat", {"prompt": "a slow one"}, user="alice")
    await rec.wait_final(lambda m: WRITING_MARKER in m.content, timeout=5)  # streaming has begun
    emu.expire_interaction(rec)  # 15 minutes have passed: webhook calls now get 401 50027

    shown = await emu.wait_for(lambda: shown_answer(answer_messages(emu, rec)), timeout=15)
    assert shown == answer
    messages = answer_messages(emu, rec)
    assert all(WRITING_MARKER not in m.content for m in messages), "no message is left 'still writing'"
    assert all(not m.ephemeral for m in messages)
    # the bot noticed the refusal and wrote through the channel afterwards
    refused = [r for r in emu.requests if r.route.startswith("/webhooks") and r.status == 401]
    assert refused
    through_channel = emu.requests_to(f"/channels/{emu.channel_id}/messages/{rec.original.id}", "PATCH")
    assert any(r.at > refused[0].at and r.status == 200 for r in through_channel)


async def test_long_answer_continues_in_the_channel_after_the_token_expires(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    answer = "\n\n".join(f"Paragraph {i}: " + "words " * 60 for i in range(14))  # ~5,000 chars: 3 messages
    assert len(answer) > 2 * MESSAGE_CONTENT
    gw.queue_reply(answer, chunk_size=60)
    gw.chunk_delay = 0.03
    rec = await emu.inject_slash_command("chat", {"prompt": "a long slow one"}, user="alice")
    await rec.wait_final(lambda m: WRITING_MARKER in m.content, timeout=5)
    emu.expire_interaction(rec)

    await emu.wait_for(lambda: shown_answer(answer_messages(emu, rec)), timeout=20)
    messages = answer_messages(emu, rec)
    assert len(messages) >= 3
    assert all(len(m.content) <= MESSAGE_CONTENT for m in messages)
    joined = "\n\n".join([m.content for m in messages[:-1]] + [answer_text(messages[-1].content)])
    assert re.sub(r"\s+", " ", joined).strip() == re.sub(r"\s+", " ", answer).strip()
    assert all(m.allowed_mentions == {"parse": []} for m in messages)


async def test_a_turn_frees_its_slot_and_settles_while_discord_holds_its_final_edit(bot_env: Any) -> None:
    """discord.py sleeps on an exhausted bucket before it returns a request's answer. The answer's first
    message uses the channel's last message create: the turn is recorded, settled and out of the
    admission line while the member still sees "still writing", and the reply chain still works."""
    emu, gw, bot = bot_env.discord, bot_env.gateway, bot_env.bot
    emu.configure_bucket("message_create", 1, 3.0)
    gw.queue_reply("An answer that is complete long before Discord lets the bot edit it.", chunk_size=8)
    gw.chunk_delay = 0.05  # the first words are on screen before the stream ends
    asked = await emu.send_user_message("are you rate limited?", user="alice", mention_bot=True)

    def shown_unfinished() -> Any:
        return next((m for m in emu.messages.values() if m.author_id == emu.bot_user_id
                     and str((m.message_reference or {}).get("message_id")) == str(asked.id)), None)

    first = await emu.wait_for(shown_unfinished, timeout=5)
    await asyncio.wait_for(bot.chat.admission.wait_idle(), 5)
    settled = await bot.store.fetchval(
        "SELECT COUNT(*) FROM usage_ledger WHERE user_id = ? AND charged = 1", (emu.users["alice"].id,))
    assert settled == 1
    assert WRITING_MARKER in first.content  # the final edit is still held back by the rate limit
    answer = await wait_reply(emu, asked, timeout=10)
    assert answer_text(answer.content) == "An answer that is complete long before Discord lets the bot edit it."
    follow = await emu.send_user_message("and after that?", user="alice", reply_to=answer.id)
    await wait_reply(emu, follow, timeout=10)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[-3:] == ["are you rate limited?", answer_text(answer.content), "and after that?"]


# --------------------------------------------------------------------------------------------------
# On PostgreSQL
# --------------------------------------------------------------------------------------------------


async def test_on_postgresql_threads_and_replies_keep_their_history_across_a_restart(
    pg_bot_env: BotEnv, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = pg_bot_env
    emu, gw = env.discord, env.gateway
    assert env.bot.store.dialect == "postgresql"
    changes = store_writes(monkeypatch)
    rec = await run_chat(env, "let's talk about cats", thread=True)
    thread_id = await emu.wait_for(lambda: rec.original.thread_id, timeout=5)
    await emu.wait_for_message(lambda m: m.channel_id == thread_id and m.author_id == emu.bot_user_id)  # registered
    await thread_recorded(changes, env, thread_id)
    m1 = await emu.send_user_message("how many legs?", user="alice", channel_id=thread_id)
    await recorded_reply(env, m1)
    a1 = await emu.send_user_message("my secret number is 42", user="alice", mention_bot=True)
    r1 = await recorded_reply(env, a1)

    await env.restart()  # a new process: nothing but the database carries the conversations over
    env.bot.chat.bot_threads.discard(thread_id)  # as if another process had started the thread since
    m2 = await emu.send_user_message("and whiskers?", user="bob", channel_id=thread_id)
    await wait_reply(emu, m2)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[1:] == ["let's talk about cats", expected_reply("let's talk about cats"), "how many legs?",
                         expected_reply("how many legs?"), "and whiskers?"]
    a2 = await emu.send_user_message("and doubled?", user="alice", reply_to=r1.id)
    await wait_reply(emu, a2)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[1:] == ["my secret number is 42", expected_reply("my secret number is 42"), "and doubled?"]
    assert thread_id in env.bot.chat.bot_threads  # found in the database, remembered
    assert not env.db_path.exists()  # no SQLite file on the side
