"""Images for vision requests: safe download, decoding, downscaling and data-URL encoding.

Every step refuses with an ``ImageRefused`` subclass whose ``user_message()`` is the sentence the
member sees (``bot.rendering.errors.user_error_message`` shows it as is) and whose ``short()`` fits a footer:

1. ``check_declared`` — by the attachment's declared type and size, before any byte is downloaded;
2. ``fetch_image_bytes`` — only from an allowed URL (the caller's CDN-host check), redirects off,
   ``Content-Length`` checked, then streamed with a byte cap so a large body never lands in memory;
3. ``prepare_image`` (CPU work: call it through ``prepare_image_async``, which runs it in a thread) —
   the header is read first and the pixel count checked *before* decoding (decompression bombs), the
   real format must be a supported still image, then it is decoded at reduced size so that memory stays
   bounded per image (JPEG: ``draft``; PNG, WebP, GIF: shrunk while decoded, bot/vision/shrink.py; BMP:
   decoded whole, so capped lower), turned upright (EXIF) and re-encoded (PNG for lossless sources and
   transparency, JPEG otherwise). The caller bounds how many decodes run at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import aiohttp
from PIL import Image, UnidentifiedImageError

from bot.chat.attachments import DownloadFailed, DownloadTooLarge, fetch_capped
from bot.rendering.user_facing import UserFacingError
from bot.vision.shrink import VIPS_FORMATS, ShrinkFailed, shrink

__all__ = [
    "AnimatedImage",
    "DecodedImage",
    "ImageDownloadFailed",
    "ImageNotFromDiscord",
    "ImageRefused",
    "ImageTooLarge",
    "ImageTooManyPixels",
    "ImageUndecodable",
    "NotAnImage",
    "PreparedImage",
    "SUPPORTED_LABEL",
    "UnsupportedImageType",
    "check_declared",
    "decode_image",
    "fetch_image_bytes",
    "looks_like_image",
    "prepare_image",
    "prepare_image_async",
    "url_host",
]

#: Pillow format name -> what we call it; only still images of these formats are read.
SUPPORTED_FORMATS: dict[str, str] = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}
SUPPORTED_MIME = frozenset({
    "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/webp", "image/gif", "image/bmp", "image/x-ms-bmp",
})
SUPPORTED_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".webp", ".gif", ".bmp"})
#: image files we recognise but cannot read (named in the refusal)
OTHER_IMAGE_EXTENSIONS: dict[str, str] = {
    ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".svg": "SVG", ".tif": "TIFF", ".tiff": "TIFF",
    ".ico": "ICO", ".psd": "PSD", ".raw": "RAW", ".cr2": "RAW", ".nef": "RAW", ".dng": "DNG", ".jxl": "JPEG XL",
}
SUPPORTED_LABEL = "PNG, JPEG, WebP, GIF (still) or BMP"
LOSSLESS_SOURCES = frozenset({"PNG", "GIF", "BMP"})
#: a lossless re-encode larger than this is sent as JPEG instead (data URLs travel in the JSON body)
MAX_PNG_BYTES = 3 * 1024 * 1024
JPEG_QUALITY = 88
#: formats Pillow decodes whole (BMP) are refused above this many pixels: 16 MP is 64 MB decoded
FULL_DECODE_PIXELS = 16_000_000
FETCH_TIMEOUT = 20.0


# ------------------------------------------------------------------------------------------------
# refusals
# ------------------------------------------------------------------------------------------------


def _name(filename: str) -> str:
    """A file name shown in inline code: no backticks, no pings, bounded length."""
    clean = (filename or "image").replace("`", "'").replace("@", "@\u200b").replace("\n", " ")
    if len(clean) > 60:
        clean = clean[:59] + "…"
    return f"`{clean}`"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        text = f"{n / (1024 * 1024):.1f}".removesuffix(".0")
        return f"{text} MB"
    if n >= 1024:
        return f"{n // 1024} KB"
    return f"{n} bytes"


class ImageRefused(UserFacingError):
    """An image the bot will not use; ``user_message()`` says why, specifically."""

    code = "image_refused"

    code = "image_refused"

    def __init__(self, filename: str) -> None:
        super().__init__(self.code)
        self.filename = filename

    def user_message(self) -> str:  # pragma: no cover - every subclass words its own
        return f"I can't use the image {_name(self.filename)}."

    def short(self) -> str:
        return f"skipped {_name(self.filename)}"


class NotAnImage(ImageRefused):
    code = "not_an_image"

    def __init__(self, filename: str, content_type: str | None) -> None:
        super().__init__(filename)
        self.content_type = content_type

    def user_message(self) -> str:
        kind = f" ({self.content_type})" if self.content_type else ""
        return f"{_name(self.filename)} is not an image{kind}. Attach a {SUPPORTED_LABEL} picture."

    def short(self) -> str:
        return f"skipped {_name(self.filename)} (not an image)"


class UnsupportedImageType(ImageRefused):
    code = "unsupported_image_type"

    def __init__(self, filename: str, kind: str) -> None:
        super().__init__(filename)
        self.kind = kind

    def user_message(self) -> str:
        return (f"{_name(self.filename)} is a {self.kind} image, a type I can't read. "
                f"Send it as {SUPPORTED_LABEL} instead.")

    def short(self) -> str:
        return f"skipped {_name(self.filename)} ({self.kind} not supported)"


class ImageTooLarge(ImageRefused):
    code = "image_too_large"

    def __init__(self, filename: str, size: int | None, limit: int) -> None:
        super().__init__(filename)
        self.size = size
        self.limit = limit

    def user_message(self) -> str:
        size = f"is {_size(self.size)}" if self.size else f"is larger than {_size(self.limit)}"
        return (f"{_name(self.filename)} {size} — too big: the largest image I download is {_size(self.limit)}. "
                "Send a smaller or compressed copy.")

    def short(self) -> str:
        return f"skipped {_name(self.filename)} (over {_size(self.limit)})"


class ImageTooManyPixels(ImageRefused):
    """A decompression bomb, or just an enormous picture: refused before it is decoded."""

    code = "image_too_many_pixels"

    def __init__(self, filename: str, width: int | None, height: int | None, limit: int) -> None:
        super().__init__(filename)
        self.width = width
        self.height = height
        self.limit = limit

    def user_message(self) -> str:
        limit = f"{self.limit / 1_000_000:g} megapixels"
        if self.width and self.height:
            size = f"is {self.width}×{self.height} pixels ({self.width * self.height / 1_000_000:.0f} megapixels)"
        else:
            size = "has too many pixels"
        return (f"{_name(self.filename)} {size} — more than the {limit} I open (this protects the bot "
                "from decompression bombs). Send a smaller version.")

    def short(self) -> str:
        return f"skipped {_name(self.filename)} (too many pixels)"


class ImageUndecodable(ImageRefused):
    code = "image_undecodable"

    def user_message(self) -> str:
        return (f"{_name(self.filename)} could not be decoded as an image — the file is damaged or is not really "
                "a picture (a renamed file?).")

    def short(self) -> str:
        return f"skipped {_name(self.filename)} (could not be decoded)"


class AnimatedImage(ImageRefused):
    code = "animated_image"

    def __init__(self, filename: str, frames: int) -> None:
        super().__init__(filename)
        self.frames = frames

    def user_message(self) -> str:
        return (f"{_name(self.filename)} is animated ({self.frames} frames); I can only look at still images. "
                "Send a single frame or a screenshot.")

    def short(self) -> str:
        return f"skipped {_name(self.filename)} (animated)"


class ImageNotFromDiscord(ImageRefused):
    code = "image_not_from_discord"

    def __init__(self, filename: str, host: str) -> None:
        super().__init__(filename)
        self.host = host

    def user_message(self) -> str:
        host = f" ({self.host})" if self.host else ""
        return (f"{_name(self.filename)} is not stored on Discord's CDN{host}, so I won't download it. "
                "Upload the picture to Discord instead.")

    def short(self) -> str:
        return f"skipped {_name(self.filename)} (not on Discord's CDN)"


class ImageDownloadFailed(ImageRefused):
    code = "image_download_failed"

    def __init__(self, filename: str, detail: str) -> None:
        super().__init__(filename)
        self.detail = detail

    def user_message(self) -> str:
        return f"I couldn't download {_name(self.filename)} from Discord ({self.detail}). Try uploading it again."

    def short(self) -> str:
        return f"skipped {_name(self.filename)} (download failed)"


# ------------------------------------------------------------------------------------------------
# declared type and size (no download)
# ------------------------------------------------------------------------------------------------


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _suffix(filename: str) -> str:
    return PurePosixPath((filename or "").lower()).suffix


def looks_like_image(filename: str, content_type: str | None) -> bool:
    """Whether an attachment claims to be a picture (supported or not)."""
    mime = _mime(content_type)
    suffix = _suffix(filename)
    return mime.startswith("image/") or suffix in SUPPORTED_EXTENSIONS or suffix in OTHER_IMAGE_EXTENSIONS


def check_declared(filename: str, content_type: str | None, size: int | None, *, max_bytes: int) -> None:
    """Refuse by what the attachment declares, before downloading it."""
    mime = _mime(content_type)
    suffix = _suffix(filename)
    generic = mime in ("", "application/octet-stream")
    if mime in SUPPORTED_MIME or (generic and suffix in SUPPORTED_EXTENSIONS):
        pass
    elif suffix in OTHER_IMAGE_EXTENSIONS and (generic or mime.startswith("image/")):
        raise UnsupportedImageType(filename, OTHER_IMAGE_EXTENSIONS[suffix])
    elif mime.startswith("image/"):
        raise UnsupportedImageType(filename, mime.removeprefix("image/").upper())
    else:
        raise NotAnImage(filename, mime or None)
    if size is not None and size > max_bytes:
        raise ImageTooLarge(filename, size, max_bytes)


# ------------------------------------------------------------------------------------------------
# download
# ------------------------------------------------------------------------------------------------


def url_host(url: str) -> str:
    """``host[:port]`` of a URL, for messages ("" when it has none)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if host and parts.port else host
    except ValueError:
        return ""


async def fetch_image_bytes(
    session: aiohttp.ClientSession,
    url: str,
    *,
    filename: str,
    max_bytes: int,
    allowed: Callable[[str], bool],
    timeout: float = FETCH_TIMEOUT,
) -> bytes:
    """The bytes at ``url``, at most ``max_bytes`` of them (more → ``ImageTooLarge``).

    ``allowed(url)`` is the caller's host check (Discord's CDN hosts); a URL it rejects is never
    requested. Redirects are not followed, so an allowed host cannot bounce the request elsewhere.
    """
    if not allowed(url):
        raise ImageNotFromDiscord(filename, url_host(url))
    try:
        return await fetch_capped(session, url, max_bytes=max_bytes, timeout=timeout)
    except DownloadTooLarge as exc:
        raise ImageTooLarge(filename, exc.size, max_bytes) from None
    except DownloadFailed as exc:
        raise ImageDownloadFailed(filename, exc.reason) from None


# ------------------------------------------------------------------------------------------------
# decode, downscale, encode (CPU: in a thread)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image ready to send: re-encoded bytes and what happened to it."""

    filename: str
    data: bytes
    mime: str
    width: int
    height: int
    original_width: int
    original_height: int
    source_format: str

    @property
    def downscaled(self) -> bool:
        return (self.width, self.height) != (self.original_width, self.original_height)

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


ORIENTATION_TAG = 0x0112
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A picture decoded safely, upright and reduced to the longest side asked for (RGB or RGBA)."""

    image: Image.Image
    alpha: bool
    original_width: int
    original_height: int
    source_format: str


def prepare_image(
    data: bytes, *, filename: str, max_pixels: int, longest_side: int, max_full_decode_pixels: int = FULL_DECODE_PIXELS,
) -> PreparedImage:
    """Decode ``data`` safely (``decode_image``) and return it downscaled to ``longest_side`` and re-encoded
    (blocking: use a thread)."""
    decoded = decode_image(data, filename=filename, max_pixels=max_pixels, longest_side=longest_side,
                           max_full_decode_pixels=max_full_decode_pixels)
    work = decoded.image
    encoded, mime = _encode(work, lossless=decoded.source_format in LOSSLESS_SOURCES or decoded.alpha)
    return PreparedImage(filename=filename, data=encoded, mime=mime, width=work.width, height=work.height,
                         original_width=decoded.original_width, original_height=decoded.original_height,
                         source_format=decoded.source_format)


def decode_image(
    data: bytes, *, filename: str, max_pixels: int, longest_side: int, max_full_decode_pixels: int = FULL_DECODE_PIXELS,
) -> DecodedImage:
    """Decode ``data`` safely, upright and reduced to ``longest_side`` (blocking: use a thread).

    Memory is bounded per image: JPEG is decoded at a reduced scale (``draft``); PNG, WebP and GIF are
    shrunk while they are decoded (bot/vision/shrink.py); any other format (BMP) is decoded whole by
    Pillow, so it is refused over ``max_full_decode_pixels`` (declared in its header) before decoding.
    """
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageTooManyPixels(filename, None, None, max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ImageUndecodable(filename) from None
    with img:
        fmt = (img.format or "").upper()
        if fmt not in SUPPORTED_FORMATS:
            raise UnsupportedImageType(filename, fmt or "unknown")
        width, height = img.size
        if width <= 0 or height <= 0:
            raise ImageUndecodable(filename)
        if width * height > max_pixels:  # checked on the header, before any pixel is decoded
            raise ImageTooManyPixels(filename, width, height, max_pixels)
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
        except (OSError, SyntaxError, ValueError, EOFError):
            raise ImageUndecodable(filename) from None
        if getattr(img, "is_animated", False) and frames > 1:
            raise AnimatedImage(filename, frames)
        if fmt in VIPS_FORMATS:
            work, orientation = _shrunk(data, fmt, filename, longest_side), 1  # libvips turned it upright
            alpha = work.mode == "RGBA"
        else:
            if fmt == "JPEG":
                img.draft("RGB", (longest_side, longest_side))  # decode big JPEGs at a reduced scale
            elif width * height > max_full_decode_pixels:
                raise ImageTooManyPixels(filename, width, height, max_full_decode_pixels)
            work, alpha, orientation = _decoded(img, filename, width, height, max_pixels, longest_side)
    turn = _ORIENTATIONS.get(orientation)
    if turn is not None:
        work = work.transpose(turn)
    return DecodedImage(image=work, alpha=alpha, original_width=width, original_height=height, source_format=fmt)


def _shrunk(data: bytes, fmt: str, filename: str, longest_side: int) -> Image.Image:
    try:
        image, _alpha = shrink(data, fmt, longest_side)
    except (ShrinkFailed, MemoryError):
        raise ImageUndecodable(filename) from None
    return image


def _decoded(
    img: Image.Image, filename: str, width: int, height: int, max_pixels: int, longest_side: int
) -> tuple[Image.Image, bool, int]:
    """Pillow's decode (JPEG after ``draft``, BMP): reduced first where the mode allows, converted after."""
    try:
        img.load()
        alpha = _has_alpha(img)
        orientation = int(img.getexif().get(ORIENTATION_TAG, 1) or 1)
        work: Image.Image = img
        if work.mode not in ("RGB", "RGBA", "L"):  # palette, 1-bit, CMYK …: convert before resampling
            work = work.convert("RGBA" if alpha else "RGB")
        work.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        if work.mode != ("RGBA" if alpha else "RGB"):
            work = work.convert("RGBA" if alpha else "RGB")
        elif work is img:
            work = img.copy()  # ``img`` is closed when the caller's ``with`` ends
    except Image.DecompressionBombError:
        raise ImageTooManyPixels(filename, width, height, max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError):
        raise ImageUndecodable(filename) from None
    return work, alpha, orientation


def _encode(img: Image.Image, *, lossless: bool) -> tuple[bytes, str]:
    if lossless:
        out = io.BytesIO()
        img.save(out, format="PNG")
        if out.tell() <= MAX_PNG_BYTES:
            return out.getvalue(), "image/png"
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), "image/jpeg"


async def prepare_image_async(data: bytes, *, filename: str, max_pixels: int, longest_side: int) -> PreparedImage:
    """``prepare_image`` in a worker thread (Pillow never runs on the event loop)."""
    return await asyncio.to_thread(prepare_image, data, filename=filename, max_pixels=max_pixels,
                                   longest_side=longest_side)
