"""What a kind of media job is to the media-job service: a runner (issue 18 contract).

The service (bot/media/service.py) owns everything kinds share — the job row, the budget hold, the
progress message, the queue slot, storing, settling, recovery and the buttons — and asks the kind's
runner only for what differs: what to hold, the paid work, how progress reads, how the result is
shown. Runners: image and edit (bot/media/image_kind.py), music (bot/media/music_kind.py), video
(bot/media/video_kind.py). Each is built once by the service with a ``KindContext``.

Runners are built per gateway client (the service keeps one set for the operator's gateway and one
for each guild gateway a job ran on), so a runner's ``gateway`` is the one its jobs run on.

The life of a job, for every kind: row (with its sources) → ``reserve(**runner.amounts(params))``
(the reservation id stored on the row) → progress message → queue slot (images and edits: the
``[imagine]`` queue; video and music: the ``[media]`` queue) → ``mark_running`` →
``runner.produce(run)`` → files stored → hold settled with ``Produced.amounts`` → ``runner.present``
→ done. After a restart a ``submitted`` job goes to ``runner.resume(run)`` (never a new POST), with
the hold reopened (``run.hold`` None when it is gone: the service charges the amounts afterwards).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import discord

    from bot.app.settings import Settings
    from bot.budgets.engine import Reservation
    from bot.budgets.rules import Feature
    from bot.media.jobs import FileToStore, JobParams, JobStore, MediaJob, StoredFile
    from bot.media.presenter import JobPresenter
    from bot.media.progress import JobMessage
    from gateway_client import CallMeta, GatewayClient, ImageEditRequest, ImageRequest, MusicRequest, VideoRequest

    GatewayRequest = ImageRequest | ImageEditRequest | VideoRequest | MusicRequest

__all__ = ["JobRun", "KindContext", "KindRunner", "MediaRequest", "Produced", "Repeater", "RequestBuilder"]


@dataclass(frozen=True)
class MediaRequest:
    """A validated request of one kind, ready for ``MediaJobService.submit``: the parameters stored on
    the job row, what is sent to the gateway, and the job's input files (an edit's ``source``/``mask``)."""

    kind: str
    params: JobParams
    gateway_request: GatewayRequest
    sources: list[tuple[str, FileToStore]] = field(default_factory=list)
    #: the gateway it was validated for (the guild's; set by the service): the job runs there
    gateway: GatewayClient | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Produced:
    """What a runner's paid work produced: the files to keep, the call's meta, what to settle (e.g.
    ``{"images": 2}``, ``{"video_seconds": 8}``) and, when the result could not be kept (too large),
    a link with its expiry (unix seconds)."""

    files: list[FileToStore]
    meta: CallMeta
    amounts: dict[str, int]
    model_used: str | None = None
    request_id: str | None = None
    link: tuple[str, float] | None = None


@dataclass(frozen=True)
class KindContext:
    """What the service gives each runner when it builds it."""

    settings: Settings
    gateway: GatewayClient
    jobs: JobStore
    client: discord.Client
    presenter: JobPresenter
    clock: Callable[[], float] = time.monotonic


@dataclass(eq=False)
class JobRun:
    """One job being worked on in this process (built by the service, handed to the runner).

    ``request`` is None for a job resumed after a restart (its parameters are on ``job``); ``hold`` is
    None when the budget hold was gone by then. ``status``/``progress`` are what the runner last
    reported (shown by its ``progress_text``); ``position`` is the queue position (0: running).
    """

    job: MediaJob
    request: MediaRequest | None
    hold: Reservation | None
    message: JobMessage
    upload_limit: int
    started: float
    status: str = "queued"
    progress: float | None = None
    position: int = 0
    #: set by the service: writes the row and edits the message (at most once a second)
    reporter: Callable[[JobRun], Awaitable[None]] | None = field(default=None, repr=False)
    #: set by the service: records the gateway's job id (running → submitted) on the row and on ``job``
    submitter: Callable[[JobRun, str], Awaitable[bool]] | None = field(default=None, repr=False)

    async def report(self, *, status: str, progress: float | None) -> None:
        """A progress update from the runner: kept on the row, shown on the message (≤ 1 edit/s)."""
        self.status = status
        self.progress = progress
        if self.reporter is not None:
            await self.reporter(self)

    async def submitted(self, gateway_job_id: str) -> bool:
        """The gateway accepted the paid POST: ``running → submitted`` with its job id, in one write
        (from then on a restart resumes polling and never posts again). False if the job had moved on."""
        if self.submitter is None:
            raise RuntimeError("this run has no job store")
        return await self.submitter(self, gateway_job_id)


class KindRunner(Protocol):
    kind: str
    feature: Feature

    def amounts(self, params: JobParams) -> dict[str, int]:
        """What ``reserve()`` holds for a job with these parameters (e.g. ``{"music_seconds": 30}``)."""
        ...

    async def produce(self, run: JobRun) -> Produced:
        """The paid work, after ``mark_running``; raises on failure (the hold is released)."""
        ...

    async def resume(self, run: JobRun) -> Produced:
        """An async kind after a restart: carry on with ``run.job.gateway_job_id`` (no new POST)."""
        ...

    async def cancel(self, job: MediaJob) -> tuple[dict[str, int], CallMeta] | None:
        """Stop the job at the gateway; what it billed (all 0 or None: nothing, the hold is released)."""
        ...

    def progress_text(self, run: JobRun, *, elapsed: float, position: int) -> str: ...

    async def present(self, message: JobMessage, job: MediaJob, files: list[tuple[StoredFile, bytes]],
                      upload: int, *, elapsed: float, link: tuple[str, float] | None = None) -> None:
        """Put the result (with its buttons) on the job's message."""
        ...

    def buttons(self, job: MediaJob, *, running: bool) -> discord.ui.View:
        """The buttons of the job's message: while it runs (``running``), or under its result."""
        ...


@runtime_checkable
class Repeater(Protocol):
    """A runner whose jobs can be made again (re-roll, retry, an image's V-n): every builder, and the
    edit runner (whose first request is built by ``MediaJobService.prepare_edit``, from its picture)."""

    async def again(self, job: MediaJob, action: str, index: int | None) -> MediaRequest:
        """The request for re-roll / retry (and an image's V-n) of ``job``: its stored parameters (and
        sources) again, validated by today's gateway rules."""
        ...


@runtime_checkable
class RequestBuilder(Repeater, Protocol):
    """A runner that turns a command's options into a request (``MediaJobService.prepare_*``)."""

    def build(self, opts: Any, *, default_model: str | None) -> MediaRequest:
        """Validate ``opts`` (raising ``OptionError`` for the member, ``Unsupported`` when the gateway
        does not offer the kind) into a request."""
        ...
