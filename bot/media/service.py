"""``ImageJobService``: the /imagine use case, built once by the factory as ``bot.image_jobs``.

Life of a job: options validated (nothing reserved yet) → job row ``pending`` (per-member limit,
atomic) → budget reserved → progress message shown as the interaction's response → FIFO queue slot
→ ``running`` → paid gateway call → images stored (``generated``) → charged per image delivered →
grid posted with buttons (``done``). The reservation is guarded by the one budget flow
(``async with hold``): a failure or a cancellation releases it, and the member is told why. A job
found ``running`` at start-up is shown as unknown with a Retry button — never resubmitted on its
own. Buttons (U/V/re-roll/retry/delete) act on jobs by id, so they work after a restart and on any
process (the images are in the database or a shared directory: bot/media/jobs.py). With many
processes, each renews a lease on the jobs it works on; a job is recovered (by whichever process
sweeps next) only once its process is gone: its lease given up at a clean stop, or run out.
On shutdown the service stops taking jobs ("restarting"), lets the jobs in progress finish for a
bounded time, then cancels the rest (their holds released; a cut-off paid call shows as unknown).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot.app.draining import Drained, Restarting, drain_tasks
from bot.budgets.engine import Reservation
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.media.buttons import ButtonHandler, retry_view
from bot.media.jobs import ImageJob, ImageToStore, JobParams, JobStore, StoredImage, media_location
from bot.media.options import ImagineOptions, OptionError, build_request, new_seed
from bot.media.presenter import JobPresenter, upload_limit
from bot.media.progress import JobMessage
from bot.media.queue import FairQueue, Ticket
from bot.media.render import render_failure, render_progress
from bot.rendering.errors import describe_error, error_code
from bot.rendering.user_facing import UserFacingError
from bot.storage.errors import StorageError
from bot.storage.store import Store
from gateway_client import GatewayError, ImageRequest, ImageResult, ModelKind, Unsupported

if TYPE_CHECKING:
    from bot.app.settings import Settings
    from bot.budgets.service import BudgetService
    from bot.guilds.config import GuildConfig
    from gateway_client import GatewayClient

__all__ = ["ImageJobService", "ImagesUnsupported", "JobGone", "ImageNotStored", "NotJobOwner", "JobStillRunning"]

log = logging.getLogger(__name__)

MODEL_CACHE_SECONDS = 300.0
AUTOCOMPLETE_TIMEOUT = 2.0
MODEL_CHECK_TIMEOUT = 1.5
DEFAULT_EXPECTED_SECONDS = 8.0
ORIGINS = {"v": "variation", "reroll": "reroll", "retry": "retry"}
RECOVERY_LOCK = "imagine-recovery"  # one process at a time settles what dead processes left


class ImagesUnsupported(UserFacingError):
    code = "images_unsupported"

    def user_message(self) -> str:
        return "This bot's AI gateway does not generate images."


class JobGone(UserFacingError):
    code = "job_gone"

    def user_message(self) -> str:
        return "This image job no longer exists."


class ImageNotStored(UserFacingError):
    code = "image_not_stored"

    def __init__(self, job_id: int, index: int) -> None:
        super().__init__(f"Image {index} of job #{job_id} is not stored (any more).")


class NotJobOwner(UserFacingError):
    code = "not_job_owner"

    def user_message(self) -> str:
        return "Only the member who asked for these images, or a server admin, can delete them."


class JobStillRunning(UserFacingError):
    code = "job_running"

    def user_message(self) -> str:
        return "This job is still generating; delete it when it has finished."


@dataclass
class _Run:
    """One job being worked on in this process."""

    job: ImageJob
    request: ImageRequest
    hold: Reservation
    upload_limit: int
    message: JobMessage | None = None
    started: float = field(default_factory=time.monotonic)
    ticket: Ticket | None = None


class ImageJobService:
    def __init__(
        self, settings: Settings, store: Store, gateway: GatewayClient, quotas: BudgetService,
        guild_config: GuildConfig | None, client: discord.Client, *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings.imagine
        self.profile = settings.gateway.profile
        self.gateway = gateway
        self.quotas = quotas
        self.guild_config = guild_config
        self.client = client
        self.jobs = JobStore(store, media_location(settings.storage))
        self.queue = FairQueue(self.settings.max_concurrency)
        self.presenter = JobPresenter(client)
        #: who handles button presses (the /imagine cog attaches itself); None: "not available"
        self.buttons: ButtonHandler | None = None
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self._jobs: set[asyncio.Task[Any]] = set()  # the jobs being worked on (what a drain waits for)
        self._accepting = True
        self._expected: dict[str, float] = {}
        self._models: tuple[float, list[str]] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """After the store opens: settle what a previous run left (never resubmitting a paid call), then
        keep this process's leases and settle, from time to time, what processes that died left."""
        # One process owns a SQLite file: every job found there is a previous run's. With PostgreSQL only
        # jobs whose lease was given up or ran out are (another process may be working on the rest).
        everyone = self.jobs.store.dialect == "sqlite"
        async with self.jobs.store.lock(RECOVERY_LOCK) as held:
            recovered = await self.jobs.recover_interrupted(any_owner=everyone) if held else []
        if recovered:
            self._spawn(self._announce_recovered(recovered), "imagine-recovery")
        self._spawn(self._keep_leases(), "imagine-leases")

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.jobs.lease_seconds / 3)
            try:
                await self.jobs.renew_leases()
                async with self.jobs.store.lock(RECOVERY_LOCK) as held:
                    recovered = await self.jobs.recover_interrupted() if held else []
            except StorageError as exc:
                log.warning("image jobs: renewing leases or recovering jobs failed: %s", exc)
                continue
            except Exception:
                log.exception("image jobs: renewing leases or recovering jobs failed")
                continue
            if recovered:
                await self._announce_recovered(recovered)

    def stop_accepting(self) -> None:
        """The drain begins: /imagine and the V/re-roll/retry buttons are refused with "restarting"."""
        self._accepting = False

    async def drain(self, timeout: float) -> Drained:
        """Let the jobs in progress finish (for up to ``timeout`` s), then cancel what is left."""
        return await drain_tasks(lambda: self._jobs, timeout)

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise Restarting()

    async def close(self) -> None:
        """Stop work in flight. A paid call cut off here stays ``running`` → shown as unknown next start."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.jobs.store.is_open:
            try:  # what is left is recovered by the next process to start (or sweep) at once
                await self.jobs.release_leases()
            except StorageError as exc:
                log.warning("image jobs: giving up this process's leases failed (%s); they run out in %g s",
                            exc, self.jobs.lease_seconds)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._jobs.discard)
        return task

    # -- models ---------------------------------------------------------------------------------------

    async def image_model_ids(self) -> list[str]:
        """The gateway's image models (cached for a few minutes)."""
        now = self._clock()
        if self._models and now - self._models[0] < MODEL_CACHE_SECONDS:
            return self._models[1]
        models = await self.gateway.image_models()
        ids = list(dict.fromkeys(m.id for m in models))
        self._models = (now, ids)
        return ids

    async def model_choices(self, current: str) -> list[str]:
        """Image model ids containing ``current``; the last known list when the gateway is slow."""
        try:
            ids = await asyncio.wait_for(self.image_model_ids(), AUTOCOMPLETE_TIMEOUT)
        except Exception as exc:  # autocomplete must answer; an empty list is an answer
            log.info("image model list unavailable for autocomplete: %r", exc)
            ids = self._models[1] if self._models else []
        needle = current.lower().strip()
        return [m for m in ids if needle in m.lower()] if needle else list(ids)

    async def _check_model_listed(self, model: str | None) -> None:
        """Refuse a typed model missing from the gateway's image model list (when the list can be had
        quickly; otherwise the gateway decides, and a refusal there is refunded)."""
        if not model:
            return
        try:
            ids = await asyncio.wait_for(self.image_model_ids(), MODEL_CHECK_TIMEOUT)
        except Exception as exc:
            log.info("image model list unavailable, not checking %r: %r", model, exc)
            return
        if ids and not any(_same_model(model, listed) for listed in ids):
            raise OptionError("model", ids, model)

    # -- creating a job -------------------------------------------------------------------------------

    async def prepare(self, opts: ImagineOptions, *, guild_id: int | None, channel_id: int | None,
                      parent_channel_id: int | None = None) -> ImageRequest:
        """The validated request for /imagine's options; raises ``OptionError``, ``ImagesUnsupported`` or
        ``Restarting``."""
        self._check_accepting()
        default_model = None
        if self.guild_config is not None:
            effective = await self.guild_config.effective(guild_id, channel_id, parent_channel_id)
            default_model = effective.image_model or None
        try:
            request = build_request(self.gateway, opts, default_model=default_model,
                                    default_count=self.settings.default_count,
                                    default_steps=self.settings.default_steps)
            await self._check_model_listed(opts.model)
        except Unsupported:
            raise ImagesUnsupported() from None
        return request

    async def again(self, job: ImageJob, action: str) -> ImageRequest:
        """The request for V-n, re-roll or retry of ``job`` (a new seed for a variation or re-roll)."""
        p = job.params
        seed = new_seed() if action in ("v", "reroll") and p.seed is not None else p.seed
        request = ImageRequest(prompt=p.prompt, model=p.model, n=p.count, width=p.width, height=p.height,
                               size=p.size, steps=p.steps, seed=seed, negative_prompt=p.negative_prompt)
        return self.gateway.validate_image_request(request)

    async def submit(
        self, interaction: discord.Interaction, request: ImageRequest, *, origin: str = "command",
        parent: ImageJob | None = None, source_index: int | None = None,
    ) -> ImageJob:
        """Record the job, reserve its budget, show its progress message and queue it.

        Raises ``ConcurrencyLimitReached`` or ``BudgetExceeded`` before anything is shown (the caller
        answers the interaction with the refusal), or ``Restarting`` while the bot drains; returns
        once the progress message is up.
        """
        self._check_accepting()
        params = JobParams(
            prompt=request.prompt, model=request.model, count=request.n, width=request.width,
            height=request.height, size=request.size, steps=request.steps, seed=request.seed,
            negative_prompt=request.negative_prompt,
        )
        job = await self.jobs.create(
            params, user_id=interaction.user.id, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
            profile=self.profile, origin=origin, parent_id=parent.id if parent else None, source_index=source_index,
            max_active=self.settings.max_concurrent_per_user,
        )
        try:
            hold = await self.quotas.reserve(Requester.from_interaction(interaction), Feature.IMAGE,
                                             images=request.n, model=request.model)
        except BudgetExceeded:
            await self.jobs.mark_failed(job.id, "refused: budget")
            raise
        except BaseException:
            await self.jobs.mark_failed(job.id, "refused: budget check failed")
            raise
        run = _Run(job=job, request=request, hold=hold, upload_limit=upload_limit(interaction),
                   started=self._clock())
        shown: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.add(self._spawn(self._run(run, interaction, shown), f"imagine-job-{job.id}"))
        await shown
        return job

    # -- running a job --------------------------------------------------------------------------------

    async def _run(self, run: _Run, interaction: discord.Interaction, shown: asyncio.Future[None]) -> None:
        progress: asyncio.Task[None] | None = None
        try:
            async with run.hold:  # the budget flow: settled below, released on any failure or cancellation
                run.message = await self._show(run, interaction)
                shown.set_result(None)
                run.ticket = self.queue.enter()
                progress = asyncio.create_task(self._progress_loop(run), name=f"imagine-progress-{run.job.id}")
                result = await self._generate(run)
                stored = await self._store(run, result)
                await run.hold.settle(images=stored, meta=result.meta)
            if progress is not None:
                progress.cancel()
            await self._deliver(run.job.id, run.message, run.upload_limit, elapsed=self._clock() - run.started)
        except asyncio.CancelledError:
            # The bot is stopping; the flow gave the hold back. A paid call cut off here leaves the job
            # "running", which the next start shows as unknown (never resubmitted).
            raise
        except Exception as exc:
            if not shown.done():
                shown.set_exception(exc)  # the member never saw the job: the command handler reports it
                return
            await self._fail(run, exc, refunded=not run.hold.settled)
        finally:
            if not shown.done():
                shown.cancel()
            if progress is not None:
                progress.cancel()
            if run.ticket is not None:
                self.queue.leave(run.ticket)

    async def _show(self, run: _Run, interaction: discord.Interaction) -> JobMessage:
        queue = self.queue
        position = 0 if (queue.running < queue.slots and not queue.waiting) else queue.waiting + 1
        content = self._progress_text(run, elapsed=0, position=position)
        try:
            message = await self.presenter.open(interaction, content)
        except BaseException as exc:
            await self.jobs.mark_failed(run.job.id, f"progress message failed: {type(exc).__name__}")
            raise
        assert message.message_id is not None
        await self.jobs.set_message(run.job.id, interaction.channel_id, message.message_id)
        return message

    async def _generate(self, run: _Run) -> ImageResult:
        """Wait for a queue slot, then the paid call."""
        assert run.ticket is not None
        async with self.queue.slot(run.ticket):
            if not await self.jobs.mark_running(run.job.id):
                raise RuntimeError("the job is no longer pending")
            began = self._clock()
            result = await self.gateway.generate_images(run.request)
            self._learn_duration(run.request.model, self._clock() - began)
        if not result.images:
            raise GatewayError("the gateway returned no images")
        return result

    async def _store(self, run: _Run, result: ImageResult) -> int:
        """Keep the images (so buttons work after a restart); the number stored."""
        single = len(result.images) == 1
        to_store = [
            ImageToStore(img.data, img.mime, img.width, img.height,
                         img.seed if img.seed is not None else (run.request.seed if single else None))
            for img in result.images
        ]
        await self.jobs.save_generated(run.job.id, to_store, model_used=result.meta.model_used or run.request.model,
                                       request_id=result.meta.request_id)
        return len(to_store)

    def _progress_text(self, run: _Run, *, elapsed: float, position: int) -> str:
        return render_progress(prompt=run.request.prompt, model=run.request.model or "default", count=run.request.n,
                               elapsed=elapsed, expected=self._expected_for(run.request.model),
                               queue_position=position, job_id=run.job.id)

    async def _progress_loop(self, run: _Run) -> None:
        interval = self.settings.progress_interval
        while True:
            await asyncio.sleep(interval)
            ticket = run.ticket
            content = self._progress_text(run, elapsed=self._clock() - run.started,
                                          position=ticket.position if ticket else 0)
            assert run.message is not None
            await run.message.tick(content)

    async def _fail(self, run: _Run, exc: Exception, *, refunded: bool) -> None:
        if isinstance(exc, GatewayError):
            log.info("image job %s failed at the gateway: %r", run.job.id, exc)
        else:
            log.warning("image job %s failed", run.job.id, exc_info=exc)
        reason = await describe_error(exc, gateway=self.gateway, model=run.request.model, kinds=[ModelKind.IMAGE])
        await self.jobs.mark_failed(run.job.id, f"{error_code(exc)}: {reason}")
        assert run.message is not None
        await self.presenter.show_failure(run.message, run.job.id, run.request.prompt, reason, refunded=refunded)

    async def _deliver(self, job_id: int, message: JobMessage, upload: int, *, elapsed: float) -> None:
        """Put the grid and its buttons on the job's message, then mark the job done."""
        job = await self.jobs.get(job_id)
        stored = await self.jobs.read_all(job_id)
        if job is None or not stored:
            raise RuntimeError("the generated images are missing")
        await self.presenter.show_result(message, job, stored, upload, elapsed=elapsed)
        await self.jobs.mark_done(job_id)

    # -- button actions -------------------------------------------------------------------------------

    async def job(self, job_id: int) -> ImageJob:
        """The job a button names; ``JobGone`` when it was deleted or never existed."""
        job = await self.jobs.get(job_id)
        if job is None or job.status == "deleted":
            raise JobGone()
        return job

    async def stored_image(self, job: ImageJob, index: int) -> tuple[StoredImage, bytes]:
        found = await self.jobs.read_image(job.id, index)
        if found is None:
            raise ImageNotStored(job.id, index)
        return found

    async def single_image(
        self, job: ImageJob, found: tuple[StoredImage, bytes], upload: int
    ) -> tuple[str, discord.File]:
        """Image ``found`` alone at full size, for U-n. No gateway call, so nothing is charged."""
        stored, data = found
        count = len(await self.jobs.images(job.id))
        return await self.presenter.single(job, stored, data, count, upload)

    async def regenerate(self, interaction: discord.Interaction, job: ImageJob, action: str,
                         index: int | None) -> ImageJob:
        """V-n, re-roll and retry: a new job for whoever pressed, reserved and charged like /imagine."""
        request = await self.again(job, action)
        return await self.submit(interaction, request, origin=ORIGINS[action], parent=job,
                                 source_index=index if action == "v" else None)

    def check_delete(self, job: ImageJob, user_id: int, permissions: discord.Permissions) -> None:
        """Only the member who asked (or a moderator), and not while it is generating."""
        moderator = permissions.administrator or permissions.manage_messages or permissions.manage_guild
        if user_id != job.user_id and not moderator:
            raise NotJobOwner()
        if job.status in ("pending", "running"):
            raise JobStillRunning()

    async def delete(self, job: ImageJob) -> None:
        """Mark the job deleted and remove its image files (the caller deletes the message)."""
        await self.jobs.mark_deleted(job.id)

    # -- recovery after a restart ---------------------------------------------------------------------

    async def _announce_recovered(self, jobs: list[ImageJob]) -> None:
        await self.client.wait_until_ready()
        for job in jobs:
            message = self.presenter.reopen(job)
            if message is None:
                continue
            try:
                if job.status == "generated":
                    await self._deliver(job.id, message, self.presenter.channel_upload_limit(job.guild_id), elapsed=0)
                elif job.status == "unknown":
                    await self.presenter.show_unknown(message, job)
                else:
                    await message.edit(
                        content=render_failure(prompt=job.params.prompt, job_id=job.id,
                                               reason="the bot restarted before it was sent."),
                        view=retry_view(job.id))
            except Exception as exc:
                log.warning("could not update the message of interrupted image job %s: %r", job.id, exc)

    # -- helpers --------------------------------------------------------------------------------------

    def _expected_for(self, model: str | None) -> float:
        return self._expected.get(model or "", DEFAULT_EXPECTED_SECONDS)

    def _learn_duration(self, model: str | None, seconds: float) -> None:
        key = model or ""
        old = self._expected.get(key)
        self._expected[key] = seconds if old is None else 0.7 * old + 0.3 * seconds


def _same_model(typed: str, listed: str) -> bool:
    """Equal, or equal up to a provider prefix ("dall-e-3" ~ "openai/dall-e-3")."""
    a, b = typed.lower(), listed.lower()
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)
