"""Starting a conversation, the pure parts: trigger words (validation and whole-word matching), thread
names from prompts, the channel settings' validation and inheritance, and what /config says about them."""

from __future__ import annotations

import asyncio

import pytest

from bot.app.settings import Settings
from bot.chat.admission import Admission
from bot.chat.starting import is_mentioned, no_thread_note, thread_name
from bot.guilds.config import FIELDS, GuildConfig, InvalidSetting
from bot.guilds.triggers import MAX_TRIGGER_LENGTH, MAX_TRIGGERS, parse_triggers
from bot.storage.store import Store
from cogs._admin_text import changes_text, config_help_text

GUILD, CHANNEL, THREAD, OTHER = 1, 100, 101, 200
ME = 555


# -- triggers ----------------------------------------------------------------------------------------


def test_triggers_are_split_on_commas_lowercased_and_deduplicated() -> None:
    assert parse_triggers("Gatecord, hey  Bot,\ngatecord, ,AI") == ["gatecord", "hey bot", "ai"]
    assert parse_triggers(["Ünïcode", "x-ray", "don't"]) == ["ünïcode", "x-ray", "don't"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (" , ,", "Give at least one trigger word (separated by commas); `/config reset` with setting `triggers` "
                 "removes them."),
        ("a", "The trigger `a` is too short: a trigger needs at least 2 characters."),
        ("x" * (MAX_TRIGGER_LENGTH + 1),
         f"The trigger `{'x' * (MAX_TRIGGER_LENGTH + 1)}` is 33 characters long; at most {MAX_TRIGGER_LENGTH}."),
        (",".join(f"word{i}" for i in range(MAX_TRIGGERS + 1)), "That is 11 triggers; at most 10 are allowed."),
        ("<@123>", "`<@123>` can't be a trigger: use letters and digits (spaces, - and ' only between them), "
                   "and separate triggers with commas."),
        ("bot!", "`bot!` can't be a trigger: use letters and digits (spaces, - and ' only between them), "
                 "and separate triggers with commas."),
        ("-bot", "`-bot` can't be a trigger: use letters and digits (spaces, - and ' only between them), "
                 "and separate triggers with commas."),
        (42, "Triggers must be words separated by commas, e.g. `gatecord, hey bot`."),
    ],
)
def test_bad_triggers_get_one_clear_sentence(value: object, message: str) -> None:
    with pytest.raises(InvalidSetting) as caught:
        parse_triggers(value)
    assert str(caught.value) == message and caught.value.field == "triggers"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("Gatecord, what time is it?", True),
        ("ask GATECORD please", True),
        ("(gatecord)", True),
        ("gatecords are everywhere", False),
        ("mygatecord is broken", False),
        ("gatecord_bot said", False),
        ("hey   bot, help", True),
        ("hey robot", False),
        ("nothing here", False),
        (f"<@{ME}> hello", True),
        (f"<@!{ME}> hello", True),
        ("<@556> hello", False),
    ],
)
def test_triggers_match_whole_words_in_any_case(content: str, expected: bool) -> None:
    assert is_mentioned(content, ME, ("gatecord", "hey bot")) is expected


def test_without_triggers_only_a_mention_counts() -> None:
    assert not is_mentioned("gatecord hello", ME, ())
    assert is_mentioned(f"<@{ME}> hi", ME, ())


# -- thread names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ("**How** do I _sort_ a `list` in ~~Java~~ Python?", "How do I sort a list in Java Python?"),
        ("# Big title\n> quoted\n-# small", "Big title quoted small"),
        ("<@123> <@&4> ask <#5> about <:pepe:99> and @everyone", "ask about :pepe: and everyone"),
        ("see [the docs](https://example.com/x) for snake_case_names", "see the docs for snake_case_names"),
        ("||spoiler|| text", "spoiler text"),
    ],
)
def test_thread_names_drop_markdown_and_mentions(prompt: str, name: str) -> None:
    assert thread_name(prompt, "Chat with Alice") == name


def test_thread_names_fit_discords_100_characters_and_never_are_empty() -> None:
    long = thread_name("word " * 60, "x")
    assert len(long) == 100 and long.endswith("…")
    assert thread_name("<@123>   **  **", "Chat with Alice") == "Chat with Alice"


def test_the_no_thread_note_is_a_small_first_line() -> None:
    note = no_thread_note("I'm missing the **Create Public Threads** permission in this channel")
    assert note.startswith("-# ⚠️ No thread: I'm missing the **Create Public Threads** permission")
    assert "\n" not in note and "/config channel" in note


# -- the channel settings ----------------------------------------------------------------------------


def settings() -> Settings:
    return Settings(gateway={"chat_model": "default-chat"}, chat={"system_prompt": "Be brief."})


async def test_listen_auto_thread_and_triggers_are_validated_and_inherited_by_threads(store: Store) -> None:
    gc = GuildConfig(store, settings())
    defaults = await gc.effective(GUILD, CHANNEL)
    assert (defaults.listen, defaults.auto_thread, defaults.triggers) == (False, False, ())
    changes = await gc.set_channel(GUILD, CHANNEL, 9, listen=True, auto_thread=True, triggers="Gatecord, hey bot")
    assert changes == {"listen": (None, True), "auto_thread": (None, True), "triggers": (None, ["gatecord", "hey bot"])}
    in_thread = await gc.effective(GUILD, THREAD, parent_channel_id=CHANNEL)
    assert (in_thread.listen, in_thread.auto_thread, in_thread.triggers) == (True, True, ("gatecord", "hey bot"))
    other = await gc.effective(GUILD, OTHER)
    assert (other.listen, other.auto_thread, other.triggers) == (False, False, ())
    await gc.set_channel(GUILD, THREAD, 9, listen=False)
    assert (await gc.effective(GUILD, THREAD, CHANNEL)).listen is False
    for name, value, message in [
        ("listen", "yes", "Listen must be true or false."),
        ("auto_thread", 1, "Auto thread must be true or false."),
        ("triggers", "ok, a", "The trigger `a` is too short: a trigger needs at least 2 characters."),
    ]:
        with pytest.raises(InvalidSetting) as caught:
            await gc.set_channel(GUILD, CHANNEL, 9, **{name: value})
        assert str(caught.value) == message
    assert (await gc.effective(GUILD, CHANNEL)).triggers == ("gatecord", "hey bot")  # nothing changed
    removed = await gc.reset(GUILD, 9, channel_id=CHANNEL, fields=["triggers"])
    assert removed == {CHANNEL: {"triggers": ["gatecord", "hey bot"]}}
    assert (await gc.effective(GUILD, CHANNEL)).triggers == ()


def test_config_texts_explain_every_setting_and_show_triggers() -> None:
    text = config_help_text()
    for name in FIELDS:
        assert name.replace("_", " ") in text
    assert "answer every message in the channel" in text and "opens a public thread" in text
    assert "count as a mention" in text
    shown = changes_text({"triggers": (None, ["gatecord", "hey bot"]), "listen": (None, True)}, "<#1>")
    assert shown == "Updated <#1>:\n• triggers: default → `gatecord`, `hey bot`\n• listen: default → yes"


# -- admission ---------------------------------------------------------------------------------------


async def test_a_ticket_moved_to_a_new_thread_waits_for_that_conversation() -> None:
    gate = Admission(max_concurrency=2, max_queue=2)
    first = gate.admit("listen:1:2")
    first.rekey("thread:7")  # auto_thread: the turn's thread exists now
    follow_up = gate.admit("thread:7")  # someone writes in it at once
    log: list[str] = []
    trying = asyncio.Event()

    async def follow() -> None:
        trying.set()  # runs on until the ticket waits (or is in)
        async with follow_up:
            log.append("follow-up answered")

    async with first:
        assert first.key == "thread:7"
        with pytest.raises(RuntimeError):
            first.rekey("thread:8")  # entered: too late to move
        task = asyncio.create_task(follow())
        await trying.wait()
        assert log == []  # the thread's lock is the first turn's
        log.append("first answered")
    await task
    assert log == ["first answered", "follow-up answered"]
    assert gate.running == 0 and gate.waiting == 0
