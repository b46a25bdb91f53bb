"""Voice end to end: the real bot against the Discord emulator and the audio gateways (AICredits, the
OpenAI surface). What members see — the voice message Discord received (flag, one Ogg/Opus file whose
real duration and waveform match its metadata), the fallback file and its sentence, private refusals,
the transcript — and what was asked of the gateway and charged."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import av
import pytest

from bot.voice import codec
from sandbox.discord_emulator import permissions
from sandbox.gateways.audio import synthesize
from tests.e2e import final, start_bot

IS_VOICE_MESSAGE = 1 << 13
AUDIO_PROFILES = ["aicredits", "openai"]
#: the response formats each audio gateway can return
FORMATS = {
    "aicredits": ["mp3", "opus", "aac", "flac"],
    "openai": ["mp3", "opus", "aac", "flac", "wav", "pcm"],
}
SAID = "Hello from Gatecord. This sentence is spoken aloud as a Discord voice message."


# -- helpers ----------------------------------------------------------------------------------------

def speech_calls(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/audio/speech")]


def transcription_calls(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/audio/transcriptions")]


async def used(bot: Any, emu: Any, kind: str, user: str = "alice") -> tuple[float, float]:
    return await bot.quotas.counter("member", emu.guild_id, emu.users[user].id, kind)


async def ledger(bot: Any) -> list[Any]:
    return await bot.store.fetchall("SELECT * FROM usage_ledger ORDER BY ts")


def answered(rec: Any) -> bool:
    """The interaction's message is no longer "thinking…" (a voice message, a file, or a sentence)."""
    msg = rec.original
    return msg is not None and not msg.loading and (bool(msg.attachments) or bool(msg.content))


def assert_voice_message(msg: Any) -> float:
    """``msg`` is a Discord voice message as the member's client plays it; returns its duration."""
    assert msg.flags & IS_VOICE_MESSAGE, msg.flags
    assert msg.content == "" and not msg.embeds and not msg.components
    (att,) = msg.attachments
    assert att.content_type.startswith("audio/ogg")
    with av.open(io.BytesIO(att.data)) as container:
        assert "ogg" in container.format.name
        (stream,) = container.streams.audio
        assert stream.codec_context.name == "opus"
        assert stream.codec_context.sample_rate == 48_000 and stream.codec_context.channels == 1
    real = codec.ogg_duration(att.data)
    assert att.duration_secs == pytest.approx(real, abs=0.1)
    waveform = base64.b64decode(att.waveform)
    assert 1 <= len(waveform) <= 256 and len(set(waveform)) > 1  # speech-like: not a flat line
    return real


async def speak(emu: Any, text: str = SAID, *, timeout: float = 20, **options: Any) -> Any:
    rec = await emu.inject_slash_command("speak", {"text": text, **options})
    await rec.wait_final(answered, timeout=timeout)
    return rec


# -- /speak -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gateway_emu", AUDIO_PROFILES, indirect=True)
async def test_speak_sends_one_voice_message_and_charges_characters(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await speak(emu, voice="echo")
    msg = rec.original
    real = assert_voice_message(msg)
    assert real == pytest.approx(len(SAID) / 15, rel=0.25)  # the emulator speaks about 15 characters a second
    # one message reached the channel: the voice message took the place of "thinking…"
    assert [m.id for m in emu.bot_messages(emu.channel_id)] == [msg.id] and not rec.followups
    (call,) = speech_calls(env.gateway)
    assert call.json["input"] == SAID and call.json["voice"] == "echo" and call.json["response_format"] == "opus"
    assert await used(env.bot, emu, "speech_chars") == (len(SAID), 0)
    rows = await ledger(env.bot)
    assert [(r["feature"], r["speech_chars"], r["outcome"]) for r in rows] == [("speech", len(SAID), "ok")]


@pytest.mark.parametrize(("gateway_emu", "fmt"),
                         [(p, f) for p in AUDIO_PROFILES for f in FORMATS[p]], indirect=["gateway_emu"])
async def test_speak_turns_every_format_the_gateway_returns_into_a_voice_message(
    discord_emu: Any, gateway_emu: Any, make_settings: Any, fmt: str
) -> None:
    running = await start_bot(make_settings(voice={"speech_format": fmt}))
    try:
        rec = await speak(discord_emu, "Testing one two three. The format is " + fmt + ".")
        assert_voice_message(rec.original)
        (call,) = speech_calls(gateway_emu)
        assert call.json["response_format"] == fmt
    finally:
        await running.stop()


@pytest.mark.gateway_profile("openai")
async def test_long_text_is_spoken_in_parts_joined_into_one_voice_message(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    text = " ".join(f"This is sentence number {i} of a long text to be read aloud." for i in range(90))
    assert 4096 < len(text) <= 6000
    # six minutes of audio: the emulator synthesises and the bot transcodes it (seconds of CPU on a busy machine)
    rec = await speak(emu, text, timeout=120)
    real = assert_voice_message(rec.original)
    calls = speech_calls(env.gateway)
    assert len(calls) == 2 and all(len(c.json["input"]) <= 4096 for c in calls)
    assert " ".join(c.json["input"] for c in calls) == text
    assert real == pytest.approx(len(text) / 15, rel=0.25)
    assert await used(env.bot, emu, "speech_chars") == (len(text), 0)


@pytest.mark.gateway_profile("aicredits")
async def test_a_channel_without_voice_messages_gets_the_audio_as_a_file_with_a_sentence(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    emu.world.channels[emu.channel_id].voice_messages = False
    rec = await speak(emu)
    msg = rec.original
    assert not msg.flags & IS_VOICE_MESSAGE
    assert msg.content == "Discord doesn't allow voice messages in this channel, so here is the audio as a file."
    (att,) = msg.attachments
    assert codec.ogg_duration(att.data) == pytest.approx(len(SAID) / 15, rel=0.25)
    assert [m.id for m in emu.bot_messages(emu.channel_id)] == [msg.id]
    assert await used(env.bot, emu, "speech_chars") == (len(SAID), 0)


@pytest.mark.gateway_profile("openai")
async def test_without_send_voice_messages_the_audio_comes_as_a_file_saying_so(bot_env: Any) -> None:
    emu = bot_env.discord
    await emu.deny_bot(emu.channel_id, permissions.SEND_VOICE_MESSAGES)
    rec = await speak(emu)
    assert not rec.original.flags & IS_VOICE_MESSAGE and len(rec.original.attachments) == 1
    assert rec.original.content == "I lack the Send Voice Messages permission here, so here is the audio as a file."


@pytest.mark.gateway_profile("aicredits")
@pytest.mark.bot_settings(quotas={"member_speech_chars": 0})
async def test_a_speech_budget_of_zero_is_refused_privately_before_the_gateway(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    rec = await emu.inject_slash_command("speak", {"text": SAID})
    await rec.wait_final(answered)
    assert rec.ephemeral and rec.response_type == 4
    assert "Your daily speech character budget (0) is used up" in rec.original.content
    assert not speech_calls(env.gateway) and not rec.original.attachments
    assert await used(env.bot, emu, "speech_chars") == (0, 0)


@pytest.mark.gateway_profile("aicordcloud")
async def test_a_gateway_without_audio_registers_no_voice_command(bot_env: Any) -> None:
    emu = bot_env.discord
    names = {(c["name"], c.get("type", 1)) for c in emu.global_commands()}
    assert ("chat", 1) in names  # the tree was synced
    assert not {("speak", 1), ("Read aloud", 3), ("Transcribe", 3)} & names
    with pytest.raises(KeyError):
        await emu.inject_slash_command("speak", {"text": "hello"})


# -- Read aloud -------------------------------------------------------------------------------------

@pytest.mark.gateway_profile("openai")
async def test_read_aloud_speaks_a_bot_answer_in_the_channel(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    chat = await emu.inject_slash_command("chat", {"prompt": "Say something short."})
    answer = await chat.wait_final(lambda r: r.original is not None and final(r.original))
    rec = await emu.inject_context_menu("Read aloud", answer.id, user="bob")
    await rec.wait_final(answered, timeout=20)
    assert_voice_message(rec.original)
    assert not rec.ephemeral
    (call,) = speech_calls(env.gateway)
    spoken = call.json["input"]
    assert spoken and spoken.split()[0] in answer.content
    assert await used(env.bot, emu, "speech_chars", "bob") == (len(spoken), 0)


@pytest.mark.gateway_profile("aicredits")
async def test_read_aloud_reads_a_post_made_of_embeds(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    embed = {"title": "Deploy finished", "description": "All **green** on production.",
             "fields": [{"name": "Duration", "value": "42 s"}]}
    post = await emu.send_user_message("", embeds=[embed])
    rec = await emu.inject_context_menu("Read aloud", post.id)
    await rec.wait_final(answered, timeout=20)
    assert_voice_message(rec.original)
    (call,) = speech_calls(env.gateway)
    assert call.json["input"] == "Deploy finished\n\nAll green on production.\n\nDuration: 42 s"


@pytest.mark.gateway_profile("aicredits")
async def test_read_aloud_of_a_message_without_text_says_so_privately(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    picture = await emu.send_user_message("", attachments=[("notes.bin", b"\x00\x01", "application/octet-stream")])
    rec = await emu.inject_context_menu("Read aloud", picture.id)
    await rec.wait_final(answered)
    assert rec.ephemeral and rec.original.content == "That message has no text I could read aloud."
    assert not speech_calls(env.gateway)


# -- Transcribe -------------------------------------------------------------------------------------

@pytest.mark.parametrize("gateway_emu", AUDIO_PROFILES, indirect=True)
async def test_transcribe_a_voice_message_privately_charging_seconds(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    words = "Please write down exactly what I am saying right now."
    audio = synthesize(words, "opus")
    voice = await emu.send_user_voice_message(audio, user="bob")
    rec = await emu.inject_context_menu("Transcribe", voice.id)
    await rec.wait_final(answered, timeout=20)
    assert rec.ephemeral
    assert rec.original.content == f"🎙️ {words}"
    assert env.gateway.received_audio == [audio]  # exactly the member's bytes
    seconds = math.ceil(codec.ogg_duration(audio))
    assert await used(env.bot, emu, "transcription_seconds") == (seconds, 0)
    rows = await ledger(env.bot)
    assert [(r["feature"], r["transcription_seconds"]) for r in rows] == [("transcription", seconds)]


@pytest.mark.gateway_profile("openai")
async def test_transcribe_an_audio_file_sends_its_exact_bytes(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    audio = synthesize("An mp3 file attached to a message.", "mp3")
    posted = await emu.send_user_message("here is a recording", attachments=[("memo.mp3", audio, "audio/mpeg")])
    rec = await emu.inject_context_menu("Transcribe", posted.id)
    await rec.wait_final(answered, timeout=20)
    assert rec.ephemeral and rec.original.content == "🎙️ An mp3 file attached to a message."
    assert env.gateway.received_audio == [audio]


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(voice={"max_duration_seconds": 2})
async def test_transcribe_refuses_audio_over_the_duration_limit_before_the_gateway(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    voice = await emu.send_user_voice_message(synthesize("This recording is longer than two seconds.", "opus"))
    rec = await emu.inject_context_menu("Transcribe", voice.id)
    await rec.wait_final(answered)
    assert rec.ephemeral and "I transcribe at most 2 s" in rec.original.content
    assert not transcription_calls(env.gateway) and not env.gateway.received_audio
    assert await ledger(env.bot) == []


@pytest.mark.gateway_profile("aicredits")
@pytest.mark.bot_settings(voice={"max_bytes": 2000})
async def test_transcribe_refuses_a_file_over_the_size_limit_before_the_gateway(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    audio = synthesize("A file that is bigger than two thousand bytes, surely.", "mp3")
    assert len(audio) > 2000
    posted = await emu.send_user_message("listen", attachments=[("talk.mp3", audio, "audio/mpeg")])
    rec = await emu.inject_context_menu("Transcribe", posted.id)
    await rec.wait_final(answered)
    assert rec.ephemeral and "I transcribe files of at most 2 KiB" in rec.original.content
    assert not transcription_calls(env.gateway) and not env.gateway.received_audio
    assert await ledger(env.bot) == []


@pytest.mark.gateway_profile("openai")
async def test_transcribe_of_a_message_without_audio_says_so(bot_env: Any) -> None:
    env, emu = bot_env, bot_env.discord
    plain = await emu.send_user_message("just text")
    rec = await emu.inject_context_menu("Transcribe", plain.id)
    await rec.wait_final(answered)
    assert rec.ephemeral and rec.original.content == "That message has no voice message or audio file to transcribe."
    assert not transcription_calls(env.gateway)
