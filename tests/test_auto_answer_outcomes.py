"""knowledge_answers on both backends: an answer recorded undecided, Solved / Not helpful (a later press
replaces the outcome), and the counts /usage shows, per guild and per poster, within the period."""

from __future__ import annotations

import pytest

from bot.auto_answer.outcomes import AnswerOutcomes, AnswerStats
from bot.storage.store import Store

GUILD, OTHER = 100, 200


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_record_decide_and_change(store: Store) -> None:
    clock = Clock()
    outcomes = AnswerOutcomes(store, clock=clock)
    answer_id = await outcomes.record(guild_id=GUILD, channel_id=1, thread_id=2, message_id=3, user_id=4)
    row = await outcomes.get(answer_id)
    assert row is not None and (row.outcome, row.decided_at, row.thread_id, row.user_id) == (None, None, 2, 4)

    clock.now = 1_050.0
    decided = await outcomes.decide(answer_id, "not_helpful")
    assert decided is not None
    after, before = decided
    assert (after.outcome, after.decided_at, before) == ("not_helpful", 1_050.0, None)

    clock.now = 1_060.0
    decided = await outcomes.decide(answer_id, "solved")
    assert decided is not None and decided[0].outcome == "solved" and decided[1] == "not_helpful"
    row = await outcomes.get(answer_id)
    assert row is not None and (row.outcome, row.decided_at) == ("solved", 1_060.0)

    assert await outcomes.decide(answer_id + 1000, "solved") is None
    with pytest.raises(ValueError):
        await outcomes.decide(answer_id, "great")  # type: ignore[arg-type]


async def test_stats_count_the_period_and_the_guild(store: Store) -> None:
    clock = Clock()
    outcomes = AnswerOutcomes(store, clock=clock)
    old = await outcomes.record(guild_id=GUILD, channel_id=1, thread_id=10, message_id=None, user_id=7)
    await outcomes.decide(old, "solved")
    clock.now = 2_000.0
    ids = [await outcomes.record(guild_id=GUILD, channel_id=1, thread_id=11 + i, message_id=None, user_id=7 + i % 2)
           for i in range(4)]
    await outcomes.decide(ids[0], "solved")
    await outcomes.decide(ids[1], "solved")
    await outcomes.decide(ids[2], "not_helpful")
    await outcomes.record(guild_id=OTHER, channel_id=5, thread_id=50, message_id=None, user_id=7)

    stats = await outcomes.stats(GUILD, since=1_500.0)
    assert stats == AnswerStats(answers=4, solved=2, not_helpful=1)
    assert stats.solved_rate == 0.5
    assert await outcomes.stats(GUILD, since=0.0) == AnswerStats(answers=5, solved=3, not_helpful=1)
    assert await outcomes.stats(GUILD, since=1_500.0, user_id=8) == AnswerStats(answers=2, solved=1, not_helpful=0)
    empty = await outcomes.stats(OTHER + 1, since=0.0)
    assert empty == AnswerStats() and empty.solved_rate is None
