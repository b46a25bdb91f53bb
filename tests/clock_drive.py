"""Moving a ``FakeClock`` along for pacers that sleep on it, and checking a token bucket's bound."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tests.fake_clock import FakeClock


async def drive(
    clock: FakeClock, done: Callable[[], bool], sleepers: Callable[[], int], what: str, max_steps: int = 1000
) -> int:
    """Until ``done()``: wait until the ``sleepers()`` expected are all asleep on ``clock``, then move it to
    the first deadline (every wait is the code's own: nothing sleeps for real). Returns the steps taken;
    more than ``max_steps`` fails (sleepers that wake without ever getting what they wait for)."""
    steps = 0
    while not done():
        await clock.changes.wait_until(lambda: done() or len(clock.deadlines) >= sleepers() > 0, what=what)
        if not done():
            steps += 1
            assert steps <= max_steps, f"{what}: still not done after {max_steps} wake-ups (at {clock.now()})"
            clock.advance_to(clock.deadlines[0])
    return steps


def worst_window(starts: Sequence[float], rate: float, burst: float) -> float:
    """The largest excess over ``burst + rate × (b - a)`` of the starts in any window [a, b] (≤ 0: within)."""
    ordered = sorted(starts)
    worst = float("-inf")
    for i, first in enumerate(ordered):
        for j in range(i, len(ordered)):
            worst = max(worst, (j - i + 1) - (burst + rate * (ordered[j] - first)))
    return worst
