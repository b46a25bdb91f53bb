"""The emulator's CDN: attachment bytes with their content type, and placeholder avatar PNGs."""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import DiscordEmulator


def _png(width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (88, 101, 242)) -> bytes:
    """A valid solid-colour PNG built with zlib (no Pillow needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


PLACEHOLDER_PNG = _png(16, 16)


class CDN:
    def __init__(self, emu: "DiscordEmulator") -> None:
        self.emu = emu
        self.downloads: list[str] = []  # paths served, in order

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/cdn/attachments/{channel_id}/{attachment_id}/{filename}", self.attachment),
            web.get("/cdn/{tail:.*}", self.placeholder),
        ]

    async def attachment(self, request: web.Request) -> web.Response:
        try:
            att_id = int(request.match_info["attachment_id"])
        except ValueError:
            raise web.HTTPNotFound()
        att = self.emu.store.attachments.get(att_id)
        if att is None or att.filename != request.match_info["filename"]:
            raise web.HTTPNotFound()
        self.downloads.append(request.path)
        resp = web.Response(body=att.data)
        resp.headers["Content-Type"] = att.content_type
        return resp

    async def placeholder(self, request: web.Request) -> web.Response:
        self.downloads.append(request.path)
        return web.Response(body=PLACEHOLDER_PNG, content_type="image/png")
