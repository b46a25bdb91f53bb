"""Vision building blocks: declared checks, capped CDN-only downloads, safe decoding/downscaling,
model choice and link detection (real Pillow images, a real aiohttp server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import struct
import threading
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from tests.e2e import serve_app
from aiohttp import web
from PIL import Image

from bot.vision import images as vi
from bot.rendering.errors import user_error_message
from bot.vision.images import (
    AnimatedImage,
    ImageDownloadFailed,
    ImageNotFromDiscord,
    ImageTooLarge,
    ImageTooManyPixels,
    ImageUndecodable,
    NotAnImage,
    UnsupportedImageType,
    check_declared,
    fetch_image_bytes,
    prepare_image,
    prepare_image_async,
)
from bot.chat.attachments import host_allowed
from bot.vision.inputs import AllImagesRefused, ImageLinksOnly, image_attachments, image_links, vision_message
from bot.vision.models import NoVisionModel, choose_vision_model

MB = 1024 * 1024


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (the classic bomb shape) with a tiny body."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b""))


def prep(data: bytes, name: str = "x.png", *, max_pixels: int = 40_000_000, longest: int = 1024) -> vi.PreparedImage:
    return prepare_image(data, filename=name, max_pixels=max_pixels, longest_side=longest)


# --------------------------------------------------------------------------------------------------
# declared type and size
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,ctype", [("a.png", "image/png"), ("a.jpg", "image/jpeg"), ("a.webp", "image/webp"),
                                        ("a.gif", "image/gif"), ("a.png", None), ("a.JPEG", "application/octet-stream"),
                                        ("a.bmp", "image/bmp"), ("a.png", "image/png; charset=binary")])
def test_declared_supported_types_pass(name: str, ctype: str | None) -> None:
    check_declared(name, ctype, 1000, max_bytes=MB)


def test_declared_refusals_are_specific() -> None:
    with pytest.raises(NotAnImage) as pdf:
        check_declared("doc.pdf", "application/pdf", 10, max_bytes=MB)
    assert pdf.value.user_message().startswith("`doc.pdf` is not an image (application/pdf).")
    with pytest.raises(UnsupportedImageType) as heic:
        check_declared("IMG_1.HEIC", "image/heic", 10, max_bytes=MB)
    assert "is a HEIC image, a type I can't read" in heic.value.user_message()
    with pytest.raises(UnsupportedImageType) as svg:
        check_declared("logo", "image/svg+xml", 10, max_bytes=MB)
    assert "SVG+XML" in svg.value.user_message()
    with pytest.raises(ImageTooLarge) as big:
        check_declared("big.png", "image/png", 30 * MB, max_bytes=10 * MB)
    assert big.value.user_message().startswith("`big.png` is 30 MB — too big: the largest image I download is 10 MB.")
    # type is checked before size: a huge PDF is "not an image"
    with pytest.raises(NotAnImage):
        check_declared("huge.pdf", "application/pdf", 99 * MB, max_bytes=MB)


def test_every_refusal_has_its_own_wording_and_goes_through_user_error_message() -> None:
    refusals = [
        NotAnImage("f.png", "text/plain"), UnsupportedImageType("f.png", "TIFF"), ImageTooLarge("f.png", 30 * MB, MB),
        ImageTooManyPixels("f.png", 9000, 9000, 40_000_000), ImageUndecodable("f.png"), AnimatedImage("f.png", 4),
        ImageNotFromDiscord("f.png", "evil.example"), ImageDownloadFailed("f.png", "HTTP 404"),
    ]
    texts = [user_error_message(r) for r in refusals]
    assert len(set(texts)) == len(texts)
    assert all("`f.png`" in t for t in texts)
    assert texts == [r.user_message() for r in refusals]
    shorts = [r.short() for r in refusals]
    assert len(set(shorts)) == len(shorts) and all(len(s) <= 80 for s in shorts)


def test_file_names_cannot_break_markdown_or_ping() -> None:
    text = ImageUndecodable("`@everyone`" + "x" * 100 + ".png").user_message()
    assert "@everyone" not in text and text.count("`") == 2 and "…" in text


# --------------------------------------------------------------------------------------------------
# decoding, downscaling, encoding
# --------------------------------------------------------------------------------------------------


def test_small_png_is_sent_unchanged_in_size_as_png() -> None:
    out = prep(encode(Image.new("RGB", (64, 48), (255, 0, 0)), "PNG"))
    assert (out.width, out.height, out.mime, out.downscaled) == (64, 48, "image/png", False)
    header, _, payload = out.data_url().partition(",")
    assert header == "data:image/png;base64"
    back = Image.open(io.BytesIO(base64.b64decode(payload)))
    assert back.size == (64, 48) and back.convert("RGB").getpixel((5, 5)) == (255, 0, 0)


def test_large_jpeg_is_downscaled_to_the_longest_side() -> None:
    out = prep(encode(Image.new("RGB", (3000, 1500), (0, 0, 255)), "JPEG"), "p.jpg", longest=800)
    assert (out.width, out.height, out.original_width, out.original_height) == (800, 400, 3000, 1500)
    assert out.mime == "image/jpeg" and out.downscaled
    back = Image.open(io.BytesIO(out.data))
    assert back.format == "JPEG" and back.size == (800, 400)
    r, g, b = back.getpixel((400, 200))
    assert b > 240 and r < 15 and g < 15


def test_portrait_is_bounded_by_height() -> None:
    out = prep(encode(Image.new("RGB", (500, 2000), (0, 0, 0)), "PNG"), longest=1000)
    assert (out.width, out.height) == (250, 1000)


def test_transparency_is_kept_as_png() -> None:
    img = Image.new("RGBA", (40, 40), (0, 255, 0, 0))
    out = prep(encode(img, "PNG"))
    back = Image.open(io.BytesIO(out.data))
    assert out.mime == "image/png" and back.mode == "RGBA" and back.getpixel((1, 1))[3] == 0


def test_still_gif_and_bmp_and_webp_are_read() -> None:
    for fmt, name in (("GIF", "a.gif"), ("BMP", "a.bmp"), ("WEBP", "a.webp")):
        out = prep(encode(Image.new("RGB", (30, 20), (255, 255, 0)), fmt), name)
        assert (out.width, out.height) == (30, 20), fmt
        assert out.source_format == fmt


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = prep(encode(img, "JPEG", exif=exif), "phone.jpg")
    assert (out.width, out.height) == (20, 40)


def test_huge_lossless_image_falls_back_to_jpeg() -> None:
    noise = Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3))
    out = prep(encode(noise, "PNG"))
    assert out.mime == "image/jpeg" and len(out.data) < vi.MAX_PNG_BYTES


def test_decompression_bomb_is_refused_from_its_header() -> None:
    with pytest.raises(ImageTooManyPixels) as exc:
        prep(header_only_png(8000, 8000), "bomb.png")
    assert (exc.value.width, exc.value.height) == (8000, 8000)
    assert "`bomb.png` is 8000×8000 pixels (64 megapixels) — more than the 40 megapixels" in exc.value.user_message()


def test_bomb_beyond_pillows_own_limit_is_refused_too() -> None:
    with pytest.raises(ImageTooManyPixels):
        prep(header_only_png(30000, 30000), "bomb.png")


def test_real_compressed_bomb_is_refused_without_decoding() -> None:
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 1000)
    idat = b"".join(comp.compress(row) for _ in range(8000)) + comp.flush()
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 1, 0, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    assert len(data) < 100_000
    with pytest.raises(ImageTooManyPixels):
        prep(data, "bomb.png", max_pixels=10_000_000)


def test_text_renamed_png_is_undecodable() -> None:
    with pytest.raises(ImageUndecodable) as exc:
        prep(b"just some text, honestly\n" * 40, "notes.png")
    assert "could not be decoded as an image" in exc.value.user_message()


def test_truncated_png_is_undecodable() -> None:
    data = encode(Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3)), "PNG")
    with pytest.raises(ImageUndecodable):
        prep(data[: len(data) // 2])


def test_real_format_other_than_supported_is_refused_as_unsupported() -> None:
    with pytest.raises(UnsupportedImageType) as exc:
        prep(encode(Image.new("RGB", (10, 10)), "TIFF"), "sneaky.png")
    assert exc.value.kind == "TIFF"


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_are_refused(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(AnimatedImage) as exc:
        prep(data, f"anim.{fmt.lower()}")
    assert exc.value.frames == 2
    assert "is animated (2 frames)" in exc.value.user_message()


async def test_prepare_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = vi.prepare_image

    def spy(*args: Any, **kwargs: Any) -> vi.PreparedImage:
        seen.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(vi, "prepare_image", spy)
    out = await prepare_image_async(encode(Image.new("RGB", (5, 5)), "PNG"), filename="a.png",
                                    max_pixels=100, longest_side=10)
    assert out.width == 5
    assert seen and seen[0] != threading.get_ident()


# --------------------------------------------------------------------------------------------------
# downloads: CDN hosts only, capped
# --------------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    hits: list[str]
    sent: dict[str, int]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    hits: list[str] = []
    sent: dict[str, int] = {}
    small = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG")

    async def ok(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=small, content_type="image/png")

    async def endless(request: web.Request) -> web.StreamResponse:
        """100 MB in chunks, no Content-Length: only the client's cap stops it."""
        hits.append(request.path)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent["endless"] = 0
        try:
            for _ in range(100 * 16):
                await resp.write(b"\x00" * (64 * 1024))
                sent["endless"] += 64 * 1024
        except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
            pass
        return resp

    async def declared(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"\x00" * (3 * MB), content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/ok.png")

    async def missing(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/ok.png", ok)
    app.router.add_get("/endless.png", endless)
    app.router.add_get("/declared.png", declared)
    app.router.add_get("/redirect.png", redirect)
    app.router.add_get("/missing.png", missing)
    async with serve_app(app) as base_url:
        yield Server(base_url, hits, sent)


async def fetch(url: str, hosts: list[str], max_bytes: int = MB) -> bytes:
    async with aiohttp.ClientSession() as session:
        return await fetch_image_bytes(session, url, filename="f.png", max_bytes=max_bytes,
                                       allowed=lambda u: host_allowed(u, hosts))


async def test_allowed_host_is_downloaded(server: Server) -> None:
    data = await fetch(server.url + "/ok.png", ["127.0.0.1"])
    assert Image.open(io.BytesIO(data)).size == (8, 8)


async def test_host_outside_the_list_is_never_requested(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    other = int(port) + 1 if int(port) < 65535 else int(port) - 1
    for hosts in (["cdn.discordapp.com"], [f"127.0.0.1:{other}"]):
        with pytest.raises(ImageNotFromDiscord) as exc:
            await fetch(server.url + "/ok.png", hosts)
        assert exc.value.host == f"127.0.0.1:{port}"
    for bad in ("file:///etc/passwd", "ftp://127.0.0.1/ok.png", "not a url"):
        with pytest.raises(ImageNotFromDiscord):
            await fetch(bad, ["127.0.0.1"])
    assert server.hits == []


async def test_stream_without_length_stops_at_the_cap(server: Server) -> None:
    with pytest.raises(ImageTooLarge) as exc:
        await fetch(server.url + "/endless.png", ["127.0.0.1"], max_bytes=MB)
    assert exc.value.size is None and exc.value.limit == MB
    assert "is larger than 1 MB" in exc.value.user_message()


async def test_declared_length_over_the_cap_is_refused_before_reading(server: Server) -> None:
    with pytest.raises(ImageTooLarge) as exc:
        await fetch(server.url + "/declared.png", ["127.0.0.1"], max_bytes=MB)
    assert exc.value.size == 3 * MB


async def test_redirects_are_not_followed(server: Server) -> None:
    with pytest.raises(ImageDownloadFailed) as exc:
        await fetch(server.url + "/redirect.png", ["127.0.0.1"])
    assert exc.value.detail == "HTTP 302"
    assert server.hits == ["/redirect.png"]


async def test_http_error_is_a_download_failure(server: Server) -> None:
    with pytest.raises(ImageDownloadFailed) as exc:
        await fetch(server.url + "/missing.png", ["127.0.0.1"])
    assert "(HTTP 404)" in exc.value.user_message()


# --------------------------------------------------------------------------------------------------
# model choice
# --------------------------------------------------------------------------------------------------


class FakeGateway:
    def __init__(self, ids: list[str] | None = None, fail: bool = False) -> None:
        self.ids = ids or []
        self.fail = fail

    async def vision_models(self) -> list[Any]:
        if self.fail:
            raise RuntimeError("gateway down")
        return [SimpleNamespace(id=i) for i in self.ids]


async def test_model_that_sees_is_kept() -> None:
    choice = await choose_vision_model(FakeGateway(["v1", "v2"]), wanted="v2", preferred=("v1",))
    assert choice.model == "v2" and choice.footer_note() is None


async def test_switch_prefers_the_channel_then_configured_then_listed() -> None:
    gw = FakeGateway(["v1", "v2", "v3"])
    assert (await choose_vision_model(gw, wanted="chat", preferred=("v3", "v2"))).model == "v3"
    assert (await choose_vision_model(gw, wanted="chat", preferred=("chat", "v2"))).model == "v2"
    choice = await choose_vision_model(gw, wanted="chat", preferred=("chat", ""))
    assert choice.model == "v1"
    assert choice.footer_note() == "switched from `chat` (it can't see images)"


async def test_no_vision_model_explains_how_to_enable_one() -> None:
    with pytest.raises(NoVisionModel) as exc:
        await choose_vision_model(FakeGateway([]), wanted="chat", preferred=("chat", ""))
    text = exc.value.user_message()
    assert "`chat` can't see images" in text and "/config model kind:vision" in text
    assert "gateway.vision_model" in text


async def test_list_failure_falls_back_to_the_configured_model() -> None:
    gw = FakeGateway(fail=True)
    choice = await choose_vision_model(gw, wanted="chat", preferred=("chat", "cfg-vision"), configured="cfg-vision")
    assert choice.model == "cfg-vision" and choice.switched_from == "chat"
    with pytest.raises(NoVisionModel):
        await choose_vision_model(gw, wanted="chat", preferred=("chat",), configured="")


# --------------------------------------------------------------------------------------------------
# message inputs
# --------------------------------------------------------------------------------------------------


def test_image_attachments_and_links_are_told_apart() -> None:
    atts = [SimpleNamespace(filename="a.png", content_type="image/png"),
            SimpleNamespace(filename="notes.txt", content_type="text/plain"),
            SimpleNamespace(filename="IMG.HEIC", content_type=None),
            SimpleNamespace(filename="blob", content_type="image/webp")]
    assert [a.filename for a in image_attachments(atts)] == ["a.png", "IMG.HEIC", "blob"]
    msg = SimpleNamespace(
        content="see https://evil.example/cat.PNG?x=1 and https://example.com/page and <https://x.test/a.gif>",
        embeds=[SimpleNamespace(type="image", url="https://e.test/i.jpg", image=None,
                                thumbnail=SimpleNamespace(url="https://e.test/i.jpg"))],
    )
    assert image_links(msg) == ["https://evil.example/cat.PNG?x=1", "https://x.test/a.gif", "https://e.test/i.jpg"]


def test_link_and_refusal_messages() -> None:
    text = ImageLinksOnly(["evil.example", "evil.example", "b.test"]).user_message()
    assert "I don't open links (evil.example, b.test)" in text
    one = AllImagesRefused([ImageUndecodable("a.png")]).user_message()
    assert one == ImageUndecodable("a.png").user_message()
    many = AllImagesRefused([ImageUndecodable("a.png"), AnimatedImage("b.gif", 3)]).user_message()
    assert many.startswith("None of the images could be used:\n• `a.png`") and "\n• `b.gif` is animated" in many


def test_vision_message_blocks() -> None:
    from bot.vision.inputs import Gathered

    img = prep(encode(Image.new("RGB", (4, 4)), "PNG"))
    gathered = Gathered(images=[img], urls=["https://cdn.discordapp.com/attachments/1/2/a.png"])
    msg = vision_message("", gathered)
    assert msg.content[0] == {"type": "text", "text": "Describe this image."}
    assert msg.content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    by_url = vision_message("what?", gathered, send_as="url")
    assert by_url.image_urls() == ["https://cdn.discordapp.com/attachments/1/2/a.png"]
