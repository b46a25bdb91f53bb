"""What the model is asked for an auto-answer, and the sources line shown under it (pure functions).

The knowledge base's hits are numbered excerpts the model must rest its answer on; the sources line
lists each document once (a message link as a link, a file by its name), in the hits' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.rendering.text import truncate

__all__ = ["KnowledgeHit", "grounded_prompt", "sources_line"]

#: characters of one excerpt given to the model
EXCERPT_CHARS = 1500
#: documents named in the sources line
MAX_SOURCES = 5
TITLE_CHARS = 80
INSTRUCTIONS = (
    "Answer the member's post below using only these excerpts from this server's knowledge base. "
    "Cite the excerpts you use by their number, like [1]. If they do not answer the post, say so briefly "
    "instead of guessing."
)


class KnowledgeHit(Protocol):
    """What an auto-answer reads of a knowledge search hit (``bot.knowledge.store.Hit``)."""

    @property
    def source(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def heading(self) -> str | None: ...

    @property
    def text(self) -> str: ...

    @property
    def score(self) -> float: ...


def grounded_prompt(title: str, text: str, hits: Sequence[KnowledgeHit]) -> str:
    """The model's prompt: instructions, the numbered excerpts, then the post (its title, if any)."""
    parts = [INSTRUCTIONS, ""]
    for i, hit in enumerate(hits, 1):
        where = hit.title or hit.source
        if hit.heading:
            where += f" — {hit.heading}"
        parts += [f"[{i}] {where}", truncate(hit.text.strip(), EXCERPT_CHARS), ""]
    parts.append("The post:")
    if title:
        parts.append(f"Title: {title}")
    parts.append(text.strip())
    return "\n".join(parts)


def sources_line(hits: Sequence[KnowledgeHit]) -> str:
    """``📚 Sources: [Refunds](<https://discord.com/channels/…>) · `handbook.md` `` — every document once."""
    seen: list[str] = []
    shown: list[str] = []
    for hit in hits:
        if hit.source in seen:
            continue
        seen.append(hit.source)
        if len(shown) < MAX_SOURCES:
            shown.append(_source(hit))
    more = f" and {len(seen) - len(shown)} more" if len(seen) > len(shown) else ""
    return "📚 **Sources:** " + " · ".join(shown) + more


def _source(hit: KnowledgeHit) -> str:
    title = truncate(" ".join((hit.title or hit.source).split()), TITLE_CHARS).replace("[", "(").replace("]", ")")
    if hit.source.startswith(("https://", "http://")):
        return f"[{title}](<{hit.source}>)"
    name = hit.source.replace("`", "'")
    if title == hit.source:
        return f"`{name}`"
    return f"{title} (`{name}`)"
