"""Separate model reasoning (``<think>…</think>`` blocks) from the visible answer.

Works on a whole text (``split_think``) and incrementally on stream deltas (``ThinkSplitter``),
where a tag may be cut across chunks. The fast path (no ``<`` in the delta, not inside a block)
returns the delta unchanged.
"""

from __future__ import annotations

__all__ = ["ThinkSplitter", "split_think"]

_OPEN = "<think>"
_CLOSE = "</think>"
_OPEN_TAGS = ("<think>", "<thinking>", "<reasoning>")


def _close_for(open_tag: str) -> str:
    return "</" + open_tag[1:]


class ThinkSplitter:
    """Feed content deltas; get back ``(visible, reasoning)`` pieces."""

    __slots__ = ("_inside", "_close", "_hold")

    def __init__(self) -> None:
        self._inside = False
        self._close = _CLOSE
        self._hold = ""  # a possible partial tag held back from the previous delta

    def feed(self, text: str) -> tuple[str, str]:
        if not self._inside and not self._hold and "<" not in text:
            return text, ""
        if self._hold:
            text = self._hold + text
            self._hold = ""
        visible: list[str] = []
        reasoning: list[str] = []
        while text:
            if self._inside:
                idx = text.find(self._close)
                if idx >= 0:
                    reasoning.append(text[:idx])
                    text = text[idx + len(self._close):]
                    self._inside = False
                    continue
                keep = _partial_suffix(text, (self._close,))
                reasoning.append(text[: len(text) - keep])
                self._hold = text[len(text) - keep:] if keep else ""
                break
            best = -1
            tag = ""
            for candidate in _OPEN_TAGS:
                i = text.find(candidate)
                if i >= 0 and (best < 0 or i < best):
                    best, tag = i, candidate
            if best >= 0:
                visible.append(text[:best])
                text = text[best + len(tag):]
                self._inside = True
                self._close = _close_for(tag)
                continue
            keep = _partial_suffix(text, _OPEN_TAGS)
            visible.append(text[: len(text) - keep])
            self._hold = text[len(text) - keep:] if keep else ""
            break
        return "".join(visible), "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        """End of stream: a held-back partial tag is plain text (or reasoning inside a block)."""
        hold, self._hold = self._hold, ""
        if self._inside:
            return "", hold
        return hold, ""


def _partial_suffix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``tags``."""
    last = text.rfind("<")
    if last < 0:
        return 0
    tail = text[last:]
    for tag in tags:
        if len(tail) < len(tag) and tag.startswith(tail):
            return len(tail)
    return 0


def split_think(text: str) -> tuple[str, str]:
    """``(visible, reasoning)`` of a complete answer; visible text is stripped of leading blank lines."""
    if "<" not in text:
        return text, ""
    splitter = ThinkSplitter()
    visible, reasoning = splitter.feed(text)
    v2, r2 = splitter.flush()
    visible += v2
    reasoning += r2
    if reasoning:
        visible = visible.lstrip("\n")
    return visible, reasoning.strip()
