"""Text attachments (.txt, .md, source code) read into a chat prompt, fetched only from Discord's CDN.

Each file is fetched with redirects off from a host listed in ``settings.discord.cdn_hosts`` and
read only up to the remaining byte cap, so a large upload never lands in memory whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

__all__ = ["AttachmentText", "DownloadFailed", "DownloadTooLarge", "fetch_capped", "host_allowed", "is_text_attachment",
           "read_text_attachments"]

#: extension -> language tag for the code fence
TEXT_EXTENSIONS: dict[str, str] = {
    ".txt": "", ".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".log": "", ".csv": "csv",
    ".tsv": "", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".ini": "ini",
    ".cfg": "ini", ".xml": "xml", ".html": "html", ".css": "css", ".sql": "sql", ".py": "python",
    ".js": "javascript", ".mjs": "javascript", ".ts": "typescript", ".tsx": "tsx", ".jsx": "jsx",
    ".java": "java", ".kt": "kotlin", ".c": "c", ".h": "c", ".cpp": "cpp", ".hpp": "cpp", ".cc": "cpp",
    ".cs": "csharp", ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".sh": "bash", ".bash": "bash", ".ps1": "powershell", ".lua": "lua", ".r": "r", ".scala": "scala",
    ".dart": "dart", ".vue": "vue", ".svelte": "svelte", ".tex": "latex", ".diff": "diff", ".patch": "diff",
}
MAX_FILES = 5
FETCH_TIMEOUT = 10.0


@dataclass
class AttachmentText:
    """The prompt addition and short notes for the footer (what was skipped or cut)."""

    text: str = ""
    names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_text_attachment(filename: str, content_type: str | None) -> bool:
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix in TEXT_EXTENSIONS:
        return True
    ctype = (content_type or "").split(";")[0].strip().lower()
    return ctype.startswith("text/") or ctype in ("application/json", "application/xml", "application/x-yaml")


def host_allowed(url: str, hosts: Sequence[str]) -> bool:
    """True when ``url`` is http(s) on one of ``hosts`` (a host, or host:port)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    allowed = {h.lower() for h in hosts}
    return host in allowed or netloc in allowed


class DownloadTooLarge(Exception):
    """More than the cap: ``size`` is what the server announced (None: found while reading)."""

    def __init__(self, size: int | None) -> None:
        super().__init__(f"larger than the cap ({size or 'found while reading'})")
        self.size = size


class DownloadFailed(Exception):
    """No bytes: ``reason`` says why in a few words ("HTTP 404", "timed out", "ClientOSError")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def fetch_capped(session: aiohttp.ClientSession, url: str, *, max_bytes: int, timeout: float) -> bytes:
    """The bytes at ``url`` (a Discord CDN URL the caller has checked), never more than ``max_bytes``:
    ``DownloadTooLarge`` from the announced length or while reading, ``DownloadFailed`` otherwise.
    Redirects are not followed, so an allowed host cannot bounce the request elsewhere. Each use case
    (images, audio, documents) words these for the member in its own terms."""
    try:
        async with session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                raise DownloadFailed(f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise DownloadTooLarge(resp.content_length)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    raise DownloadTooLarge(None)
            return bytes(data)
    except TimeoutError:
        raise DownloadFailed("timed out") from None
    except aiohttp.ClientError as exc:
        raise DownloadFailed(type(exc).__name__) from None


async def _read_capped(session: aiohttp.ClientSession, url: str, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of ``url`` and whether there was more."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    async with session.get(url, allow_redirects=False, timeout=timeout) as resp:
        if resp.status != 200:
            raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status,
                                              message="attachment fetch failed")
        data = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            data.extend(chunk)
            if len(data) > cap:
                return bytes(data[:cap]), True
        return bytes(data), False


async def read_text_attachments(
    session: aiohttp.ClientSession,
    attachments: Sequence[Any],
    *,
    hosts: Sequence[str],
    max_bytes: int,
) -> AttachmentText:
    """Read the text attachments of a message (``discord.Attachment``-like: filename, url, size,
    content_type) into one prompt addition, within ``max_bytes`` in total."""
    out = AttachmentText()
    budget = max_bytes
    for att in list(attachments)[:MAX_FILES]:
        name = str(getattr(att, "filename", "file"))
        if not is_text_attachment(name, getattr(att, "content_type", None)):
            continue  # images and other files are for other features (vision)
        url = str(getattr(att, "url", ""))
        if not host_allowed(url, hosts):
            out.notes.append(f"skipped {name} (not from Discord's CDN)")
            continue
        if budget <= 0:
            out.notes.append(f"skipped {name} (size cap reached)")
            continue
        try:
            data, cut = await _read_capped(session, url, budget)
        except Exception as exc:
            log.info("could not read attachment %s: %r", name, exc)
            out.notes.append(f"could not read {name}")
            continue
        budget -= len(data)
        text = data.decode("utf-8", errors="replace")
        if cut:
            out.notes.append(f"{name} cut to {len(data) // 1024} KB")
        lang = TEXT_EXTENSIONS.get(PurePosixPath(name.lower()).suffix, "")
        safe = text.replace("```", "`\u200b``")
        out.text += f"\n\n--- attached file: {name}{' (truncated)' if cut else ''} ---\n```{lang}\n{safe}\n```"
        out.names.append(name)
    if len(attachments) > MAX_FILES:
        out.notes.append(f"only the first {MAX_FILES} files were read")
    return out
