"""Sending a Discord voice message, with a plain audio file as the fallback when Discord refuses one.

discord.py 2.7 has no public way to send a voice message (flag IS_VOICE_MESSAGE plus an attachment
carrying ``duration_secs`` and ``waveform``): ``Messageable.send`` and ``Webhook.send`` build their
own payloads and drop both fields. So the request is built here, with discord.py's public
``discord.http.Route`` and ``HTTPClient.request(route, form=…, files=…)`` — the same multipart shape
discord.py itself sends (``payload_json`` plus ``files[n]``), with its rate limiting and retries.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot.rendering.replies import NO_MENTIONS

if TYPE_CHECKING:
    from bot.voice.codec import VoiceClip

log = logging.getLogger(__name__)

__all__ = [
    "FALLBACK_CODES",
    "IS_VOICE_MESSAGE",
    "ChannelVoiceTarget",
    "InteractionVoiceTarget",
    "SentVoice",
    "VoiceMessageSender",
    "VoiceTarget",
    "fallback_note",
]

IS_VOICE_MESSAGE = 1 << 13
#: Discord's refusals of a voice message that a plain audio file gets past
VOICE_ADDITIONAL_CONTENT = 50159
VOICE_SINGLE_AUDIO = 50160
VOICE_METADATA = 50161
VOICE_NOT_IN_CHANNEL = 50173
MISSING_PERMISSIONS = 50013
FALLBACK_CODES = frozenset({VOICE_ADDITIONAL_CONTENT, VOICE_SINGLE_AUDIO, VOICE_METADATA, VOICE_NOT_IN_CHANNEL,
                            MISSING_PERMISSIONS})


@dataclass(frozen=True, slots=True)
class ChannelVoiceTarget:
    """A channel (or thread), optionally replying to one of its messages."""

    channel_id: int
    reply_to: int | None = None

    def route(self) -> discord.http.Route:
        return discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=self.channel_id)

    def describe(self) -> str:
        return f"channel {self.channel_id}"


@dataclass(frozen=True, slots=True)
class InteractionVoiceTarget:
    """An interaction's follow-up webhook; the token is a secret (never in a repr or a log line)."""

    application_id: int
    token: str = field(repr=False)

    def route(self) -> discord.http.Route:
        return discord.http.Route("POST", "/webhooks/{webhook_id}/{webhook_token}",
                                  webhook_id=self.application_id, webhook_token=self.token)

    def describe(self) -> str:
        return "an interaction follow-up"


VoiceTarget = ChannelVoiceTarget | InteractionVoiceTarget


@dataclass(frozen=True, slots=True)
class SentVoice:
    """What went out: the message, whether it is a real voice message, and the sentence said if not."""

    message_id: int
    as_voice: bool
    note: str | None = None


def fallback_note(code: int) -> str:
    """The one sentence sent with the plain audio file, saying why it is not a voice message."""
    if code == VOICE_NOT_IN_CHANNEL:
        return "Discord doesn't allow voice messages in this channel, so here is the audio as a file."
    if code == MISSING_PERMISSIONS:
        return "I lack the Send Voice Messages permission here, so here is the audio as a file."
    return "Discord refused this as a voice message, so here is the audio as a file."


class VoiceMessageSender:
    """Sends ``VoiceClip``s through the bot's HTTP client (given lazily: it exists once logged in)."""

    def __init__(self, http: Callable[[], discord.http.HTTPClient]) -> None:
        self._http = http

    async def send(self, target: VoiceTarget, clip: VoiceClip) -> SentVoice:
        """Send ``clip`` as a voice message; when Discord refuses one here (``FALLBACK_CODES``), send the
        same audio as a plain file with a sentence saying why. Other failures raise ``HTTPException``."""
        attachment: dict[str, Any] = {
            "id": 0, "filename": clip.filename, "duration_secs": round(clip.duration_secs, 3),
            "waveform": clip.waveform_b64,
        }
        try:
            message_id = await self._post(target, clip, {"flags": IS_VOICE_MESSAGE, "attachments": [attachment]})
        except discord.HTTPException as exc:
            if exc.code not in FALLBACK_CODES:
                raise
            note = fallback_note(exc.code)
            log.info("voice message refused in %s (Discord code %s): sending the audio as a file",
                     target.describe(), exc.code)
            plain = {"content": note, "attachments": [{"id": 0, "filename": clip.filename}]}
            return SentVoice(await self._post(target, clip, plain), as_voice=False, note=note)
        return SentVoice(message_id, as_voice=True)

    async def _post(self, target: VoiceTarget, clip: VoiceClip, payload: dict[str, Any]) -> int:
        payload = {**payload, "allowed_mentions": NO_MENTIONS.to_dict()}
        if isinstance(target, ChannelVoiceTarget) and target.reply_to is not None:
            payload["message_reference"] = {"message_id": target.reply_to, "channel_id": target.channel_id,
                                            "fail_if_not_exists": False}
        file = discord.File(io.BytesIO(clip.data), filename=clip.filename)
        form: list[dict[str, Any]] = [
            {"name": "payload_json", "value": json.dumps(payload)},
            {"name": "files[0]", "value": file.fp, "filename": clip.filename, "content_type": clip.content_type},
        ]
        extra: dict[str, Any] = {}
        if isinstance(target, InteractionVoiceTarget):
            extra["params"] = {"wait": "true"}  # answer with the message (its id), as discord.py's followups do
        try:
            data = await self._http().request(target.route(), form=form, files=[file], **extra)
        finally:
            file.close()
        return int(data["id"]) if isinstance(data, dict) and "id" in data else 0
