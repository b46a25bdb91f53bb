"""``search_knowledge(query)``: the guild's knowledge base (``bot.knowledge``), results with sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bot.budgets.rules import Requester
from bot.chat.tools.base import ToolContext, ToolRefused, ToolResult
from bot.rendering.text import truncate

__all__ = ["Knowledge", "SearchKnowledge", "source_link"]

#: characters of one hit's text given to the model
HIT_CHARS = 1200


class KnowledgeHit(Protocol):
    source: str
    title: str
    heading: str | None
    text: str
    score: float


class Knowledge(Protocol):
    """What this tool uses of ``bot.knowledge`` (``bot.knowledge.service.KnowledgeService``)."""

    available: bool
    unavailable_reason: str

    def available_on(self, gateway: Any) -> bool: ...

    def unavailable_reason_on(self, gateway: Any) -> str: ...

    async def search(self, requester: Requester, query: str, *, limit: int | None = None,
                     min_score: float | None = None) -> Sequence[Any]: ...


def source_link(hit: KnowledgeHit) -> str:
    """A hit's source as the footer cites it: a message link as a markdown link, a file by its name."""
    title = " ".join((hit.title or hit.source).split()).replace("[", "(").replace("]", ")")
    if hit.source.startswith(("https://", "http://")):
        return f"[{truncate(title, 40)}](<{hit.source}>)"
    return truncate(hit.source, 60)


class SearchKnowledge:
    name = "search_knowledge"
    description = ("Search this server's knowledge base (documents its admins added) for passages about "
                   "a question. Returns the passages with their sources; cite the sources you use.")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 500,
                                 "description": "What to look for, in a few words or a question"}},
        "required": ["query"],
        "additionalProperties": False,
    }

    def __init__(self, knowledge: Callable[[], Knowledge | None]) -> None:
        self._knowledge = knowledge  # looked up at each use: the factory may build it after the tools

    @property
    def knowledge(self) -> Knowledge | None:
        return self._knowledge()

    def unavailable(self, gateway: Any = None) -> str | None:
        knowledge = self.knowledge
        if knowledge is None:
            return "there is no knowledge base in this bot"
        if gateway is None and not knowledge.available:
            return knowledge.unavailable_reason or "the knowledge base is not available"
        if gateway is not None and not knowledge.available_on(gateway):
            return knowledge.unavailable_reason_on(gateway) or "the knowledge base is not available"
        return None

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        knowledge = self.knowledge
        if knowledge is None or ctx.requester.guild_id is None:
            raise ToolRefused("The knowledge base belongs to a server; there is none in a direct message.")
        query = str(args["query"]).strip()
        hits = list(await knowledge.search(ctx.requester, query))
        line = f"searched the knowledge base for “{truncate(' '.join(query.split()), 60)}”"
        if not hits:
            return ToolResult("No passage of the knowledge base matches this query.", line)
        parts, sources = [], []
        for n, hit in enumerate(hits, 1):
            where = hit.title or hit.source
            if hit.heading:
                where += f" › {hit.heading}"
            parts.append(f"[{n}] {where} (source: {hit.source}; score {hit.score:.2f})\n"
                         + truncate(hit.text, HIT_CHARS))
            cited = source_link(hit)
            if cited not in sources:
                sources.append(cited)
        return ToolResult("\n\n".join(parts), line, sources=sources)
