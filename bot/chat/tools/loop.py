"""The rounds of tool calls inside one answer.

A round: the model's answer asks for calls → that request's hold is settled → each call is checked
(known and offered, arguments valid JSON matching the function's schema) and run; a bad or failed call
becomes an error result for the model, never a crash → the member sees one short line per call
(``-# 🔧 searched the knowledge base``) → the conversation so far, with the results, is asked again (a
new hold, streamed into the same answer). After ``MAX_ROUNDS`` rounds the model is asked once more with
``tool_choice: "none"`` and the footer says the calls were stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.chat.tools.base import Tool, ToolContext, ToolResult
from bot.chat.tools.registry import BadArguments, ToolRegistry, schema_param
from bot.rendering.stream import FileData
from bot.rendering.text import truncate
from bot.rendering.user_facing import UserFacingError
from gateway_client import ChatMessage, ChatRequest, ChatResult

log = logging.getLogger(__name__)

__all__ = ["MAX_ROUNDS", "ROUNDS_NOTE", "ToolSession", "run_rounds"]

MAX_ROUNDS = 4
ROUNDS_NOTE = f"tool calls stopped after {MAX_ROUNDS} rounds"
LINE_PREFIX = "-# 🔧 "
FAILED_PREFIX = "-# ⚠️ "
#: the most calls run from one answer of the model (the rest get an error result)
MAX_CALLS_PER_ROUND = 5
SOURCES_PREFIX = "-# 📚 Sources: "
MAX_SOURCES = 5
SOURCES_MAX = 900


@dataclass
class ToolSession:
    """The tools one answer offers, and what their calls produced (lines, files, sources)."""

    registry: ToolRegistry
    tools: list[Tool]
    ctx: ToolContext
    rounds: int = 0
    stopped: bool = False
    used: list[str] = field(default_factory=list)
    files: list[FileData] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def param(self) -> list[dict[str, Any]]:
        """The request's ``tools``."""
        return [schema_param(t) for t in self.tools]

    def footer(self) -> list[str]:
        """The footer's notes: the tools used, the stop."""
        notes = []
        if self.used:
            notes.append("🔧 " + ", ".join(self.used))
        if self.stopped:
            notes.append(ROUNDS_NOTE)
        return notes

    def sources_line(self) -> str:
        """``-# 📚 Sources: …`` (links to the source messages, file names) under the answer; "" without any.
        A line of its own: the footer is cut at its length limit, a link must not be."""
        if not self.sources:
            return ""
        line = SOURCES_PREFIX + self.sources[0]
        for source in self.sources[1:MAX_SOURCES]:
            if len(line) + 2 + len(source) > SOURCES_MAX:
                break
            line += ", " + source
        return line

    async def call_all(self, calls: list[dict[str, Any]]) -> tuple[list[ChatMessage], list[str]]:
        """Run one round's calls in order: their result messages, and the member's lines."""
        messages, lines = [], []
        for n, call in enumerate(calls):
            fn = call.get("function") or {}
            name = str(fn.get("name") or "")
            if n >= MAX_CALLS_PER_ROUND:
                result = ToolResult(f"error: at most {MAX_CALLS_PER_ROUND} calls are run at a time", "", failed=True)
            else:
                result = await self._call(name, fn.get("arguments"))
            messages.append(ChatMessage("tool", result.content, tool_call_id=call["id"]))
            if result.line:
                lines.append((FAILED_PREFIX if result.failed else LINE_PREFIX) + result.line)
        return messages, lines

    async def _call(self, name: str, raw_args: Any) -> ToolResult:
        """Run one call, then write its ledger row (a row that cannot be written is logged, never fatal)."""
        result = await self._run_call(name, raw_args)
        if self.registry.ledger is not None:
            try:
                await self.registry.ledger(self.ctx.requester, name, "error" if result.failed else "ok")
            except Exception as exc:
                log.warning("tool %s: the ledger row was not written: %r", name, exc)
        return result

    async def _run_call(self, name: str, raw_args: Any) -> ToolResult:
        offered = {t.name: t for t in self.tools}
        tool = offered.get(name)
        if tool is None:
            log.info("tool call to %r refused: not offered", name)
            return ToolResult(f"error: there is no tool named {name!r} here; the tools are: "
                              f"{', '.join(offered) or 'none'}", f"asked for an unknown tool `{truncate(name, 40)}`",
                              failed=True)
        try:
            args = self.registry.arguments(name, raw_args)
        except BadArguments as exc:
            log.info("tool call to %s refused: %s", name, exc)
            return ToolResult(f"error: {exc}. Call it again with valid arguments.", f"{name}: invalid arguments",
                              failed=True)
        try:
            result = await tool.run(self.ctx, args)
        except asyncio.CancelledError:
            raise
        except UserFacingError as exc:
            log.info("tool %s refused: %r", name, exc)
            message = exc.user_message()
            return ToolResult(f"error: {message}", f"{name}: {truncate(message, 120)}", failed=True)
        except Exception as exc:
            log.warning("tool %s failed", name, exc_info=exc)
            return ToolResult(f"error: the {name} tool failed ({type(exc).__name__})", f"{name} failed",
                              failed=True)
        log.info("tool %s called for user %s in channel %s", name, self.ctx.requester.user_id,
                 self.ctx.requester.channel_id)
        if name not in self.used:
            self.used.append(name)
        self.files += result.files
        self.sources += [s for s in result.sources if s not in self.sources]
        return result


def normalised_calls(raw: list[Any]) -> list[dict[str, Any]]:
    """The model's calls as the assistant message repeats them (each with an id, arguments a string)."""
    calls = []
    for c in raw:
        if not isinstance(c, dict):
            continue
        fn: dict[str, Any] = c["function"] if isinstance(c.get("function"), dict) else {}
        args = fn.get("arguments")
        args = args if isinstance(args, str) else ("" if args is None else json.dumps(args))
        calls.append({"id": c.get("id") or "call_" + uuid.uuid4().hex[:20], "type": "function",
                      "function": {"name": str(fn.get("name") or ""),
                                   "arguments": args}})
    return calls


async def run_rounds(
    session: ToolSession, request: ChatRequest, result: ChatResult, *,
    settle: Callable[[ChatResult], Awaitable[None]], ask: Callable[[ChatRequest], Awaitable[ChatResult]],
    feed: Callable[[str], None], shown: Callable[[], str],
) -> tuple[ChatResult, str]:
    """Run the calls ``result`` asks for and ask again, round after round. ``settle`` charges the round
    just answered; ``ask`` reserves, streams (into the answer) and returns the next answer; ``feed`` shows
    text; ``shown`` is the answer's text so far. Returns the last answer and the model's text of every
    round (what is recorded)."""
    said = [result.text]
    messages = list(request.messages)
    while result.tool_calls and session.rounds < MAX_ROUNDS:
        await settle(result)
        session.rounds += 1
        calls = normalised_calls(result.tool_calls)
        messages.append(ChatMessage("assistant", result.text or None, tool_calls=calls))
        replies, lines = await session.call_all(calls)
        messages += replies
        if lines:
            before = "\n" if shown() and not shown().endswith("\n") else ""
            feed(before + "\n".join(lines) + "\n")
        last = session.rounds >= MAX_ROUNDS
        if last:
            session.stopped = True
        request = dataclasses.replace(request, messages=list(messages),
                                      tool_choice="none" if last else request.tool_choice)
        result = await ask(request)
        said.append(result.text)
    return result, "\n\n".join(t.strip() for t in said if t.strip())
