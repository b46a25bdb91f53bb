"""Which attachments of a Discord message are audio, described without downloading anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import discord

__all__ = ["AUDIO_EXTENSIONS", "AudioInput", "audio_inputs", "audio_of", "is_voice_message"]

#: file name extension -> the format name the gateways' transcription endpoints take
AUDIO_EXTENSIONS: dict[str, str] = {
    ".ogg": "ogg", ".oga": "ogg", ".opus": "ogg", ".mp3": "mp3", ".mpga": "mp3", ".mpeg": "mp3",
    ".wav": "wav", ".flac": "flac", ".m4a": "m4a", ".aac": "aac", ".webm": "webm", ".weba": "webm",
}
#: audio/* subtype -> format name (for attachments whose name says nothing)
AUDIO_SUBTYPES: dict[str, str] = {
    "ogg": "ogg", "opus": "ogg", "mpeg": "mp3", "mp3": "mp3", "wav": "wav", "x-wav": "wav", "wave": "wav",
    "flac": "flac", "x-flac": "flac", "mp4": "m4a", "x-m4a": "m4a", "m4a": "m4a", "aac": "aac", "webm": "webm",
}


@dataclass(frozen=True, slots=True)
class AudioInput:
    """One audio attachment as Discord describes it (nothing downloaded yet)."""

    url: str
    filename: str
    content_type: str
    size: int
    is_voice_message: bool = False
    #: Discord's ``duration_secs`` of a voice message (None for other files)
    duration_hint: float | None = None

    @property
    def format_hint(self) -> str | None:
        """``ogg``, ``mp3``, … from the file name, else the content type; None when neither says."""
        suffix = PurePosixPath(self.filename.lower()).suffix
        if suffix in AUDIO_EXTENSIONS:
            return AUDIO_EXTENSIONS[suffix]
        mime = self.content_type.split(";")[0].strip().lower()
        return AUDIO_SUBTYPES.get(mime.removeprefix("audio/")) if mime.startswith("audio/") else None


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def audio_of(attachment: Any, *, voice_message: bool = False) -> AudioInput | None:
    """The attachment as audio (``discord.Attachment`` or alike), or None when it is not audio."""
    filename = str(getattr(attachment, "filename", "") or "audio")
    mime = _mime(getattr(attachment, "content_type", None))
    suffix = PurePosixPath(filename.lower()).suffix
    generic = mime in ("", "application/octet-stream")
    if not (mime.startswith("audio/") or (suffix in AUDIO_EXTENSIONS and (generic or mime == "video/webm"
                                                                       or mime == "video/ogg"))):
        return None
    duration = getattr(attachment, "duration", None)
    voice = voice_message or (getattr(attachment, "waveform", None) is not None and duration is not None)
    return AudioInput(
        url=str(getattr(attachment, "url", "")),
        filename=filename,
        content_type=mime or "application/octet-stream",
        size=int(getattr(attachment, "size", 0) or 0),
        is_voice_message=voice,
        duration_hint=float(duration) if isinstance(duration, int | float) else None,
    )


def is_voice_message(message: discord.Message) -> bool:
    """Whether ``message`` is a Discord voice message (flag IS_VOICE_MESSAGE, 1 << 13)."""
    return bool(message.flags.voice)


def audio_inputs(message: discord.Message) -> list[AudioInput]:
    """Every audio attachment of ``message``, in order (a voice message has exactly one)."""
    voice = is_voice_message(message)
    found = (audio_of(att, voice_message=voice) for att in message.attachments)
    return [a for a in found if a is not None]
