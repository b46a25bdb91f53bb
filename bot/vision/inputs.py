"""The images of a Discord message or command, ready for a vision request.

Only attachments are read — their URL must be on ``settings.discord.cdn_hosts`` — and at most
``settings.vision.max_images`` of them (more get a footer warning, not an error). Image *links* in the
text or its embeds are never requested; when a message has nothing but links the member is told why.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.app.settings import Settings
from bot.chat.attachments import host_allowed
from bot.rendering.user_facing import UserFacingError
from bot.vision.images import (
    SUPPORTED_EXTENSIONS,
    ImageNotFromDiscord,
    ImageRefused,
    PreparedImage,
    check_declared,
    fetch_image_bytes,
    looks_like_image,
    prepare_image_async,
    url_host,
)
from gateway_client import ChatMessage

__all__ = ["AllImagesRefused", "DEFAULT_PROMPT", "Gathered", "ImageLinksOnly", "NoImage", "Screened",
           "fetch_images", "gather_images", "image_attachments", "image_links", "screen_images", "vision_message"]

DEFAULT_PROMPT = "Describe this image."
_URL = re.compile(r"https?://[^\s<>()\"']+", re.IGNORECASE)


class NoImage(UserFacingError):
    """Nothing to look at (a context-menu target without pictures)."""

    code = "no_image"

    def user_message(self) -> str:
        return "That message has no image attached. Use it on a message with an uploaded picture."


class ImageLinksOnly(UserFacingError):
    """Only image links were given; the bot reads uploaded attachments only."""

    code = "image_links_only"

    def __init__(self, hosts: Sequence[str]) -> None:
        super().__init__("image links only")
        self.hosts = [h for h in dict.fromkeys(hosts) if h]

    def user_message(self) -> str:
        where = f" ({', '.join(self.hosts[:3])})" if self.hosts else ""
        return (f"I only look at images uploaded to Discord as attachments — I don't open links{where}. "
                "Download the picture and attach it to your message.")


class AllImagesRefused(UserFacingError):
    """Every image was refused; the message lists each one's reason."""

    code = "images_refused"

    def __init__(self, refusals: Sequence[ImageRefused]) -> None:
        super().__init__("all images refused")
        self.refusals = list(refusals)

    def user_message(self) -> str:
        if len(self.refusals) == 1:
            return self.refusals[0].user_message()
        return "None of the images could be used:\n" + "\n".join(f"• {r.user_message()}" for r in self.refusals)


@dataclass
class Gathered:
    """Usable images and the footer notes about the ones that were skipped."""

    images: list[PreparedImage] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # the attachment URL of each image (send_as = "url")
    refusals: list[ImageRefused] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def image_attachments(attachments: Sequence[Any]) -> list[Any]:
    """The attachments that claim to be pictures (supported or not)."""
    return [
        a for a in attachments
        if looks_like_image(str(getattr(a, "filename", "")), getattr(a, "content_type", None))
    ]


def _is_image_url(url: str) -> bool:
    try:
        path = urlsplit(url).path
    except ValueError:
        return False
    return PurePosixPath(path.lower()).suffix in SUPPORTED_EXTENSIONS


def image_links(message: Any) -> list[str]:
    """Image URLs in a message's text and image embeds — detected only to explain they are not opened."""
    links = [u for u in _URL.findall(getattr(message, "content", "") or "") if _is_image_url(u)]
    for embed in getattr(message, "embeds", None) or []:
        for part in (getattr(embed, "image", None), getattr(embed, "thumbnail", None)):
            url = getattr(part, "url", None)
            if url:
                links.append(str(url))
        if getattr(embed, "type", None) in ("image", "gifv") and getattr(embed, "url", None):
            links.append(str(embed.url))
    return list(dict.fromkeys(links))


@dataclass
class Screened:
    """The pictures that passed every check made without a download, in order; refused ones and notes."""

    pictures: list[Any] = field(default_factory=list)
    refusals: list[ImageRefused] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


def screen_images(
    attachments: Sequence[Any], settings: Settings, *, links: Sequence[str] = (), chosen: bool = False
) -> Screened:
    """Check the image attachments by what they declare (type, size, CDN host): no byte is downloaded.
    ``chosen``: the member picked these files as images (``/vision``), so a non-image is refused by name
    rather than skipped. At most ``vision.max_images`` are kept (more: a footer note).

    Raises ``AllImagesRefused`` when none passes, ``ImageLinksOnly`` when there are only links and
    ``NoImage`` when there is nothing at all.
    """
    pictures = list(attachments) if chosen else image_attachments(attachments)
    if not pictures:
        if links:
            raise ImageLinksOnly([url_host(u) for u in links])
        raise NoImage()
    out = Screened(links=list(links))
    limit = settings.vision.max_images
    if len(pictures) > limit:
        out.notes.append(f"only the first {limit} of {len(pictures)} images were read")
        pictures = pictures[:limit]
    vision, hosts = settings.vision, settings.discord.cdn_hosts
    for att in pictures:
        name = str(getattr(att, "filename", "image"))
        size = getattr(att, "size", None)
        url = str(getattr(att, "url", ""))
        try:
            check_declared(name, getattr(att, "content_type", None), size if isinstance(size, int) else None,
                           max_bytes=vision.max_download_bytes)
            if not host_allowed(url, hosts):
                raise ImageNotFromDiscord(name, url_host(url))
        except ImageRefused as refused:
            out.refusals.append(refused)
        else:
            out.pictures.append(att)
    if not out.pictures:
        raise AllImagesRefused(out.refusals)
    return out


async def _one(
    session: aiohttp.ClientSession, att: Any, settings: Settings, decodes: asyncio.Semaphore | None
) -> tuple[PreparedImage, str]:
    name = str(getattr(att, "filename", "image"))
    vision = settings.vision
    url = str(getattr(att, "url", ""))
    hosts = settings.discord.cdn_hosts
    data = await fetch_image_bytes(session, url, filename=name, max_bytes=vision.max_download_bytes,
                                   allowed=lambda u: host_allowed(u, hosts))
    if decodes is None:
        image = await prepare_image_async(data, filename=name, max_pixels=vision.max_pixels,
                                          longest_side=vision.longest_side)
    else:
        async with decodes:  # bounds the decodes (and so the decoding memory) in flight at once
            image = await prepare_image_async(data, filename=name, max_pixels=vision.max_pixels,
                                              longest_side=vision.longest_side)
    return image, url


async def fetch_images(
    session: aiohttp.ClientSession, screened: Screened, settings: Settings, *,
    decodes: asyncio.Semaphore | None = None,
) -> Gathered:
    """Download and prepare the screened pictures; ``decodes`` bounds the decodes running at once.
    Raises ``AllImagesRefused`` when none is usable."""
    out = Gathered(refusals=list(screened.refusals))
    results = await asyncio.gather(*(_one(session, a, settings, decodes) for a in screened.pictures),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, ImageRefused):
            out.refusals.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            out.images.append(result[0])
            out.urls.append(result[1])
    if not out.images:
        raise AllImagesRefused(out.refusals)
    out.notes = [r.short() for r in out.refusals] + screened.notes
    if screened.links:
        out.notes.append("image links are not opened")
    return out


async def gather_images(
    session: aiohttp.ClientSession, attachments: Sequence[Any], settings: Settings, *, links: Sequence[str] = (),
    chosen: bool = False, decodes: asyncio.Semaphore | None = None,
) -> Gathered:
    """``screen_images`` then ``fetch_images`` (for callers that hold no budget in between)."""
    screened = screen_images(attachments, settings, links=links, chosen=chosen)
    return await fetch_images(session, screened, settings, decodes=decodes)


def vision_message(text: str, gathered: Gathered, *, send_as: str = "data_url") -> ChatMessage:
    """The user message: the text, then each image as a data URL (or its CDN URL)."""
    refs = gathered.urls if send_as == "url" else [img.data_url() for img in gathered.images]
    return ChatMessage.user(text or DEFAULT_PROMPT, images=refs)
