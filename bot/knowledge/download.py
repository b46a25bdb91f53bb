"""Downloading a document attachment from Discord's CDN, never more than a cap."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from bot.chat.attachments import DownloadFailed, DownloadTooLarge, fetch_capped, host_allowed
from bot.knowledge.errors import DocumentDownloadFailed, DocumentNotFromDiscord, DocumentTooLarge

__all__ = ["fetch_document"]

FETCH_TIMEOUT = 30.0


async def fetch_document(session: aiohttp.ClientSession, url: str, filename: str, *, hosts: Sequence[str],
                         max_bytes: int, timeout: float = FETCH_TIMEOUT) -> bytes:
    """The attachment's bytes. A URL off ``hosts`` is never requested; redirects are not followed (an
    allowed host cannot bounce the request elsewhere); more than ``max_bytes`` → ``DocumentTooLarge``
    (read no further than that)."""
    if not host_allowed(url, hosts):
        raise DocumentNotFromDiscord(filename)
    try:
        return await fetch_capped(session, url, max_bytes=max_bytes, timeout=timeout)
    except DownloadTooLarge as exc:
        raise DocumentTooLarge(filename, exc.size, max_bytes) from None
    except DownloadFailed as exc:
        raise DocumentDownloadFailed(filename, exc.reason) from None
