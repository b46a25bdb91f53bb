"""Small context windows end to end: the real bot against a gateway emulator serving a 2,048-token model
(Gemma 3 270M behind a proxy) that fails past its window, either with a 400 context_length_exceeded
carrying the numbers or, like LiteLLM in front of llama.cpp, with a 200 stream that ends with no text."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.gateways import MODEL_ROLES, expected_reply
from sandbox.gateways.answers import prompt_tokens
from tests.test_chat_e2e import answer_text, chat_requests, prompt_texts, recorded_reply, run_chat

SMALL = MODEL_ROLES["openai"]["context_2k"]
assert SMALL is not None and SMALL == MODEL_ROLES["aiproxy"]["context_2k"]
WINDOW = 2048
SHORTENED = "history shortened to fit the model's 2,048-token context"
PLACEHOLDER = "*(The model returned an empty answer.)*"


def long_answer(turn: int) -> str:
    """About 400 tokens, one Discord message: three exchanges and the default max_tokens (1,024) do not fit
    2,048 tokens; two do, but not with the bot's margin."""
    return f"Answer {turn}: " + " ".join(f"a{turn}b{i:03d}" for i in range(224))


def footer(content: str) -> str:
    return content.rsplit("\n", 1)[-1]


def sent_tokens(request: Any) -> int:
    """What a request asks of the model's window, counted as the emulator counts it."""
    body = request.json
    return prompt_tokens(body["messages"]) + int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)


async def converse(env: Any, turns: int) -> list[Any]:
    """A conversation of ``turns`` turns: a mention, then each prompt a reply to the previous answer. Every
    answer is long (queued); returns the bot's replies."""
    emu, gw = env.discord, env.gateway
    await env.bot.chat.context.loaded()  # the start-up read of the model list is over
    replies: list[Any] = []
    for turn in range(turns):
        gw.queue_reply(long_answer(turn), chunk_size=400)
        if replies:
            asked = await emu.send_user_message(f"question {turn}", user="alice", reply_to=replies[-1].id)
        else:
            asked = await emu.send_user_message(f"question {turn}", user="alice", mention_bot=True)
        reply = await recorded_reply(env, asked)
        assert answer_text(reply.content) == long_answer(turn), (turn, reply.content[-300:])
        replies.append(reply)
    return replies


@pytest.mark.gateway_profile("aiproxy")
@pytest.mark.bot_settings(gateway={"chat_model": SMALL})
async def test_a_six_turn_conversation_fits_the_window_the_gateway_lists(bot_env: Any) -> None:
    """AIProxy lists ``context_window`` 2048: every request fits at once (no refusal), history is trimmed
    down to the latest exchange, and the footer says so."""
    env, gw = bot_env, bot_env.gateway
    replies = await converse(env, 6)
    requests = chat_requests(gw)
    assert [r.status for r in requests] == [200] * 6, "nothing was refused"
    assert all(sent_tokens(r) <= WINDOW for r in requests), [sent_tokens(r) for r in requests]
    assert all(SHORTENED not in footer(r.content) for r in replies[:2])
    assert all(SHORTENED in footer(r.content) for r in replies[2:]), [footer(r.content) for r in replies]
    texts = [c for _, c in prompt_texts(requests[-1])]
    assert texts[1:] == ["question 4", long_answer(4), "question 5"], "the latest exchange is kept"


@pytest.mark.bot_settings(gateway={"chat_model": SMALL}, chat={"context_windows": {SMALL: WINDOW}})
async def test_a_configured_window_is_fitted_without_a_refusal(bot_env: Any) -> None:
    """The OpenAI-shaped list says nothing of the window: ``[chat] context_windows`` does."""
    env, gw = bot_env, bot_env.gateway
    replies = await converse(env, 6)
    requests = chat_requests(gw)
    assert [r.status for r in requests] == [200] * 6
    assert all(sent_tokens(r) <= WINDOW for r in requests)
    assert SHORTENED in footer(replies[-1].content)


@pytest.mark.bot_settings(gateway={"chat_model": SMALL})
async def test_a_context_length_error_teaches_the_window_and_the_turn_is_asked_again_shorter(
    bot_env: Any,
) -> None:
    """Unknown window: the first request past it gets 400 context_length_exceeded "maximum context length
    is 2048 tokens … requested N"; the bot asks once more with half the history, learns 2,048 and fits
    every later turn at once."""
    env, gw = bot_env, bot_env.gateway
    replies = await converse(env, 6)
    requests = chat_requests(gw)
    refused = [i for i, r in enumerate(requests) if r.status != 200]
    assert len(refused) == 1 and [r.status for r in requests].count(200) == 6, [r.status for r in requests]
    assert requests[refused[0]].status == 400
    retry = requests[refused[0] + 1]
    assert len(retry.json["messages"]) < len(requests[refused[0]].json["messages"])
    assert all(sent_tokens(r) <= WINDOW for r in requests[refused[0] + 1:])
    assert env.bot.chat.context.window(SMALL) == WINDOW
    assert all(SHORTENED in footer(r.content) for r in replies[3:]), [footer(r.content) for r in replies]
    # the refused call charged nothing: one chat request per turn
    emu = env.discord
    assert (await env.bot.quotas.counter("member", emu.guild_id, emu.users["alice"].id, "chat_requests"))[0] == 6


@pytest.mark.bot_settings(gateway={"chat_model": SMALL})
async def test_an_empty_stream_from_a_proxy_is_asked_again_with_half_the_history(bot_env: Any) -> None:
    """Like LiteLLM in front of llama.cpp: past the window the answer is a 200 stream with no text. The
    bot asks once more with half the history; every turn is answered, the footer says the history was
    shortened, and the empty call is not charged (the gateway reported no usage)."""
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    gw.context_overflow = "empty"
    replies = await converse(env, 6)
    requests = chat_requests(gw)
    assert len(requests) > 6, "some turns were asked twice"
    assert all(PLACEHOLDER not in r.content for r in replies)
    shortened = [r for r in replies if "history shortened to fit the model's context" in footer(r.content)]
    assert len(shortened) == len(requests) - 6
    used = await env.bot.quotas.counter("member", emu.guild_id, emu.users["alice"].id, "chat_requests")
    assert used[0] == 6
    empty = await env.bot.store.fetchval(
        "SELECT COUNT(*) FROM usage_ledger WHERE outcome = 'empty' AND charged = 0")
    assert empty == len(requests) - 6


async def test_a_reply_to_an_empty_answer_continues_the_members_conversation(bot_env: Any) -> None:
    """The member saw the empty-answer placeholder and replies to it: the model gets the member's earlier
    prompt (with the new one), never the placeholder."""
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    gw.queue_reply("")
    asked = await emu.send_user_message("my secret number is 42", user="alice", mention_bot=True)
    empty = await recorded_reply(env, asked)
    assert answer_text(empty.content) == PLACEHOLDER
    follow = await emu.send_user_message("what is my number?", user="alice", reply_to=empty.id)
    reply = await recorded_reply(env, follow)
    sent = prompt_texts(chat_requests(gw)[-1])
    assert sent[1:] == [("user", "my secret number is 42\n\nwhat is my number?")]
    assert answer_text(reply.content) == expected_reply("my secret number is 42\n\nwhat is my number?")
    # and the conversation goes on from there
    again = await emu.send_user_message("and doubled?", user="alice", reply_to=reply.id)
    await recorded_reply(env, again)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[1:] == ["my secret number is 42\n\nwhat is my number?",
                         expected_reply("my secret number is 42\n\nwhat is my number?"), "and doubled?"]
    assert all(PLACEHOLDER not in str(r.json) for r in chat_requests(gw))


async def test_a_prompt_too_long_by_itself_is_refused_once_with_what_to_do(bot_env: Any) -> None:
    gw = bot_env.gateway
    rec = await run_chat(bot_env, "word " * 3000, model=SMALL)
    assert "too long for" in rec.original.content and "new conversation" in rec.original.content
    assert len(chat_requests(gw)) == 1, "no history to leave out: not asked again"
    rec = await run_chat(bot_env, "short", model=SMALL)
    assert answer_text(rec.original.content) == expected_reply("short")
