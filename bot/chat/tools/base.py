"""What a tool is (``Tool``), what one call gets (``ToolContext``) and gives back (``ToolResult``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.budgets.rules import Requester
from bot.rendering.stream import FileData
from bot.rendering.user_facing import UserFacingError

__all__ = ["Tool", "ToolContext", "ToolRefused", "ToolResult"]


@dataclass(frozen=True)
class ToolContext:
    """Where and for whom a call runs: the member who asked, the turn's channel (the only channel a tool
    may touch), and where a voice message of the answer goes."""

    requester: Requester
    #: the channel (or thread, or DM) of the turn
    channel: Any
    #: the member (``discord.Member`` in a server) or user who asked
    member: Any
    guild: Any = None
    #: where ``speak`` sends its voice message (``bot.voice.sender`` target); None: nowhere to send one
    voice_target: Any = None
    #: the member's prompt message, if the turn has one (``read_channel`` reads what came before it)
    prompt_message_id: int | None = None
    #: the ids of this answer's own messages so far (``read_channel`` leaves them out)
    answer_message_ids: Callable[[], Collection[int]] = lambda: ()


@dataclass
class ToolResult:
    """``content`` goes back to the model as the tool's result; ``line`` is what the member sees for the
    call ("searched the knowledge base"); ``files`` are attached to the answer, ``sources`` cited in its
    footer."""

    content: str
    line: str
    files: list[FileData] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    failed: bool = False


class ToolRefused(UserFacingError):
    """A call that cannot be done here (no knowledge base, no poll permission …): its message goes to the
    model as the result, and the member sees the short line."""

    code = "tool_refused"


class Tool(Protocol):
    """One function the model may call. ``parameters`` is its JSON schema (arguments are validated
    against it before ``run``)."""

    name: str
    description: str
    parameters: dict[str, Any]

    def unavailable(self, gateway: Any = None) -> str | None:
        """None when the bot and ``gateway`` (the one serving the turn; None: the operator's) can do this;
        otherwise why not (the tool is not offered)."""
        ...

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        """Do the call; raise ``ToolRefused`` (or any ``UserFacingError``) to tell the model why not."""
        ...
