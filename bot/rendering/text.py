"""Text utilities for Discord messages: splitting long text, closing code fences, footers.

``split_message`` cuts long text on paragraph and code-fence boundaries; every piece has its code
fences balanced: a code block cut in two is closed at the end of one message and re-opened (with its
language tag only) at the start of the next, and one left open by the text's end (an answer cut at
the token limit) is closed.
``footer_line`` builds the small ``-#`` line under an answer (model, fallback, tokens, cost in the
gateway's unit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.rendering import limits as limits

__all__ = [
    "FOOTER_MAX",
    "close_open_fence",
    "footer_line",
    "format_cost",
    "format_credits",
    "format_tokens",
    "pack_parts",
    "split_message",
    "split_words",
    "truncate",
]

FOOTER_MAX = 180
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_LANG = re.compile(r"[A-Za-z0-9_+\-.#]+")  # a language tag, as Discord reads it after the fence
_FENCE_CLOSE_SLACK = 12  # "\n" + the closing fence (markers longer than this are shrunk by the loop)


# --------------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fence:
    """An open code fence: the marker (``` or ~~~, possibly longer) and its language tag ("" if none)."""

    marker: str
    lang: str

    @property
    def reopening(self) -> str:
        """The line that continues the block in the next message: the fence and its language only
        (code the model wrote on the opening line is not repeated)."""
        return self.marker + self.lang


def _lang_of(info: str) -> str:
    """The language tag of an opening fence's info string: its first word, when it looks like one."""
    words = info.split()
    return words[0] if words and _LANG.fullmatch(words[0]) else ""


def _fence_step(line: str, state: _Fence | None) -> _Fence | None:
    """The fence state after ``line`` (without its newline).

    A block opens on a fence line. Discord ends a ``` block at the next ```, wherever it is (a line
    such as '```". Done.' or code containing "```" closes it), so that is where it ends here too.
    """
    if state is not None and state.marker[0] == "`":
        return None if "```" in line else state
    m = _FENCE.match(line)
    if not m:
        return state
    marker, rest = m.group(1), m.group(2)
    if state is None:
        if marker[0] == "`" and "`" in rest:  # ```inline``` on one line is not a fence
            return None
        return _Fence(marker=marker, lang=_lang_of(rest))
    if marker[0] == state.marker[0] and len(marker) >= len(state.marker) and not rest.strip():
        return None
    return state


def _fence_after(text: str, state: _Fence | None) -> _Fence | None:
    for line in text.split("\n"):
        state = _fence_step(line, state)
    return state


def _opens_fence(line: str) -> bool:
    return _fence_step(line, None) is not None


def _best_cut(text: str, budget: int, state: _Fence | None, min_cut: int) -> int:
    """Where to cut ``text`` within its first ``budget`` characters: a paragraph or fence boundary
    outside code, else a line end (never one that leaves an empty code block on either side), else
    a space. Returns the length of the piece to take (always ≥ 1).
    """
    window = text[:budget]
    lines = window.split("\n")
    paragraph = 0
    line_cut = 0
    pos = 0
    prev_blank = False
    prev_closed = False
    prev_opened = False
    for i, line in enumerate(lines):
        if i > 0:
            if state is None and (prev_blank or prev_closed or _opens_fence(line)):
                paragraph = pos
            whole = line if i < len(lines) - 1 else text[pos:].split("\n", 1)[0]
            closes = state is not None and _fence_step(whole, state) is None
            if not (prev_opened or closes):  # no empty code block before or after the cut
                line_cut = pos
        if i == len(lines) - 1:
            break  # the last piece has no newline: it may be an incomplete line
        new_state = _fence_step(line, state)
        prev_closed = state is not None and new_state is None
        prev_opened = state is None and new_state is not None
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
    """Split ``text`` into pieces of at most ``limit`` characters, each with its code fences balanced.

    Cuts prefer paragraph and code-fence boundaries, then line ends, then spaces. A code block that
    must be cut is closed at the end of one piece and re-opened with its fence and language tag at
    the start of the next; one the text leaves open is closed at the end of the last piece.
    Whitespace-only pieces are dropped; an empty text gives [].
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
        prefix = state.reopening + "\n" if state is not None else ""
        if len(prefix) > limit // 4:  # absurd language tag: do not repeat it
            prefix = state.marker[:3] + "\n" if state is not None else ""
        if len(prefix) + len(remaining) <= limit:
            piece = _closed((prefix + remaining).rstrip(), _fence_after(remaining, state))
            if len(piece) <= limit:
                if piece.strip() and piece.strip() != prefix.strip():
                    pieces.append(piece)
                break
        budget = limit - len(prefix) - _FENCE_CLOSE_SLACK
        while True:
            cut = _best_cut(remaining, budget, state, min_cut=budget // 2)
            end_state = _fence_after(remaining[:cut], state)
            out = _closed(prefix + remaining[:cut].rstrip(), end_state)
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


def _closed(text: str, state: _Fence | None) -> str:
    """``text``, which ends in the fence state ``state``, with that fence closed."""
    if state is None:
        return text
    return text.rstrip("\n") + "\n" + state.marker


def close_open_fence(text: str) -> str:
    """``text`` with an unclosed code fence closed (for showing a partial answer)."""
    return _closed(text, _fence_after(text, None))


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


def format_cost(value: float, unit: str | None) -> str:
    """A call's cost in the unit the gateway reported: ``0.0021 credits``, ``$0.0021`` (US dollars),
    ``0.18 INR``; ``cost 0.0021`` when the gateway did not say what it counts in."""
    amount = format_credits(value)
    if unit is None:
        return f"cost {amount}"
    if unit == "USD":
        return f"${amount}"
    return f"{amount} {_clean(unit)}"


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
            parts.append(
                f"↪ fallback gateway `{_clean(str(getattr(meta, 'gateway', '') or getattr(meta, 'profile', '')))}`"
                f" (primary `{_clean(str(gw_from))}` failed)"
            )
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
    unit = getattr(meta, "cost_unit", None) if credits is not None else None
    if credits is None and usage is not None:
        credits = getattr(usage, "cost", None)  # a body's "cost": no stated unit
    if credits is not None:
        parts.append(format_cost(float(credits), unit))
    parts.extend(extra)
    if not parts:
        return ""
    return truncate("-# " + " · ".join(parts), FOOTER_MAX)



def pack_parts(pieces: Iterable[str], limit: int) -> list[str]:
    """Consecutive ``pieces`` (each at most ``limit`` long) joined with spaces into as few parts of at most
    ``limit`` characters as the order allows. Shared by speech (a voice message's parts) and the knowledge
    base (chunks)."""
    parts: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current} {piece}" if current else piece
        if len(joined) <= limit:
            current = joined
        else:
            parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return parts


def split_words(text: str, limit: int) -> list[str]:
    """``text`` cut between words into parts of at most ``limit`` characters (a word longer than
    ``limit``, with no space to cut at, is cut itself)."""
    return pack_parts((word[i:i + limit] for word in text.split() for i in range(0, len(word), limit)), limit)
