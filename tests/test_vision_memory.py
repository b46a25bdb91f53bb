"""Vision memory bounds: a 40-megapixel PNG is shrunk while decoded, whole-decode formats are capped from
their header, and decodes run a bounded number at a time (peak RSS measured in a fresh child process)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from bench.vision_memory import striped_png
from bot.app.settings import Settings
from bot.vision import inputs
from bot.vision.images import ImageTooManyPixels, PreparedImage, prepare_image

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[2])
    from bench.vision_memory import striped_png
    from bot.vision.images import prepare_image
    data = open(sys.argv[1], "rb").read()
    prepare_image(striped_png(64, 64), filename="warm.png", max_pixels=40_000_000, longest_side=1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = prepare_image(data, filename="big.png", max_pixels=40_000_000, longest_side=1024)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"delta_kb": after - before, "size": [out.width, out.height], "mime": out.mime}))
""")


def test_an_accepted_40_megapixel_png_raises_peak_memory_by_under_150_mb(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(striped_png(6300, 6300))  # the picture: 40 MP, a few hundred KB
    run = subprocess.run([sys.executable, "-c", CHILD, str(path), str(ROOT)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["size"] == [1024, 1024] and got["mime"] == "image/png"
    assert got["delta_kb"] < 150 * 1024, f"peak RSS rose by {got['delta_kb'] / 1024:.0f} MB"


def test_shrunk_png_keeps_its_colours_and_transparency() -> None:
    img = Image.new("RGBA", (3000, 1500), (0, 128, 255, 255))
    img.paste((255, 0, 0, 0), (0, 0, 1500, 1500))
    out = io.BytesIO()
    img.save(out, format="PNG")
    prepared = prepare_image(out.getvalue(), filename="half.png", max_pixels=40_000_000, longest_side=600)
    back = Image.open(io.BytesIO(prepared.data))
    assert (prepared.width, prepared.height, prepared.mime, back.mode) == (600, 300, "image/png", "RGBA")
    assert back.getpixel((100, 150))[3] == 0 and back.getpixel((500, 150)) == (0, 128, 255, 255)


def test_a_format_decoded_whole_is_capped_from_its_header() -> None:
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, format="BMP")
    header = bytearray(bmp.getvalue())
    header[18:26] = (5000).to_bytes(4, "little") + (5000).to_bytes(4, "little")  # claims 5000×5000
    with pytest.raises(ImageTooManyPixels) as exc:
        prepare_image(bytes(header), filename="huge.bmp", max_pixels=40_000_000, longest_side=1024)
    assert (exc.value.width, exc.value.height, exc.value.limit) == (5000, 5000, 16_000_000)
    assert "`huge.bmp` is 5000×5000 pixels (25 megapixels) — more than the 16 megapixels" in exc.value.user_message()


async def test_decodes_run_a_bounded_number_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    running, peak, release = 0, 0, asyncio.Event()
    started = asyncio.Queue[None]()

    async def fetch(session: Any, url: str, **kwargs: Any) -> bytes:
        return b"png"

    async def decode(data: bytes, *, filename: str, **kwargs: Any) -> PreparedImage:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        started.put_nowait(None)
        await release.wait()
        running -= 1
        return PreparedImage(filename, b"x", "image/png", 1, 1, 1, 1, "PNG")

    monkeypatch.setattr(inputs, "fetch_image_bytes", fetch)
    monkeypatch.setattr(inputs, "prepare_image_async", decode)
    settings = Settings(discord={"cdn_hosts": ["cdn.example"]}, vision={"max_concurrent_decodes": 2})
    gate = asyncio.Semaphore(settings.vision.max_concurrent_decodes)
    atts = [SimpleNamespace(filename=f"{i}.png", content_type="image/png", size=3, url=f"https://cdn.example/{i}.png")
            for i in range(5)]
    tasks = [asyncio.create_task(inputs.fetch_images(None, inputs.screen_images([a], settings), settings,  # type: ignore[arg-type]
                                                     decodes=gate)) for a in atts]
    for _ in range(2):
        await started.get()
    release.set()
    results = await asyncio.gather(*tasks)
    assert peak == 2 and all(len(r.images) == 1 for r in results)
