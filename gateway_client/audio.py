"""Speech and transcription: typed results, request bodies and answer parsing (pure; no I/O)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .errors import InvalidRequest, InvalidResponse
from .meta import CallMeta
from .profiles import Profile

__all__ = ["SpeechAudio", "Transcription", "speech_body", "speech_audio", "transcription_form",
           "transcription_json", "transcription_text"]

_AUDIO_KEYS = ("audio", "data", "b64_json", "audio_base64")


@dataclass(slots=True)
class SpeechAudio:
    """Audio the gateway spoke, in ``format`` (the ``response_format`` asked for)."""

    data: bytes = field(repr=False)
    format: str
    meta: CallMeta

    def __repr__(self) -> str:  # never dump megabytes into a log line
        return f"SpeechAudio(format={self.format!r}, bytes={len(self.data)}, model={self.meta.model_used!r})"


@dataclass(slots=True)
class Transcription:
    """What the gateway heard; ``duration`` (seconds) when the gateway says (verbose_json)."""

    text: str
    duration: float | None
    meta: CallMeta


def speech_body(profile: Profile, text: str, model: str, voice: str, fmt: str) -> dict[str, Any]:
    """The JSON body of a speech request, or ``InvalidRequest`` naming the field before anything is sent."""
    if not text or not text.strip():
        raise InvalidRequest("no text to speak", field="input")
    limit = profile.max_speech_chars
    if len(text) > limit:
        raise InvalidRequest(f"text to speak is longer than {limit} characters", field="input",
                             allowed=f"<= {limit} chars")
    if profile.voices and voice not in profile.voices:
        raise InvalidRequest(f"unknown voice {voice!r}", field="voice", allowed=", ".join(profile.voices))
    if profile.speech_formats and fmt not in profile.speech_formats:
        raise InvalidRequest(f"unknown audio format {fmt!r}", field="response_format",
                             allowed=", ".join(profile.speech_formats))
    return {"model": model, "input": text, "voice": voice, "response_format": fmt}


def speech_audio(profile: Profile, body: bytes, content_type: str, data: Any = None) -> bytes:
    """The audio bytes of a speech answer: the raw body, or base64 in a JSON answer (``data``)."""
    if "json" in content_type:
        for key in _AUDIO_KEYS:
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, str) and value:
                try:
                    raw = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidResponse("the speech answer's audio is not valid base64",
                                          profile=profile.name) from None
                if raw:
                    return raw
        raise InvalidResponse("the speech answer holds no audio", profile=profile.name)
    if not body:
        raise InvalidResponse("the speech answer is empty", profile=profile.name)
    return body


def _check_audio(profile: Profile, audio: bytes) -> None:
    if not audio:
        raise InvalidRequest("no audio", field="audio")
    limit = profile.max_transcription_bytes
    if len(audio) > limit:
        raise InvalidRequest(f"audio is larger than {limit} bytes", field="audio", allowed=f"<= {limit} bytes")


def transcription_form(profile: Profile, audio: bytes, fmt: str, model: str, language: str | None) -> aiohttp.FormData:
    """A multipart transcription request (OpenAI's upload); the bytes go unchanged."""
    _check_audio(profile, audio)
    form = aiohttp.FormData()
    form.add_field("model", model)
    form.add_field("file", audio, filename=f"audio.{fmt}", content_type=f"audio/{fmt}")
    if language:
        form.add_field("language", language)
    if profile.transcription_response_format:
        form.add_field("response_format", profile.transcription_response_format)
    return form


def transcription_json(profile: Profile, audio: bytes, fmt: str, model: str, language: str | None) -> dict[str, Any]:
    """A JSON transcription request (``input_audio`` with base64 data, AICredits' documented style)."""
    _check_audio(profile, audio)
    body: dict[str, Any] = {"model": model,
                            "input_audio": {"data": base64.b64encode(audio).decode("ascii"), "format": fmt}}
    if language:
        body["language"] = language
    if profile.transcription_response_format:
        body["response_format"] = profile.transcription_response_format
    return body


def transcription_text(profile: Profile, data: Any) -> tuple[str, float | None]:
    """(text, duration) of a JSON transcription answer; ``InvalidResponse`` when it has no text."""
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InvalidResponse("the transcription answer has no text", profile=profile.name)
    raw = data.get("duration")
    duration = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0 else None
    return text, duration
