"""``speak(text)``: ``text`` as a voice message after the answer's text (``bot.voice``), charged as speech."""

from __future__ import annotations

from typing import Any

from bot.chat.listening import Voice
from bot.chat.tools.base import ToolContext, ToolRefused, ToolResult
from bot.rendering.text import truncate

__all__ = ["Speak"]

TEXT_MAX = 2000


class Speak:
    name = "speak"
    description = "Say something out loud: the text is sent in this channel as a voice message."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": TEXT_MAX}},
        "required": ["text"],
        "additionalProperties": False,
    }

    def __init__(self, voice: Voice | None) -> None:
        self.voice = voice

    def unavailable(self, gateway: Any = None) -> str | None:
        if self.voice is None:
            return "the bot has no voice"
        if not (self.voice.can_speak if gateway is None else self.voice.can_speak_on(gateway)):
            return "the gateway cannot speak"
        return None

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        if self.voice is None:  # whether the serving gateway speaks is the voice service's check
            raise ToolRefused("Speaking is not available on this bot.")
        if ctx.voice_target is None:
            raise ToolRefused("A voice message can't be sent here (a private answer can't be spoken).")
        text = str(args["text"])
        clip = await self.voice.speak(ctx.requester, text)
        sent = await self.voice.send(ctx.voice_target, clip)
        how = "a voice message" if getattr(sent, "as_voice", True) else "an audio file"
        return ToolResult(f"The text was sent as {how}.", f"spoke: “{truncate(' '.join(text.split()), 50)}”")
