"""Downloading one audio attachment from Discord's CDN, never more than a cap."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from bot.chat.attachments import DownloadFailed, DownloadTooLarge, fetch_capped, host_allowed
from bot.vision.images import url_host
from bot.voice.errors import AudioDownloadFailed, AudioNotFromDiscord, AudioTooLarge
from bot.voice.intake import AudioInput

__all__ = ["fetch_audio"]

FETCH_TIMEOUT = 30.0


async def fetch_audio(session: aiohttp.ClientSession, audio: AudioInput, *, hosts: Sequence[str], max_bytes: int,
                      timeout: float = FETCH_TIMEOUT) -> bytes:
    """The attachment's bytes. A URL off ``hosts`` is never requested; redirects are not followed (an
    allowed host cannot bounce the request elsewhere); more than ``max_bytes`` → ``AudioTooLarge``."""
    if not host_allowed(audio.url, hosts):
        raise AudioNotFromDiscord(audio.filename, url_host(audio.url))
    try:
        return await fetch_capped(session, audio.url, max_bytes=max_bytes, timeout=timeout)
    except DownloadTooLarge as exc:
        raise AudioTooLarge(audio.filename, exc.size, max_bytes) from None
    except DownloadFailed as exc:
        raise AudioDownloadFailed(audio.filename, exc.reason) from None
