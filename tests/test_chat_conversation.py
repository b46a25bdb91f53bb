"""bot/chat/conversation.py: history fitting, prompt placeholders, and turn chains in a real database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.chat.conversation import (
    ConversationStore,
    HistoryTurn,
    estimate_tokens,
    fit_history,
    new_conversation_id,
    render_system_prompt,
    thread_conversation_id,
)
from bot.storage.store import Store


def test_system_prompt_placeholders() -> None:
    now = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)
    text = render_system_prompt(
        "Server {server}, #{channel}, user {user}, {date} {time}. JSON: {\"a\": 1} {unknown}",
        now=now, server="Guild", channel="general", user="alice",
    )
    assert text == 'Server Guild, #general, user alice, 2025-03-04 (Tuesday) 15:30 UTC. JSON: {"a": 1} {unknown}'
    assert "direct messages" in render_system_prompt("{server}", now=now)


def test_fit_history_keeps_whole_turns_newest_first() -> None:
    turns = []
    for i in range(10):
        turns.append(HistoryTurn.of("user", f"question {i} " + "x" * 40))
        turns.append(HistoryTurn.of("assistant", f"answer {i} " + "y" * 200))
    kept = fit_history(turns, max_messages=100, max_tokens=3 * (turns[0].tokens + turns[1].tokens) + 5)
    assert [t.content.split()[1] for t in kept] == ["7", "7", "8", "8", "9", "9"]
    assert kept[0].role == "user"
    kept = fit_history(turns, max_messages=5, max_tokens=10**6)
    assert len(kept) == 4 and kept[0].content.startswith("question 8")
    assert fit_history(turns, max_messages=1, max_tokens=10**6) == []
    assert fit_history([], max_messages=10, max_tokens=10) == []


def test_fit_history_with_a_seed_answer_first() -> None:
    turns = [HistoryTurn.of("assistant", "someone else's answer"), HistoryTurn.of("user", "my question"),
             HistoryTurn.of("assistant", "my answer")]
    assert fit_history(turns, max_messages=10, max_tokens=1000) == turns


def test_estimate_tokens() -> None:
    assert estimate_tokens("a" * 400) == 104
    assert estimate_tokens([{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {"url": "x"}}]) > 800


@pytest.fixture
def convs(store: Store) -> ConversationStore:
    return ConversationStore(store)


async def test_reply_chain_and_branching(convs: ConversationStore) -> None:
    conv = new_conversation_id()
    u1, a1 = await convs.record_exchange(conversation_id=conv, parent_id=None, guild_id=1, channel_id=2, user_id=10,
                                         prompt="Q1", answer="A1", model="m", complete=True,
                                         prompt_message_ids=[100], answer_message_ids=[101, 102])
    u2, a2 = await convs.record_exchange(conversation_id=conv, parent_id=a1, guild_id=1, channel_id=2, user_id=10,
                                         prompt="Q2", answer="A2", model="m", complete=True, answer_message_ids=[103])
    # both parts of a split answer lead to the same turn
    assert (await convs.turn_for_message(102)).id == a1
    chain = await convs.chain(a2, conversation_id=conv, limit=10)
    assert [t.content for t in chain] == ["Q1", "A1", "Q2", "A2"]
    # a reply to the OLD answer continues from it (branch): Q2/A2 are not in its history
    chain = await convs.chain(a1, conversation_id=conv, limit=10)
    assert [t.content for t in chain] == ["Q1", "A1"]
    assert [t.content for t in await convs.chain(a2, conversation_id=conv, limit=2)] == ["Q2", "A2"]


async def test_another_member_replying_sees_only_the_answer(convs: ConversationStore) -> None:
    alice = new_conversation_id()
    _, a1 = await convs.record_exchange(conversation_id=alice, parent_id=None, guild_id=1, channel_id=2, user_id=10,
                                        prompt="alice secret", answer="answer to alice", model="m", complete=True)
    bob = new_conversation_id()
    chain = await convs.chain(a1, conversation_id=bob, limit=10)
    assert [t.content for t in chain] == ["answer to alice"]
    _, b1 = await convs.record_exchange(conversation_id=bob, parent_id=a1, guild_id=1, channel_id=2, user_id=11,
                                        prompt="bob asks", answer="answer to bob", model="m", complete=True)
    chain = await convs.chain(b1, conversation_id=bob, limit=10)
    assert [t.content for t in chain] == ["answer to alice", "bob asks", "answer to bob"]
    assert all("alice secret" not in t.content for t in chain)


async def test_incomplete_answers_are_left_out_unless_replied_to(convs: ConversationStore) -> None:
    conv = thread_conversation_id(555)
    _, a1 = await convs.record_exchange(conversation_id=conv, parent_id=None, guild_id=1, channel_id=555, user_id=10,
                                        prompt="Q1", answer="A1", model="m", complete=True)
    _, a2 = await convs.record_exchange(conversation_id=conv, parent_id=a1, guild_id=1, channel_id=555, user_id=10,
                                        prompt="Q2", answer="A2 partial", model="m", complete=False)
    _, a3 = await convs.record_exchange(conversation_id=conv, parent_id=a2, guild_id=1, channel_id=555, user_id=11,
                                        prompt="Q3", answer="A3", model="m", complete=True)
    assert [t.content for t in await convs.thread_history(conv, limit=10)] == ["Q1", "A1", "Q3", "A3"]
    assert [t.content for t in await convs.chain(a3, conversation_id=conv, limit=10)] == ["Q1", "A1", "Q3", "A3"]
    assert [t.content for t in await convs.chain(a2, conversation_id=conv, limit=10)] == ["Q1", "A1", "Q2", "A2 partial"]
    assert await convs.last_turn_id(conv) == a3


async def test_threads_registry(convs: ConversationStore) -> None:
    assert not await convs.is_bot_thread(77)
    await convs.register_thread(77, guild_id=1, parent_channel_id=2, owner_id=10)
    await convs.register_thread(77, guild_id=1, parent_channel_id=2, owner_id=99)  # idempotent
    assert await convs.is_bot_thread(77)
    assert await convs.thread_owner(77) == 10


async def test_snowflake_ids_and_relinked_messages(convs: ConversationStore) -> None:
    guild, channel, user, message = 1_100_000_000_000_000_001, 1_200_000_000_000_000_002, 1_300_000_000_000_000_003, \
        1_400_000_000_000_000_004
    conv = new_conversation_id()
    u1, a1 = await convs.record_exchange(conversation_id=conv, parent_id=None, guild_id=guild, channel_id=channel,
                                         user_id=user, prompt="Q1", answer="A1", model=None, complete=True,
                                         answer_message_ids=[message])
    _, a2 = await convs.record_exchange(conversation_id=conv, parent_id=a1, guild_id=guild, channel_id=channel,
                                        user_id=user, prompt="Q2", answer="A2", model="m", complete=True)
    assert u1 < a1 < a2
    turn = await convs.turn_for_message(message)
    assert turn is not None and (turn.id, turn.guild_id, turn.channel_id, turn.user_id) == (a1, guild, channel, user)
    await convs.link_messages(a2, [message])  # the same Discord message now shows the newer answer
    assert (await convs.turn_for_message(message)).id == a2  # type: ignore[union-attr]
    assert await convs.turn_for_message(message + 1) is None
    assert await convs.last_turn_id(conv) == a2
    assert await convs.last_turn_id("c:none") is None
