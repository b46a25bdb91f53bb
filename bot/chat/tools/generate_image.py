"""``generate_image(prompt, size?)``: an /imagine job for the member through ``bot.media_jobs`` (checked,
recorded and charged to the member like the command); the images are attached to the answer."""

from __future__ import annotations

from typing import Any, Protocol

from bot.budgets.rules import Requester
from bot.chat.tools.base import ToolContext, ToolRefused, ToolResult
from bot.media.options import ImagineOptions
from bot.rendering.stream import FileData
from bot.rendering.text import truncate

__all__ = ["GenerateImage", "MediaJobs"]

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class MediaJobs(Protocol):
    """What this tool uses of ``bot.media_jobs`` (``bot.media.service.MediaJobService``)."""

    def supports(self, kind: str, gateway: Any = None) -> bool: ...

    async def prepare(self, opts: ImagineOptions, *, guild_id: int | None, channel_id: int | None,
                      parent_channel_id: int | None = None) -> Any: ...

    async def run_without_message(self, requester: Requester, request: Any) -> list[tuple[Any, bytes]]: ...


class GenerateImage:
    name = "generate_image"
    description = ("Draw an image from a description (an /imagine job for the member who asked, counted in "
                   "their image budget). The image is attached to your answer.")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 1000,
                       "description": "What the image shows"},
            "size": {"type": "string", "pattern": "^[0-9]{2,4}x[0-9]{2,4}$",
                     "description": "WIDTHxHEIGHT, e.g. 1024x1024 (optional)"},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    }

    def __init__(self, media_jobs: MediaJobs | None) -> None:
        self.media_jobs = media_jobs

    def unavailable(self, gateway: Any = None) -> str | None:
        if self.media_jobs is None or not self.media_jobs.supports("image", gateway):
            return "the gateway does not generate images"
        return None

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        if self.media_jobs is None:
            raise ToolRefused("This bot does not generate images.")
        prompt = " ".join(str(args["prompt"]).split())
        parent_id = getattr(ctx.channel, "parent_id", None)
        request = await self.media_jobs.prepare(
            ImagineOptions(prompt=prompt, size=args.get("size"), count=1),
            guild_id=ctx.requester.guild_id, channel_id=ctx.requester.channel_id, parent_channel_id=parent_id)
        stored = await self.media_jobs.run_without_message(ctx.requester, request)
        files = [FileData(f"image_{getattr(f, 'index', n)}.{_EXTENSIONS.get(getattr(f, 'mime', ''), 'png')}", data)
                 for n, (f, data) in enumerate(stored, 1)]
        if not files:
            raise ToolRefused("The image could not be generated.")
        return ToolResult(f"{len(files)} image(s) generated and attached to your answer (do not describe a "
                          "link; the member sees the image).", f"generated an image: “{truncate(prompt, 60)}”",
                          files=files)
