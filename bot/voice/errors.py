"""The voice refusals a member reads: each raised before anything is sent to the gateway or charged."""

from __future__ import annotations

from typing import Literal

from bot.rendering.errors import guild_gateway_lacks
from bot.rendering.user_facing import UserFacingError

__all__ = [
    "AudioDownloadFailed",
    "AudioNotFromDiscord",
    "AudioTooLarge",
    "AudioTooLong",
    "NoAudio",
    "NothingToSay",
    "VoiceTooLarge",
    "VoiceUnavailable",
    "describe_size",
    "describe_seconds",
]

Direction = Literal["listen", "speak"]


def describe_size(size: int) -> str:
    """``25 MiB``, ``812 KiB``, ``300 bytes``."""
    if size >= 1024 * 1024:
        value = size / (1024 * 1024)
        return f"{value:.1f} MiB".replace(".0 ", " ")
    if size >= 1024:
        return f"{size / 1024:.1f} KiB".replace(".0 ", " ")
    return f"{size} bytes"


def describe_seconds(seconds: float) -> str:
    """``42 s``, ``10 min``, ``12 min 30 s``."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


class VoiceUnavailable(UserFacingError):
    """The configured gateway offers no speech (``speak``) or no transcription (``listen``)."""

    code = "voice_unavailable"

    def __init__(self, kind: Direction, gateway: str, *, own: bool = False) -> None:
        self.kind = kind
        self.gateway = gateway
        #: the guild's own gateway lacks it (not the bot's)
        self.own = own
        super().__init__(f"{gateway} offers no {'speech' if kind == 'speak' else 'transcription'}")

    def user_message(self) -> str:
        if self.own:
            return guild_gateway_lacks(self.gateway, "text-to-speech" if self.kind == "speak" else "transcription")
        if self.kind == "listen":
            return (f"I can't listen to audio here: the AI gateway this bot uses ({self.gateway}) offers no "
                    "transcription. Please type your message instead.")
        return f"I can't speak here: the AI gateway this bot uses ({self.gateway}) offers no text-to-speech."


class AudioTooLong(UserFacingError):
    """The audio lasts longer than ``[voice] max_duration_seconds``."""

    code = "audio_too_long"

    def __init__(self, filename: str, seconds: float, limit: float) -> None:
        self.filename = filename
        self.seconds = seconds
        self.limit = limit
        super().__init__(f"{filename}: {seconds:.1f} s of audio, limit {limit:g} s")

    def user_message(self) -> str:
        return (f"That audio lasts {describe_seconds(self.seconds)}; I transcribe at most "
                f"{describe_seconds(self.limit)}. Send a shorter recording.")


class AudioTooLarge(UserFacingError):
    """The audio file is bigger than ``[voice] max_bytes`` or the gateway's upload limit."""

    code = "audio_too_large"

    def __init__(self, filename: str, size: int | None, limit: int) -> None:
        self.filename = filename
        self.size = size
        self.limit = limit
        super().__init__(f"{filename}: {size if size is not None else 'more than the limit'} bytes, limit {limit}")

    def user_message(self) -> str:
        size = f" is {describe_size(self.size)}" if self.size is not None else " is too large"
        return (f"That audio file{size}; I transcribe files of at most {describe_size(self.limit)}. "
                "Send a shorter or more compressed recording.")


class AudioNotFromDiscord(UserFacingError):
    """The attachment's URL is not on one of ``[discord] cdn_hosts``: it is never downloaded."""

    code = "audio_not_from_discord"

    def __init__(self, filename: str, host: str) -> None:
        self.filename = filename
        self.host = host
        super().__init__(f"{filename} is not on Discord's CDN ({host})")

    def user_message(self) -> str:
        return "That audio is not stored on Discord's CDN, so I won't download it. Upload it to Discord instead."


class AudioDownloadFailed(UserFacingError):
    code = "audio_download_failed"

    def __init__(self, filename: str, detail: str) -> None:
        self.filename = filename
        self.detail = detail
        super().__init__(f"{filename}: download failed ({detail})")

    def user_message(self) -> str:
        return f"I couldn't download that audio from Discord ({self.detail}). Try sending it again."


class NoAudio(UserFacingError):
    """Transcribe was used on a message that has no voice message and no audio attachment."""

    code = "no_audio"

    def user_message(self) -> str:
        return "That message has no voice message or audio file to transcribe."


class NothingToSay(UserFacingError):
    """Read aloud was used on a message without any text (only pictures, files or nothing)."""

    code = "nothing_to_say"

    def user_message(self) -> str:
        return "That message has no text I could read aloud."


class VoiceTooLarge(UserFacingError):
    """The spoken clip would be bigger than what Discord lets the bot upload here."""

    code = "voice_too_large"

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"voice clip of {size} bytes over the upload limit {limit}")

    def user_message(self) -> str:
        return (f"Spoken aloud, that text makes a {describe_size(self.size)} recording, more than the "
                f"{describe_size(self.limit)} I may upload here. Ask me to read a shorter text.")
