"""The /usage chart: daily use per feature as grouped bars, with the daily budgets as dashed lines.

Made to be checked by a machine as well as read by a person: the plot area is fixed
(``PLOT``), each feature's bars are one exact colour used nowhere else inside the plot area
(gridlines and budget lines are drawn first, in other colours, so bars cover them), and the
y-axis maximum is written into the PNG's ``y_max`` text chunk. A bar for value v is
``round(v / y_max * PLOT_HEIGHT)`` pixels tall, standing on ``PLOT.bottom``.
Rendering is CPU work: call ``render_usage_chart_async`` from the event loop (runs in a thread).
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

__all__ = [
    "SERIES",
    "PLOT",
    "PLOT_HEIGHT",
    "WIDTH",
    "HEIGHT",
    "render_usage_chart",
    "render_usage_chart_async",
    "bar_height",
    "nice_ceiling",
]

WIDTH, HEIGHT = 900, 480


@dataclass(frozen=True, slots=True)
class Box:
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive: bars stand on row bottom - 1


PLOT = Box(left=70, top=60, right=880, bottom=420)
PLOT_HEIGHT = PLOT.bottom - PLOT.top
PLOT_WIDTH = PLOT.right - PLOT.left

#: (kind, label, bar colour, budget-line colour) — bar colours appear nowhere else in the plot area
SERIES: tuple[tuple[str, str, tuple[int, int, int], tuple[int, int, int]], ...] = (
    ("chat_requests", "chat requests", (88, 101, 242), (40, 50, 160)),
    ("vision_requests", "vision requests", (35, 165, 90), (10, 100, 50)),
    ("images", "images", (240, 160, 30), (170, 100, 0)),
    ("video_seconds", "video seconds", (200, 60, 150), (130, 20, 90)),
    ("music_seconds", "music seconds", (0, 160, 200), (0, 95, 125)),
    ("embedding_tokens", "embedding tokens", (120, 90, 40), (70, 50, 20)),
)
BACKGROUND = (255, 255, 255)
GRID = (225, 225, 225)
AXIS = (90, 90, 90)
TEXT = (30, 30, 30)
MUTED = (110, 110, 110)


def nice_ceiling(value: float) -> float:
    """The smallest 1/2/5×10^n not below ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10**exp
        if candidate >= value - 1e-9:
            return float(candidate)
    return float(10 ** (exp + 1))  # pragma: no cover


def bar_height(value: float, y_max: float) -> int:
    return int(round(max(0.0, value) / y_max * PLOT_HEIGHT))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def render_usage_chart(
    days: Sequence[tuple[str, Mapping[str, float]]],
    limits: Mapping[str, float | None],
    title: str,
) -> bytes:
    """PNG bytes: one group of bars per day (``days`` oldest first), one bar per feature in ``SERIES``.

    ``limits`` maps a kind to its daily budget (None or negative: unlimited, no line).
    """
    kinds = [s[0] for s in SERIES]
    peak = max([float(v.get(k, 0)) for _, v in days for k in kinds] + [0.0])
    budget_lines = {k: float(v) for k, v in limits.items() if k in kinds and v is not None and v >= 0}
    y_max = nice_ceiling(max([peak, *budget_lines.values()]))

    img = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(img)
    small, normal = _font(11), _font(14)
    draw.text((PLOT.left, 8), title[:90], fill=TEXT, font=normal)

    # legend above the plot area (a second row when the first is full)
    x, y = PLOT.left, 30
    for kind, label, colour, _line_colour in SERIES:
        text = label + (f" (budget {_fmt(budget_lines[kind])})" if kind in budget_lines else "")
        width = 16 + int(draw.textlength(text, font=small))
        if x > PLOT.left and x + width > WIDTH - 10:
            x, y = PLOT.left, y + 14
        draw.rectangle((x, y + 1, x + 11, y + 12), fill=colour)
        draw.text((x + 16, y), text, fill=TEXT, font=small)
        x += width + 24

    # gridlines and y labels (behind the bars)
    for i in range(5):
        value = y_max * i / 4
        y = PLOT.bottom - 1 - bar_height(value, y_max)
        if i:
            draw.line((PLOT.left, y, PLOT.right - 1, y), fill=GRID)
        label = _fmt(value)
        draw.text((PLOT.left - 8 - draw.textlength(label, font=small), y - 7), label, fill=MUTED, font=small)

    # budget lines, dashed (behind the bars)
    for kind, _label, _colour, line_colour in SERIES:
        if kind not in budget_lines:
            continue
        y = PLOT.bottom - 1 - bar_height(budget_lines[kind], y_max)
        for x0 in range(PLOT.left, PLOT.right, 12):
            draw.line((x0, y, min(x0 + 6, PLOT.right - 1), y), fill=line_colour, width=2)

    # bars
    n = max(1, len(days))
    group = PLOT_WIDTH / n
    bar_w = max(1, int(group * 0.8 / len(SERIES)))
    label_every = max(1, math.ceil(n / 15))
    for d, (day, values) in enumerate(days):
        # whole pixels first, so that neighbouring bars never share a column (rounding each x apart could)
        gx = int(round(PLOT.left + group * d + (group - bar_w * len(SERIES)) / 2))
        for f, (kind, _label, colour, _line) in enumerate(SERIES):
            h = bar_height(float(values.get(kind, 0)), y_max)
            if h > 0:
                x0 = gx + f * bar_w
                draw.rectangle((x0, PLOT.bottom - h, x0 + bar_w - 1, PLOT.bottom - 1), fill=colour)
        if d % label_every == 0:
            text = day[5:] if len(day) >= 10 else day
            cx = PLOT.left + group * (d + 0.5)
            draw.text((cx - draw.textlength(text, font=small) / 2, PLOT.bottom + 8), text, fill=MUTED, font=small)

    # axes outside the plot area
    draw.line((PLOT.left - 1, PLOT.top, PLOT.left - 1, PLOT.bottom), fill=AXIS)
    draw.line((PLOT.left - 1, PLOT.bottom, PLOT.right, PLOT.bottom), fill=AXIS)
    draw.text((PLOT.left, HEIGHT - 26), "UTC days; dashed lines: daily budgets", fill=MUTED, font=small)

    info = PngInfo()
    info.add_text("y_max", repr(y_max))
    info.add_text("days", ",".join(day for day, _ in days))
    info.add_text("series", ",".join(kinds))
    out = io.BytesIO()
    img.save(out, format="PNG", pnginfo=info, optimize=False)
    return out.getvalue()


async def render_usage_chart_async(
    days: Sequence[tuple[str, Mapping[str, float]]], limits: Mapping[str, float | None], title: str
) -> bytes:
    """``render_usage_chart`` in a worker thread (Pillow never runs on the event loop)."""
    return await asyncio.to_thread(render_usage_chart, list(days), dict(limits), title)
