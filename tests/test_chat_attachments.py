"""bot/chat/attachments.py: text files read from allowed CDN hosts only, within a byte cap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from tests.e2e import serve_app

from bot.chat.attachments import host_allowed, is_text_attachment, read_text_attachments


@dataclass
class FakeAttachment:
    filename: str
    url: str
    content_type: str | None = None


@pytest.fixture
async def cdn() -> AsyncIterator[tuple[str, list[str]]]:
    hits: list[str] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        name = request.match_info["name"]
        if name == "redirect.txt":
            raise web.HTTPFound("http://example.invalid/secret.txt")
        if name == "big.txt":
            return web.Response(body=b"0123456789" * 10_000, content_type="text/plain")
        return web.Response(text=f"contents of {name}", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/files/{name}", serve)
    async with serve_app(app) as base_url:
        yield base_url, hits


def test_text_detection_and_hosts() -> None:
    assert is_text_attachment("notes.MD", None)
    assert is_text_attachment("main.py", "application/octet-stream")
    assert is_text_attachment("data", "text/plain; charset=utf-8")
    assert not is_text_attachment("photo.png", "image/png")
    hosts = ["cdn.discordapp.com", "127.0.0.1:8080"]
    assert host_allowed("https://cdn.discordapp.com/attachments/1/2/a.txt", hosts)
    assert host_allowed("http://127.0.0.1:8080/a.txt", hosts)
    assert not host_allowed("http://127.0.0.1:9090/a.txt", hosts)
    assert not host_allowed("https://evil.example/a.txt", hosts)
    assert not host_allowed("file:///etc/passwd", hosts)
    assert not host_allowed("https://cdn.discordapp.com.evil.example/a.txt", hosts)


async def test_reads_allowed_files_and_skips_others(cdn: tuple[str, list[str]]) -> None:
    base, hits = cdn
    atts = [
        FakeAttachment("notes.md", f"{base}/files/notes.md", "text/markdown"),
        FakeAttachment("photo.png", f"{base}/files/photo.png", "image/png"),
        FakeAttachment("evil.txt", "http://10.0.0.1/files/evil.txt", "text/plain"),
        FakeAttachment("redirect.txt", f"{base}/files/redirect.txt", "text/plain"),
    ]
    async with aiohttp.ClientSession() as session:
        out = await read_text_attachments(session, atts, hosts=["127.0.0.1"], max_bytes=10_000)
    assert "--- attached file: notes.md ---\n```markdown\ncontents of notes.md\n```" in out.text
    assert out.names == ["notes.md"]
    assert "skipped evil.txt (not from Discord's CDN)" in out.notes
    assert "could not read redirect.txt" in out.notes
    assert "/files/photo.png" not in hits  # images are not fetched here


async def test_size_cap_cuts_and_says_so(cdn: tuple[str, list[str]]) -> None:
    base, _ = cdn
    async with aiohttp.ClientSession() as session:
        out = await read_text_attachments(session, [FakeAttachment("big.txt", f"{base}/files/big.txt")],
                                          hosts=["127.0.0.1"], max_bytes=2048)
    assert "(truncated)" in out.text
    body = out.text.split("```\n", 1)[1].rsplit("\n```", 1)[0]
    assert len(body) == 2048
    assert out.notes == ["big.txt cut to 2 KB"]
