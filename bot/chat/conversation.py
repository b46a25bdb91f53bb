"""Conversation history: turns kept in the database, walked from reply chains or threads, and fitted to budgets.

A *turn* is one user message or one answer. Each turn points at the turn it follows (``parent_id``),
so a reply to an old answer continues from that answer, and a conversation can branch. Every turn
also carries a ``conversation_id``: ``"thread:<id>"`` for a thread the bot started (shared by
everyone in it, on purpose), ``"listen:<channel>:<member>"`` for a member's conversation in a channel
where the bot answers every message, or ``"c:<random>"`` for a member's own conversation. A member who
replies to someone else's answer starts their own conversation seeded with only that answer, so
two members never see each other's history. Failed turns are never recorded; an answer cut short
is recorded as incomplete and only used when someone replies to it directly; an empty answer is
recorded without text, so its prompt stays in the conversation (and nothing the bot showed instead).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from bot.storage.store import Store
from bot.storage.tx import SyncTx

__all__ = [
    "HistoryTurn",
    "ConversationStore",
    "TurnRecord",
    "estimate_tokens",
    "fit_history",
    "follows_latest",
    "group_exchanges",
    "listen_conversation_id",
    "new_conversation_id",
    "render_system_prompt",
    "thread_conversation_id",
]

#: rough cost of one image block in a prompt, for budgeting only
IMAGE_TOKENS = 800
MESSAGE_OVERHEAD_TOKENS = 4


def new_conversation_id() -> str:
    return "c:" + uuid.uuid4().hex[:16]


def thread_conversation_id(thread_id: int) -> str:
    return f"thread:{thread_id}"


def listen_conversation_id(channel_id: int, user_id: int) -> str:
    """One member's conversation in a ``listen`` channel: their messages there, in order."""
    return f"listen:{channel_id}:{user_id}"


def follows_latest(conversation_id: str) -> bool:
    """A conversation whose new message follows its latest turn (a bot thread, a member's ``listen``
    conversation), rather than the reply chain."""
    return conversation_id.startswith(("thread:", "listen:"))


def estimate_tokens(content: str | Sequence[Any] | None) -> int:
    """A cheap token estimate (≈ 4 characters a token, images a flat cost) for budgeting history."""
    if content is None:
        return MESSAGE_OVERHEAD_TOKENS
    if isinstance(content, str):
        return MESSAGE_OVERHEAD_TOKENS + (len(content) + 3) // 4
    total = MESSAGE_OVERHEAD_TOKENS
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            total += (len(str(block.get("text", ""))) + 3) // 4
        else:
            total += IMAGE_TOKENS
    return total


_PLACEHOLDER = re.compile(r"\{(date|time|server|channel|user)\}")


def render_system_prompt(
    template: str,
    *,
    now: datetime,
    server: str | None = None,
    channel: str | None = None,
    user: str | None = None,
) -> str:
    """Fill ``{date}``, ``{time}``, ``{server}``, ``{channel}``, ``{user}``; other braces stay as they are."""
    values = {
        "date": now.strftime("%Y-%m-%d (%A)"),
        "time": now.strftime("%H:%M %Z").strip(),
        "server": server or "direct messages",
        "channel": channel or "direct messages",
        "user": user or "someone",
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True, slots=True)
class HistoryTurn:
    role: str  # "user" | "assistant"
    content: str
    tokens: int

    @classmethod
    def of(cls, role: str, content: str) -> HistoryTurn:
        return cls(role, content, estimate_tokens(content))


class _HasRole(Protocol):
    @property
    def role(self) -> str: ...


R = TypeVar("R", bound=_HasRole)


def group_exchanges(turns: Iterable[R]) -> list[list[R]]:
    """Turns (or chat messages) as exchanges: a user message and the answers after it (turns before the
    first user message form one exchange of their own)."""
    exchanges: list[list[R]] = []
    for turn in turns:
        if turn.role == "user" or not exchanges:
            exchanges.append([turn])
        else:
            exchanges[-1].append(turn)
    return exchanges


def fit_history(turns: Sequence[HistoryTurn], *, max_messages: int, max_tokens: int) -> list[HistoryTurn]:
    """The newest part of ``turns`` within ``max_messages`` and ``max_tokens``, keeping whole turns.

    Turns are grouped into exchanges (a user message and the answers after it); an exchange is kept
    whole or dropped whole, newest first, and the result never starts with an answer.
    """
    exchanges = group_exchanges(turns)
    kept: list[list[HistoryTurn]] = []
    used_tokens = 0
    used_messages = 0
    for exchange in reversed(exchanges):
        cost = sum(t.tokens for t in exchange)
        if used_messages + len(exchange) > max_messages or used_tokens + cost > max_tokens:
            break
        kept.append(exchange)
        used_tokens += cost
        used_messages += len(exchange)
    out = [turn for exchange in reversed(kept) for turn in exchange]
    while out and out[0].role != "user" and len(out) > 1 and out[1].role == "assistant":
        out.pop(0)  # two answers in a row at the start: keep only the one that was replied to
    return out


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: int
    conversation_id: str
    parent_id: int | None
    guild_id: int | None
    channel_id: int | None
    user_id: int
    role: str
    content: str
    model: str | None
    complete: bool

    @classmethod
    def from_row(cls, row: Any) -> TurnRecord:
        return cls(
            id=row["id"], conversation_id=row["conversation_id"], parent_id=row["parent_id"],
            guild_id=row["guild_id"], channel_id=row["channel_id"], user_id=row["user_id"], role=row["role"],
            content=row["content"], model=row["model"], complete=bool(row["complete"]),
        )

    def as_history(self) -> HistoryTurn:
        return HistoryTurn.of(self.role, self.content)


_COLUMNS = "id, conversation_id, parent_id, guild_id, channel_id, user_id, role, content, model, complete"


class ConversationStore:
    """Turns, the Discord messages that show them, and the threads the bot started (migration 0005)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record_exchange(
        self,
        *,
        conversation_id: str,
        parent_id: int | None,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        prompt: str,
        answer: str,
        model: str | None,
        complete: bool,
        prompt_message_ids: Iterable[int] = (),
        answer_message_ids: Iterable[int] = (),
    ) -> tuple[int, int]:
        """Store a prompt and its answer (one transaction); returns ``(user_turn_id, answer_turn_id)``."""
        now = time.time()
        prompt_ids, answer_ids = list(prompt_message_ids), list(answer_message_ids)

        def body(tx: SyncTx) -> tuple[int, int]:
            user_turn = int(tx.fetchval(
                "INSERT INTO chat_turns(conversation_id, parent_id, guild_id, channel_id, user_id, role, content,"
                " model, complete, created_at) VALUES (?, ?, ?, ?, ?, 'user', ?, NULL, 1, ?) RETURNING id",
                (conversation_id, parent_id, guild_id, channel_id, user_id, prompt, now),
            ))
            answer_turn = int(tx.fetchval(
                "INSERT INTO chat_turns(conversation_id, parent_id, guild_id, channel_id, user_id, role, content,"
                " model, complete, created_at) VALUES (?, ?, ?, ?, ?, 'assistant', ?, ?, ?, ?) RETURNING id",
                (conversation_id, user_turn, guild_id, channel_id, user_id, answer, model, int(complete), now),
            ))
            _link(tx, [(mid, user_turn) for mid in prompt_ids] + [(mid, answer_turn) for mid in answer_ids])
            return user_turn, answer_turn

        return await self.store.run(body)

    async def link_messages(self, turn_id: int, message_ids: Iterable[int]) -> None:
        rows = [(mid, turn_id) for mid in message_ids]
        if rows:
            await self.store.run(lambda tx: _link(tx, rows))

    async def turn_for_message(self, message_id: int) -> TurnRecord | None:
        row = await self.store.fetchone(
            f"SELECT {_COLUMNS} FROM chat_turns WHERE id = (SELECT turn_id FROM chat_messages WHERE message_id = ?)",
            (message_id,),
        )
        return TurnRecord.from_row(row) if row else None

    async def get_turn(self, turn_id: int) -> TurnRecord | None:
        row = await self.store.fetchone(f"SELECT {_COLUMNS} FROM chat_turns WHERE id = ?", (turn_id,))
        return TurnRecord.from_row(row) if row else None

    async def chain(self, turn_id: int, *, conversation_id: str, limit: int) -> list[TurnRecord]:
        """The turns leading to ``turn_id`` (oldest first), at most ``limit``.

        The walk stays inside ``conversation_id``; a turn from another conversation is included only
        as the answer someone replied to (the seed of a new conversation), and the walk stops there.
        Incomplete answers are skipped (with the prompt before them) unless ``turn_id`` is one.
        """
        rows = await self.store.fetchall(
            f"""WITH RECURSIVE up(n, {_COLUMNS}) AS (
                    SELECT 0, {_COLUMNS} FROM chat_turns WHERE id = ?
                    UNION ALL
                    SELECT up.n + 1, t.id, t.conversation_id, t.parent_id, t.guild_id, t.channel_id, t.user_id,
                           t.role, t.content, t.model, t.complete
                    FROM chat_turns t JOIN up ON t.id = up.parent_id
                    WHERE up.n < ? AND up.conversation_id = ?
                )
                SELECT {_COLUMNS} FROM up ORDER BY n""",
            (turn_id, limit * 2 + 2, conversation_id),
        )
        out: list[TurnRecord] = []
        skip_prompt = False
        for index, row in enumerate(rows):
            turn = TurnRecord.from_row(row)
            if turn.conversation_id != conversation_id:
                if turn.role == "assistant" and len(out) < limit:
                    out.append(turn)  # the answer that was replied to (seed of this conversation)
                break
            if skip_prompt and turn.role == "user":
                skip_prompt = False
                continue
            if turn.role == "assistant" and not turn.complete and index > 0:
                skip_prompt = True
                continue
            out.append(turn)
            if len(out) >= limit:
                break
        out.reverse()
        return out

    async def thread_history(self, conversation_id: str, *, limit: int) -> list[TurnRecord]:
        """The last ``limit`` complete turns of a thread conversation, oldest first."""
        rows = await self.store.fetchall(
            f"SELECT {_COLUMNS} FROM chat_turns WHERE conversation_id = ? AND complete = 1"
            " AND id NOT IN (SELECT parent_id FROM chat_turns WHERE conversation_id = ? AND complete = 0"
            " AND parent_id IS NOT NULL) ORDER BY id DESC LIMIT ?",
            (conversation_id, conversation_id, limit),
        )
        return [TurnRecord.from_row(r) for r in reversed(rows)]

    async def last_turn_id(self, conversation_id: str) -> int | None:
        return await self.store.fetchval(
            "SELECT id FROM chat_turns WHERE conversation_id = ? ORDER BY id DESC LIMIT 1", (conversation_id,)
        )

    # -- threads ----------------------------------------------------------------------------------

    async def register_thread(
        self, thread_id: int, *, guild_id: int | None, parent_channel_id: int, owner_id: int
    ) -> None:
        await self.store.execute(
            "INSERT INTO chat_threads(thread_id, guild_id, parent_channel_id, owner_id, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (thread_id) DO NOTHING",
            (thread_id, guild_id, parent_channel_id, owner_id, time.time()),
        )

    async def is_bot_thread(self, thread_id: int) -> bool:
        return await self.store.fetchval("SELECT 1 FROM chat_threads WHERE thread_id = ?", (thread_id,)) == 1

    async def thread_owner(self, thread_id: int) -> int | None:
        return await self.store.fetchval("SELECT owner_id FROM chat_threads WHERE thread_id = ?", (thread_id,))


def _link(tx: SyncTx, rows: list[tuple[int, int]]) -> None:
    """Point Discord messages at the turn they show (a message edited into another turn moves)."""
    if rows:
        tx.executemany(
            "INSERT INTO chat_messages(message_id, turn_id) VALUES (?, ?)"
            " ON CONFLICT (message_id) DO UPDATE SET turn_id = excluded.turn_id",
            rows,
        )
