"""The streaming renderer: a growing answer shown in Discord messages.

``StreamRenderer`` turns a growing answer into a set of Discord messages through a small
``MessageTarget`` (an interaction reply, a channel reply, or a fake in tests). It shows the first
text as soon as it arrives, edits each message at most once per ``edit_interval`` while the answer
is still being written (with a visible "still writing" marker), and sends the final edit as soon as
the answer is complete. Rate-limit buckets are left to discord.py, which delays a request only when
the bucket it goes to has no room left.

Under load it degrades gracefully through an optional ``Pressure`` (the process's Discord pacer,
bot/app/discord_pacing.py): while it is ``congested()`` intermediate edits are skipped (the next
text tries again); the ones sent go in ``deferrable()`` (behind first messages and final edits), and
one still waiting for its turn when the answer completes is withdrawn, so the final edit never
queues behind it.

Pacing reads and waits on an injected ``Clock`` (``MonotonicClock`` by default), so tests drive it
with a fake clock instead of sleeping. The text utilities (splitting, footers) are in
``bot.rendering.text``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from bot.rendering import limits as limits
from bot.rendering.text import split_message, truncate

log = logging.getLogger(__name__)

__all__ = [
    "EMPTY_ANSWER_PLACEHOLDER",
    "ANSWER_LIMIT",
    "WRITING_MARKER",
    "INCOMPLETE_MARKER",
    "Clock",
    "FileData",
    "MessageTarget",
    "MonotonicClock",
    "Pressure",
    "RenderStats",
    "StreamRenderer",
]

#: Room kept free in every answer message for the writing marker, a notice and the footer, so that a
#: message's text never has to be re-split when the answer completes.
MESSAGE_RESERVE = 400
ANSWER_LIMIT = limits.MESSAGE_CONTENT - MESSAGE_RESERVE
WRITING_MARKER = "-# ✍️ still writing…"
INCOMPLETE_MARKER = "⚠️ **Incomplete answer.**"
#: what the member sees for an answer without text (bot/chat never sends it to a model)
EMPTY_ANSWER_PLACEHOLDER = "*(The model returned an empty answer.)*"
LONG_ANSWER_NOTE = "-# (long answer: the full text will be attached as a file)"
NOTICE_MAX = 600  # a notice longer than the room left in the last message goes into a message of its own


class Clock(Protocol):
    """The time the renderer paces its edits by."""

    def now(self) -> float:
        """Seconds on a clock that never goes back."""

    async def sleep(self, seconds: float) -> None:
        """Return once ``now()`` has advanced by ``seconds``."""


class MonotonicClock:
    """``time.monotonic`` and ``asyncio.sleep`` (the event loop's clock is monotonic too)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Withdrawable(Protocol):
    """Requests made inside one ``Pressure.deferrable()`` block."""

    withdrawn: bool

    def withdraw(self) -> None:
        """Drop those still waiting for their turn (they raise); sent ones stay sent."""


class Pressure(Protocol):
    """How busy the process's Discord request budget is (``DiscordPacer``)."""

    def congested(self) -> bool:
        """True while a new request would wait too long: skip what can be skipped."""

    def deferrable(self) -> AbstractContextManager[Withdrawable]:
        """Requests made inside wait behind all others and can be withdrawn."""


# --------------------------------------------------------------------------------------------------
# Streaming renderer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileData:
    """A file to attach: name and bytes (the target turns it into a ``discord.File``)."""

    filename: str
    data: bytes = field(repr=False)


class MessageTarget(Protocol):
    """Where an answer is shown. Message ``index`` 0 is the first message of the answer."""

    async def put(self, index: int, content: str, *, files: Sequence[FileData] = ()) -> None:
        """Create message ``index`` (it is always the next one) or replace its content."""

    async def remove(self, index: int) -> None:
        """Delete message ``index`` (used when an answer collapses into a file)."""


@dataclass(slots=True)
class _Shown:
    content: str
    done_at: float  # when the last request for this message completed
    final: bool = False


@dataclass(slots=True)
class RenderStats:
    """Timings for benchmarks and logs (seconds on the renderer's clock)."""

    first_delta_at: float | None = None
    first_visible_at: float | None = None
    finished_at: float | None = None
    final_sent_at: float | None = None
    edits: int = 0
    creates: int = 0
    skipped: int = 0  # intermediate edits not sent because Discord's budget was congested
    withdrawn: int = 0  # intermediate edits withdrawn while waiting, superseded by the final edit
    errors: int = 0


class StreamRenderer:
    """Show a streamed answer in Discord messages.

    Call ``feed`` with each visible text delta (synchronous, cheap), then ``finish`` once with the
    footer, notices and files. One background task does every Discord request for this answer, in
    order, so a slow or rate-limited request never holds up reading the stream.
    """

    def __init__(
        self,
        target: MessageTarget,
        *,
        edit_interval: float = limits.MIN_EDIT_INTERVAL,
        chunk_limit: int = ANSWER_LIMIT,
        file_over: int | None = None,
        file_name: str = "answer.txt",
        clock: Clock | None = None,
        pressure: Pressure | None = None,
        header: str = "",
        max_messages: int | None = None,
    ) -> None:
        self.target = target
        #: the most messages the answer may ever create (an interaction in a server the bot is not in gets
        #: few follow-ups): a longer answer is shown as one message with the whole text attached
        self.max_messages = max_messages
        #: a line shown above the answer in its first message (e.g. the transcript it answers); not
        #: part of ``text``, never in the long-answer file
        self.header = header
        self.pressure = pressure
        self.edit_interval = edit_interval
        self.chunk_limit = chunk_limit
        self.file_over = file_over
        self.file_name = file_name
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.stats = RenderStats()
        self._text = ""
        self._shown: list[_Shown] = []
        self._wake = asyncio.Event()
        self._final = asyncio.Event()
        self._final_args: tuple[str, str, str, tuple[FileData, ...]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._deferral: Withdrawable | None = None  # the intermediate edit in flight, if any

    # -- input ----------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self._text

    @property
    def message_count(self) -> int:
        return len(self._shown)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stream-renderer")

    def feed(self, delta: str) -> None:
        """Add visible text. The first text is pushed at once; later text at the edit interval."""
        if not delta:
            return
        if self.stats.first_delta_at is None and delta.strip():
            self.stats.first_delta_at = self.clock.now()
        self._text += delta
        self._wake.set()
        if self._task is None:
            self.start()

    async def finish(
        self,
        *,
        text: str | None = None,
        footer: str = "",
        notice: str = "",
        files: Sequence[FileData] = (),
    ) -> None:
        """Send the final state now: the whole text (``text`` replaces what was fed), no writing
        marker, ``notice`` (e.g. an incomplete-answer warning) and ``footer`` on the last message,
        ``files`` attached to it. Returns when every request is done."""
        if text is not None:
            self._text = text
        self.stats.finished_at = self.clock.now()
        self._final_args = (self._text, footer, notice, tuple(files))
        self._final.set()
        self._wake.set()
        if self._deferral is not None:
            self._deferral.withdraw()  # still queued: the final edit supersedes it
        if self._task is None:
            self.start()
        assert self._task is not None
        await self._task

    async def aclose(self) -> None:
        """Stop without a final edit (the caller failed hard)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    # -- layout ---------------------------------------------------------------------------------

    def _headed(self, text: str) -> str:
        """``text`` under the header line (the header alone when there is no text yet)."""
        if not self.header:
            return text
        return f"{self.header}\n{text}" if text else self.header

    def _messages(self, text: str, tail: Sequence[str]) -> list[str]:
        """``text`` (under the header) split into messages, every code fence closed (also one the text
        leaves open, as an answer cut at the token limit does), with the ``tail`` lines (the writing
        marker, a notice, the footer) under the last one, outside the code, or in a message of their
        own when they do not fit. Both layouts use it, so the streaming and the final messages agree."""
        chunks = split_message(self._headed(text), self.chunk_limit)
        lines = [line for line in tail if line]
        if lines:
            tail_text = "\n".join(lines)
            if chunks and len(chunks[-1]) + 1 + len(tail_text) <= limits.MESSAGE_CONTENT:
                chunks[-1] = chunks[-1] + "\n" + tail_text
            else:
                chunks.append(tail_text)
        return [c[: limits.MESSAGE_CONTENT] for c in chunks]

    def _streaming_layout(self) -> list[str]:
        text = self._text
        if not text.strip():
            return []  # the header shows with the first text
        tail = [WRITING_MARKER]
        if self.file_over is not None and len(text) > self.file_over:
            text = text[: self.file_over]
            tail.insert(0, LONG_ANSWER_NOTE)
        layout = self._messages(text, tail)
        if self.max_messages is not None and len(layout) > self.max_messages:
            # it will be a file: never more messages than allowed meanwhile (each chunk leaves room for the tail)
            chunks = split_message(self._headed(text), self.chunk_limit)[: self.max_messages]
            chunks[-1] = "\n".join([chunks[-1], LONG_ANSWER_NOTE, WRITING_MARKER])
            layout = [c[: limits.MESSAGE_CONTENT] for c in chunks]
        return layout

    def _as_file(self, text: str, tail: list[str]) -> bool:
        """The final answer goes into a file: longer than ``file_over``, or more messages than allowed."""
        if self.file_over is not None and len(text) > self.file_over:
            return True
        return self.max_messages is not None and len(self._messages(text, tail)) > self.max_messages

    def _final_layout(
        self, text: str, footer: str, notice: str, files: tuple[FileData, ...]
    ) -> tuple[list[str], tuple[FileData, ...]]:
        tail = [truncate(notice, NOTICE_MAX) if notice else "", footer]
        if self._as_file(text, tail):
            room = self.chunk_limit - 200 - (len(self.header) + 1 if self.header else 0)
            preview = split_message(text, room)[:1] or [""]  # its fences are closed
            note = f"-# The full answer ({len(text):,} characters) is attached as `{self.file_name}`."
            head = self._headed(preview[0].rstrip())
            content = "\n".join([head + "\n…\n\n" + note, *(line for line in tail if line)])
            files = (FileData(self.file_name, text.encode("utf-8")), *files)
            return [content[: limits.MESSAGE_CONTENT]], files
        if not text.strip() and not notice:
            text = EMPTY_ANSWER_PLACEHOLDER
        return self._messages(text, tail), files

    # -- the editor task ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._final.is_set():
                await self._wake.wait()
                self._wake.clear()
                if self._final.is_set():
                    break
                await self._push_streaming()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a Discord failure mid-stream: log it, still try the final edit
            self.stats.errors += 1
            self._failed = exc
            log.warning("streaming edit failed: %r", exc)
            await self._final.wait()
        assert self._final_args is not None
        await self._push_final(*self._final_args)

    async def _push_streaming(self) -> None:
        layout = self._streaming_layout()
        for index, content in enumerate(layout):
            if self._final.is_set():
                return
            if index >= len(self._shown):
                await self._put(index, content)  # a new message: show it at once
                continue
            if self._shown[index].content == content:
                continue
            if index < len(layout) - 1:
                await self._put(index, content)  # a finished part: its last edit, sent at once
                continue
            # An intermediate edit of the message being written: at most one per interval, and
            # none once the answer is complete (the final edit supersedes it).
            wait = self._shown[index].done_at + self.edit_interval - self.clock.now()
            if wait > 0:
                if await self._final_within(wait):
                    return
                layout = self._streaming_layout()
                if len(layout) != index + 1:
                    self._wake.set()  # the text moved on into a new message meanwhile: new pass
                    return
                content = layout[index]
            if self.pressure is not None and self.pressure.congested():
                self.stats.skipped += 1  # Discord's budget is busy: the next text tries again
                return
            await self._put_intermediate(index, content)

    async def _put_intermediate(self, index: int, content: str) -> None:
        if self.pressure is None:
            await self._put(index, content)
            return
        with self.pressure.deferrable() as deferral:
            self._deferral = deferral
            try:
                await self._put(index, content)
            except Exception:
                if not deferral.withdrawn:
                    raise
                self.stats.withdrawn += 1  # superseded by the final edit, which follows at once
            finally:
                self._deferral = None

    async def _final_within(self, seconds: float) -> bool:
        """Wait until the answer is complete or ``seconds`` have passed on the clock; True if complete."""
        final = asyncio.ensure_future(self._final.wait())
        timer = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait((final, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (final, timer):
                task.cancel()
        return self._final.is_set()

    async def _put(self, index: int, content: str, files: Sequence[FileData] = ()) -> None:
        if self.stats.first_visible_at is None:
            self.stats.first_visible_at = self.clock.now()
        await self.target.put(index, content, files=files)
        now = self.clock.now()
        if index < len(self._shown):
            self._shown[index].content = content
            self._shown[index].done_at = now
            self.stats.edits += 1
        else:
            self._shown.append(_Shown(content, now))
            self.stats.creates += 1

    async def _push_final(self, text: str, footer: str, notice: str, files: tuple[FileData, ...]) -> None:
        layout, files = self._final_layout(text, footer, notice, files)
        last = len(layout) - 1
        for index, content in enumerate(layout):
            these = files if index == last else ()
            if index < len(self._shown) and self._shown[index].content == content and not these:
                continue
            if self.stats.final_sent_at is None:
                self.stats.final_sent_at = self.clock.now()
            try:
                await self._put(index, content, these)
            except Exception as exc:
                self.stats.errors += 1
                log.warning("final edit of message %d failed: %r", index, exc)
                if index == 0 and not self._shown:
                    raise
        for index in range(len(self._shown) - 1, last, -1):
            try:
                await self.target.remove(index)
            except Exception as exc:
                log.warning("could not remove surplus message %d: %r", index, exc)
            del self._shown[index]
