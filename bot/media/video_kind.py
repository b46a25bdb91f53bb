"""The video kind of media job (``VideoRunner``, a ``KindRunner`` of bot/media/kinds.py).

A video is made asynchronously by the gateway: one paid POST answers a job id, recorded at once
(``mark_submitted``: running → submitted) so that after a restart the job is followed again, never
sent again (``resume``). Its status is polled with backoff (``poll_interval_seconds`` × 1.5 up to
``poll_max_interval_seconds``; a transient error of a status call is retried at the next poll), and
its status and percentage are reported to the job's message (``JobRun.report``; JobMessage keeps the
edits ≥ 1 s apart). When it completes the ephemeral result URL is recorded and the MP4 downloaded at
once (at most ``max_download_bytes``). Presenting fits the MP4 to the upload limit (re-encoded in a
thread by bot/media/video_codec.py) or, when even that cannot fit, shows the link with its expiry.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot.budgets.rules import Feature
from bot.media.buttons import ImagineButton
from bot.media.jobs import FileToStore, JobParams, MediaJob, StoredFile
from bot.media.kinds import MediaRequest, Produced
from bot.media.video_codec import FittedVideo, VideoTooLarge, VideoUnreadable, fit_video
from bot.media.video_options import VideoOptions, build_video_request, video_params, video_request
from bot.media.video_render import render_video_link, render_video_progress, render_video_result, size_text
from bot.rendering.errors import plain_text
from gateway_client import (
    CallMeta,
    GatewayError,
    GatewayTimeout,
    InvalidResponse,
    RateLimited,
    ResultDownloadFailed,
    UpstreamUnavailable,
    VideoRequest,
)

if TYPE_CHECKING:
    from bot.media.kinds import JobRun, KindContext
    from bot.media.progress import JobMessage
    from gateway_client import DownloadedMedia, VideoJob

__all__ = ["VideoFailed", "VideoOptions", "VideoPolling", "VideoRunner", "VideoTimedOut"]

log = logging.getLogger(__name__)

VIDEO_MIME = "video/mp4"
#: status calls are answered within this (a hung GET is a transient error, retried at the next poll)
STATUS_CALL_TIMEOUT = 60.0


class VideoGateway(Protocol):
    """What the runner needs of ``GatewayClient``."""

    def validate_video_request(self, req: VideoRequest) -> VideoRequest: ...
    async def submit_video(self, req: VideoRequest) -> VideoJob: ...
    async def video_status(self, job_id: str) -> VideoJob: ...
    async def cancel_video(self, job_id: str) -> VideoJob: ...
    async def download_media(self, url: str, *, max_bytes: int) -> DownloadedMedia: ...


class VideoJobs(Protocol):
    """What the runner needs of ``JobStore``."""

    async def set_result_url(self, job_id: int, url: str, expires_at: float | None) -> None: ...


class VideoFailed(GatewayError):
    """The gateway says the job failed (or was cancelled there): its own words, for the member."""

    default_message = "the gateway did not say why"

    def user_message(self) -> str:
        return f"The video gateway could not make this video: {plain_text(self.message)}."


class VideoTimedOut(GatewayError):
    """The job was still not finished after ``video_timeout_seconds``: given up (and cancelled there)."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"not finished after {round(waited)} s")
        self.waited = waited

    def user_message(self) -> str:
        minutes = max(1, round(self.waited / 60))
        return (f"The video was still not ready after {minutes} minute{'s' if minutes != 1 else ''}, so I stopped "
                "waiting for it and asked the gateway to cancel it.")


@dataclass(frozen=True, slots=True)
class VideoPolling:
    """The ``[media]`` settings the video runner reads."""

    interval: float = 2.0
    max_interval: float = 15.0
    timeout: float = 3600.0
    max_download_bytes: int = 256 * 1024 * 1024
    default_seconds: int = 5
    backoff: float = 1.5

    @classmethod
    def from_settings(cls, media: Any) -> VideoPolling:
        """From the ``[media]`` settings section (``settings.media``)."""
        return cls(interval=media.poll_interval_seconds, max_interval=media.poll_max_interval_seconds,
                   timeout=media.video_timeout_seconds, max_download_bytes=media.max_download_bytes,
                   default_seconds=media.default_video_seconds)


class VideoRunner:
    """The video kind: built once by the media-job service (``VideoRunner(ctx)``)."""

    kind = "video"
    feature = Feature.VIDEO

    def __init__(
        self, ctx: KindContext, *, polling: VideoPolling | None = None, wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.gateway: VideoGateway = ctx.gateway
        self.jobs: VideoJobs = ctx.jobs
        self.polling = polling or VideoPolling.from_settings(ctx.settings.media)
        self._now = wall_clock  # the job row's clock: a deadline survives a restart
        self._sleep = sleep

    # -- requests -------------------------------------------------------------------------------------

    def build(self, opts: VideoOptions, *, default_model: str | None) -> MediaRequest:
        """/video's options as a validated request (``OptionError`` for the member; ``Unsupported``)."""
        request = build_video_request(self.gateway, opts, default_model=default_model,
                                      default_duration=self.polling.default_seconds)
        return MediaRequest(kind=self.kind, params=video_params(request), gateway_request=request)

    async def again(self, job: MediaJob, action: str, index: int | None) -> MediaRequest:
        """Re-roll / retry: the stored parameters, validated by today's gateway rules."""
        request = self.gateway.validate_video_request(video_request(job.params))
        return MediaRequest(kind=self.kind, params=video_params(request), gateway_request=request)

    def amounts(self, params: JobParams) -> dict[str, int]:
        return {"video_seconds": params.duration or self.polling.default_seconds}

    # -- the paid work --------------------------------------------------------------------------------

    async def produce(self, run: JobRun) -> Produced:
        """The paid POST (never repeated), the job id recorded at once, then polling to the result."""
        request = run.request.gateway_request if run.request is not None else None
        if not isinstance(request, VideoRequest):
            request = video_request(run.job.params)
        submitted = await self.gateway.submit_video(request)
        if not await run.submitted(submitted.job_id):
            # cancelled (or taken over) while the POST was in flight: do not leave it running there
            await self._cancel_quietly(run.job.id, submitted.job_id)
            raise VideoFailed("the job was cancelled while it was being sent")
        log.info("video job %s submitted as %s", run.job.id, submitted.job_id)
        return await self._follow(run, submitted, started_at=self._now(), request_id=submitted.meta.request_id)

    async def resume(self, run: JobRun) -> Produced:
        """Follow a job found ``submitted`` after a restart: polling only, never a POST."""
        job = run.job
        if not job.gateway_job_id:
            raise VideoFailed("the gateway's job id was not recorded")
        state = await self._status(job.gateway_job_id)
        while state is None and not self._overdue(job.started_at):
            await self._sleep(self.polling.interval)
            state = await self._status(job.gateway_job_id)
        if state is None:
            raise VideoTimedOut(self.polling.timeout)
        log.info("video job %s: following gateway job %s again after a restart", job.id, job.gateway_job_id)
        return await self._follow(run, state, started_at=job.started_at or self._now(), request_id=job.request_id)

    async def _follow(self, run: JobRun, state: VideoJob, *, started_at: float, request_id: str | None) -> Produced:
        """Poll until the job finishes, reporting its progress; the downloaded result."""
        interval = self.polling.interval
        while True:
            if state.status == "completed":
                break
            if state.status == "failed":
                raise VideoFailed(state.error or "")
            if state.status == "cancelled":
                raise VideoFailed("the job was cancelled at the gateway")
            await run.report(status=state.status, progress=state.progress)
            waited = self._now() - started_at
            if waited >= self.polling.timeout:
                await self._cancel_quietly(run.job.id, state.job_id)
                raise VideoTimedOut(waited)
            await self._sleep(min(interval, max(0.0, self.polling.timeout - waited)))
            interval = min(interval * self.polling.backoff, self.polling.max_interval)
            state = await self._status(state.job_id) or state
        await run.report(status="downloading", progress=100.0)
        return await self._collect(run, state, request_id=request_id)

    async def _status(self, gateway_job_id: str) -> VideoJob | None:
        """The job's status, or None after a transient failure (the next poll asks again)."""
        try:
            return await asyncio.wait_for(self.gateway.video_status(gateway_job_id), STATUS_CALL_TIMEOUT)
        except (TimeoutError, UpstreamUnavailable, GatewayTimeout, RateLimited, InvalidResponse) as exc:
            log.info("video job %s: status call failed (%r); asking again at the next poll", gateway_job_id, exc)
            return None
        except GatewayError as exc:
            if exc.connection_error:
                log.info("video job %s: gateway unreachable (%r); asking again at the next poll", gateway_job_id, exc)
                return None
            raise

    def _overdue(self, started_at: float | None) -> bool:
        return started_at is not None and self._now() - started_at >= self.polling.timeout

    async def _collect(self, run: JobRun, state: VideoJob, *, request_id: str | None) -> Produced:
        """Record the result's link, then download it at once (the gateway keeps it about an hour)."""
        assert state.url is not None  # the client refuses a completed job without one
        job, params = run.job, run.job.params
        await self.jobs.set_result_url(job.id, state.url, state.expires_at)
        billed = state.billed_seconds
        if billed is None:
            billed = math.ceil(state.seconds) if state.seconds else (params.duration or self.polling.default_seconds)
        link = (state.url, state.expires_at if state.expires_at is not None else self._now() + 3600.0)
        files: list[FileToStore] = []
        try:
            media = await self.gateway.download_media(state.url, max_bytes=self.polling.max_download_bytes)
            files.append(FileToStore(media.data, VIDEO_MIME, width=state.width, height=state.height,
                                     duration=state.seconds))
        except ResultDownloadFailed as exc:
            if exc.status in (403, 404, 410):
                raise  # the link is already dead: nothing to give the member (the hold is released)
            # too large to keep (or to fetch): the member still gets the link while it lasts
            log.warning("video job %s: result not downloaded (%r); offering its link", job.id, exc)
        return Produced(files=files, meta=state.meta, amounts={"video_seconds": int(billed)},
                        model_used=state.model or state.meta.model_used or params.model,
                        request_id=request_id or state.meta.request_id, link=link)

    # -- cancelling -----------------------------------------------------------------------------------

    async def cancel(self, job: MediaJob) -> tuple[dict[str, int], CallMeta] | None:
        """Cancel the job at the gateway: what it billed (0 while queued) and that call's meta; None when
        it was never submitted (nothing billed). If the gateway had finished it first, what it billed for
        it (a completed video is billed whole, a failed one not at all). ``Unsupported`` when the
        gateway cannot cancel."""
        if not job.gateway_job_id:
            return None
        state = await self.gateway.cancel_video(job.gateway_job_id)
        if state.status != "cancelled":
            log.info("video job %s: cancel came after the gateway %s it", job.id, state.status)
        billed = state.billed_seconds if state.status != "failed" else 0
        return {"video_seconds": int(billed or 0)}, state.meta

    async def _cancel_quietly(self, job_id: int, gateway_job_id: str) -> None:
        """Best effort: stop the gateway working on a job nobody waits for any more."""
        try:
            await self.gateway.cancel_video(gateway_job_id)
        except Exception as exc:
            log.info("video job %s: cancelling %s at the gateway failed: %r", job_id, gateway_job_id, exc)

    # -- what members see -----------------------------------------------------------------------------

    def progress_text(self, run: JobRun, *, elapsed: float, position: int) -> str:
        job = run.job
        status = run.status if job.gateway_job_id or run.status != "queued" else None  # None: not sent yet
        percent = run.progress if run.progress is not None else job.progress
        return render_video_progress(
            prompt=job.params.prompt, model=job.params.model or "default", duration=job.params.duration,
            size=job.params.size, job_id=job.id, status=status, percent=percent, elapsed=elapsed,
            queue_position=position,
        )

    async def present(
        self, message: JobMessage, job: MediaJob, files: list[tuple[StoredFile, bytes]], upload: int, *,
        elapsed: float, link: tuple[str, float] | None = None,
    ) -> None:
        """The MP4 attached (re-encoded to fit ``upload`` when needed) with its caption and buttons; the
        gateway's link with its expiry when it cannot be attached."""
        url, expires = link if link is not None else (job.result_url, job.result_expires_at)
        why = "The video could not be kept by the bot."
        fitted: FittedVideo | None = None
        stored: StoredFile | None = None
        if files:
            stored, data = files[0]
            try:
                fitted = await fit_video(data, upload)
            except VideoTooLarge:
                why = (f"The video ({size_text(len(data))}) does not fit this server's upload limit "
                       f"({size_text(upload)}), even re-encoded.")
            except VideoUnreadable as exc:
                log.warning("video job %s: the result could not be read for re-encoding: %r", job.id, exc)
                why = "The video could not be prepared for upload here."
        model = job.model_used or job.params.model or "default"
        seconds = (stored.duration if stored and stored.duration else None) or job.params.duration
        view = self.buttons(job, running=False)
        if fitted is not None:
            size = f"{fitted.width}x{fitted.height}" if fitted.width and fitted.height else job.params.size
            notes = _fit_notes(fitted, upload)
            content = render_video_result(prompt=job.params.prompt, model=model, duration=seconds, size=size,
                                          job_id=job.id, user_id=job.user_id, elapsed=elapsed, notes=notes)
            file = discord.File(io.BytesIO(fitted.data), filename=f"video-{job.id}.mp4")
            try:
                await message.edit(content=content, attachments=[file], view=view, final=True)
                return
            except discord.HTTPException as exc:
                if exc.status != 413:
                    raise
                why = f"Discord refused the video ({size_text(len(fitted.data))}) as too large for this channel."
        content = render_video_link(prompt=job.params.prompt, model=model, duration=seconds, size=job.params.size,
                                    job_id=job.id, user_id=job.user_id, elapsed=elapsed, url=url, expires_at=expires,
                                    why=why, now=self._now())
        await message.edit(content=content, attachments=[], view=view, final=True)

    def buttons(self, job: MediaJob, *, running: bool) -> discord.ui.View:
        """Cancel while it runs; Re-roll and Delete once it has finished."""
        view = discord.ui.View(timeout=None)
        if running:
            view.add_item(ImagineButton("cancel", job.id, label="Cancel", emoji="🛑", style=discord.ButtonStyle.danger,
                                        row=0))
            return view
        view.add_item(ImagineButton("reroll", job.id, label="Re-roll", emoji="🔄", style=discord.ButtonStyle.primary,
                                    row=0))
        view.add_item(ImagineButton("delete", job.id, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger,
                                    row=0))
        return view


def _fit_notes(fitted: FittedVideo, upload: int) -> list[str]:
    if fitted.scaled:
        return [f"Re-encoded to fit this server's upload limit ({size_text(upload)}): downscaled to "
                f"{fitted.width}×{fitted.height}."]
    if fitted.reencoded:
        return [f"Re-encoded to fit this server's upload limit ({size_text(upload)})."]
    return []
