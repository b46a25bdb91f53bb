"""The outcomes of auto-answers (``knowledge_answers``): one row per answer, Solved / Not helpful when
pressed, and the counts ``/usage`` shows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.storage.store import Store
from bot.storage.tx import SyncTx, for_update

__all__ = ["AnswerOutcomes", "AnswerRecord", "AnswerStats", "Outcome", "OUTCOMES"]

Outcome = Literal["solved", "not_helpful"]
OUTCOMES: tuple[Outcome, ...] = ("solved", "not_helpful")
_COLUMNS = "id, guild_id, channel_id, thread_id, message_id, user_id, outcome, created_at, decided_at"


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    id: int
    guild_id: int
    channel_id: int
    thread_id: int
    message_id: int | None
    user_id: int
    outcome: Outcome | None
    created_at: float
    decided_at: float | None

    @classmethod
    def of(cls, row: Any) -> AnswerRecord:
        return cls(int(row["id"]), int(row["guild_id"]), int(row["channel_id"]), int(row["thread_id"]),
                   None if row["message_id"] is None else int(row["message_id"]), int(row["user_id"]),
                   row["outcome"], float(row["created_at"]),
                   None if row["decided_at"] is None else float(row["decided_at"]))


@dataclass(frozen=True, slots=True)
class AnswerStats:
    """Auto-answers given in a period, and how many were marked solved / not helpful."""

    answers: int = 0
    solved: int = 0
    not_helpful: int = 0

    @property
    def solved_rate(self) -> float | None:
        """Solved answers out of every answer given (None without answers)."""
        return self.solved / self.answers if self.answers else None


class AnswerOutcomes:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def record(self, *, guild_id: int, channel_id: int, thread_id: int, message_id: int | None,
                     user_id: int) -> int:
        """A new answer, undecided; returns its id (the buttons carry it)."""
        value = await self.store.fetchval(
            "INSERT INTO knowledge_answers(guild_id, channel_id, thread_id, message_id, user_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (guild_id, channel_id, thread_id, message_id, user_id, float(self.clock())),
        )
        return int(value)

    async def get(self, answer_id: int) -> AnswerRecord | None:
        row = await self.store.fetchone(f"SELECT {_COLUMNS} FROM knowledge_answers WHERE id = ?", (answer_id,))
        return AnswerRecord.of(row) if row is not None else None

    async def decide(self, answer_id: int, outcome: Outcome) -> tuple[AnswerRecord, Outcome | None] | None:
        """Set the answer's outcome (a later press replaces it); returns the row as it is now and the
        outcome it replaced, or None when there is no such answer."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        now = float(self.clock())

        def body(tx: SyncTx) -> tuple[AnswerRecord, Outcome | None] | None:
            row = tx.fetchone(f"SELECT {_COLUMNS} FROM knowledge_answers WHERE id = ?" + for_update(tx.dialect),
                              (answer_id,))
            if row is None:
                return None
            before = AnswerRecord.of(row)
            tx.execute("UPDATE knowledge_answers SET outcome = ?, decided_at = ? WHERE id = ?",
                       (outcome, now, answer_id))
            after = AnswerRecord(before.id, before.guild_id, before.channel_id, before.thread_id, before.message_id,
                                 before.user_id, outcome, before.created_at, now)
            return after, before.outcome

        return await self.store.run(body)

    async def stats(self, guild_id: int, *, since: float, user_id: int | None = None) -> AnswerStats:
        """The guild's answers given since ``since`` (unix seconds); only ``user_id``'s posts when given."""
        sql = ("SELECT COUNT(*) AS answers,"
               " COALESCE(SUM(CASE WHEN outcome = 'solved' THEN 1 ELSE 0 END), 0) AS solved,"
               " COALESCE(SUM(CASE WHEN outcome = 'not_helpful' THEN 1 ELSE 0 END), 0) AS not_helpful"
               " FROM knowledge_answers WHERE guild_id = ? AND created_at >= ?")
        params: tuple[Any, ...] = (guild_id, float(since))
        if user_id is not None:
            sql += " AND user_id = ?"
            params += (user_id,)
        row = await self.store.fetchone(sql, params)
        if row is None:
            return AnswerStats()
        return AnswerStats(int(row["answers"]), int(row["solved"]), int(row["not_helpful"]))
