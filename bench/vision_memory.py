"""Vision intake memory: peak RSS while N members send a 40-megapixel PNG at once.

The picture is the issue's case: a 6300×6300 RGB PNG of a few hundred KB. A child process serves it
from a local HTTP server standing in for Discord's CDN and runs the real intake path on it N times
concurrently (``screen_images`` → capped download → ``prepare_image`` in a thread, decodes bounded by
``vision.max_concurrent_decodes`` as ``VisionService`` does); it reports ``ru_maxrss`` before (after a
warm-up) and after. The child is fresh, so nothing else has raised its peak.

    python bench/vision_memory.py [--members 10] [--side 6300] [--decodes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def striped_png(width: int, height: int) -> bytes:
    """An 8-bit RGB PNG of ``width``×``height`` (bands of colour, so it compresses to a few hundred KB),
    written row by row: building it never holds the decoded picture in memory."""
    comp = zlib.compressobj(9)
    parts = []
    for y in range(height):
        band = (y // 97) % 6
        pixel = bytes(((40 * band) % 256, (90 + 25 * band) % 256, (160 + 45 * band) % 256))
        row = bytearray(b"\x00" + pixel * width)
        stripe = 3 * ((y * 7) % max(1, width - 64))
        row[1 + stripe:1 + stripe + 192] = b"\xff\xc8\x00" * 64
        parts.append(comp.compress(bytes(row)))
    parts.append(comp.flush())
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


async def _child(png_path: str, members: int, decodes: int) -> dict[str, float]:
    from aiohttp import ClientSession, web

    from bot.app.settings import Settings
    from bot.vision.images import prepare_image
    from bot.vision.inputs import fetch_images, screen_images

    data = Path(png_path).read_bytes()
    for fmt_data in (striped_png(64, 64),):  # warm-up: load Pillow, libvips and its threads
        prepare_image(fmt_data, filename="warm.png", max_pixels=40_000_000, longest_side=1024)

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=data, content_type="image/png")

    app = web.Application()
    app.router.add_get("/attachments/{n}/big.png", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp has no public getter
    settings = Settings(discord={"cdn_hosts": [f"127.0.0.1:{port}"]},
                        vision={"max_concurrent_decodes": decodes})
    gate = asyncio.Semaphore(settings.vision.max_concurrent_decodes)
    before = maxrss_mb()
    started = time.perf_counter()
    async with ClientSession() as session:
        async def member(i: int) -> tuple[int, int]:
            att = SimpleNamespace(filename="big.png", content_type="image/png", size=len(data),
                                  url=f"http://127.0.0.1:{port}/attachments/{i}/big.png")
            screened = screen_images([att], settings)
            gathered = await fetch_images(session, screened, settings, decodes=gate)
            return gathered.images[0].width, gathered.images[0].height

        sizes = await asyncio.gather(*(member(i) for i in range(members)))
    elapsed = time.perf_counter() - started
    await runner.cleanup()
    after = maxrss_mb()
    assert all(s == (1024, 1024) for s in sizes), sizes
    return {"baseline_mb": before, "peak_mb": after, "delta_mb": after - before, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--decodes", type=int, default=2, help="vision.max_concurrent_decodes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(asyncio.run(_child(args.child, args.members, args.decodes))))
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.png"
        path.write_bytes(striped_png(args.side, args.side))
        size_kb = path.stat().st_size // 1024
        out = subprocess.run([sys.executable, __file__, "--child", str(path), "--members", str(args.members),
                              "--decodes", str(args.decodes)], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    mp = args.side * args.side / 1e6
    print(f"vision intake: {args.members} members at once, {args.side}x{args.side} PNG ({mp:.0f} MP, {size_kb} KB),"
          f" {args.decodes} decodes at a time")
    print(f"  RSS peak before {figures['baseline_mb']:.0f} MB, after {figures['peak_mb']:.0f} MB:"
          f" +{figures['delta_mb']:.0f} MB; all {args.members} prepared in {figures['seconds']:.2f} s")


if __name__ == "__main__":
    main()
