"""bot/media/grid.py: grid layout, pixel placement, and encoding that always fits the upload limit."""

from __future__ import annotations

import asyncio
import io
import random
import threading

import pytest
from PIL import Image

from bot.media import grid as image_grid
from bot.media.grid import EncodedImage, ImageTooLarge, compose_grid, encode_to_fit, fit_bytes, grid_shape


def solid_png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def noisy_png(size: tuple[int, int], seed: int = 1) -> bytes:
    """Hard to compress: random pixels, so lossless bytes are large."""
    rnd = random.Random(seed)
    img = Image.frombytes("RGB", size, rnd.randbytes(size[0] * size[1] * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(("count", "shape"), [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2))])
def test_grid_shape(count: int, shape: tuple[int, int]) -> None:
    assert grid_shape(count) == shape


def test_grid_shape_refuses_zero() -> None:
    with pytest.raises(ValueError):
        grid_shape(0)


def test_four_images_land_in_reading_order() -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    grid = compose_grid([solid_png(c) for c in colors], gap=8)
    assert grid.size == (64 * 2 + 8, 64 * 2 + 8)
    # centre of each cell carries that image's colour: 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right
    centres = [(32, 32), (32 + 72, 32), (32, 32 + 72), (32 + 72, 32 + 72)]
    for (x, y), colour in zip(centres, colors, strict=True):
        assert grid.getpixel((x, y)) == colour
    # the gap shows the background, not an image
    assert grid.getpixel((67, 10)) == (24, 24, 28)


def test_grid_is_scaled_to_max_side_and_keeps_aspect() -> None:
    wide = solid_png((10, 200, 10), (400, 200))
    grid = compose_grid([wide, wide], max_side=400, gap=0)
    assert max(grid.size) == 400
    assert grid.size == (400, 100)
    assert grid.getpixel((100, 50)) == (10, 200, 10)


def test_transparent_input_is_flattened() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(buf, "PNG")
    grid = compose_grid([buf.getvalue()])
    assert grid.mode == "RGB"
    assert grid.getpixel((16, 16)) == (255, 255, 255)


def test_unreadable_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        compose_grid([b"definitely not an image"])


def test_fit_bytes_keeps_original_when_it_fits() -> None:
    data = solid_png((1, 2, 3), (128, 128))
    out = fit_bytes(data, 10 * 1024 * 1024)
    assert out.data == data
    assert (out.mime, out.width, out.height, out.reencoded, out.scaled) == ("image/png", 128, 128, False, False)
    assert out.filename("u2") == "u2.png"


def test_fit_bytes_reencodes_lossy_before_downscaling() -> None:
    data = noisy_png((256, 256))
    limit = len(data) // 2
    out = fit_bytes(data, limit)
    assert len(out.data) <= limit
    assert out.reencoded and not out.scaled
    assert decode(out.data).size == (256, 256)
    assert out.mime in ("image/jpeg", "image/webp")


def test_tiny_limit_downscales_and_still_delivers() -> None:
    data = noisy_png((512, 512))
    limit = 6_000
    out = fit_bytes(data, limit)
    assert len(out.data) <= limit
    assert out.scaled
    img = decode(out.data)
    assert img.size == (out.width, out.height)
    assert max(img.size) < 512
    assert img.size[0] == img.size[1]  # aspect ratio kept


def test_impossible_limit_raises() -> None:
    with pytest.raises(ImageTooLarge):
        encode_to_fit(Image.new("RGB", (100, 100)), 10)


def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_grid, "MAX_INPUT_PIXELS", 100)
    with pytest.raises(ImageTooLarge):
        fit_bytes(solid_png((0, 0, 0), (20, 20)), 10_000)


async def test_make_grid_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = image_grid.compose_grid

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(image_grid, "compose_grid", spy)
    images = [noisy_png((128, 128), seed=i) for i in range(4)]
    out = await image_grid.make_grid(images, 20_000)
    assert seen == [False]
    assert isinstance(out, EncodedImage) and len(out.data) <= 20_000
    assert decode(out.data).size == (out.width, out.height)


async def test_fit_image_async() -> None:
    data = solid_png((9, 9, 9))
    out = await asyncio.wait_for(image_grid.fit_image(data, 1_000_000), 10)
    assert out.data == data
