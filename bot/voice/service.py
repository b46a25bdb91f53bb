"""The voice use case, built once by the factory as ``bot.voice`` (and handed to chat as ``bot.chat.voice``).

Listening: an audio attachment is checked by what Discord says of it (size, a voice message's
duration), downloaded from the CDN within the cap, probed (its real duration), and only then are
transcription seconds reserved and the exact bytes sent to the gateway. Speaking: speech characters
are reserved, the text is spoken in parts the gateway takes, and the parts become one Ogg/Opus clip
(bot/voice/codec.py) sent as a Discord voice message (bot/voice/sender.py). Every refusal happens
before the gateway is asked and before anything is charged.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bot.budgets.rules import Feature, Requester
from bot.gateways.defaults import default_model, default_voice
from bot.gateways.directory import GatewayDirectory, is_guild_client
from bot.rendering import limits as discord_limits
from bot.voice import codec
from bot.voice.codec import AudioInfo, VoiceClip
from bot.voice.download import fetch_audio
from bot.voice.errors import AudioTooLarge, AudioTooLong, NothingToSay, VoiceTooLarge, VoiceUnavailable
from bot.voice.intake import AudioInput
from bot.voice.sender import SentVoice, VoiceMessageSender, VoiceTarget
from bot.voice.text import speakable, split_for_speech

if TYPE_CHECKING:
    import aiohttp
    import discord

    from bot.app.settings import Settings
    from bot.budgets.service import BudgetService
    from gateway_client import GatewayClient, Profile

log = logging.getLogger(__name__)

__all__ = ["Transcript", "VoiceService", "transcription_format"]

#: audio encodes/probes at once, bot-wide (each holds decoded audio in memory)
MAX_CONCURRENT_CODEC = 2
#: FFmpeg's container name -> the format name the gateways' transcription endpoints take
_CONTAINER_FORMATS = {"ogg": "ogg", "mp3": "mp3", "wav": "wav", "flac": "flac", "aac": "aac", "webm": "webm",
                      "matroska": "webm", "mp4": "m4a", "m4a": "m4a", "mov": "m4a"}


@dataclass(frozen=True, slots=True)
class Transcript:
    """What the gateway heard, how long the audio was, and the whole seconds charged for it."""

    text: str
    duration_secs: float
    seconds_charged: int


def transcription_format(audio: AudioInput, info: AudioInfo) -> str:
    """The format name to tell the gateway: from the file's name or type, else what FFmpeg found."""
    hint = audio.format_hint
    if hint:
        return hint
    for name in info.container.split(","):
        if name.strip() in _CONTAINER_FORMATS:
            return _CONTAINER_FORMATS[name.strip()]
    return "ogg"


class VoiceService:
    """Transcribing and speaking for one bot, charged to the budgets."""

    def __init__(
        self,
        settings: Settings,
        gateway: GatewayClient,
        quotas: BudgetService,
        *,
        cdn_http: Callable[[], aiohttp.ClientSession],
        http: Callable[[], discord.http.HTTPClient],
        gateways: GatewayDirectory | None = None,
    ) -> None:
        self.settings = settings
        #: the operator's gateway (what the properties below describe); a request goes to its guild's
        self.gateway = gateway
        self.gateways = gateways if gateways is not None else GatewayDirectory(gateway)
        self.quotas = quotas
        self._cdn_http = cdn_http
        self.sender = VoiceMessageSender(http)
        self._codec = asyncio.Semaphore(MAX_CONCURRENT_CODEC)

    # -- what a gateway offers (the properties: the operator's; ``*_on``: the one serving a request) ---

    @property
    def profile(self) -> Profile:
        return self.gateway.profile

    def speech_model_on(self, gateway: GatewayClient) -> str:
        return default_model(gateway, "speech", self.settings)

    def transcription_model_on(self, gateway: GatewayClient) -> str:
        return default_model(gateway, "transcription", self.settings)

    @property
    def speech_model(self) -> str:
        return self.speech_model_on(self.gateway)

    @property
    def transcription_model(self) -> str:
        return self.transcription_model_on(self.gateway)

    @property
    def voices(self) -> tuple[str, ...]:
        """The voices /speak offers (the gateway's list; empty when it publishes none)."""
        return tuple(self.profile.voices)

    @property
    def default_voice(self) -> str:
        return default_voice(self.gateway, self.settings)

    def speech_format_on(self, gateway: GatewayClient) -> str:
        """``[voice] speech_format`` when the gateway offers it, else the first format it does."""
        wanted = self.settings.voice.speech_format
        formats = tuple(gateway.profile.speech_formats)
        return wanted if not formats or wanted in formats else formats[0]

    @property
    def speech_format(self) -> str:
        return self.speech_format_on(self.gateway)

    def can_listen_on(self, gateway: GatewayClient) -> bool:
        return gateway.profile.supports("transcriptions") and bool(self.transcription_model_on(gateway))

    def can_speak_on(self, gateway: GatewayClient) -> bool:
        return gateway.profile.supports("speech") and bool(self.speech_model_on(gateway))

    @property
    def can_listen(self) -> bool:
        return self.can_listen_on(self.gateway)

    @property
    def can_speak(self) -> bool:
        return self.can_speak_on(self.gateway)

    def unavailable(self, kind: Literal["listen", "speak"], gateway: GatewayClient | None = None) -> VoiceUnavailable:
        """The refusal to show when the gateway (the operator's unless given) cannot do ``kind``."""
        gateway = gateway if gateway is not None else self.gateway
        return VoiceUnavailable(kind, gateway.profile.name, own=is_guild_client(gateway))

    def max_audio_bytes_on(self, gateway: GatewayClient) -> int:
        """The largest audio file transcribed: ``[voice] max_bytes`` within the gateway's own limit."""
        return min(self.settings.voice.max_bytes, gateway.profile.max_transcription_bytes)

    @property
    def max_audio_bytes(self) -> int:
        return self.max_audio_bytes_on(self.gateway)

    # -- listening ------------------------------------------------------------------------------------

    async def transcribe(self, requester: Requester, audio: AudioInput) -> Transcript:
        """The words of ``audio``, transcription seconds charged. Raises ``VoiceUnavailable``,
        ``AudioTooLarge`` / ``AudioTooLong`` (before the download when Discord's numbers say so),
        the download's and the codec's refusals, ``BudgetExceeded`` and gateway errors. The guild's own
        gateway transcribes it (``GatewayDirectory.for_guild``)."""
        gateway = await self.gateways.for_guild(requester.guild_id)
        if not self.can_listen_on(gateway):
            raise self.unavailable("listen", gateway)
        cap = self.max_audio_bytes_on(gateway)
        limit = self.settings.voice.max_duration_seconds
        if audio.size > cap:
            raise AudioTooLarge(audio.filename, audio.size, cap)
        if audio.duration_hint is not None and audio.duration_hint > limit:
            raise AudioTooLong(audio.filename, audio.duration_hint, limit)
        hosts = self.settings.discord.cdn_hosts
        data = await fetch_audio(self._cdn_http(), audio, hosts=hosts, max_bytes=cap)
        async with self._codec:
            info = await codec.probe(data, audio.format_hint)
        if info.duration_secs > limit:
            raise AudioTooLong(audio.filename, info.duration_secs, limit)
        seconds = max(1, math.ceil(info.duration_secs))
        model = self.transcription_model_on(gateway)
        fmt = transcription_format(audio, info)
        async with self.quotas.charge(requester, Feature.TRANSCRIPTION, transcription_seconds=seconds,
                                      model=model) as hold:
            heard = await gateway.transcribe(data, fmt, model)
            await hold.settle(meta=heard.meta)
        log.info("transcribed %.1f s of %s audio for user %s (%d s charged)", info.duration_secs, fmt,
                 requester.user_id, seconds)
        return Transcript(text=heard.text.strip(), duration_secs=info.duration_secs, seconds_charged=seconds)

    # -- speaking -------------------------------------------------------------------------------------

    async def speak(
        self,
        requester: Requester,
        text: str,
        voice: str | None = None,
        *,
        upload_limit: int = discord_limits.DEFAULT_FILE_SIZE,
        on_accepted: Callable[[], Awaitable[Any]] | None = None,
    ) -> VoiceClip:
        """``text`` spoken as one voice clip, speech characters charged (the markup-free text's length).

        ``on_accepted`` is awaited once every check passed and the budget is held, before the gateway
        is asked (a command defers there, so that refusals stay private). A clip over ``upload_limit``
        is refused (``VoiceTooLarge``) after it is charged: the gateway did the work. The guild's own
        gateway speaks it; a voice it does not list is replaced by its default.
        """
        gateway = await self.gateways.for_guild(requester.guild_id)
        if not self.can_speak_on(gateway):
            raise self.unavailable("speak", gateway)
        words = speakable(text)
        if not words:
            raise NothingToSay("nothing to speak")
        parts = split_for_speech(words, gateway.profile.max_speech_chars)
        model, fmt = self.speech_model_on(gateway), self.speech_format_on(gateway)
        listed = tuple(gateway.profile.voices)
        chosen = voice if voice and (not listed or voice in listed) else default_voice(gateway, self.settings)
        async with self.quotas.charge(requester, Feature.SPEECH, speech_chars=len(words), model=model) as hold:
            if on_accepted is not None:
                await on_accepted()
            spoken = [await gateway.speech(part, model, chosen, fmt) for part in parts]
            async with self._codec:
                clip = await codec.encode([s.data for s in spoken], spoken[0].format)
            paid = [s.meta.credits_used for s in spoken if s.meta.credits_used is not None]
            await hold.settle(meta=spoken[-1].meta, credits=sum(paid) if paid else None)
        if len(clip.data) > upload_limit:  # the gateway spoke (and was paid) already: charged, then refused
            raise VoiceTooLarge(len(clip.data), upload_limit)
        log.info("spoke %d characters in %d part(s) for user %s: %.1f s of audio", len(words), len(parts),
                 requester.user_id, clip.duration_secs)
        return clip

    async def send(self, target: VoiceTarget, clip: VoiceClip) -> SentVoice:
        """Send ``clip`` as a voice message (a plain audio file with a sentence when Discord refuses)."""
        return await self.sender.send(target, clip)
