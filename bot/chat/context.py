"""Context windows: how many tokens (prompt + answer) a model takes, and fitting a turn inside one.

A model's window is, first found: the number a context-length error of that model stated (learned while
running) → ``[chat] context_windows`` → the gateway's model list (``context_window``, ``context_length`` …,
read once at start-up in the background). A model whose window is unknown is sent what the other limits
allow (``history_messages``, ``history_tokens``, ``max_tokens``), as before.

The bot counts tokens roughly (≈ 4 characters a token, ``estimate_tokens``), so only ``usable(window)`` is
filled: the window less a margin. ``fit_to_window`` leaves out the oldest history first, down to the latest
exchange, then lowers ``max_tokens``; ``shorten`` halves the history of a request the model refused (or
answered with nothing at all) for the one retry ``AnswerRunner`` makes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.chat.conversation import HistoryTurn, estimate_tokens, group_exchanges
from gateway_client import ChatMessage, ModelInfo

log = logging.getLogger(__name__)

__all__ = ["ContextFit", "ContextWindows", "fit_to_window", "merge_user_runs", "shorten", "usable"]

#: share of the window kept free for the token estimate's error, and its floor in tokens
MARGIN_SHARE = 0.1
MIN_MARGIN = 32
#: an answer is never squeezed below this (or ``max_tokens`` if smaller) to keep older history
MIN_ANSWER_TOKENS = 256


def usable(window: int) -> int:
    """The tokens of ``window`` the bot fills, by its own estimate."""
    return window - max(MIN_MARGIN, int(window * MARGIN_SHARE))


def shortened_note(window: int | None) -> str:
    """The footer's word that history was left out for the model's window."""
    if window is None:
        return "history shortened to fit the model's context"
    return f"history shortened to fit the model's {window:,}-token context"


class ContextWindows:
    """The context windows the bot knows, per model id (one per chat service)."""

    def __init__(self, configured: Mapping[str, int], *, default_model: Callable[[], str | None]) -> None:
        self.configured = dict(configured)
        #: stated by the model's own context-length errors: the truth, whatever the list says
        self.learned: dict[str, int] = {}
        self.listed: dict[str, int] = {}
        self._default_model = default_model
        self._loading: asyncio.Task[None] | None = None

    def window(self, model: str | None) -> int | None:
        """The window of ``model`` (None: the gateway's configured chat model), or None if unknown."""
        name = model or self._default_model()
        if not name:
            return None
        for known in (self.learned, self.configured, self.listed):
            if name in known:
                return known[name]
        return None

    def learn(self, model: str | None, window: int | None) -> None:
        """Remember the window a context-length error of ``model`` stated."""
        name = model or self._default_model()
        if name and window and window > 0 and self.learned.get(name) != window:
            log.info("model %s has a %d-token context window (from its error)", name, window)
            self.learned[name] = window

    def note_listing(self, models: Iterable[ModelInfo]) -> None:
        self.listed.update({m.id: m.context_window for m in models if m.context_window})

    def start(self, list_models: Callable[[], Awaitable[Iterable[ModelInfo]]]) -> None:
        """Read the gateway's model list in the background (a gateway without one is not an error)."""
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(list_models), name="gatecord-context-windows")

    async def _load(self, list_models: Callable[[], Awaitable[Iterable[ModelInfo]]]) -> None:
        try:
            self.note_listing(await list_models())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("context windows not listed by the gateway (%s); configured ones are used",
                     type(exc).__name__)

    async def loaded(self) -> None:
        """Wait until the start-up read of the model list is over (done or failed)."""
        if self._loading is not None:
            await asyncio.shield(self._loading)

    async def close(self) -> None:
        task, self._loading = self._loading, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class ContextFit:
    """What of a turn is sent: the history kept, the answer's ``max_tokens``, and how many history turns
    were left out for the window (``dropped``)."""

    history: list[HistoryTurn]
    max_tokens: int
    window: int | None = None
    dropped: int = 0

    @property
    def note(self) -> str:
        return shortened_note(self.window) if self.dropped else ""


def fit_to_window(
    history: Sequence[HistoryTurn], *, fixed_tokens: int, max_tokens: int, window: int | None
) -> ContextFit:
    """Fit ``history`` (whole exchanges, oldest left out first, down to the latest one) and then the answer's
    ``max_tokens`` inside ``usable(window)``, with ``fixed_tokens`` (system prompt and the new prompt)
    always sent. The latest exchange goes too when it would leave the answer less than
    ``MIN_ANSWER_TOKENS``. An unknown window changes nothing."""
    if window is None:
        return ContextFit(list(history), max_tokens)
    room = usable(window) - fixed_tokens
    kept = group_exchanges(history)
    cost = sum(t.tokens for exchange in kept for t in exchange)
    while len(kept) > 1 and cost + max_tokens > room:
        cost -= sum(t.tokens for t in kept.pop(0))
    answer = min(max_tokens, room - cost)
    if kept and answer < min(max_tokens, MIN_ANSWER_TOKENS):
        kept, answer = [], min(max_tokens, room)
    out = [t for exchange in kept for t in exchange]
    return ContextFit(out, max(1, answer), window, dropped=len(history) - len(out))


def shorten(
    messages: Sequence[ChatMessage], *, max_tokens: int, window: int | None
) -> tuple[list[ChatMessage], int, str] | None:
    """For the one retry after the model refused a request as too long (or answered nothing): the older
    half of the history left out (whole exchanges; system messages and the last message stay), and
    ``max_tokens`` fitted to ``window`` when it is known. Returns (messages, max_tokens, footer note), or
    None when nothing can be made shorter, or the rest still leaves no room for an answer."""
    head = 0
    while head < len(messages) - 1 and messages[head].role == "system":
        head += 1
    history = list(messages[head:-1])
    exchanges = group_exchanges(history)
    kept = [m for exchange in exchanges[(len(exchanges) + 1) // 2:] for m in exchange]
    out = [*messages[:head], *kept, messages[-1]]
    answer = max_tokens
    if window is not None:
        answer = min(max_tokens, usable(window) - sum(estimate_tokens(m.content) for m in out))
        if answer < min(max_tokens, MIN_ANSWER_TOKENS):
            return None  # the prompt alone leaves no room for an answer: asking again would not help
    if len(kept) == len(history) and answer >= max_tokens:
        return None
    if len(kept) < len(history):
        note = shortened_note(window)
    else:
        note = f"answer capped at {answer:,} tokens by the model's {window or 0:,}-token context"
    return out, answer, note


def merge_user_runs(messages: Iterable[ChatMessage]) -> list[ChatMessage]:
    """Two text prompts in a row (the first one got an empty answer) become one message: some chat
    templates (Gemma's) refuse roles that do not alternate."""
    out: list[ChatMessage] = []
    for m in messages:
        last = out[-1] if out else None
        if (last is not None and last.role == m.role == "user" and isinstance(last.content, str)
                and isinstance(m.content, str)):
            out[-1] = ChatMessage.user(f"{last.content}\n\n{m.content}")
        else:
            out.append(m)
    return out
