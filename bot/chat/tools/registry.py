"""Which tools exist, which ones a turn may offer, and their arguments checked against each JSON schema.

A tool is offered when the gateway's profile supports "tools", the channel's ``tools`` setting enables it,
and the bot can do it (``Tool.unavailable()`` is None: a knowledge base, images, speech …). On a guild's own
gateway (``offered(setting, gateway)``) its profile decides: tool calling, and the capability a tool's work
needs there (``TOOL_CAPABILITIES``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import jsonschema

from bot.budgets.rules import Requester
from bot.chat.listening import Voice
from bot.chat.tools.base import Tool
from bot.chat.tools.create_poll import CreatePoll
from bot.chat.tools.generate_image import GenerateImage, MediaJobs
from bot.chat.tools.names import TOOL_NAMES, enabled_names
from bot.chat.tools.read_channel import ReadChannel
from bot.chat.tools.search_knowledge import Knowledge, SearchKnowledge
from bot.chat.tools.speak import Speak

__all__ = ["BadArguments", "ToolRegistry"]

#: the gateway profile's capability that tool calling needs
CAPABILITY = "tools"
#: what a tool's work needs from the gateway serving the turn (the others need nothing of it)
TOOL_CAPABILITIES: dict[str, str] = {"search_knowledge": "embeddings", "generate_image": "images", "speak": "speech"}
#: writes one call's ledger row: who asked, the tool's name, "ok" or "error"
CallLedger = Callable[[Requester, str, str], Awaitable[object]]


class BadArguments(ValueError):
    """A call whose arguments are not JSON, or break the function's schema; the message goes to the model."""


class ToolRegistry:
    """The bot's tools, built once by the factory (``bot.chat.tools``)."""

    def __init__(self, tools: Sequence[Tool], *, gateway_supports: bool, ledger: CallLedger | None = None) -> None:
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        self.gateway_supports = gateway_supports
        #: writes every call's ledger row (requester, tool name, outcome); None: calls are only logged
        self.ledger = ledger
        self._validators = {t.name: jsonschema.Draft202012Validator(dict(t.parameters)) for t in tools}

    @classmethod
    def build(cls, *, gateway: Any, knowledge: Callable[[], Knowledge | None] = lambda: None,
              media_jobs: MediaJobs | None = None, voice: Voice | None = None,
              ledger: CallLedger | None = None) -> ToolRegistry:
        """``knowledge`` is asked for ``bot.knowledge`` at each use (it may be built after the tools)."""
        profile = getattr(gateway, "profile", None)
        supports = bool(profile is not None and profile.supports(CAPABILITY))
        tools: list[Tool] = [SearchKnowledge(knowledge), GenerateImage(media_jobs), CreatePoll(), ReadChannel(),
                             Speak(voice)]
        assert [t.name for t in tools] == list(TOOL_NAMES)
        return cls(tools, gateway_supports=supports, ledger=ledger)

    def offered(self, setting: str, gateway: Any = None) -> list[Tool]:
        """The tools a turn offers under the channel's ``tools`` setting (none when the gateway can't);
        ``gateway``: the one serving the turn (None: the operator's, as built)."""
        profile = getattr(gateway, "profile", None)
        if not (self.gateway_supports if profile is None else profile.supports(CAPABILITY)):
            return []
        return [self.tools[n] for n in enabled_names(setting)
                if n in self.tools and self.tools[n].unavailable(gateway) is None
                and (profile is None or n not in TOOL_CAPABILITIES or profile.supports(TOOL_CAPABILITIES[n]))]

    def arguments(self, name: str, raw: Any) -> dict[str, Any]:
        """A call's arguments parsed and checked against the function's schema; raises ``BadArguments``."""
        if isinstance(raw, dict):
            args: Any = raw
        else:
            text = raw if isinstance(raw, str) else ""
            try:
                args = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as exc:
                raise BadArguments(f"the arguments are not valid JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(args, dict):
            raise BadArguments("the arguments must be a JSON object")
        errors = sorted(self._validators[name].iter_errors(args), key=lambda e: list(e.absolute_path))
        if errors:
            shown = "; ".join(_describe(e) for e in errors[:3])
            raise BadArguments(f"the arguments do not match the schema of {name}: {shown}")
        return args


def schema_param(tool: Tool) -> dict[str, Any]:
    """A tool as the chat completions API's ``tools`` list entry."""
    return {"type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)}}


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "arguments"
    return f"{where}: {error.message[:200]}"
