"""Chat listens, end to end: the real bot, the Discord emulator and the audio gateways (OpenAI surface,
AICredits). A member's voice message (or audio file) is transcribed from exactly its bytes, the answer
quotes what was heard and continues the conversation, seconds are charged; with ``voice_replies`` the
answer also comes back as a Discord voice message; refusals are one sentence, before the gateway."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

import pytest

from bot.voice import codec
from sandbox.gateways import expected_reply
from sandbox.gateways.audio import synthesize
from tests.e2e import final, wait_reply
from tests.test_chat_e2e import answer_text, chat_requests, prompt_texts

IS_VOICE_MESSAGE = 1 << 13
AUDIO_PROFILES = ["openai", "aicredits"]
SAID = "What is the tallest mountain in Europe"


def transcription_calls(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/audio/transcriptions")]


def speech_calls(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/audio/speech")]


async def used(env: Any, kind: str, user: str = "alice") -> tuple[float, float]:
    emu = env.discord
    return await env.bot.quotas.counter("member", emu.guild_id, emu.users[user].id, kind)


async def recorded_reply(env: Any, user_msg: Any, timeout: float = 20.0) -> Any:
    """The bot's finished reply to ``user_msg``, once the exchange is recorded (a reply to it continues)."""
    reply = await wait_reply(env.discord, user_msg, timeout=timeout)
    await asyncio.wait_for(env.bot.chat.admission.wait_idle(), timeout)
    return reply


async def an_answer(env: Any, prompt: str = "my secret number is 42") -> Any:
    asked = await env.discord.send_user_message(prompt, user="alice", mention_bot=True)
    return await recorded_reply(env, asked)


@pytest.mark.parametrize("gateway_emu", AUDIO_PROFILES, indirect=True)
async def test_a_voice_message_replying_to_an_answer_is_heard_quoted_and_continues_the_conversation(
    bot_env: Any,
) -> None:
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    answer = await an_answer(env)
    audio = synthesize(SAID, "opus")
    spoken = await emu.send_user_voice_message(audio, user="alice", reply_to=answer.id)
    reply = await recorded_reply(env, spoken)
    # the answer's first line quotes what was heard, then the model's answer to it
    assert answer_text(reply.content) == f"🎙️ *{SAID}*\n" + expected_reply(SAID)
    assert gw.received_audio == [audio], "the gateway got exactly the member's bytes"
    # the conversation continued: the earlier turn, then the transcript as the member's turn
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[1:] == ["my secret number is 42", expected_reply("my secret number is 42"), SAID]
    seconds = math.ceil(codec.ogg_duration(audio))
    assert await used(env, "transcription_seconds") == (seconds, 0)
    # and a typed reply to the spoken turn's answer goes on from the transcript
    follow = await emu.send_user_message("and the second tallest?", user="alice", reply_to=reply.id)
    await recorded_reply(env, follow)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[-3:] == [SAID, expected_reply(SAID), "and the second tallest?"]
    assert not speech_calls(gw), "voice replies are off by default"


@pytest.mark.gateway_profile("openai")
async def test_voice_replies_send_the_answer_as_a_voice_message_replying_to_the_member(bot_env: Any) -> None:
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    await env.bot.guild_config.set_channel(emu.guild_id, emu.channel_id, emu.users["admin"].id, voice_replies=True)
    answer = await an_answer(env)
    assert not speech_calls(gw), "a typed prompt gets a text answer only"
    spoken = await emu.send_user_voice_message(synthesize(SAID, "opus"), user="alice", reply_to=answer.id)
    reply = await recorded_reply(env, spoken)

    def voice_reply() -> Any:
        return next((m for m in emu.messages.values() if m.author_id == emu.bot_user_id
                     and m.flags & IS_VOICE_MESSAGE
                     and str((m.message_reference or {}).get("message_id")) == str(spoken.id)), None)

    voice = await emu.wait_for(voice_reply, timeout=30)
    assert final(reply) and int(voice.id) > int(reply.id), "the voice message comes after the text answer"
    assert voice.content == "" and len(voice.attachments) == 1
    (att,) = voice.attachments
    assert att.content_type.startswith("audio/ogg")
    assert att.duration_secs == pytest.approx(codec.ogg_duration(att.data), abs=0.1)
    assert 1 <= len(base64.b64decode(att.waveform)) <= 256
    (call,) = speech_calls(gw)
    assert call.json["input"] == expected_reply(SAID)
    assert await used(env, "speech_chars") == (len(expected_reply(SAID)), 0)
    # a reply to the voice message continues the conversation too
    follow = await emu.send_user_message("say more", user="alice", reply_to=voice.id)
    await recorded_reply(env, follow)
    texts = [c for _, c in prompt_texts(chat_requests(gw)[-1])]
    assert texts[-3:] == [SAID, expected_reply(SAID), "say more"]


@pytest.mark.gateway_profile("aicordcloud")
async def test_a_gateway_without_audio_answers_a_voice_message_with_one_clear_sentence(bot_env: Any) -> None:
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    answer = await an_answer(env)
    asked = len(chat_requests(gw))
    spoken = await emu.send_user_voice_message(synthesize(SAID, "opus"), user="alice", reply_to=answer.id)
    reply = await recorded_reply(env, spoken)
    assert reply.content.startswith("⚠️ I can't listen to audio here")
    assert "\n" not in reply.content and "transcription" in reply.content
    assert len(chat_requests(gw)) == asked and not transcription_calls(gw)


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(voice={"max_duration_seconds": 2})
async def test_a_too_long_voice_message_gets_the_limit_and_nothing_reaches_the_gateway(bot_env: Any) -> None:
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    answer = await an_answer(env)
    asked = len(chat_requests(gw))
    spoken = await emu.send_user_voice_message(
        synthesize("This recording is much longer than the two seconds allowed here.", "opus"),
        user="alice", reply_to=answer.id,
    )
    reply = await recorded_reply(env, spoken)
    assert reply.content.startswith("⚠️ ") and "I transcribe at most 2 s" in reply.content
    assert gw.received_audio == [] and not transcription_calls(gw)
    assert len(chat_requests(gw)) == asked
    assert await used(env, "transcription_seconds") == (0, 0)


@pytest.mark.gateway_profile("aicredits")
@pytest.mark.bot_settings(quotas={"member_transcription_seconds": 0})
async def test_a_transcription_budget_of_zero_is_refused_before_the_gateway(bot_env: Any) -> None:
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    spoken = await emu.send_user_voice_message(synthesize(SAID, "opus"), user="alice")
    asked = await emu.send_user_message("listen to this", user="alice", mention_bot=True,
                                              attachments=[("memo.ogg", synthesize(SAID, "opus"), "audio/ogg")])
    reply = await recorded_reply(env, asked)
    assert reply.content.startswith("⚠️ ") and "transcription second budget (0) is used up" in reply.content
    assert gw.received_audio == [] and not chat_requests(gw)
    assert not any(str((m.message_reference or {}).get("message_id")) == str(spoken.id)
                   for m in emu.messages.values() if m.author_id == emu.bot_user_id)


@pytest.mark.gateway_profile("openai")
async def test_slash_chat_with_an_audio_file_transcribes_it_into_the_prompt(bot_env: Any) -> None:
    env, emu, gw = bot_env, bot_env.discord, bot_env.gateway
    audio = synthesize(SAID, "mp3")
    rec = await emu.inject_slash_command("chat", {"prompt": "Answer in one word."}, user="alice",
                                         attachments={"file": ("question.mp3", audio, "audio/mpeg")})
    await rec.wait_final(final, timeout=20)
    prompt = f"Answer in one word.\n\n{SAID}"
    assert answer_text(rec.original.content) == f"🎙️ *{SAID}*\n" + expected_reply(prompt)
    assert gw.received_audio == [audio]
    assert prompt_texts(chat_requests(gw)[-1])[-1] == ("user", prompt)
    assert (await used(env, "transcription_seconds"))[0] >= 1
