"""Text rendering for Discord: message splitting, footers, and the streaming renderer.

``split_message`` cuts long text on paragraph and code-fence boundaries; a code block cut in two is
closed at the end of one message and re-opened (with its language tag) at the start of the next.

``StreamRenderer`` turns a growing answer into a set of Discord messages through a small
``MessageTarget`` (an interaction reply, a channel reply, or a fake in tests). It shows the first
text as soon as it arrives, edits each message at most once per ``edit_interval`` while the answer
is still being written (with a visible "still writing" marker), and sends the final edit as soon as
the answer is complete. Rate-limit buckets are left to discord.py, which delays a request only when
the bucket it goes to has no room left.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.rendering import limits as limits

log = logging.getLogger(__name__)

__all__ = [
    "ANSWER_LIMIT",
    "WRITING_MARKER",
    "INCOMPLETE_MARKER",
    "FileData",
    "MessageTarget",
    "StreamRenderer",
    "close_open_fence",
    "footer_line",
    "format_tokens",
    "split_message",
    "truncate",
]

#: Room kept free in every answer message for the writing marker, a notice and the footer, so that a
#: message's text never has to be re-split when the answer completes.
MESSAGE_RESERVE = 400
ANSWER_LIMIT = limits.MESSAGE_CONTENT - MESSAGE_RESERVE
WRITING_MARKER = "-# ✍️ still writing…"
INCOMPLETE_MARKER = "⚠️ **Incomplete answer.**"
FOOTER_MAX = 180
NOTICE_MAX = 600  # a notice longer than the room left in the last message goes into a message of its own

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE_SLACK = 12  # "\n" + the closing fence (markers longer than this are shrunk by the loop)


# --------------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fence:
    """An open code fence: the marker (``` or ~~~, possibly longer) and the full opening line."""

    marker: str
    opening: str


def _fence_step(line: str, state: _Fence | None) -> _Fence | None:
    """The fence state after ``line`` (without its newline)."""
    m = _FENCE.match(line)
    if not m:
        return state
    marker, rest = m.group(1), m.group(2)
    if state is None:
        if marker[0] == "`" and "`" in rest:  # ```inline``` on one line is not a fence
            return None
        return _Fence(marker=marker, opening=line.strip())
    if marker[0] == state.marker[0] and len(marker) >= len(state.marker) and not rest.strip():
        return None
    return state


def _fence_after(text: str, state: _Fence | None) -> _Fence | None:
    for line in text.split("\n"):
        state = _fence_step(line, state)
    return state


def _opens_fence(line: str) -> bool:
    return _fence_step(line, None) is not None


def _best_cut(window: str, state: _Fence | None, min_cut: int) -> int:
    """Where to cut ``window``: a paragraph or fence boundary outside code, else a line, else a space.

    Returns the length of the piece to take (always ≥ 1).
    """
    lines = window.split("\n")
    paragraph = 0
    line_cut = 0
    pos = 0
    prev_blank = False
    prev_closed = False
    for i, line in enumerate(lines):
        if i > 0:
            if state is None and (prev_blank or prev_closed or _opens_fence(line)):
                paragraph = pos
            line_cut = pos
        if i == len(lines) - 1:
            break  # the last piece has no newline: it may be an incomplete line
        new_state = _fence_step(line, state)
        prev_closed = state is not None and new_state is None
        prev_blank = not line.strip()
        state = new_state
        pos += len(line) + 1
    if paragraph >= min_cut:
        return paragraph
    if line_cut >= min_cut // 2:
        return line_cut
    space = window.rfind(" ")
    if space >= min_cut:
        return space + 1
    if line_cut > 0:
        return line_cut
    return max(1, len(window))


def split_message(text: str, limit: int = limits.MESSAGE_CONTENT) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters.

    Cuts prefer paragraph and code-fence boundaries, then line ends, then spaces. A code block that
    must be cut is closed at the end of one piece and re-opened with the same opening line (language
    tag included) at the start of the next. Whitespace-only pieces are dropped; an empty text gives [].
    """
    if limit < 40:
        raise ValueError("limit too small to split sensibly")
    text = text.strip("\n")
    if not text.strip():
        return []
    pieces: list[str] = []
    remaining = text
    state: _Fence | None = None
    while remaining:
        prefix = state.opening + "\n" if state is not None else ""
        if len(prefix) > limit // 4:  # absurd opening line: do not repeat it
            prefix = state.marker[:3] + "\n" if state is not None else ""
        if len(prefix) + len(remaining) <= limit:
            piece = (prefix + remaining).rstrip()
            if piece.strip() and piece.strip() != prefix.strip():
                pieces.append(piece)
            break
        budget = limit - len(prefix) - _FENCE_CLOSE_SLACK
        while True:
            window = remaining[:budget]
            cut = _best_cut(window, state, min_cut=budget // 2)
            piece = remaining[:cut].rstrip()
            end_state = _fence_after(remaining[:cut], state)
            out = prefix + piece
            if end_state is not None:
                out += "\n" + end_state.marker
            if len(out) <= limit or budget <= 20:
                break
            budget -= len(out) - limit
        if out.strip() and out.strip() != (prefix + (end_state.marker if end_state else "")).strip():
            pieces.append(out[:limit])
        remaining = remaining[cut:]
        if end_state is None:
            remaining = remaining.lstrip("\n")
        elif remaining.startswith("\n"):
            remaining = remaining[1:]
        state = end_state
        if not remaining.strip():
            break
    return pieces


def close_open_fence(text: str) -> str:
    """``text`` with an unclosed code fence closed (for showing a partial answer)."""
    state = _fence_after(text, None)
    if state is None:
        return text
    return text.rstrip("\n") + "\n" + state.marker


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut to at most ``limit`` characters (ending with ``ellipsis`` when cut)."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis


# --------------------------------------------------------------------------------------------------
# Footers
# --------------------------------------------------------------------------------------------------


def format_tokens(n: int) -> str:
    """1234 -> '1.2k', 950 -> '950'."""
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def format_credits(value: float) -> str:
    """0.0021 -> '0.0021', 0.0000123 -> '0.000012', 12.5 -> '12.5' (never scientific notation)."""
    if value >= 100:
        return f"{value:.0f}"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text in ("0", "-0") and value:
        return "<0.000001"
    if "." in text:
        whole, frac = text.split(".")
        significant = frac.lstrip("0")
        frac = frac[: len(frac) - len(significant) + 3].rstrip("0")
        text = f"{whole}.{frac}" if frac else whole
    return text


def _clean(value: str) -> str:
    """Model names come from the gateway: keep them from breaking the markdown or pinging."""
    return value.replace("`", "'").replace("@", "@\u200b").replace("\n", " ")[:80]


def footer_line(
    meta: Any | None = None,
    usage: Any | None = None,
    *,
    model: str | None = None,
    extra: Sequence[str] = (),
) -> str:
    """A small ``-#`` line: model that answered, fallback notice, tokens and credits used.

    ``meta`` is a gateway ``CallMeta`` and ``usage`` a ``Usage`` (duck-typed so images can pass
    their own); ``model`` is used when the metadata does not name one.
    """
    parts: list[str] = []
    used = getattr(meta, "model_used", None) or model or getattr(meta, "model_requested", None)
    if used:
        parts.append(f"`{_clean(used)}`")
    if meta is not None:
        gw_from = getattr(meta, "gateway_fallback_from", None)
        m_from = getattr(meta, "fallback_from", None)
        if gw_from:
            gateway = getattr(meta, "gateway", "") or getattr(meta, "profile", "")
            parts.append(f"↪ fallback gateway `{_clean(str(gateway))}` (primary `{_clean(str(gw_from))}` failed)")
        if m_from:
            parts.append(f"↪ fallback from `{_clean(str(m_from))}`")
        elif getattr(meta, "fallback_depth", 0) and not gw_from:
            parts.append("↪ fallback model")
    total = getattr(usage, "total_tokens", None) if usage is not None else None
    if total is None and usage is not None:
        p, c = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
        if p is not None or c is not None:
            total = (p or 0) + (c or 0)
    if total:
        parts.append(f"{format_tokens(int(total))} tokens")
    credits = getattr(meta, "credits_used", None) if meta is not None else None
    if credits is None and usage is not None:
        credits = getattr(usage, "cost", None)
    if credits is not None:
        parts.append(f"{format_credits(float(credits))} credits")
    parts.extend(extra)
    if not parts:
        return ""
    return truncate("-# " + " · ".join(parts), FOOTER_MAX)


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
    """Timings for benchmarks and logs (monotonic clock)."""

    first_delta_at: float | None = None
    first_visible_at: float | None = None
    finished_at: float | None = None
    final_sent_at: float | None = None
    edits: int = 0
    creates: int = 0
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.edit_interval = edit_interval
        self.chunk_limit = chunk_limit
        self.file_over = file_over
        self.file_name = file_name
        self.clock = clock
        self.stats = RenderStats()
        self._text = ""
        self._shown: list[_Shown] = []
        self._wake = asyncio.Event()
        self._final = asyncio.Event()
        self._settling = False  # the answer is complete; only the final edit is still to come
        self._final_args: tuple[str, str, str, tuple[FileData, ...]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

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
            self.stats.first_delta_at = self.clock()
        self._text += delta
        self._wake.set()
        if self._task is None:
            self.start()

    def settle(self) -> None:
        """The answer is complete: send no more intermediate edits while the caller records it; the
        final state follows with ``finish()``."""
        self._settling = True

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
        self.stats.finished_at = self.clock()
        self._final_args = (self._text, footer, notice, tuple(files))
        self._final.set()
        self._wake.set()
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

    def _streaming_layout(self) -> list[str]:
        text = self._text
        if self.file_over is not None and len(text) > self.file_over:
            text = text[: self.file_over]
        chunks = split_message(text, self.chunk_limit)
        if not chunks:
            return []
        last = close_open_fence(chunks[-1])
        if self.file_over is not None and len(self._text) > self.file_over:
            last += "\n-# (long answer: the full text will be attached as a file)"
        chunks[-1] = last + "\n" + WRITING_MARKER
        return chunks

    def _final_layout(self, text: str, footer: str, notice: str,
                      files: tuple[FileData, ...]) -> tuple[list[str], tuple[FileData, ...]]:
        tail = [line for line in (truncate(notice, NOTICE_MAX) if notice else "", footer) if line]
        if self.file_over is not None and len(text) > self.file_over:
            preview = split_message(text, self.chunk_limit - 200)[:1] or [""]
            head = close_open_fence(preview[0]).rstrip()
            note = f"-# The full answer ({len(text):,} characters) is attached as `{self.file_name}`."
            content = "\n\n".join(part for part in (head + "\n…", note) if part)
            content = "\n".join([content, *tail])
            files = (FileData(self.file_name, text.encode("utf-8")), *files)
            return [content[: limits.MESSAGE_CONTENT]], files
        chunks = split_message(text, self.chunk_limit)
        if not chunks:
            chunks = ["*(The model returned an empty answer.)*"] if not notice else []
        if tail:
            tail_text = "\n".join(tail)
            if chunks and len(chunks[-1]) + 1 + len(tail_text) <= limits.MESSAGE_CONTENT:
                chunks[-1] = chunks[-1] + "\n" + tail_text
            else:
                chunks.append(tail_text)
        return [c[: limits.MESSAGE_CONTENT] for c in chunks], files

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
            if self._final.is_set() or self._settling:
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
            wait = self._shown[index].done_at + self.edit_interval - self.clock()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._final.wait(), timeout=wait)
                    return
                except TimeoutError:
                    pass
                if self._settling:
                    return
                layout = self._streaming_layout()
                if len(layout) != index + 1:
                    self._wake.set()  # the text moved on into a new message meanwhile: new pass
                    return
                content = layout[index]
            await self._put(index, content)

    async def _put(self, index: int, content: str, files: Sequence[FileData] = ()) -> None:
        if self.stats.first_visible_at is None:
            self.stats.first_visible_at = self.clock()
        await self.target.put(index, content, files=files)
        now = self.clock()
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
                self.stats.final_sent_at = self.clock()
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
