"""Downloading one audio attachment from Discord's CDN, never more than a cap."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from bot.chat.attachments import host_allowed
from bot.vision.images import url_host
from bot.voice.errors import AudioDownloadFailed, AudioNotFromDiscord, AudioTooLarge
from bot.voice.intake import AudioInput

__all__ = ["fetch_audio"]

CHUNK = 64 * 1024
FETCH_TIMEOUT = 30.0


async def fetch_audio(session: aiohttp.ClientSession, audio: AudioInput, *, hosts: Sequence[str], max_bytes: int,
                      timeout: float = FETCH_TIMEOUT) -> bytes:
    """The attachment's bytes. A URL off ``hosts`` is never requested; redirects are not followed (an
    allowed host cannot bounce the request elsewhere); more than ``max_bytes`` → ``AudioTooLarge``."""
    if not host_allowed(audio.url, hosts):
        raise AudioNotFromDiscord(audio.filename, url_host(audio.url))
    try:
        async with session.get(audio.url, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                raise AudioDownloadFailed(audio.filename, f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise AudioTooLarge(audio.filename, resp.content_length, max_bytes)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise AudioTooLarge(audio.filename, None, max_bytes)
            return bytes(data)
    except (AudioDownloadFailed, AudioTooLarge):
        raise
    except TimeoutError:
        raise AudioDownloadFailed(audio.filename, "timed out") from None
    except aiohttp.ClientError as exc:
        raise AudioDownloadFailed(audio.filename, type(exc).__name__) from None
