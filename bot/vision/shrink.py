"""Shrink-while-decoding for the formats Pillow can only decode at full size (PNG, WebP, GIF).

Pillow keeps a decoded RGB(A) picture at 4 bytes a pixel: a 40-megapixel PNG is 160 MB before it can
be reduced. libvips (through pyvips) decodes such files as a *sequential* stream and shrinks rows as they
arrive, so peak memory stays a few megabytes whatever the size. Only the loader for the format Pillow
identified from the header is called (never libvips' own format sniffing), its operation cache is off
(nothing decoded is kept) and loaders libvips marks untrusted are blocked. Blocking: run in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyvips
from PIL import Image

__all__ = ["VIPS_FORMATS", "ShrinkFailed", "shrink"]

pyvips.cache_set_max(0)  # no operation cache: a decoded picture is never kept after its question
if hasattr(pyvips, "block_untrusted_set"):
    pyvips.block_untrusted_set(True)

_LOADERS: dict[str, Callable[..., Any]] = {
    "PNG": pyvips.Image.pngload_buffer,
    "WEBP": pyvips.Image.webpload_buffer,
    "GIF": pyvips.Image.gifload_buffer,
}
#: Pillow format names decoded here
VIPS_FORMATS = frozenset(_LOADERS)


class ShrinkFailed(Exception):
    """libvips could not decode the file (damaged, truncated)."""


def shrink(data: bytes, fmt: str, longest_side: int) -> tuple[Image.Image, bool]:
    """The picture in ``data`` (Pillow format ``fmt``) reduced to fit ``longest_side`` (never enlarged) and
    turned upright (EXIF orientation), as an 8-bit RGB or RGBA Pillow image; and whether it has alpha."""
    try:
        source = _LOADERS[fmt](data, access="sequential", fail_on="truncated")
        small = source.thumbnail_image(longest_side, height=longest_side, size="down")
        if small.interpretation != "srgb" or small.format != "uchar":
            small = small.colourspace("srgb")  # grey, 16-bit, palette … → 8-bit sRGB (alpha kept)
        if small.format != "uchar":
            small = small.cast("uchar")
        if small.bands not in (3, 4):
            raise ShrinkFailed(f"{small.bands} bands after conversion")
        pixels = small.write_to_memory()  # the pipeline runs here, row by row
    except pyvips.Error as exc:
        raise ShrinkFailed(str(exc).splitlines()[0] if str(exc) else "libvips error") from None
    mode = "RGBA" if small.bands == 4 else "RGB"
    return Image.frombytes(mode, (small.width, small.height), pixels), mode == "RGBA"
