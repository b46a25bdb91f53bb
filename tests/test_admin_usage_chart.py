"""The /usage chart: a real PNG whose bar heights, measured from the pixels, match the ledger (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.app.settings import Settings
from bot.budgets.chart import nice_ceiling, render_usage_chart, render_usage_chart_async
from bot.budgets.rules import Feature, Requester
from bot.budgets.service import BudgetService
from bot.storage.store import Store
from tests.chart_probe import expected_height, measure_bars

GUILD = 77


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 10, 11, 26, 180, 501)] == [1, 1, 5, 10, 10, 20, 50, 200, 1000]


async def test_chart_bars_match_ledger(store: Store) -> None:
    clock = Clock()
    q = BudgetService(store, Settings(quotas={"guild_images": 30}), now=clock)
    plan = {  # days ago -> (chat requests, vision requests, images)
        4: (3, 0, 4), 3: (0, 0, 0), 2: (12, 2, 0), 1: (5, 5, 9), 0: (1, 0, 22),
    }
    today = clock.t
    for ago, (chats, visions, images) in plan.items():
        clock.t = today - timedelta(days=ago)
        for i in range(chats):
            await q.settle(await q.reserve(Requester(GUILD, 1, i % 3), Feature.CHAT, tokens=50), usage_tokens=20)
        for i in range(visions):
            await q.settle(await q.reserve(Requester(GUILD, 1, 5), Feature.VISION, tokens=50), usage_tokens=30)
        if images:
            await q.settle(await q.reserve(Requester(GUILD, 1, 6), Feature.IMAGE, images=images), usage_tokens=0, images=images)
        # a failed call is in the ledger but charges nothing: it must not show as a bar
        await q.release(await q.reserve(Requester(GUILD, 1, 9), Feature.IMAGE, images=1), outcome="error")
    clock.t = today

    series = await q.daily_usage(GUILD, 5)
    limits = await q.guild_limits(GUILD)
    png = await render_usage_chart_async(series, {k: v[0] for k, v in limits.guild.items()}, "test")
    days, y_max, bars = measure_bars(png)
    assert days == [(today - timedelta(days=4 - i)).date().isoformat() for i in range(5)]
    assert y_max == 50  # the image budget (30) is above the highest bar (22)

    # expected values straight from the ledger
    rows = await store.fetchall(
        "SELECT day, SUM(CASE WHEN feature = 'chat' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN feature = 'vision' THEN 1 ELSE 0 END), SUM(images) FROM usage_ledger"
        " WHERE guild_id = ? AND charged = 1 GROUP BY day", (GUILD,))
    ledger = {r[0]: (r[1], r[2], r[3]) for r in rows}
    for index, day in enumerate(days):
        chats, visions, images = ledger.get(day, (0, 0, 0))
        for kind, value in (("chat_requests", chats), ("vision_requests", visions), ("images", images)):
            height = expected_height(value, y_max)
            assert bars[kind].get(index, 0) == height, (day, kind, value)
    assert bars["images"][4] == round(22 / 50 * 360)  # 158 px: the tallest bar
    assert 1 not in bars["chat_requests"] and 1 not in bars["images"]  # the idle day has no bar


def test_empty_and_many_days_render() -> None:
    png = render_usage_chart([(f"2025-01-{d:02d}", {}) for d in range(1, 31)], {}, "empty")
    days, y_max, bars = measure_bars(png)
    assert len(days) == 30 and y_max == 1 and all(not b for b in bars.values())
    png = render_usage_chart([(f"2025-01-{d:02d}", {"chat_requests": d}) for d in range(1, 31)], {"chat_requests": -1}, "x")
    days, y_max, bars = measure_bars(png)
    assert y_max == 50 and [bars["chat_requests"][i] for i in (0, 29)] == [round(360 / 50), round(30 / 50 * 360)]
