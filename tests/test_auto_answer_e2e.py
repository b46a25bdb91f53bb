"""Auto-answer in help channels end to end (the real bot against the Discord and gateway emulators): a new
forum post about a document of the server's knowledge is answered in its thread with sources, charged to
the poster; an unrelated post gets no answer; Solved / Not helpful are pressed by the poster or a
moderator only, kept across a restart, and counted by /usage; a text channel's post is answered in a
thread opened from it."""

from __future__ import annotations

from typing import Any

from bot.budgets.rules import Requester
from tests.e2e import final
from tests.test_chat_e2e import chat_requests, prompt_texts
from tests.test_chat_starting_e2e import configure

QUESTION = "How many days do I have to ask for a refund of my purchase?"
REFUNDS = ("Refund policy", "refunds.md", "# Refunds\n\nA refund is granted within 30 days of the purchase. "
           "Ask for a refund with the order number; the money returns to the card in 5 working days.")


async def add_document(env: Any, title: str, source: str, text: str) -> None:
    """A document in guild 1's knowledge base, added by the admin."""
    admin = env.discord.users["admin"]
    await env.bot.knowledge.add_text(Requester(env.discord.guild_id, None, admin.id, ()), source=source,
                                     title=title, text=text)


async def handled(env: Any, message: Any) -> str:
    """What the bot made of a post in an auto_answer channel ("answered", or why it stayed silent)."""
    return str(await env.discord.wait_for(lambda: env.bot.auto_answer.handled.get(message.id), 15))


def bot_messages_in(emu: Any, channel_id: int) -> list[Any]:
    return [m for m in emu.channel_messages(channel_id) if m.author_id == emu.bot_user_id]


async def feedback_message(emu: Any, thread_id: int) -> Any:
    return await emu.wait_for_message(
        lambda m: m.channel_id == thread_id and m.author_id == emu.bot_user_id and m.content.startswith("📚"), 15)


async def chat_charged_to(env: Any, user: str) -> int:
    """Chat requests charged to ``user`` in the ledger."""
    return int(await env.bot.store.fetchval(
        "SELECT COUNT(*) FROM usage_ledger WHERE user_id = ? AND feature = 'chat' AND charged = 1",
        (env.discord.users[user].id,)))


async def test_forum_post_is_answered_in_its_thread_with_sources(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await add_document(bot_env, *REFUNDS)
    reply = await configure(bot_env, emu.forum_channel_id, auto_answer=True)
    assert reply == f"Updated <#{emu.forum_channel_id}>:\n• auto answer: default → yes"

    post = await emu.create_forum_post(emu.forum_channel_id, "Refund after three weeks?",
                                       QUESTION, user="bob")
    assert await handled(bot_env, post) == "answered"
    thread_id = post.channel_id
    feedback = await feedback_message(emu, thread_id)
    answer = next(m for m in bot_messages_in(emu, thread_id) if m.id < feedback.id)
    assert final(answer) and answer.message_reference["message_id"] == post.id  # a reply to the post
    assert "from the server's knowledge" in answer.content

    # the model was given the matching excerpt, numbered, and the post with its title
    user_text = [c for role, c in prompt_texts(chat_requests(gw)[-1]) if role == "user"][-1]
    assert "[1] Refund policy" in user_text and "within 30 days of the purchase" in user_text
    assert "Title: Refund after three weeks?" in user_text
    assert user_text.rstrip().endswith("How many days do I have to ask for a refund of my purchase?")

    assert feedback.content.splitlines()[0] == "📚 **Sources:** Refund policy (`refunds.md`)"
    assert "The poster or a moderator can mark it." in feedback.content
    ids = feedback.custom_ids()
    assert len(ids) == 2 and ids[0].startswith("kbans:solved:") and ids[1].startswith("kbans:not_helpful:")
    assert await chat_charged_to(bot_env, "bob") == 1  # the poster's chat turn
    assert bot_messages_in(emu, emu.forum_channel_id) == []


async def test_unrelated_post_gets_no_answer(bot_env: Any) -> None:
    emu = bot_env.discord
    await add_document(bot_env, *REFUNDS)
    await configure(bot_env, emu.forum_channel_id, auto_answer=True)
    before = len(chat_requests(bot_env.gateway))

    post = await emu.create_forum_post(emu.forum_channel_id, "Guitar strings",
                                       "Which guitar strings sound warmest on an old acoustic?", user="bob")
    assert await handled(bot_env, post) == "nothing close enough"
    assert bot_messages_in(emu, post.channel_id) == []
    assert len(chat_requests(bot_env.gateway)) == before
    assert await chat_charged_to(bot_env, "bob") == 0


async def test_no_answer_where_the_setting_is_off(bot_env: Any) -> None:
    emu = bot_env.discord
    await add_document(bot_env, *REFUNDS)
    off = await emu.create_forum_post(emu.forum_channel_id, "Refunds", QUESTION, user="bob")
    await configure(bot_env, emu.forum_channel_id, auto_answer=True)  # a later post is answered: the first was not
    on = await emu.create_forum_post(emu.forum_channel_id, "Refunds again", QUESTION, user="bob")
    assert await handled(bot_env, on) == "answered"
    assert off.id not in bot_env.bot.auto_answer.handled
    assert bot_messages_in(emu, off.channel_id) == []


async def test_solved_and_not_helpful_by_the_poster_or_a_moderator(bot_env: Any) -> None:
    emu = bot_env.discord
    await add_document(bot_env, *REFUNDS)
    await configure(bot_env, emu.forum_channel_id, auto_answer=True)
    post = await emu.create_forum_post(emu.forum_channel_id, "Refund window",
                                       QUESTION, user="bob")
    feedback = await feedback_message(emu, post.channel_id)
    solved, unhelpful = feedback.custom_ids()
    answer_id = int(solved.rsplit(":", 1)[1])

    # someone else may not mark it
    rec = await emu.press_button(feedback.id, solved, user="alice")
    refusal = await rec.wait_final(timeout=10)
    assert refusal.ephemeral
    assert refusal.content == "Only the member who posted the question, or a moderator, can mark this answer."
    assert (await bot_env.bot.auto_answer.outcomes.get(answer_id)).outcome is None

    # the poster marks it solved; the message says so and the buttons stay
    rec = await emu.press_button(feedback.id, solved, user="bob")
    await rec.wait_acked(10)
    bob = emu.users["bob"].id
    await emu.wait_for(lambda: f"Marked **solved** by <@{bob}>" in emu.messages[feedback.id].content, 10)
    shown = emu.messages[feedback.id]
    assert shown.content.splitlines()[0].startswith("📚 **Sources:**")
    assert shown.custom_ids() == [solved, unhelpful] and shown.mention_ids == []
    assert (await bot_env.bot.auto_answer.outcomes.get(answer_id)).outcome == "solved"

    # after a restart, a moderator (Manage Messages) changes it: the buttons are restart-proof
    await bot_env.restart()
    alice = emu.users["alice"].id
    await emu.set_member_roles(emu.guild_id, alice, [emu.moderator_role_id])
    rec = await emu.press_button(feedback.id, unhelpful, user="alice")
    await rec.wait_acked(10)
    await emu.wait_for(lambda: f"Marked **not helpful** by <@{alice}>" in emu.messages[feedback.id].content, 10)
    row = await bot_env.bot.auto_answer.outcomes.get(answer_id)
    assert row.outcome == "not_helpful" and row.user_id == bob

    # back to solved, and /usage counts it
    rec = await emu.press_button(feedback.id, solved, user="bob")
    await rec.wait_acked(10)
    await emu.wait_for(lambda: "Marked **solved**" in emu.messages[feedback.id].content, 10)
    other = await emu.create_forum_post(emu.forum_channel_id, "Refund card",
                                        "When does the money of a refund return to the card?", user="alice")
    assert await handled(bot_env, other) == "answered"
    rec = await emu.inject_slash_command("usage", user="admin")
    msg = await rec.wait_final(lambda m: m.content and "Totals" in m.content, timeout=20)
    assert "Auto-answers: 2 given, 1 solved, 0 not helpful — solved rate 50%." in msg.content


async def test_text_channel_post_is_answered_in_a_thread_it_opens(bot_env: Any) -> None:
    emu = bot_env.discord
    await add_document(bot_env, *REFUNDS)
    await configure(bot_env, emu.channel2_id, auto_answer=True)

    post = await emu.send_user_message("How many days do I have to ask for a refund?", user="alice",
                                       channel_id=emu.channel2_id)
    assert await handled(bot_env, post) == "answered"
    thread = emu.world.channels[post.id]  # opened from the message: the thread has its id
    assert thread.parent_id == emu.channel2_id and thread.name == "How many days do I have to ask for a refund?"
    feedback = await feedback_message(emu, thread.id)
    answers = [m for m in bot_messages_in(emu, thread.id) if m.id < feedback.id]
    assert answers and final(answers[0])
    assert bot_messages_in(emu, emu.channel2_id) == []  # nothing in the channel itself

    # a reply in the channel is no new post; an unrelated message opens no thread
    reply = await emu.send_user_message("thanks!", user="bob", channel_id=emu.channel2_id, reply_to=post.id)
    unrelated = await emu.send_user_message("Anyone up for guitar practice tonight?", user="bob",
                                            channel_id=emu.channel2_id)
    assert await handled(bot_env, unrelated) == "nothing close enough"
    assert reply.id not in bot_env.bot.auto_answer.handled
    assert unrelated.thread_id is None and emu.world.channels.get(unrelated.id) is None
