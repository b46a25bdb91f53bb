"""Benchmark: compose a 2×2 grid from four 1024×1024 images and encode it within Discord's upload limit.

Run: ``python bench/imagine_grid.py``. Prints milliseconds and output bytes for the default limit
(10 MiB) and for a tight limit that forces re-encoding and downscaling.
"""

from __future__ import annotations

import io
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from bot.rendering.limits import DEFAULT_FILE_SIZE  # noqa: E402
from bot.media.grid import compose_grid, encode_to_fit  # noqa: E402

SIDE = 1024
ROUNDS = 3


def sample_image(seed: int) -> bytes:
    """A photo-like PNG (gradients, shapes, mild noise) — harder to compress than a flat colour."""
    rnd = random.Random(seed)
    img = Image.linear_gradient("L").resize((SIDE, SIDE)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = rnd.randrange(SIDE), rnd.randrange(SIDE)
        r = rnd.randrange(20, 200)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    img = img.filter(ImageFilter.GaussianBlur(3))
    noise = Image.effect_noise((SIDE, SIDE), 24).convert("RGB")
    img = Image.blend(img, noise, 0.15)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def run(images: list[bytes], limit: int) -> tuple[float, float, int, tuple[int, int], str]:
    compose_ms: list[float] = []
    total_ms: list[float] = []
    out = None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        grid = compose_grid(images)
        t1 = time.perf_counter()
        out = encode_to_fit(grid, limit)
        t2 = time.perf_counter()
        compose_ms.append((t1 - t0) * 1000)
        total_ms.append((t2 - t0) * 1000)
    assert out is not None
    return statistics.median(compose_ms), statistics.median(total_ms), len(out.data), (out.width, out.height), out.mime


def main() -> None:
    images = [sample_image(i) for i in range(4)]
    print(f"inputs: 4 × {SIDE}x{SIDE} PNG, {sum(map(len, images))} bytes total; median of {ROUNDS} rounds")
    for label, limit in (("default limit 10 MiB", DEFAULT_FILE_SIZE), ("tight limit 200 KB", 200_000)):
        compose, total, size, dims, mime = run(images, limit)
        print(f"{label:>22}: compose {compose:7.1f} ms, compose+encode {total:7.1f} ms, "
              f"output {size} bytes ({dims[0]}x{dims[1]} {mime})")


if __name__ == "__main__":
    main()
