"""Grid composition and size-bounded encoding of generated images (Pillow).

Everything CPU-bound here is synchronous; the ``async`` wrappers (``make_grid``, ``fit_image``) run it
in a worker thread so the event loop never blocks. Encoding follows a ladder: keep the original bytes
when they already fit, else re-encode (JPEG, WebP) at falling quality, else downscale and repeat —
an upload is never refused for size while a smaller rendition can be made.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

__all__ = [
    "EncodedImage",
    "ImageTooLarge",
    "GRID_MAX_SIDE",
    "MAX_INPUT_PIXELS",
    "grid_shape",
    "compose_grid",
    "encode_to_fit",
    "fit_bytes",
    "make_grid",
    "fit_image",
]

#: The composed grid's longest side (cells are scaled down to fit; Discord previews are smaller anyway).
GRID_MAX_SIDE = 2048
#: Refuse to decode anything larger (defence against decompression bombs from a misbehaving gateway).
MAX_INPUT_PIXELS = 40_000_000
#: Never downscale below this longest side; below it the limit is considered impossible to meet.
MIN_SIDE = 64

# (format, quality) tried in order at each scale; JPEG first because it is the fastest to encode.
_LADDER: tuple[tuple[str, int], ...] = (("JPEG", 90), ("WEBP", 82), ("JPEG", 78), ("WEBP", 65), ("JPEG", 60))
_DOWNSCALE = 0.7
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}


class ImageTooLarge(ValueError):
    """No rendition fits the byte limit (only for absurdly small limits) or the input is too big to decode."""


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """Image bytes ready to upload."""

    data: bytes
    mime: str
    width: int
    height: int
    reencoded: bool  # False when these are the original bytes
    scaled: bool  # True when the pixels were downscaled to fit

    @property
    def extension(self) -> str:
        return {v: _EXT[k] for k, v in _MIME.items()}.get(self.mime, "bin")

    def filename(self, stem: str) -> str:
        return f"{stem}.{self.extension}"

    def __repr__(self) -> str:
        return (f"EncodedImage(mime={self.mime!r}, bytes={len(self.data)}, {self.width}x{self.height}, "
                f"reencoded={self.reencoded}, scaled={self.scaled})")


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows): 1 → 1×1, 2 → 2×1, 3–4 → 2×2 (reading order, like Midjourney)."""
    if count < 1:
        raise ValueError("a grid needs at least one image")
    if count == 1:
        return 1, 1
    columns = 2
    return columns, math.ceil(count / columns)


def _open(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as exc:  # Pillow raises several types for unreadable data
        raise ValueError(f"not a readable image ({type(exc).__name__})") from None
    if img.width * img.height > MAX_INPUT_PIXELS:
        raise ImageTooLarge(f"image of {img.width}x{img.height} pixels is too large to process")
    img.load()
    return img


def _flatten(img: Image.Image) -> Image.Image:
    """RGB without alpha (transparent areas become white), as JPEG needs."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return img.convert("RGB")


def compose_grid(
    images: Sequence[bytes],
    *,
    max_side: int = GRID_MAX_SIDE,
    gap: int = 8,
    background: tuple[int, int, int] = (24, 24, 28),
) -> Image.Image:
    """One RGB image with the inputs in a grid (reading order). Synchronous: call in a thread.

    Cells take the size of the largest input, scaled down so the cells together span at most
    ``max_side`` on the longest side (plus the gaps); each image is fitted into its cell keeping its aspect ratio
    and centred.
    """
    decoded = [_flatten(_open(d)) for d in images]
    columns, rows = grid_shape(len(decoded))
    cell_w = max(i.width for i in decoded)
    cell_h = max(i.height for i in decoded)
    # The limit applies to the images, not the gaps: full-size cells are never resampled for a few pixels.
    scale = min(1.0, max_side / max(columns * cell_w, rows * cell_h))
    cell_w = max(1, int(cell_w * scale))
    cell_h = max(1, int(cell_h * scale))
    grid = Image.new("RGB", (columns * cell_w + (columns - 1) * gap, rows * cell_h + (rows - 1) * gap), background)
    for index, img in enumerate(decoded):
        col, row = index % columns, index // columns
        fitted = img
        ratio = min(cell_w / img.width, cell_h / img.height)
        if ratio != 1.0:
            size = (max(1, round(img.width * ratio)), max(1, round(img.height * ratio)))
            fitted = img.resize(size, Image.Resampling.LANCZOS if ratio < 1 else Image.Resampling.BICUBIC)
        x = col * (cell_w + gap) + (cell_w - fitted.width) // 2
        y = row * (cell_h + gap) + (cell_h - fitted.height) // 2
        grid.paste(fitted, (x, y))
    return grid


def _encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        _flatten(img).save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
    elif fmt == "WEBP":
        save = img if img.mode in ("RGB", "RGBA") else img.convert("RGBA" if "A" in img.getbands() else "RGB")
        save.save(buf, "WEBP", quality=quality, method=2)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def encode_to_fit(img: Image.Image, limit: int, *, first: tuple[str, int] | None = None) -> EncodedImage:
    """Encode ``img`` into at most ``limit`` bytes: lossy ladder, then downscaling. Synchronous.

    ``first`` is an extra (format, quality) tried before the ladder at full size (e.g. ("PNG", 0)).
    Raises ImageTooLarge only when even a ``MIN_SIDE`` thumbnail does not fit.
    """
    if limit <= 0:
        raise ImageTooLarge("the upload limit is zero")
    current = img
    scaled = False
    while True:
        attempts = list(_LADDER)
        if first is not None and not scaled:
            attempts.insert(0, first)
        smallest = 0
        for fmt, quality in attempts:
            data = _encode(current, fmt, quality)
            if len(data) <= limit:
                return EncodedImage(data, _MIME[fmt], current.width, current.height, True, scaled)
            smallest = len(data) if not smallest else min(smallest, len(data))
        longest = max(current.width, current.height)
        if longest <= MIN_SIDE:
            raise ImageTooLarge(f"no rendition fits in {limit} bytes")
        factor = max(_DOWNSCALE, MIN_SIDE / longest)
        # Bytes scale roughly with area: estimate the factor from the smallest attempt to skip useless steps.
        estimate = math.sqrt(limit / max(1, smallest)) * 0.95
        factor = max(MIN_SIDE / longest, min(factor, estimate))
        size = (max(1, int(current.width * factor)), max(1, int(current.height * factor)))
        current = current.resize(size, Image.Resampling.LANCZOS)
        scaled = True


def fit_bytes(data: bytes, limit: int, mime: str | None = None) -> EncodedImage:
    """The original bytes when they fit (and are a known image format), else ``encode_to_fit``. Synchronous."""
    img = _open(data)
    fmt = (img.format or "").upper()
    if len(data) <= limit and fmt in _MIME:
        return EncodedImage(data, _MIME[fmt], img.width, img.height, False, False)
    return encode_to_fit(img, limit)


async def make_grid(images: Sequence[bytes], limit: int, *, max_side: int = GRID_MAX_SIDE) -> EncodedImage:
    """Compose ``images`` into a grid and encode it within ``limit`` bytes, in a worker thread."""

    def work() -> EncodedImage:
        grid = compose_grid(images, max_side=max_side)
        return encode_to_fit(grid, limit)

    return await asyncio.to_thread(work)


async def fit_image(data: bytes, limit: int) -> EncodedImage:
    """One image within ``limit`` bytes (original bytes when they fit), in a worker thread."""
    return await asyncio.to_thread(fit_bytes, data, limit)
