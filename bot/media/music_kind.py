"""The ``music`` kind: /music — one synchronous gateway call, the track attached as audio Discord plays.

Held: the requested duration in music seconds; charged: the track's real duration rounded up to a
whole second. The audio is stored as the gateway made it and fitted to the upload limit when it is
shown (``fit_audio``: Discord-playable, re-encoded at a lower bitrate only when over the limit).
Buttons: Cancel while it runs, Re-roll and Delete under the result.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.budgets.rules import Feature
from bot.media.audio_fit import fit_audio
from bot.media.buttons import cancel_view, reroll_view
from bot.media.jobs import FileToStore, JobParams, MediaJob, StoredFile
from bot.media.kinds import JobRun, KindContext, MediaRequest, Produced
from bot.media.options import OptionError
from bot.media.render import render_music_progress, render_music_result
from gateway_client import CallMeta, GatewayError, InvalidRequest, MusicRequest

if TYPE_CHECKING:
    from bot.media.progress import JobMessage

__all__ = ["MusicOptions", "MusicRunner"]

OPTION_NAMES = {"prompt": "prompt", "model": "model", "duration": "duration"}


@dataclass(frozen=True, slots=True)
class MusicOptions:
    """What the member typed in /music (None = not given)."""

    prompt: str
    model: str | None = None
    duration: int | None = None


class MusicRunner:
    kind = "music"
    feature = Feature.MUSIC

    def __init__(self, ctx: KindContext) -> None:
        self.gateway = ctx.gateway
        self.settings = ctx.settings.media

    # -- requests ---------------------------------------------------------------------------------

    def build(self, opts: MusicOptions, *, default_model: str | None) -> MediaRequest:
        longest = self.settings.max_music_seconds
        duration = opts.duration if opts.duration is not None else min(self.settings.default_music_seconds, longest)
        if not 1 <= duration <= longest:
            raise OptionError("duration", f"1–{longest} seconds", opts.duration)
        request = MusicRequest(prompt=opts.prompt, model=opts.model or default_model or None, duration=duration)
        return self._validated(request, {"duration": opts.duration, "model": opts.model, "prompt": opts.prompt})

    async def again(self, job: MediaJob, action: str, index: int | None) -> MediaRequest:
        p = job.params
        return self._validated(MusicRequest(prompt=p.prompt, model=p.model, duration=p.duration), {})

    def _validated(self, request: MusicRequest, given: Mapping[str, object]) -> MediaRequest:
        try:
            request = self.gateway.validate_music_request(request)
        except InvalidRequest as exc:
            field = exc.field or "prompt"
            raise OptionError(OPTION_NAMES.get(field, field), exc.allowed, given.get(field), exc.message) from None
        params = JobParams(prompt=request.prompt, model=request.model, duration=request.duration)
        return MediaRequest(kind="music", params=params, gateway_request=request)

    # -- the runner -------------------------------------------------------------------------------

    def amounts(self, params: JobParams) -> dict[str, int]:
        return {"music_seconds": int(params.duration or self.settings.default_music_seconds)}

    async def produce(self, run: JobRun) -> Produced:
        p = run.job.params
        request = (run.request.gateway_request if run.request is not None
                   and isinstance(run.request.gateway_request, MusicRequest)
                   else MusicRequest(prompt=p.prompt, model=p.model, duration=p.duration))
        result = await self.gateway.generate_music(request)
        if not result.audio:
            raise GatewayError("the gateway returned no audio")
        seconds = result.seconds if result.seconds else float(request.duration or 0)
        return Produced(
            files=[FileToStore(result.audio, result.mime, duration=result.seconds)], meta=result.meta,
            amounts={"music_seconds": max(1, math.ceil(seconds))},
            model_used=result.meta.model_used or request.model, request_id=result.meta.request_id,
        )

    async def resume(self, run: JobRun) -> Produced:
        raise RuntimeError("music jobs are one call: never submitted, so never resumed")

    async def cancel(self, job: MediaJob) -> tuple[dict[str, int], CallMeta] | None:
        """Nothing to stop at the gateway (one call; the service stops the local task): nothing billed."""
        return None

    def progress_text(self, run: JobRun, *, elapsed: float, position: int) -> str:
        p = run.job.params
        return render_music_progress(prompt=p.prompt, model=p.model or "default", seconds=p.duration,
                                     elapsed=elapsed, queue_position=position, job_id=run.job.id)

    async def present(self, message: JobMessage, job: MediaJob, files: list[tuple[StoredFile, bytes]],
                      upload: int, *, elapsed: float, link: tuple[str, float] | None = None) -> None:
        stored, data = files[0]
        fitted = await fit_audio(data, upload)
        notes = ["The track was re-encoded to fit this server's upload limit."] if fitted.reencoded else []
        content = render_music_result(prompt=job.params.prompt, model=job.model_used or job.params.model or "default",
                                      seconds=stored.duration, user_id=job.user_id, job_id=job.id, elapsed=elapsed,
                                      notes=notes)
        file = discord.File(io.BytesIO(fitted.data), filename=f"music-{job.id}.{fitted.extension}")
        await message.edit(content=content, attachments=[file], view=self.buttons(job, running=False), final=True)

    def buttons(self, job: MediaJob, *, running: bool) -> discord.ui.View:
        return cancel_view(job.id) if running else reroll_view(job.id)
