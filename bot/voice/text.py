"""Text to speak: what a message says aloud, cleaned of markup, and cut into parts the gateway takes."""

from __future__ import annotations

import re
from typing import Any

from bot.rendering.text import pack_parts, split_words

__all__ = ["message_text", "speakable", "split_for_speech"]

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n\s*\n")
_CODE_FENCE = re.compile(r"```[\w+-]*\n?")
_CUSTOM_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>")
_LINK = re.compile(r"\[([^\]]+)\]\((?:<)?https?://[^)\s]+(?:>)?\)")
_EMPHASIS = re.compile(r"(\*\*|__|~~|\|\||\*|`)")
_HEADING = re.compile(r"^(?:#{1,3}|>{1,3})\s+", re.MULTILINE)
_SUBTEXT = re.compile(r"^-# .*$", re.MULTILINE)


def speakable(text: str) -> str:
    """``text`` without Discord markdown a voice would read out (emphasis, code fences, headings,
    mentions, footers in subtext), links reduced to their words; whitespace tidied."""
    text = _SUBTEXT.sub("", text)
    text = _CODE_FENCE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _CUSTOM_EMOJI.sub(r"\1", text)
    text = _MENTION.sub("", text)
    text = _HEADING.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def message_text(message: Any) -> str:
    """What Read aloud reads of a message: its text, then each embed's title, description and fields
    (a relay post or a bot answer in an embed), as plain text."""
    pieces: list[str] = []
    content = str(getattr(message, "content", "") or "")
    if content.strip():
        pieces.append(content)
    for embed in getattr(message, "embeds", ()) or ():
        title = getattr(embed, "title", None)
        if title:
            pieces.append(str(title))
        description = getattr(embed, "description", None)
        if description:
            pieces.append(str(description))
        for fld in getattr(embed, "fields", ()) or ():
            name, value = getattr(fld, "name", "") or "", getattr(fld, "value", "") or ""
            if str(name).strip() or str(value).strip():
                pieces.append(f"{name}: {value}" if str(name).strip() and str(value).strip() else f"{name}{value}")
    return speakable("\n\n".join(pieces))


def split_for_speech(text: str, limit: int) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, cut between sentences when it can, else
    between words, else (one enormous word) anywhere. Joined with spaces they give back the words."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    sentences = (s.strip() for s in _SENTENCE_END.split(text))
    return pack_parts((piece for sentence in sentences if sentence for piece in _fit(sentence, limit)), limit)


def _fit(sentence: str, limit: int) -> list[str]:
    """One sentence as pieces of at most ``limit`` characters (whole when it fits, else cut between words)."""
    return [sentence] if len(sentence) <= limit else split_words(sentence, limit)
