"""Chat listens (bot/chat/listening.py and the chat service's audio turns), with a fake voice service.

The real bot runs against the Discord and gateway emulators; only ``bot.chat.voice`` is a fake here,
so these tests pin what chat does with a transcript, a refusal and a voice reply. The same flows with
the real voice service and the gateway's audio endpoints are in tests/test_chat_voice_e2e.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.budgets.rules import Requester
from bot.chat.listening import (
    HEARD_MAX,
    NothingHeard,
    hear,
    heard_line,
    prompt_with_transcript,
    speak_back,
)
from bot.chat.service import strip_decorations
from bot.rendering.user_facing import UserFacingError
from sandbox.gateways import expected_reply
from tests.e2e import final, wait_reply
from tests.test_chat_e2e import answer_text, chat_requests, prompt_texts
from tests.waiting import store_writes

REQUESTER = Requester(guild_id=1, channel_id=2, user_id=3)
AUDIO = ("memo.ogg", b"OggS" + bytes(200), "audio/ogg")


class NoTranscription(UserFacingError):
    code = "voice_unavailable"

    def user_message(self) -> str:
        return "This AI gateway offers no transcription."


class TooLong(UserFacingError):
    code = "audio_too_long"

    def user_message(self) -> str:
        return "That audio lasts 12 min; I transcribe at most 10 min."


@dataclass
class Transcript:
    text: str
    duration_secs: float = 2.0
    seconds_charged: int = 2


@dataclass
class Sent:
    message_id: int
    as_voice: bool = True
    note: str | None = None


@dataclass
class FakeVoice:
    """The voice service's contract (section 5) as chat uses it; records every call."""

    transcript: str = "what is the capital of France"
    can_listen: bool = True
    can_speak: bool = True
    refuse: Exception | None = None
    speak_error: Exception | None = None
    heard: list[Any] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    sent: list[tuple[Any, Any]] = field(default_factory=list)
    sent_event: asyncio.Event = field(default_factory=asyncio.Event)

    def unavailable(self, kind: str, gateway: Any = None) -> Exception:
        return NoTranscription(kind)

    def can_listen_on(self, gateway: Any) -> bool:
        return self.can_listen

    def can_speak_on(self, gateway: Any) -> bool:
        return self.can_speak

    async def transcribe(self, requester: Requester, audio: Any) -> Transcript:
        if self.refuse is not None:
            raise self.refuse
        self.heard.append(audio)
        return Transcript(self.transcript)

    async def speak(self, requester: Requester, text: str) -> str:
        if self.speak_error is not None:
            self.sent_event.set()
            raise self.speak_error
        self.spoken.append(text)
        return f"clip of {len(text)} chars"

    async def send(self, target: Any, clip: Any) -> Sent:
        self.sent.append((target, clip))
        self.sent_event.set()
        return Sent(message_id=424242)


# --------------------------------------------------------------------------------------------------
# The pieces
# --------------------------------------------------------------------------------------------------


def test_heard_line_is_one_short_escaped_line() -> None:
    assert heard_line("hello  there\nhow are\tyou") == "🎙️ *hello there how are you*"
    assert heard_line("*bold* _it_ `code` ~~x~~") == r"🎙️ *\*bold\* \_it\_ \`code\` \~\~x\~\~*"
    long = heard_line("word " * 100)
    assert long.endswith("…*") and "\n" not in long
    assert len(long) <= len("🎙️ **") + HEARD_MAX
    assert heard_line("  ") == "🎙️ *(no words)*"


def test_a_bot_messages_answer_text_leaves_out_the_quoted_transcript() -> None:
    assert strip_decorations("🎙️ *hi*\nThe answer.\nSecond line.\n-# `m` · 9 tokens") == "The answer.\nSecond line."


def test_the_members_turn_is_the_text_then_the_transcript() -> None:
    assert prompt_with_transcript("", "what time is it") == "what time is it"
    assert prompt_with_transcript("translate this:", " bonjour ") == "translate this:\n\nbonjour"
    assert prompt_with_transcript("only text", "") == "only text"


async def test_hear_refuses_without_transcription_and_when_nothing_was_said() -> None:
    voice = FakeVoice(can_listen=False)
    with pytest.raises(NoTranscription):
        await hear(voice, REQUESTER, object())
    assert voice.heard == [], "nothing sent when the gateway cannot listen"
    voice = FakeVoice(transcript="   ")
    with pytest.raises(NothingHeard):
        await hear(voice, REQUESTER, object())
    heard = await hear(voice, REQUESTER, object(), written="look at this")  # the text is a prompt by itself
    assert (heard.transcript, heard.header) == ("", "🎙️ *(no words)*")


async def test_speak_back_skips_quietly_reports_failures_in_one_line_and_returns_the_message() -> None:
    lines: list[str] = []

    async def say(line: str) -> None:
        lines.append(line)

    voice = FakeVoice(can_speak=False)
    assert await speak_back(voice, REQUESTER, "An answer.", "target", say) is None
    assert voice.spoken == [] and lines == []
    voice = FakeVoice(speak_error=TooLong())
    assert await speak_back(voice, REQUESTER, "An answer.", "target", say) is None
    assert lines == ["-# 🔇 No voice reply: That audio lasts 12 min; I transcribe at most 10 min."]
    voice = FakeVoice()
    assert await speak_back(voice, REQUESTER, "An answer.", "target", say) == 424242
    assert voice.spoken == ["An answer."] and voice.sent == [("target", "clip of 10 chars")]


# --------------------------------------------------------------------------------------------------
# The real bot, a fake voice service
# --------------------------------------------------------------------------------------------------


async def chat_with_file(env: Any, prompt: str, file: tuple[str, bytes, str], **options: Any) -> Any:
    rec = await env.discord.inject_slash_command("chat", {"prompt": prompt, **options}, user="alice",
                                                 attachments={"file": file})
    await rec.wait_final(final, timeout=10)
    return rec


async def recorded_reply(env: Any, user_msg: Any) -> Any:
    """The bot's finished reply to ``user_msg``, once the exchange is recorded (a reply to it continues)."""
    reply = await wait_reply(env.discord, user_msg)
    await asyncio.wait_for(env.bot.chat.admission.wait_idle(), 10)
    return reply


def fake_voice(env: Any, **options: Any) -> FakeVoice:
    voice = FakeVoice(**options)
    env.bot.chat.voice = voice
    return voice


async def test_audio_reply_to_an_answer_is_heard_quoted_and_continues_the_conversation(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    voice = fake_voice(bot_env)
    first = await emu.send_user_message("my secret number is 42", user="alice", mention_bot=True)
    answer = await recorded_reply(bot_env, first)
    spoken = await emu.send_user_message("", user="alice", reply_to=answer.id, attachments=[AUDIO])
    reply = await recorded_reply(bot_env, spoken)
    heard = "what is the capital of France"
    assert reply.content.startswith(f"🎙️ *{heard}*\n")
    assert answer_text(reply.content) == f"🎙️ *{heard}*\n" + expected_reply(heard)
    assert [a.filename for a in voice.heard] == ["memo.ogg"]
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[1:] == ["my secret number is 42", expected_reply("my secret number is 42"), heard]
    # the transcript is the member's turn in the history; the quote line is not part of the answer
    follow = await emu.send_user_message("and Spain?", user="alice", reply_to=reply.id)
    await wait_reply(emu, follow)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[-3:] == [heard, expected_reply(heard), "and Spain?"]
    assert voice.spoken == [], "voice replies are off by default"


async def test_written_text_and_audio_make_one_prompt(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    voice = fake_voice(bot_env, transcript="bonjour tout le monde")
    msg = await emu.send_user_message("translate this:", user="bob", mention_bot=True, attachments=[AUDIO])
    reply = await wait_reply(emu, msg)
    assert reply.content.startswith("🎙️ *bonjour tout le monde*\n")
    assert prompt_texts(chat_requests(gw)[-1])[-1] == ("user", "translate this:\n\nbonjour tout le monde")
    assert len(voice.heard) == 1


async def test_no_transcription_on_the_gateway_is_one_sentence_and_no_answer(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    fake_voice(bot_env, can_listen=False)
    first = await emu.send_user_message("hello", user="alice", mention_bot=True)
    answer = await wait_reply(emu, first)
    asked = len(chat_requests(gw))
    spoken = await emu.send_user_message("", user="alice", reply_to=answer.id, attachments=[AUDIO])
    reply = await wait_reply(emu, spoken)
    assert reply.content == "⚠️ This AI gateway offers no transcription."
    assert len(chat_requests(gw)) == asked


async def test_a_refused_audio_shows_its_sentence_where_the_answer_would_be(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    voice = fake_voice(bot_env, refuse=TooLong())
    msg = await emu.send_user_message("what did I say?", user="alice", mention_bot=True, attachments=[AUDIO])
    reply = await wait_reply(emu, msg)
    assert reply.content == "⚠️ That audio lasts 12 min; I transcribe at most 10 min."
    assert all("what did I say?" not in c for r in chat_requests(gw) for _, c in prompt_texts(r))
    assert voice.heard == []


async def test_audio_in_a_channel_not_for_the_bot_is_not_heard(bot_env: Any) -> None:
    emu = bot_env.discord
    voice = fake_voice(bot_env)
    plain = await emu.send_user_message("", user="alice", attachments=[AUDIO])
    asked = await emu.send_user_message("hello bot", user="alice", mention_bot=True)
    await wait_reply(emu, asked)
    assert voice.heard == []
    assert not any(str((m.message_reference or {}).get("message_id")) == str(plain.id)
                   for m in emu.messages.values() if m.author_id == emu.bot_user_id)


async def test_voice_replies_speak_the_finished_answer_after_the_text(
    bot_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bot_env.discord
    writes = store_writes(monkeypatch)
    bot = bot_env.bot
    # an admin turns voice replies on for the channel; its threads inherit the setting
    rec = await emu.inject_slash_command("config channel", {"channel": emu.channel_id, "voice_replies": True},
                                         user="admin")
    assert (await rec.wait_final(timeout=10)).content == f"Updated <#{emu.channel_id}>:\n• voice replies: default → yes"
    rec = await emu.inject_slash_command("config show", {}, user="admin", channel_id=emu.thread_id)
    shown = (await rec.wait_final(timeout=10)).content
    assert f"• voice replies: yes — inherited from <#{emu.channel_id}>" in shown
    voice = fake_voice(bot_env)
    first = await emu.send_user_message("hello", user="alice", mention_bot=True)
    await wait_reply(emu, first)
    assert voice.spoken == [], "a typed prompt is answered in text only"
    spoken = await emu.send_user_message("", user="alice", mention_bot=True, attachments=[AUDIO])
    reply = await wait_reply(emu, spoken)
    await asyncio.wait_for(voice.sent_event.wait(), 10)
    heard = "what is the capital of France"
    assert voice.spoken == [expected_reply(heard)]
    (target, _clip), = voice.sent
    assert (target.channel_id, target.reply_to) == (emu.channel_id, spoken.id)
    assert final(reply) and answer_text(reply.content).endswith(expected_reply(heard))
    # the voice reply is linked to the answer: a reply to it continues the conversation
    turn = await writes.wait_until(lambda: bot.chat.conversations.turn_for_message(424242),
                                   what="the voice reply linked to the answer")
    assert turn.role == "assistant" and turn.content == expected_reply(heard)


async def test_a_failed_voice_reply_is_one_short_line_and_the_text_answer_stands(bot_env: Any) -> None:
    emu = bot_env.discord
    await bot_env.bot.guild_config.set_channel(emu.guild_id, emu.channel_id, emu.users["admin"].id,
                                               voice_replies=True)
    fake_voice(bot_env, speak_error=TooLong())
    spoken = await emu.send_user_message("", user="alice", mention_bot=True, attachments=[AUDIO])
    reply = await wait_reply(emu, spoken)
    line = await emu.wait_for_message(lambda m: m.author_id == emu.bot_user_id and "No voice reply" in m.content)
    assert line.content == "-# 🔇 No voice reply: That audio lasts 12 min; I transcribe at most 10 min."
    assert answer_text(reply.content).endswith(expected_reply("what is the capital of France"))
    assert not reply.deleted


async def test_slash_chat_with_an_audio_file(bot_env: Any) -> None:
    emu, gw = bot_env.discord, bot_env.gateway
    await bot_env.bot.guild_config.set_channel(emu.guild_id, emu.channel_id, emu.users["admin"].id,
                                               voice_replies=True)
    voice = fake_voice(bot_env, transcript="is it going to rain")
    rec = await chat_with_file(bot_env, "answer briefly", ("memo.mp3", b"ID3" + bytes(300), "audio/mpeg"))
    assert rec.original.content.startswith("🎙️ *is it going to rain*\n")
    assert prompt_texts(chat_requests(gw)[-1])[-1] == ("user", "answer briefly\n\nis it going to rain")
    assert [a.filename for a in voice.heard] == ["memo.mp3"]
    await asyncio.wait_for(voice.sent_event.wait(), 10)
    (target, _clip), = voice.sent
    assert target.application_id == emu.application_id
    # a private answer is never spoken (a voice message can't be private)
    voice.sent_event.clear()
    rec = await chat_with_file(bot_env, "quietly", ("memo.mp3", b"ID3" + bytes(300), "audio/mpeg"), private=True)
    assert rec.original.content.startswith("🎙️ *is it going to rain*\n")
    assert len(voice.sent) == 1


async def test_slash_chat_audio_refused_privately_when_private(bot_env: Any) -> None:
    fake_voice(bot_env, can_listen=False)
    rec = await chat_with_file(bot_env, "what did I say", ("memo.wav", b"RIFF" + bytes(300), "audio/wav"),
                               private=True)
    assert rec.original.content == "⚠️ This AI gateway offers no transcription."
    assert rec.original.flags & 64
