"""Reads the bars back out of a /usage PNG (shared by the chart unit test and the end-to-end test)."""

from __future__ import annotations

import io

from PIL import Image

from bot.budgets.chart import PLOT, PLOT_HEIGHT, PLOT_WIDTH, SERIES


def measure_bars(png: bytes) -> tuple[list[str], float, dict[str, dict[int, int]]]:
    """(days, y_max, {kind: {day index: bar height in px}}) measured from the pixels.

    A bar is a run of columns in the plot area holding the feature's colour; its height is the
    number of that colour's pixels in the column, and the bar must stand on the plot's bottom row.
    """
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    img.load()
    days = img.text["days"].split(",")
    y_max = float(img.text["y_max"])
    rgb = img.convert("RGB")
    px = rgb.load()
    group = PLOT_WIDTH / len(days)
    found: dict[str, dict[int, int]] = {}
    for kind, _label, colour, _line in SERIES:
        bars: dict[int, int] = {}
        run: list[tuple[int, int]] = []

        def close() -> None:
            if run:
                centre = (run[0][0] + run[-1][0]) / 2
                index = int((centre - PLOT.left) // group)
                heights = {h for _, h in run}
                assert len(heights) == 1, f"{kind} bar on day {index} is not a rectangle: {heights}"
                assert index not in bars, f"two {kind} bars on day {index}"
                bars[index] = heights.pop()
                run.clear()

        for x in range(PLOT.left, PLOT.right):
            count = sum(1 for y in range(PLOT.top, PLOT.bottom) if px[x, y] == colour)
            if count:
                assert px[x, PLOT.bottom - 1] == colour, f"{kind} bar at x={x} does not stand on the axis"
                run.append((x, count))
            else:
                close()
        close()
        found[kind] = bars
    return days, y_max, found


def expected_height(value: float, y_max: float) -> int:
    return int(round(value / y_max * PLOT_HEIGHT))
