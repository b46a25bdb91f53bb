"""Real images with Pillow: generated PNGs and the 'vision' analysis. Blocking — call these
through :func:`asyncio.to_thread`."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 160, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "pink": (255, 182, 193),
    "brown": (139, 69, 19),
    "navy": (0, 0, 128),
    "olive": (128, 128, 0),
    "teal": (0, 128, 128),
    "maroon": (128, 0, 0),
}


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The nearest of :data:`NAMED_COLOURS` (squared RGB distance)."""
    return min(NAMED_COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(NAMED_COLOURS[n], rgb)))


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def colour_for(prompt: str, seed: int) -> tuple[int, int, int]:
    """The fill colour of a generated image: a pure function of ``prompt`` and ``seed``."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return digest[0], digest[1], digest[2]


def seed_for(prompt: str) -> int:
    """The seed used when a request gives none."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big") % 2_147_483_647


def make_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A ``width``×``height`` PNG filled with ``rgb`` and a thin darker frame (still ≥ 90 % fill)."""
    img = Image.new("RGB", (width, height), rgb)
    if width >= 32 and height >= 32:
        dark = tuple(max(0, c - 64) for c in rgb)
        ImageDraw.Draw(img).rectangle((0, 0, width - 1, height - 1), outline=dark, width=1)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class ImageFacts:
    width: int
    height: int
    colour: tuple[int, int, int]
    format: str

    @property
    def sentence(self) -> str:
        return (f"I see a {self.width}x{self.height} image, mostly {colour_name(self.colour)} "
                f"({hex_colour(self.colour)}).")


def analyse(data: bytes, *, max_pixels: int = 50_000_000) -> ImageFacts:
    """Size and dominant colour of an encoded image; ``ValueError`` when it cannot be decoded."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError(f"image too large ({width}x{height})")
            fmt = img.format or "unknown"
            img.draft("RGB", (128, 128))  # cheap downscale for JPEG
            small = img.convert("RGB")
            small.thumbnail((128, 128), Image.Resampling.NEAREST)
            counts = small.getcolors(maxcolors=small.width * small.height) or [(1, (0, 0, 0))]
            colour = max(counts, key=lambda c: c[0])[1]
    except ValueError:
        raise
    except Exception as exc:  # Pillow raises several types for bad data
        raise ValueError(f"cannot decode image: {exc.__class__.__name__}") from None
    return ImageFacts(width, height, tuple(colour), fmt)  # type: ignore[arg-type]
