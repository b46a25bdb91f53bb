"""Chat listens: a member's voice message or audio file as a prompt, and answers spoken back.

The chat service finds a turn's audio with ``audio_inputs`` / ``audio_of`` (``bot.voice.intake``), then,
inside the turn (after admission, before the answer's budget), ``hear`` transcribes it through the voice
service (``bot.chat.voice``, ``bot.voice.service.VoiceService``). The answer's first line quotes what was heard
(``heard_line``); the transcript (plus any text) is the member's turn in the history. With the
channel setting ``voice_replies`` on, ``speak_back`` also sends the finished answer as a voice
message; a failure there costs one short line, never the text answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import discord

from bot.budgets.rules import Requester
from bot.rendering.errors import user_error_message
from bot.rendering.user_facing import UserFacingError
from bot.voice.intake import AudioInput, audio_inputs, audio_of
from bot.voice.sender import ChannelVoiceTarget, InteractionVoiceTarget

log = logging.getLogger(__name__)

__all__ = [
    "HEARD_MAX",
    "HEARD_PREFIX",
    "Heard",
    "NothingHeard",
    "SayLine",
    "Voice",
    "audio_inputs",
    "audio_of",
    "heard_line",
    "hear",
    "prompt_with_transcript",
    "speak_back",
]

HEARD_PREFIX = "🎙️ "
#: the quoted transcript is cut (with …) past this many characters
HEARD_MAX = 200
NO_VOICE_REPLY = "-# 🔇 No voice reply: "


class Transcribed(Protocol):
    @property
    def text(self) -> str: ...


class Voice(Protocol):
    """What chat uses of ``bot.voice`` (``bot.voice.service.VoiceService``)."""

    @property
    def can_listen(self) -> bool: ...

    @property
    def can_speak(self) -> bool: ...

    def can_listen_on(self, gateway: Any, /) -> bool: ...

    def can_speak_on(self, gateway: Any, /) -> bool: ...

    def unavailable(self, kind: Literal["listen", "speak"], gateway: Any = None, /) -> Exception: ...

    async def transcribe(self, requester: Requester, audio: AudioInput, /) -> Transcribed: ...

    async def speak(self, requester: Requester, text: str, /) -> Any: ...

    async def send(self, target: Any, clip: Any, /) -> Any: ...


class NothingHeard(UserFacingError):
    """The audio was transcribed, but it holds no words (and the member wrote nothing either)."""

    code = "nothing_heard"

    def user_message(self) -> str:
        return "I couldn't make out any words in that audio. Try recording it again, a little closer."


@dataclass(frozen=True, slots=True)
class Heard:
    """What a turn heard: the transcript and the answer's first line quoting it."""

    transcript: str
    header: str


def heard_line(transcript: str) -> str:
    """``🎙️ *what was heard*`` on one line: whitespace collapsed, cut with … past ``HEARD_MAX``
    characters, markdown escaped (a transcript is the member's words, not formatting)."""
    words = " ".join(transcript.split())
    if len(words) > HEARD_MAX:
        words = words[: HEARD_MAX - 1].rstrip() + "…"
    if not words:
        return HEARD_PREFIX + "*(no words)*"
    return f"{HEARD_PREFIX}*{discord.utils.escape_markdown(words)}*"


def prompt_with_transcript(text: str, transcript: str) -> str:
    """The member's turn: what they wrote (if anything), then what they said."""
    text, transcript = text.strip(), transcript.strip()
    if text and transcript:
        return f"{text}\n\n{transcript}"
    return text or transcript


async def hear(voice: Voice, requester: Requester, audio: AudioInput, *, written: str = "",
               gateway: Any = None) -> Heard:
    """Transcribe ``audio``; raises the voice service's refusals (unavailable, too long, too large,
    unreadable, budget) for the caller to show, or ``NothingHeard`` when there was nothing to answer.
    ``gateway``: the one serving the turn (None: the operator's)."""
    if not (voice.can_listen if gateway is None else voice.can_listen_on(gateway)):
        raise voice.unavailable("listen") if gateway is None else voice.unavailable("listen", gateway)
    transcript = (await voice.transcribe(requester, audio)).text.strip()
    if not transcript and not written.strip():
        raise NothingHeard("empty transcript")
    return Heard(transcript, heard_line(transcript))


SayLine = Callable[[str], Awaitable[None]]


async def speak_back(
    voice: Voice, requester: Requester, answer: str, target: ChannelVoiceTarget | InteractionVoiceTarget,
    say: SayLine, gateway: Any = None,
) -> int | None:
    """Speak ``answer`` and send it as a voice message to ``target``; returns the message's id. Skipped
    when the gateway cannot speak; a failure is one short line through ``say`` (never raised: the text
    answer stands). ``gateway``: the one serving the turn (None: the operator's)."""
    if not (voice.can_speak if gateway is None else voice.can_speak_on(gateway)) or not answer.strip():
        return None
    try:
        clip = await voice.speak(requester, answer)
        sent = await voice.send(target, clip)
    except Exception as exc:
        log.info("voice reply failed: %r", exc)
        try:
            await say(NO_VOICE_REPLY + user_error_message(exc, gateway=gateway))
        except Exception as show_error:
            log.warning("could not say why there is no voice reply: %r", show_error)
        return None
    if not sent.as_voice:
        log.info("voice reply sent as a plain attachment: %s", sent.note)
    return int(sent.message_id)
