"""bot/media/edit_source.py: the picture and mask of an image edit, fetched from a local "CDN" the way the
bot fetches Discord attachments, checked and turned into gateway-ready RGBA PNGs."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.media.edit_source import (
    EditIntake,
    EditSource,
    EditSourceTooDetailed,
    MaskNotTransparent,
    MaskShapeMismatch,
    check_message_picture,
    edit_source_from_attachments,
    edit_source_from_message,
)
from bot.vision.images import ImageNotFromDiscord, ImageTooLarge, ImageUndecodable, UnsupportedImageType
from bot.vision.inputs import ImageLinksOnly, NoImage
from tests.e2e import serve_app


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def solid(w: int, h: int, colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB") -> bytes:
    return encoded(Image.new(mode, (w, h), colour))


def noise(w: int, h: int, seed: int = 1) -> bytes:
    """A picture that does not compress: its PNG is about 3 bytes a pixel."""
    rnd = random.Random(seed)
    return encoded(Image.frombytes("RGB", (w, h), rnd.randbytes(w * h * 3)))


def holed_mask(w: int, h: int) -> bytes:
    """Opaque, with a transparent left half (where to edit)."""
    img = Image.new("RGBA", (w, h), (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, w // 2, h))
    return encoded(img)


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@dataclass
class Cdn:
    """Files served at ``base/<name>``; every request recorded."""

    base: str
    session: aiohttp.ClientSession
    files: dict[str, bytes] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)

    def intake(self, **kw: Any) -> EditIntake:
        args: dict[str, Any] = {"session": self.session, "cdn_hosts": ["127.0.0.1"],
                                "max_download_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000, **kw}
        return EditIntake(**args)

    def attachment(self, name: str, data: bytes, content_type: str | None = "image/png",
                   size: int | None = None) -> Any:
        self.files[name] = data
        return SimpleNamespace(filename=name, content_type=content_type, size=len(data) if size is None else size,
                               url=f"{self.base}/{name}")


@pytest.fixture
async def cdn() -> AsyncIterator[Cdn]:
    state: dict[str, Cdn] = {}

    async def serve(request: web.Request) -> web.Response:
        c = state["cdn"]
        name = request.match_info["name"]
        c.requested.append(name)
        if name not in c.files:
            return web.Response(status=404)
        return web.Response(body=c.files[name], content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    async with serve_app(app) as base, aiohttp.ClientSession() as session:
        state["cdn"] = Cdn(base=base, session=session)
        yield state["cdn"]


async def from_attachments(cdn: Cdn, image: Any, mask: Any = None, **kw: Any) -> EditSource:
    return await edit_source_from_attachments(image, mask, intake=cdn.intake(), **kw)


# -- the picture ----------------------------------------------------------------------------------------


async def test_png_becomes_an_rgba_png_of_the_same_size(cdn: Cdn) -> None:
    src = await from_attachments(cdn, cdn.attachment("fox.png", solid(300, 200)))
    img = opened(src.image.data)
    assert (img.format, img.mode, img.size) == ("PNG", "RGBA", (300, 200))
    assert img.getpixel((10, 10)) == (200, 30, 30, 255)
    assert (src.image.mime, src.image.width, src.image.height) == ("image/png", 300, 200)
    assert src.mask is None and src.origin == "`fox.png`"


async def test_jpeg_is_converted_to_png(cdn: Cdn) -> None:
    jpeg = encoded(Image.new("RGB", (64, 48), (0, 0, 255)), "JPEG")
    src = await from_attachments(cdn, cdn.attachment("sky.jpg", jpeg, "image/jpeg"))
    img = opened(src.image.data)
    assert (img.format, img.mode, img.size) == ("PNG", "RGBA", (64, 48))


async def test_a_picture_over_the_gateway_limit_is_downscaled_until_it_fits(cdn: Cdn) -> None:
    data = noise(600, 400)
    assert len(data) > 600_000
    src = await from_attachments(cdn, cdn.attachment("big.png", data), max_bytes=200_000)
    img = opened(src.image.data)
    assert len(src.image.data) <= 200_000
    assert img.width < 600 and abs(img.width / img.height - 1.5) < 0.02
    assert (src.image.width, src.image.height) == img.size


async def test_a_picture_no_png_fits_is_refused_clearly(cdn: Cdn) -> None:
    with pytest.raises(EditSourceTooDetailed) as err:
        await from_attachments(cdn, cdn.attachment("big.png", noise(200, 200)), max_bytes=1000)
    assert "PNG under" in err.value.user_message()


async def test_a_renamed_file_is_refused_by_its_content(cdn: Cdn) -> None:
    with pytest.raises(ImageUndecodable) as err:
        await from_attachments(cdn, cdn.attachment("fake.png", b"not a picture at all" * 10))
    assert "`fake.png` could not be decoded" in err.value.user_message()


async def test_declared_refusals_download_nothing(cdn: Cdn) -> None:
    huge = cdn.attachment("huge.png", solid(10, 10), size=50 * 1024 * 1024)
    with pytest.raises(ImageTooLarge):
        await from_attachments(cdn, huge)
    with pytest.raises(UnsupportedImageType):
        await from_attachments(cdn, cdn.attachment("photo.heic", b"x", "image/heic"))
    elsewhere = SimpleNamespace(filename="x.png", content_type="image/png", size=10,
                                url="https://example.com/x.png")
    with pytest.raises(ImageNotFromDiscord):
        await from_attachments(cdn, elsewhere)
    # the mask is checked before the picture is downloaded, too
    with pytest.raises(ImageTooLarge):
        await from_attachments(cdn, cdn.attachment("ok.png", solid(10, 10)), huge)
    assert cdn.requested == []


async def test_the_download_is_capped(cdn: Cdn) -> None:
    lying = cdn.attachment("lying.png", noise(300, 300), size=100)  # declares 100 bytes
    with pytest.raises(ImageTooLarge):
        await edit_source_from_attachments(lying, None, intake=cdn.intake(max_download_bytes=10_000))


async def test_too_many_pixels_is_refused_before_decoding(cdn: Cdn) -> None:
    with pytest.raises(Exception) as err:
        await edit_source_from_attachments(cdn.attachment("wide.png", solid(4000, 100)), None,
                                           intake=cdn.intake(max_pixels=100_000))
    assert "megapixels" in cast(Any, err.value).user_message()


# -- the mask --------------------------------------------------------------------------------------------


async def test_mask_of_the_same_size_is_kept_transparent_where_to_edit(cdn: Cdn) -> None:
    src = await from_attachments(cdn, cdn.attachment("fox.png", solid(200, 100)),
                                 cdn.attachment("mask.png", holed_mask(200, 100)))
    assert src.mask is not None
    mask = opened(src.mask.data)
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", (200, 100))
    assert mask.getpixel((10, 50))[3] == 0 and mask.getpixel((190, 50))[3] == 255


async def test_mask_with_the_same_shape_is_resized_to_the_picture(cdn: Cdn) -> None:
    src = await from_attachments(cdn, cdn.attachment("fox.png", solid(400, 200)),
                                 cdn.attachment("mask.png", holed_mask(100, 50)))
    assert src.mask is not None
    mask = opened(src.mask.data)
    assert mask.size == (400, 200) and (src.mask.width, src.mask.height) == (400, 200)
    assert mask.getpixel((20, 100))[3] == 0 and mask.getpixel((380, 100))[3] == 255


async def test_mask_follows_the_picture_when_it_is_downscaled(cdn: Cdn) -> None:
    src = await from_attachments(cdn, cdn.attachment("big.png", noise(600, 400)),
                                 cdn.attachment("mask.png", holed_mask(600, 400)), max_bytes=200_000)
    assert src.mask is not None
    assert opened(src.mask.data).size == opened(src.image.data).size != (600, 400)


async def test_mask_of_another_shape_is_refused(cdn: Cdn) -> None:
    with pytest.raises(MaskShapeMismatch) as err:
        await from_attachments(cdn, cdn.attachment("fox.png", solid(400, 200)),
                               cdn.attachment("mask.png", holed_mask(100, 100)))
    text = err.value.user_message()
    assert "100×100" in text and "400×200" in text and "same size" in text


async def test_an_opaque_mask_is_refused(cdn: Cdn) -> None:
    with pytest.raises(MaskNotTransparent) as err:
        await from_attachments(cdn, cdn.attachment("fox.png", solid(40, 40)),
                               cdn.attachment("mask.jpg", encoded(Image.new("RGB", (40, 40)), "JPEG"), "image/jpeg"))
    assert "no transparent pixels" in err.value.user_message()


# -- a message (Edit image) ------------------------------------------------------------------------------


def message(attachments: list[Any] = [], content: str = "", embeds: list[Any] = []) -> Any:  # noqa: B006
    return SimpleNamespace(attachments=attachments, content=content, embeds=embeds)


async def test_message_first_image_attachment_is_used(cdn: Cdn) -> None:
    notes = cdn.attachment("notes.txt", b"hello", "text/plain")
    first = cdn.attachment("first.png", solid(30, 20, (0, 128, 0)))
    second = cdn.attachment("second.png", solid(50, 50))
    src = await edit_source_from_message(message([notes, first, second]), intake=cdn.intake())
    assert opened(src.image.data).size == (30, 20) and src.origin == "`first.png`"
    assert cdn.requested == ["first.png"]


async def test_message_embed_image_on_the_cdn_is_used(cdn: Cdn) -> None:
    cdn.files["embedded.png"] = solid(16, 16)
    embed = SimpleNamespace(type="rich", url=None, image=SimpleNamespace(url=f"{cdn.base}/embedded.png"),
                            thumbnail=None)
    src = await edit_source_from_message(message(embeds=[embed]), intake=cdn.intake())
    assert opened(src.image.data).size == (16, 16) and src.origin == "`embedded.png`"


async def test_message_without_image_is_refused(cdn: Cdn) -> None:
    with pytest.raises(NoImage) as err:
        await edit_source_from_message(message([cdn.attachment("notes.txt", b"x", "text/plain")], "just words"),
                                       intake=cdn.intake())
    assert "no image attached" in err.value.user_message()
    elsewhere = SimpleNamespace(type="image", url="https://example.com/cat.png",
                                image=SimpleNamespace(url="https://example.com/cat.png"), thumbnail=None)
    with pytest.raises(ImageLinksOnly) as links:
        await edit_source_from_message(message(content="see https://example.com/cat.png", embeds=[elsewhere]),
                                       intake=cdn.intake())
    assert "example.com" in links.value.user_message()
    assert cdn.requested == []


def test_message_check_before_the_modal_downloads_nothing() -> None:
    hosts = ["127.0.0.1"]
    heic = SimpleNamespace(filename="IMG_1.HEIC", content_type="image/heic", size=10, url="http://127.0.0.1/x")
    with pytest.raises(UnsupportedImageType) as err:
        check_message_picture(message([heic]), cdn_hosts=hosts, max_download_bytes=1000)
    assert "HEIC" in err.value.user_message()
    big = SimpleNamespace(filename="a.png", content_type="image/png", size=5000, url="http://127.0.0.1/a.png")
    with pytest.raises(ImageTooLarge):
        check_message_picture(message([big]), cdn_hosts=hosts, max_download_bytes=1000)
    with pytest.raises(NoImage):
        check_message_picture(message(content="words"), cdn_hosts=hosts, max_download_bytes=1000)
    ok = SimpleNamespace(filename="a.png", content_type="image/png", size=500, url="http://127.0.0.1/a.png")
    check_message_picture(message([ok]), cdn_hosts=hosts, max_download_bytes=1000)
