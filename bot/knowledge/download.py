"""Downloading a document attachment from Discord's CDN, never more than a cap."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from bot.chat.attachments import host_allowed
from bot.knowledge.errors import DocumentDownloadFailed, DocumentNotFromDiscord, DocumentTooLarge

__all__ = ["fetch_document"]

CHUNK = 64 * 1024
FETCH_TIMEOUT = 30.0


async def fetch_document(session: aiohttp.ClientSession, url: str, filename: str, *, hosts: Sequence[str],
                         max_bytes: int, timeout: float = FETCH_TIMEOUT) -> bytes:
    """The attachment's bytes. A URL off ``hosts`` is never requested; redirects are not followed (an
    allowed host cannot bounce the request elsewhere); more than ``max_bytes`` → ``DocumentTooLarge``
    (read no further than that)."""
    if not host_allowed(url, hosts):
        raise DocumentNotFromDiscord(filename)
    try:
        async with session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                raise DocumentDownloadFailed(filename, f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise DocumentTooLarge(filename, resp.content_length, max_bytes)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise DocumentTooLarge(filename, None, max_bytes)
            return bytes(data)
    except (DocumentDownloadFailed, DocumentTooLarge):
        raise
    except TimeoutError:
        raise DocumentDownloadFailed(filename, "timed out") from None
    except aiohttp.ClientError as exc:
        raise DocumentDownloadFailed(filename, type(exc).__name__) from None
