"""Voice units with fakes: what is spoken and read, which attachments are audio, the voice message
request and its fallback, and the service's checks (limits before any download, gateway call or
charge; budgets reserved and settled)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.app.settings import Settings
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.voice import codec
from bot.voice.codec import VoiceClip
from bot.voice.errors import (
    AudioNotFromDiscord,
    AudioTooLarge,
    AudioTooLong,
    NothingToSay,
    VoiceTooLarge,
    VoiceUnavailable,
)
from bot.voice.intake import AudioInput, audio_of
from bot.voice.sender import ChannelVoiceTarget, InteractionVoiceTarget, VoiceMessageSender
from bot.voice.service import VoiceService
from bot.voice.text import message_text, speakable, split_for_speech
from gateway_client import CallMeta

ALICE = Requester(guild_id=1, channel_id=2, user_id=3)


# -- text ------------------------------------------------------------------------------------------

def test_split_keeps_sentences_whole_and_every_word() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    parts = split_for_speech(text, 100)
    assert all(len(p) <= 100 for p in parts)
    assert all(p.endswith(".") for p in parts)  # cut between sentences
    assert " ".join(parts).split() == text.split()


def test_split_cuts_long_sentences_at_words_and_giant_words_anywhere() -> None:
    words = ["word"] * 60 + ["x" * 250]
    parts = split_for_speech(" ".join(words), 100)
    assert all(len(p) <= 100 for p in parts)
    assert "".join(parts).replace(" ", "") == "".join(words)
    assert split_for_speech("short", 100) == ["short"]
    assert split_for_speech("   ", 100) == []


def test_speakable_drops_markup_and_footers() -> None:
    text = "**Bold** and *it* `code` [a link](https://x.y/z) <@123> <:wave:42>\n```py\nprint()\n```\n-# model · 3 s"
    said = speakable(text)
    assert said.startswith("Bold and it code a link wave")
    assert "print()" in said and "model" not in said and "*" not in said and "`" not in said


def test_message_text_reads_content_and_embeds() -> None:
    embed = discord.Embed(title="Deploy finished", description="All green.")
    embed.add_field(name="Duration", value="42 s")
    msg = SimpleNamespace(content="Relay post:", embeds=[embed])
    assert message_text(msg) == "Relay post:\n\nDeploy finished\n\nAll green.\n\nDuration: 42 s"
    assert message_text(SimpleNamespace(content="", embeds=[])) == ""


# -- intake ----------------------------------------------------------------------------------------

def attachment(filename: str, content_type: str | None, size: int = 1000, **extra: Any) -> Any:
    return SimpleNamespace(filename=filename, content_type=content_type, size=size,
                           url=f"http://127.0.0.1/attachments/{filename}", **extra)


def test_audio_of_recognises_audio_and_voice_messages() -> None:
    voice = audio_of(attachment("voice-message.ogg", "audio/ogg", duration=3.5, waveform=b"\x01"))
    assert voice is not None and voice.is_voice_message and voice.duration_hint == 3.5 and voice.format_hint == "ogg"
    mp3 = audio_of(attachment("talk.mp3", None))
    assert mp3 is not None and not mp3.is_voice_message and mp3.format_hint == "mp3"
    assert audio_of(attachment("note", "audio/x-m4a")).format_hint == "m4a"  # type: ignore[union-attr]
    assert audio_of(attachment("cat.png", "image/png")) is None
    assert audio_of(attachment("notes.txt", "text/plain")) is None


# -- sender ----------------------------------------------------------------------------------------

def clip() -> VoiceClip:
    return VoiceClip(data=b"OggS-audio", duration_secs=2.3456, waveform=bytes(range(0, 250, 10)))


def http_error(status: int, code: int, message: str) -> discord.HTTPException:
    response = SimpleNamespace(status=status, reason="refused")
    cls = discord.Forbidden if status == 403 else discord.HTTPException
    return cls(response, {"code": code, "message": message})  # type: ignore[arg-type]


@dataclass
class FakeHttp:
    refuse: list[discord.HTTPException] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def request(self, route: discord.http.Route, *, form: list[dict[str, Any]], files: list[discord.File],
                      **kwargs: Any) -> Any:
        payload = json.loads(form[0]["value"])
        self.calls.append({"route": route, "payload": payload, "file": form[1], "files": files, "kwargs": kwargs,
                           "data": form[1]["value"].read()})
        if self.refuse:
            raise self.refuse.pop(0)
        return {"id": str(1000 + len(self.calls))}


async def test_sender_posts_a_voice_message_replying_in_the_channel() -> None:
    http = FakeHttp()
    sent = await VoiceMessageSender(lambda: http).send(ChannelVoiceTarget(55, reply_to=77), clip())  # type: ignore[arg-type, return-value]
    assert sent.as_voice and sent.note is None and sent.message_id == 1001
    (call,) = http.calls
    assert call["route"].method == "POST" and call["route"].path == "/channels/{channel_id}/messages"
    assert call["route"].channel_id == 55
    payload = call["payload"]
    assert payload["flags"] == 8192 and "content" not in payload
    (att,) = payload["attachments"]
    assert att["id"] == 0 and att["filename"] == "voice-message.ogg" and att["duration_secs"] == pytest.approx(2.346)
    assert base64.b64decode(att["waveform"]) == clip().waveform
    assert payload["message_reference"]["message_id"] == 77
    assert payload["allowed_mentions"]["parse"] == []
    assert call["file"]["name"] == "files[0]" and call["file"]["content_type"] == "audio/ogg"
    assert call["data"] == b"OggS-audio"


@pytest.mark.parametrize(("code", "status", "why"), [
    (50173, 403, "Discord doesn't allow voice messages in this channel, so here is the audio as a file."),
    (50013, 403, "I lack the Send Voice Messages permission here, so here is the audio as a file."),
    (50160, 400, "Discord refused this as a voice message, so here is the audio as a file."),
])
async def test_sender_falls_back_to_a_plain_file_saying_why(code: int, status: int, why: str) -> None:
    http = FakeHttp(refuse=[http_error(status, code, "no")])
    target = InteractionVoiceTarget(application_id=9, token="secret-interaction-token")
    sent = await VoiceMessageSender(lambda: http).send(target, clip())  # type: ignore[arg-type, return-value]
    assert not sent.as_voice and sent.note == why
    first, second = http.calls
    assert first["route"].path == second["route"].path == "/webhooks/{webhook_id}/{webhook_token}"
    assert second["route"].webhook_id == 9 and second["kwargs"]["params"] == {"wait": "true"}
    assert "flags" not in second["payload"] and second["payload"]["content"] == why
    assert second["payload"]["attachments"] == [{"id": 0, "filename": "voice-message.ogg"}]
    assert second["data"] == b"OggS-audio"
    assert "secret-interaction-token" not in repr(target)


async def test_sender_raises_other_refusals() -> None:
    http = FakeHttp(refuse=[http_error(400, 50035, "Invalid Form Body")])
    with pytest.raises(discord.HTTPException):
        await VoiceMessageSender(lambda: http).send(ChannelVoiceTarget(1), clip())  # type: ignore[arg-type, return-value]
    assert len(http.calls) == 1


# -- service ---------------------------------------------------------------------------------------

@dataclass
class FakeProfile:
    name: str = "openai"
    audio: bool = True
    default_speech_model: str = "tts-1"
    default_transcription_model: str = "whisper-1"
    default_voice: str = "alloy"
    voices: tuple[str, ...] = ("alloy", "echo")
    speech_formats: tuple[str, ...] = ("mp3", "opus")
    max_speech_chars: int = 100
    max_transcription_bytes: int = 25 * 1024 * 1024

    def supports(self, capability: str) -> bool:
        return self.audio and capability in ("speech", "transcriptions")


@dataclass
class FakeGateway:
    profile: FakeProfile = field(default_factory=FakeProfile)
    spoken: list[tuple[str, str, str, str]] = field(default_factory=list)
    heard: list[tuple[bytes, str, str]] = field(default_factory=list)

    async def speech(self, text: str, model: str, voice: str, format: str) -> Any:
        self.spoken.append((text, model, voice, format))
        from sandbox.gateways.audio import synthesize

        meta = CallMeta(profile="openai")
        meta.credits_used = 0.5
        return SimpleNamespace(data=synthesize(text, format), format=format, meta=meta)

    async def transcribe(self, audio: bytes, format: str, model: str, language: str | None = None) -> Any:
        self.heard.append((audio, format, model))
        return SimpleNamespace(text=" hello there ", duration=None, meta=CallMeta(profile="openai"))


@dataclass
class FakeQuotas:
    refuse: bool = False
    holds: list[dict[str, Any]] = field(default_factory=list)

    @asynccontextmanager
    async def charge(self, requester: Requester, feature: Feature, **amounts: Any) -> AsyncIterator[Any]:
        if self.refuse:
            from datetime import UTC, datetime, timedelta

            now = datetime.now(UTC)
            raise BudgetExceeded("speech_chars", "member", 0, 0, now + timedelta(hours=1), at=now)
        record: dict[str, Any] = {"feature": feature, **amounts, "settled": None}
        self.holds.append(record)

        async def settle(**kw: Any) -> None:
            record["settled"] = kw

        yield SimpleNamespace(settle=settle)


class NoDownloads:
    """A CDN session that fails the test if anything is downloaded."""

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing may be downloaded")


def service(gateway: FakeGateway | None = None, quotas: FakeQuotas | None = None, cdn: Any = None,
            **voice: Any) -> VoiceService:
    settings = Settings(voice=voice, discord={"cdn_hosts": ["127.0.0.1"]})
    return VoiceService(settings, gateway or FakeGateway(), quotas or FakeQuotas(),  # type: ignore[arg-type]
                        cdn_http=lambda: cdn or NoDownloads(), http=lambda: FakeHttp())  # type: ignore[arg-type, return-value]


def audio_input(size: int = 1000, duration: float | None = None, url: str = "http://127.0.0.1/a.ogg") -> AudioInput:
    return AudioInput(url=url, filename="voice-message.ogg", content_type="audio/ogg", size=size,
                      is_voice_message=duration is not None, duration_hint=duration)


async def test_a_gateway_without_audio_refuses_both_ways() -> None:
    gateway = FakeGateway(profile=FakeProfile(name="aicordcloud", audio=False))
    voice = service(gateway)
    assert not voice.can_listen and not voice.can_speak
    with pytest.raises(VoiceUnavailable) as listen:
        await voice.transcribe(ALICE, audio_input())
    assert "aicordcloud" in listen.value.user_message() and "transcription" in listen.value.user_message()
    with pytest.raises(VoiceUnavailable):
        await voice.speak(ALICE, "hello")
    assert not gateway.spoken and not gateway.heard


async def test_transcribe_limits_refuse_before_download_or_charge() -> None:
    gateway, quotas = FakeGateway(), FakeQuotas()
    voice = service(gateway, quotas, max_bytes=5000, max_duration_seconds=60)
    with pytest.raises(AudioTooLarge) as large:
        await voice.transcribe(ALICE, audio_input(size=6000))
    assert "4.9 KiB" in large.value.user_message()
    with pytest.raises(AudioTooLong) as long:
        await voice.transcribe(ALICE, audio_input(duration=61.0))
    assert "1 min 1 s" in long.value.user_message() and "1 min" in long.value.user_message()
    with pytest.raises(AudioNotFromDiscord):
        await voice.transcribe(ALICE, audio_input(url="https://evil.example/a.ogg"))
    assert not gateway.heard and not quotas.holds


async def test_the_gateway_limit_caps_the_configured_size() -> None:
    gateway = FakeGateway(profile=FakeProfile(max_transcription_bytes=2000))
    voice = service(gateway, max_bytes=10_000)
    assert voice.max_audio_bytes == 2000


async def test_speak_charges_characters_splits_and_joins_one_clip() -> None:
    gateway, quotas = FakeGateway(), FakeQuotas()
    voice = service(gateway, quotas, speech_format="opus")
    accepted: list[bool] = []

    async def on_accepted() -> None:
        assert quotas.holds and not gateway.spoken  # after the hold, before the gateway
        accepted.append(True)

    text = "This is **one** sentence of a long text. " * 6
    clip = await voice.speak(ALICE, text, "echo", on_accepted=on_accepted)
    said = speakable(text)
    assert accepted == [True]
    assert [s[1:] for s in gateway.spoken] == [("tts-1", "echo", "opus")] * len(gateway.spoken)
    assert len(gateway.spoken) >= 3 and all(len(s[0]) <= 100 for s in gateway.spoken)
    assert " ".join(s[0] for s in gateway.spoken) == said
    (hold,) = quotas.holds
    assert hold["feature"] == Feature.SPEECH and hold["speech_chars"] == len(said) and hold["model"] == "tts-1"
    assert hold["settled"]["credits"] == pytest.approx(0.5 * len(gateway.spoken))
    assert clip.data.startswith(b"OggS") and 1 <= len(clip.waveform) <= 256
    assert codec.ogg_duration(clip.data) == pytest.approx(clip.duration_secs, abs=0.1)


async def test_speak_falls_back_to_a_format_the_gateway_offers() -> None:
    gateway = FakeGateway(profile=FakeProfile(speech_formats=("mp3", "aac")))
    voice = service(gateway, speech_format="opus")
    assert voice.speech_format == "mp3"
    await voice.speak(ALICE, "Hello.")
    assert gateway.spoken[0][3] == "mp3" and gateway.spoken[0][2] == "alloy"


async def test_speak_refusals_ask_nothing_of_the_gateway() -> None:
    gateway = FakeGateway()
    with pytest.raises(BudgetExceeded):
        await service(gateway, FakeQuotas(refuse=True)).speak(ALICE, "Hello.")
    with pytest.raises(NothingToSay):
        await service(gateway).speak(ALICE, "** ``")
    assert not gateway.spoken


async def test_speak_refuses_a_clip_over_the_upload_limit_after_charging_what_the_gateway_spoke() -> None:
    quotas = FakeQuotas()
    with pytest.raises(VoiceTooLarge) as refused:
        await service(FakeGateway(), quotas).speak(ALICE, "Hello there, how are you?", upload_limit=100)
    assert "100 bytes" in refused.value.user_message()
    assert quotas.holds[0]["settled"] is not None  # the gateway did the work: it is charged


# -- settings ----------------------------------------------------------------------------------------

def test_voice_settings_defaults_and_clear_errors(tmp_path: Any) -> None:
    from bot.app.settings import ConfigError, load_settings

    s = Settings()
    assert (s.voice.max_duration_seconds, s.voice.max_bytes, s.voice.speech_format) == (600, 26214400, "opus")
    assert (s.gateway.speech_model, s.gateway.transcription_model, s.gateway.voice) == ("", "", "")
    bad = tmp_path / "config.toml"
    bad.write_text('[voice]\nspeech_format = "ogg"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(bad)
    assert "voice.speech_format" in str(error.value) and "'opus'" in str(error.value) and "'ogg'" in str(error.value)
    bad.write_text("[voice]\nmax_bytes = 0\n")
    with pytest.raises(ConfigError, match="voice.max_bytes input should be greater than 0"):
        load_settings(bad)


def test_check_warns_of_voice_settings_the_gateway_cannot_honour() -> None:
    from bot.app.cli import _voice_warnings
    from gateway_client import get_profile

    settings = Settings(gateway={"speech_model": "tts-1", "voice": "robot"})
    assert _voice_warnings(settings, get_profile("aicordcloud")) == [
        "gateway.speech_model 'tts-1' is set, but the aicordcloud gateway offers no speech",
        "gateway.voice 'robot' is set, but the aicordcloud gateway offers no speech",
    ]
    (line,) = _voice_warnings(settings, get_profile("aicredits"))
    assert line.startswith("gateway.voice 'robot' is not one of the gateway's voices (alloy, echo")
    assert _voice_warnings(Settings(), get_profile("openai")) == []
