"""The picture (and optional mask) of an image edit, taken in from Discord safely and made gateway-ready.

Intake is the vision intake's (bot/vision/images.py): the declared type and size checked before any
byte is downloaded, only URLs on Discord's CDN hosts, a capped streamed download, the real format
sniffed and the pixel count checked before decoding, decoding bounded in memory and run in a thread.
Then, for the OpenAI edits surface: the picture becomes an RGBA PNG under the gateway's byte limit
(downscaled until it fits); a mask becomes an RGBA PNG of exactly the picture's size (resized when
its aspect ratio matches, refused otherwise) and must have transparent pixels (where to edit).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from PIL import Image

from bot.chat.attachments import host_allowed
from bot.media.jobs import FileToStore
from bot.rendering.user_facing import UserFacingError
from bot.vision.images import (
    ImageNotFromDiscord,
    check_declared,
    decode_image,
    fetch_image_bytes,
    url_host,
)
from bot.vision.inputs import ImageLinksOnly, NoImage, image_attachments, image_links

if TYPE_CHECKING:
    import aiohttp
    import discord

    from bot.app.settings import Settings

__all__ = [
    "EDIT_LONGEST_SIDE",
    "MAX_EDIT_PNG_BYTES",
    "EditIntake",
    "EditOptions",
    "EditSource",
    "EditSourceTooDetailed",
    "MaskNotTransparent",
    "MaskShapeMismatch",
    "check_message_picture",
    "edit_source_from_attachments",
    "edit_source_from_message",
]

#: OpenAI's edits endpoint takes a PNG smaller than 4 MB with dall-e-2 (image and mask alike); callers pass
#: the gateway profile's own limit (``Profile.max_edit_image_bytes``) where it has one
MAX_EDIT_PNG_BYTES = 4 * 1024 * 1024 - 1
#: pictures are decoded at most this large (larger than any size the edit models produce)
EDIT_LONGEST_SIDE = 2048
#: the smallest side a picture is shrunk to when fitting the byte limit
MIN_SIDE = 64
#: a mask whose width/height ratio is within this fraction of the picture's is resized to it
ASPECT_TOLERANCE = 0.01
MAX_FIT_ROUNDS = 8


@dataclass(frozen=True)
class EditSource:
    """What an edit starts from: the picture (RGBA PNG), an optional mask (RGBA PNG of the same size) and
    ``origin``, where the picture came from as members may see it (its file name in inline code)."""

    image: FileToStore
    mask: FileToStore | None
    origin: str


@dataclass(frozen=True)
class EditOptions:
    """What the member typed for an edit (None = not given): the instruction and the usual image options."""

    prompt: str
    model: str | None = None
    count: int | None = None
    size: str | None = None


@dataclass(frozen=True)
class EditIntake:
    """How edit pictures are fetched: the CDN session, the hosts it may ask, the caps, the decode limiter
    (shared with vision: each decode holds a picture in memory)."""

    session: aiohttp.ClientSession
    cdn_hosts: Sequence[str]
    max_download_bytes: int
    max_pixels: int
    decodes: asyncio.Semaphore | None = None

    @classmethod
    def from_settings(cls, settings: Settings, session: aiohttp.ClientSession,
                      decodes: asyncio.Semaphore | None = None) -> EditIntake:
        return cls(session=session, cdn_hosts=tuple(settings.discord.cdn_hosts),
                   max_download_bytes=settings.vision.max_download_bytes, max_pixels=settings.vision.max_pixels,
                   decodes=decodes)

    def allowed(self, url: str) -> bool:
        return host_allowed(url, self.cdn_hosts)


# ------------------------------------------------------------------------------------------------
# refusals
# ------------------------------------------------------------------------------------------------


class MaskShapeMismatch(UserFacingError):
    code = "mask_shape_mismatch"

    def __init__(self, image: tuple[int, int], mask: tuple[int, int]) -> None:
        super().__init__(f"mask {mask[0]}x{mask[1]} does not match the image {image[0]}x{image[1]}")
        self.image = image
        self.mask = mask

    def user_message(self) -> str:
        (iw, ih), (mw, mh) = self.image, self.mask
        return (f"The mask ({mw}×{mh}) does not have the picture's shape ({iw}×{ih}). Use a mask of the same "
                "size as the picture, transparent where it should change.")


class MaskNotTransparent(UserFacingError):
    code = "mask_not_transparent"

    def user_message(self) -> str:
        return ("The mask has no transparent pixels, so nothing would change. Make the parts to edit "
                "transparent (a PNG with an alpha channel), or leave the mask out to edit the whole picture.")


class EditSourceTooDetailed(UserFacingError):
    code = "edit_source_too_detailed"

    def __init__(self, limit: int) -> None:
        super().__init__(f"no PNG of the picture fits {limit} bytes")
        self.limit = limit

    def user_message(self) -> str:
        return (f"This picture cannot be made into a PNG under {self.limit / (1024 * 1024):.0f} MB, which is "
                "what the image gateway accepts for edits. Try a simpler or smaller picture.")


# ------------------------------------------------------------------------------------------------
# Discord in
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Picture:
    """A picture to download: its name, its URL and whether the member attached it as a file."""

    filename: str
    url: str
    content_type: str | None = None
    size: int | None = None
    attached: bool = True


def _attachment(att: Any) -> _Picture:
    size = getattr(att, "size", None)
    return _Picture(filename=str(getattr(att, "filename", "") or "image"), url=str(getattr(att, "url", "")),
                    content_type=getattr(att, "content_type", None), size=size if isinstance(size, int) else None)


def _embedded(url: str) -> _Picture:
    try:
        name = PurePosixPath(urlsplit(url).path).name
    except ValueError:
        name = ""
    return _Picture(filename=name or "embedded image", url=url, attached=False)


def _label(filename: str) -> str:
    clean = (filename or "image").replace("`", "'").replace("@", "@\u200b").replace("\n", " ")
    return f"`{clean[:59] + '…' if len(clean) > 60 else clean}`"


def _check(picture: _Picture, intake: EditIntake) -> None:
    """Refuse by what the picture declares and where it is stored, before anything is downloaded."""
    if picture.attached:
        check_declared(picture.filename, picture.content_type, picture.size, max_bytes=intake.max_download_bytes)
    if not intake.allowed(picture.url):
        raise ImageNotFromDiscord(picture.filename, url_host(picture.url))


async def _fetch(picture: _Picture, intake: EditIntake) -> bytes:
    return await fetch_image_bytes(intake.session, picture.url, filename=picture.filename,
                                   max_bytes=intake.max_download_bytes, allowed=intake.allowed)


async def _source(image: _Picture, mask: _Picture | None, intake: EditIntake, max_bytes: int) -> EditSource:
    _check(image, intake)
    if mask is not None:
        _check(mask, intake)
    if mask is None:
        image_data, mask_data = await _fetch(image, intake), None
    else:
        image_data, mask_data = await asyncio.gather(_fetch(image, intake), _fetch(mask, intake))
    work = asyncio.to_thread(_prepare, image_data, image.filename, mask_data, mask.filename if mask else "",
                             max_pixels=intake.max_pixels, max_bytes=max_bytes)
    if intake.decodes is None:
        picture, masked = await work
    else:
        async with intake.decodes:
            picture, masked = await work
    return EditSource(image=picture, mask=masked, origin=_label(image.filename))


async def edit_source_from_attachments(
    image: discord.Attachment, mask: discord.Attachment | None, *, intake: EditIntake,
    max_bytes: int = MAX_EDIT_PNG_BYTES,
) -> EditSource:
    """The picture and mask a member attached to ``/imagine edit``; raises an ``ImageRefused`` (the
    vision intake's refusals, naming the file), ``MaskShapeMismatch``, ``MaskNotTransparent`` or
    ``EditSourceTooDetailed`` — each a ``UserFacingError`` with the sentence to show."""
    return await _source(_attachment(image), _attachment(mask) if mask is not None else None, intake, max_bytes)


async def edit_source_from_message(
    message: discord.Message, *, intake: EditIntake, max_bytes: int = MAX_EDIT_PNG_BYTES,
) -> EditSource:
    """The first image attachment of ``message`` (else its first embed image stored on Discord's CDN).

    Raises ``NoImage`` when it has none, ``ImageLinksOnly`` when its pictures are only links elsewhere,
    or the refusals of ``edit_source_from_attachments``.
    """
    return await _source(_message_picture(message, intake.cdn_hosts), None, intake, max_bytes)


def check_message_picture(message: discord.Message, *, cdn_hosts: Sequence[str], max_download_bytes: int) -> None:
    """Refuse a message whose picture cannot be edited, without downloading anything (before a modal asks
    for the instruction): the refusals of ``edit_source_from_message`` that need no download."""
    picture = _message_picture(message, cdn_hosts)
    if picture.attached:
        check_declared(picture.filename, picture.content_type, picture.size, max_bytes=max_download_bytes)


def _message_picture(message: Any, cdn_hosts: Sequence[str]) -> _Picture:
    pictures = image_attachments(list(message.attachments))
    if pictures:
        return _attachment(pictures[0])
    embedded = [u for u in _embed_images(message) if host_allowed(u, cdn_hosts)]
    if embedded:
        return _embedded(embedded[0])
    links = image_links(message)
    if links:
        raise ImageLinksOnly([url_host(u) for u in links])
    raise NoImage()


def _embed_images(message: Any) -> list[str]:
    urls: list[str] = []
    for embed in getattr(message, "embeds", None) or []:
        for part in (getattr(embed, "image", None), getattr(embed, "thumbnail", None)):
            url = getattr(part, "url", None)
            if url:
                urls.append(str(url))
    return list(dict.fromkeys(urls))


# ------------------------------------------------------------------------------------------------
# PNG out (CPU: in a thread)
# ------------------------------------------------------------------------------------------------


def _prepare(
    image_data: bytes, image_name: str, mask_data: bytes | None, mask_name: str, *, max_pixels: int, max_bytes: int,
) -> tuple[FileToStore, FileToStore | None]:
    """Decode both, match the mask to the picture, and shrink the pair until each PNG is under ``max_bytes``."""
    picture, picture_size = _rgba(image_data, image_name, max_pixels)
    mask = None
    if mask_data is not None:
        mask, mask_size = _rgba(mask_data, mask_name, max_pixels)
        mask = _matched(mask, picture.size, shown=(picture_size, mask_size))
        low, _high = mask.getchannel("A").getextrema()
        if low == 255:
            raise MaskNotTransparent()
    for _ in range(MAX_FIT_ROUNDS):
        image_png = _png(picture)
        mask_png = _png(mask) if mask is not None else None
        largest = max(len(image_png), len(mask_png or b""))
        if largest <= max_bytes:
            width, height = picture.size
            return (FileToStore(data=image_png, mime="image/png", width=width, height=height),
                    FileToStore(data=mask_png, mime="image/png", width=width, height=height) if mask_png else None)
        scale = min(0.9, 0.95 * (max_bytes / largest) ** 0.5)  # PNG size grows about with the pixel count
        size = (round(picture.width * scale), round(picture.height * scale))
        if min(size) < MIN_SIDE:
            break
        picture = picture.resize(size, Image.Resampling.LANCZOS)
        mask = mask.resize(size, Image.Resampling.LANCZOS) if mask is not None else None
    raise EditSourceTooDetailed(max_bytes)


def _rgba(data: bytes, filename: str, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    """The picture decoded (reduced to ``EDIT_LONGEST_SIDE``) as RGBA, and its size as uploaded."""
    decoded = decode_image(data, filename=filename, max_pixels=max_pixels, longest_side=EDIT_LONGEST_SIDE)
    image = decoded.image
    uploaded = (decoded.original_width, decoded.original_height)
    return (image if image.mode == "RGBA" else image.convert("RGBA")), uploaded


def _matched(
    mask: Image.Image, size: tuple[int, int], *, shown: tuple[tuple[int, int], tuple[int, int]]
) -> Image.Image:
    """``mask`` at ``size``: resized when its aspect ratio is the picture's; ``shown`` are the sizes the
    refusal names (as uploaded)."""
    if mask.size == size:
        return mask
    (iw, ih), (mw, mh) = size, mask.size
    if abs((mw / mh) / (iw / ih) - 1) > ASPECT_TOLERANCE:
        raise MaskShapeMismatch(*shown)
    return mask.resize(size, Image.Resampling.LANCZOS)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()

