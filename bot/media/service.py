"""``MediaJobService``: every kind of media job (image, edit, video, music), built once by the factory
as ``bot.media_jobs``. What differs by kind lives in its runner (bot/media/kinds.py).

Life of a job: options validated (nothing reserved yet) → job row ``pending`` with its sources
(per-member limit, atomic) → budget reserved (long kinds: a hold that outlives the default TTL; its id
kept on the row) → progress message shown as the interaction's response → FIFO queue slot (images
and edits share ``[imagine] max_concurrency``, video and music ``[media] max_concurrency``; the
position is shown) → ``running`` → the runner's paid work → files stored (``generated``) → hold
settled with what was produced → the runner shows the result (``done``). A failure releases the hold
and tells the member why; a member's cancel settles what the gateway billed (nothing: released).

Every job runs on the gateway of its guild (``GatewayDirectory.for_guild``: the operator's, or the
guild's own): its options are validated by that gateway's rules, its models listed there, and the job
row's ``profile`` records which gateway took it (``gateway_mark``: the operator's profile name, or a
guild gateway's label and base URL).

After a restart (or when a lease sweep finds a dead process's jobs): ``running`` → unknown with a
Retry button (never resubmitted on its own), ``generated`` → posted, ``submitted`` → the runner
resumes polling (never a new POST) on the gateway of the job's guild with the hold reopened — or,
when it is gone, charged afterwards (``charge_after``). When the guild changed or removed its
gateway since, the job fails with that reason and its hold is released: it is never polled on
another gateway. With many processes, each renews a lease on the jobs it works on; a job is
recovered only once its process is gone. On shutdown the service stops taking jobs ("restarting"),
lets the jobs in progress finish for a bounded time, then cancels the rest (a submitted job keeps its
hold for the next start; the others' holds are released; a cut-off paid call shows as unknown).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord

from bot.app.draining import Drained, Restarting, drain_tasks
from bot.budgets.engine import Reservation
from bot.budgets.rules import KIND_NOUNS, BudgetExceeded, Requester
from bot.gateways.directory import GatewayDirectory, is_guild_client
from bot.guilds.config import GUILD_LEVEL
from bot.media.buttons import ButtonHandler, retry_view
from bot.media.image_kind import EditRunner, EditSourceLike, ImageRunner
from bot.media.jobs import ACTIVE_STATUSES, JobStore, MediaJob, StoredFile, media_location
from bot.media.kinds import JobRun, KindContext, KindRunner, MediaRequest, Produced, Repeater, RequestBuilder
from bot.media.music_kind import MusicRunner
from bot.media.options import ImagineOptions, OptionError
from bot.media.presenter import JobPresenter, upload_limit
from bot.media.progress import JobMessage
from bot.media.queue import FairQueue, Ticket
from bot.media.render import render_failure
from bot.media.video_kind import VideoRunner
from bot.rendering.errors import describe_error, error_code, guild_gateway_lacks
from bot.rendering.user_facing import UserFacingError
from bot.storage.errors import StorageError
from bot.storage.store import Store
from gateway_client import CallMeta, GatewayClient, GatewayError, ModelKind, Unsupported

if TYPE_CHECKING:
    from bot.app.settings import Settings
    from bot.budgets.service import BudgetService
    from bot.guilds.config import GuildConfig

__all__ = [
    "GatewayChanged", "ImagesUnsupported", "ImageNotStored", "JobGone", "JobNotRunning", "JobStillRunning",
    "KindUnsupported", "MediaJobService", "NotJobOwner", "gateway_mark",
]

log = logging.getLogger(__name__)

MODEL_CACHE_SECONDS = 300.0
AUTOCOMPLETE_TIMEOUT = 2.0
MODEL_CHECK_TIMEOUT = 1.5
ORIGINS = {"v": "variation", "reroll": "reroll", "retry": "retry"}
RECOVERY_LOCK = "imagine-recovery"  # one process at a time settles what dead processes left
#: the profile capability each kind needs
CAPABILITY = {"image": "images", "edit": "image_edits", "video": "videos", "music": "music"}
#: which queue (and which per-member limit) a kind takes
IMAGE_KINDS = ("image", "edit")
MEDIA_KINDS = ("video", "music")
#: the gateway's model-list kind, for errors that name the models to pick from
MODEL_KINDS = {"image": "image", "edit": "image", "video": "video", "music": "music"}
NOUNS = {"image": "images", "edit": "image edits", "video": "video", "music": "music"}


def own_gateway_lacks(client: GatewayClient | None, feature: str) -> str | None:
    """What a member reads when a server's own gateway lacks ``feature`` (None for the bot's gateway)."""
    if client is None or not is_guild_client(client):
        return None
    return guild_gateway_lacks(client.profile.name, feature)


class KindUnsupported(UserFacingError):
    code = "kind_unsupported"

    def __init__(self, kind: str, gateway: GatewayClient | None = None) -> None:
        super().__init__(f"the gateway does not offer {kind}")
        self.kind = kind
        self.gateway = gateway

    def user_message(self) -> str:
        noun = NOUNS.get(self.kind, self.kind)
        return own_gateway_lacks(self.gateway, noun) or f"This bot's AI gateway does not make {noun}."


class ImagesUnsupported(KindUnsupported):
    code = "images_unsupported"

    def __init__(self, gateway: GatewayClient | None = None) -> None:
        super().__init__("image", gateway)

    def user_message(self) -> str:
        return own_gateway_lacks(self.gateway, "images") or "This bot's AI gateway does not generate images."


class GatewayChanged(UserFacingError):
    """A submitted job's guild changed (or removed) its gateway since: it cannot be followed there."""

    code = "gateway_changed"

    def __init__(self, was: str, now: str) -> None:
        super().__init__(f"submitted on {was!r}, the guild is now served by {now!r}")

    def user_message(self) -> str:
        return ("this server changed its AI gateway after the job was sent, so the bot cannot follow it on the "
                "gateway that was making it.")


class JobGone(UserFacingError):
    code = "job_gone"

    def user_message(self) -> str:
        return "This job no longer exists."


class ImageNotStored(UserFacingError):
    code = "image_not_stored"

    def __init__(self, job_id: int, index: int) -> None:
        super().__init__(f"Image {index} of job #{job_id} is not stored (any more).")


class NotJobOwner(UserFacingError):
    code = "not_job_owner"

    def __init__(self, action: str = "delete") -> None:
        super().__init__(f"only the requester or an admin may {action} this job")
        self.action = action

    def user_message(self) -> str:
        if self.action == "cancel":
            return "Only the member who asked for this job, or a server admin, can cancel it."
        return "Only the member who asked for these images, or a server admin, can delete them."


class JobStillRunning(UserFacingError):
    code = "job_running"

    def user_message(self) -> str:
        return "This job is still generating; delete it when it has finished."


class JobNotRunning(UserFacingError):
    code = "job_not_running"

    def user_message(self) -> str:
        return "This job is no longer running, so there is nothing to cancel."


@dataclass(eq=False)
class _Active:
    """A job this process works on: its run, its task, its queue ticket."""

    run: JobRun
    runner: KindRunner
    gateway: GatewayClient
    task: asyncio.Task[None] | None = None
    ticket: Ticket | None = None
    finishing: bool = False  # produced: storing, settling, showing (no longer cancellable)
    cancelled: bool = False  # a member cancelled it (the cancel owns the hold and the message)


@dataclass(eq=False)
class _Served:
    """What the service keeps per gateway client: its kinds' runners and its model lists."""

    gateway: GatewayClient
    runners: dict[str, KindRunner]
    models: dict[str, tuple[float, list[str]]]


def is_moderator(permissions: discord.Permissions) -> bool:
    return permissions.administrator or permissions.manage_messages or permissions.manage_guild


def gateway_mark(client: GatewayClient) -> str:
    """Which gateway took a job (kept in its row's ``profile``): the operator's profile name (its label, as
    before), or a guild gateway's label and base URL — so a guild that changed its gateway since is seen."""
    label = client.config.label
    return f"{label} {client.config.base_url}" if is_guild_client(client) else label


class MediaJobService:
    def __init__(
        self, settings: Settings, store: Store, gateway: GatewayClient, quotas: BudgetService,
        guild_config: GuildConfig | None, client: discord.Client, *, clock: Callable[[], float] = time.monotonic,
        gateways: GatewayDirectory | None = None,
    ) -> None:
        self.settings = settings.imagine
        self.media = settings.media
        self._default_ttl = float(settings.quotas.reservation_ttl_seconds)
        self.profile = settings.gateway.profile
        self.gateway = gateway
        #: the gateway serving each guild (the operator's ``gateway`` unless the guild has its own)
        self.gateways = gateways if gateways is not None else GatewayDirectory(gateway)
        self.quotas = quotas
        self.guild_config = guild_config
        self.client = client
        self.jobs = JobStore(store, media_location(settings.storage))
        self.queues = {"imagine": FairQueue(self.settings.max_concurrency),
                       "media": FairQueue(self.media.max_concurrency)}
        self.presenter = JobPresenter(client)
        #: who handles button presses (the media buttons cog attaches itself); None: "not available"
        self.buttons: ButtonHandler | None = None
        self._clock = clock
        self._ctx = KindContext(settings=settings, gateway=gateway, jobs=self.jobs, client=client,
                                presenter=self.presenter, clock=clock)
        #: the operator's gateway's runners (each guild gateway gets its own set: ``_serving``)
        self.runners: dict[str, KindRunner] = {r.kind: r for r in _build_runners(self._ctx)}
        self._models: dict[str, tuple[float, list[str]]] = {}
        self._guild_served: dict[int, _Served] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._jobs: set[asyncio.Task[Any]] = set()  # the jobs being worked on (what a drain waits for)
        self._active: dict[int, _Active] = {}
        self._accepting = True

    @property
    def queue(self) -> FairQueue:
        """The [imagine] queue (images and edits)."""
        return self.queues["imagine"]

    def supports(self, kind: str, gateway: GatewayClient | None = None) -> bool:
        """Whether ``kind`` jobs can be made on ``gateway`` (default: the operator's): a runner for it, and
        the gateway's profile offers it."""
        if kind not in self.runners:
            return False
        profile = getattr(gateway if gateway is not None else self.gateway, "profile", None)
        return profile is None or bool(profile.supports(CAPABILITY[kind]))

    async def supports_in(self, kind: str, guild_id: int | None) -> bool:
        """``supports`` on the gateway serving ``guild_id``."""
        return self.supports(kind, await self.gateways.for_guild(guild_id))

    async def gateway_for(self, guild_id: int | None) -> GatewayClient:
        """The gateway client a job of ``guild_id`` runs on."""
        return await self.gateways.for_guild(guild_id)

    def runner(self, kind: str, gateway: GatewayClient | None = None) -> KindRunner:
        """The runner of ``kind`` jobs on ``gateway`` (default: the operator's)."""
        try:
            return self._serving(gateway).runners[kind]
        except KeyError:
            raise KindUnsupported(kind, gateway) from None

    def _serving(self, gateway: GatewayClient | None) -> _Served:
        """The runners and model lists of ``gateway``: built the first time a guild gateway is used, and
        forgotten once the directory has closed it and no job of this process still runs on it."""
        if gateway is None or gateway is self.gateway:
            return _Served(self.gateway, self.runners, self._models)
        served = self._guild_served.get(id(gateway))
        if served is None or served.gateway is not gateway:
            served = _Served(gateway, {r.kind: r for r in _build_runners(replace(self._ctx, gateway=gateway))}, {})
            self._guild_served[id(gateway)] = served
        in_use = {id(a.gateway) for a in self._active.values()}
        for key, other in list(self._guild_served.items()):
            if other is not served and not other.gateway.started and key not in in_use:
                del self._guild_served[key]
        return served

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
            self._spawn(self._announce_recovered(recovered), "media-recovery")
        self._spawn(self._keep_leases(), "media-leases")

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.jobs.lease_seconds / 3)
            try:
                await self.jobs.renew_leases()
                async with self.jobs.store.lock(RECOVERY_LOCK) as held:
                    recovered = await self.jobs.recover_interrupted() if held else []
            except StorageError as exc:
                log.warning("media jobs: renewing leases or recovering jobs failed: %s", exc)
                continue
            except Exception:
                log.exception("media jobs: renewing leases or recovering jobs failed")
                continue
            if recovered:
                await self._announce_recovered(recovered)

    def stop_accepting(self) -> None:
        """The drain begins: new jobs and the V/re-roll/retry buttons are refused with "restarting"."""
        self._accepting = False

    async def drain(self, timeout: float) -> Drained:
        """Let the jobs in progress finish (for up to ``timeout`` s), then cancel what is left."""
        return await drain_tasks(lambda: self._jobs, timeout)

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise Restarting()

    async def close(self) -> None:
        """Stop work in flight. A paid call cut off here stays ``running`` → shown as unknown next start;
        a submitted job stays ``submitted`` (with its hold) → resumed next start."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.jobs.store.is_open:
            try:  # what is left is recovered by the next process to start (or sweep) at once
                await self.jobs.release_leases()
            except StorageError as exc:
                log.warning("media jobs: giving up this process's leases failed (%s); they run out in %g s",
                            exc, self.jobs.lease_seconds)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._jobs.discard)
        return task

    # -- models ---------------------------------------------------------------------------------------

    async def model_ids(self, kind: str, gateway: GatewayClient | None = None) -> list[str]:
        """``gateway``'s models for ``kind`` (default: the operator's; cached for a few minutes)."""
        served = self._serving(gateway)
        now = self._clock()
        cached = served.models.get(MODEL_KINDS.get(kind, kind))
        if cached and now - cached[0] < MODEL_CACHE_SECONDS:
            return cached[1]
        client = served.gateway
        lister = {"image": client.image_models, "edit": client.image_models,
                  "video": client.video_models, "music": client.music_models}[kind]
        models = await lister()
        ids = list(dict.fromkeys(m.id for m in models))
        served.models[MODEL_KINDS.get(kind, kind)] = (now, ids)
        return ids

    async def image_model_ids(self, gateway: GatewayClient | None = None) -> list[str]:
        return await self.model_ids("image", gateway)

    async def model_choices(self, kind: str, current: str, guild_id: int | None = None) -> list[str]:
        """Model ids of ``kind`` on the gateway of ``guild_id`` containing ``current``; the last known
        list when the gateway is slow."""
        gateway: GatewayClient | None = None
        try:
            async with asyncio.timeout(AUTOCOMPLETE_TIMEOUT):
                gateway = await self.gateways.for_guild(guild_id)
                ids = await self.model_ids(kind, gateway)
        except Exception as exc:  # autocomplete must answer; an empty list is an answer
            log.info("%s model list unavailable for autocomplete: %r", kind, exc)
            if gateway is None:
                gateway = self.gateways.peek(guild_id)
            cached = self._serving(gateway).models.get(MODEL_KINDS.get(kind, kind))
            ids = cached[1] if cached else []
        needle = current.lower().strip()
        return [m for m in ids if needle in m.lower()] if needle else list(ids)

    async def _check_model_listed(self, kind: str, model: str | None, gateway: GatewayClient | None = None) -> None:
        """Refuse a typed model missing from the gateway's model list of the kind (when the list can be
        had quickly; otherwise the gateway decides, and a refusal there is refunded)."""
        if not model:
            return
        try:
            ids = await asyncio.wait_for(self.model_ids(kind, gateway), MODEL_CHECK_TIMEOUT)
        except Exception as exc:
            log.info("%s model list unavailable, not checking %r: %r", kind, model, exc)
            return
        if ids and not any(_same_model(model, listed) for listed in ids):
            raise OptionError("model", ids, model)

    # -- creating a job -------------------------------------------------------------------------------

    async def prepare(self, opts: ImagineOptions, *, guild_id: int | None, channel_id: int | None,
                      parent_channel_id: int | None = None) -> MediaRequest:
        """The validated request for /imagine create's options; raises ``OptionError``, ``ImagesUnsupported``
        or ``Restarting``."""
        self._check_accepting()
        gateway = await self.gateways.for_guild(guild_id)
        if not self.supports("image", gateway):
            raise ImagesUnsupported(gateway)
        default_model = await self._guild_image_model(gateway, guild_id, channel_id, parent_channel_id)
        try:
            request = self._builder("image", gateway).build(opts, default_model=default_model)
            await self._check_model_listed("image", opts.model, gateway)
        except Unsupported:
            raise ImagesUnsupported(gateway) from None
        return replace(request, gateway=gateway)

    async def prepare_edit(self, opts: Any, source: EditSourceLike, *, guild_id: int | None,
                           channel_id: int | None, parent_channel_id: int | None = None) -> MediaRequest:
        """An edit of ``source`` by ``opts`` (bot/media/edit_source.py ``EditOptions``/``EditSource``)."""
        self._check_accepting()
        gateway = await self.gateways.for_guild(guild_id)
        if not self.supports("edit", gateway):
            raise KindUnsupported("edit", gateway)
        runner = self.runner("edit", gateway)
        assert isinstance(runner, EditRunner)
        default_model = await self._guild_image_model(gateway, guild_id, channel_id, parent_channel_id)
        try:
            request = runner.build_edit(opts, source, default_model=default_model)
            await self._check_model_listed("edit", opts.model, gateway)
        except Unsupported:
            raise KindUnsupported("edit", gateway) from None
        return replace(request, gateway=gateway)

    async def prepare_music(self, opts: Any, *, guild_id: int | None = None, channel_id: int | None = None,
                            parent_channel_id: int | None = None) -> MediaRequest:
        """/music's options (bot/media/music_kind.py ``MusicOptions``) as a validated request."""
        return await self._prepare("music", opts, guild_id)

    async def prepare_video(self, opts: Any, *, guild_id: int | None = None, channel_id: int | None = None,
                            parent_channel_id: int | None = None) -> MediaRequest:
        """/video's options (the video runner's ``VideoOptions``) as a validated request."""
        return await self._prepare("video", opts, guild_id)

    async def _prepare(self, kind: str, opts: Any, guild_id: int | None) -> MediaRequest:
        """Video and music: no per-guild default model (the gateway's own: the operator's ``[gateway]``
        one, or a guild gateway's profile default)."""
        self._check_accepting()
        gateway = await self.gateways.for_guild(guild_id)
        if not self.supports(kind, gateway):
            raise KindUnsupported(kind, gateway)
        try:
            request = self._builder(kind, gateway).build(opts, default_model=None)
            await self._check_model_listed(kind, getattr(opts, "model", None), gateway)
        except Unsupported:
            raise KindUnsupported(kind, gateway) from None
        return replace(request, gateway=gateway)

    def _builder(self, kind: str, gateway: GatewayClient | None = None) -> RequestBuilder:
        runner = self.runner(kind, gateway)
        if not isinstance(runner, RequestBuilder):
            raise KindUnsupported(kind, gateway)
        return runner

    async def _guild_image_model(self, gateway: GatewayClient, guild_id: int | None, channel_id: int | None,
                                 parent_channel_id: int | None) -> str | None:
        """The image model a server's ``/config`` gives this channel; on the operator's gateway that
        defaults to ``[gateway] image_model``. A guild gateway takes only what the server set itself
        (else None: its own ``image_model``, else its profile's default, applied by its client)."""
        if self.guild_config is None:
            return None
        if not is_guild_client(gateway):
            effective = await self.guild_config.effective(guild_id, channel_id, parent_channel_id)
            return effective.image_model or None
        if not guild_id:
            return None
        layers = await self.guild_config.overrides(guild_id)
        chosen: str | None = None
        for layer in (GUILD_LEVEL, parent_channel_id, channel_id):
            if layer is not None and "image_model" in layers.get(layer, {}):
                chosen = str(layers[layer]["image_model"]) or None
        return chosen

    async def submit(
        self, interaction: discord.Interaction, request: MediaRequest, *, origin: str = "command",
        parent: MediaJob | None = None, source_index: int | None = None,
    ) -> MediaJob:
        """Record the job, reserve its budget, show its progress message and queue it.

        Raises ``ConcurrencyLimitReached`` or ``BudgetExceeded`` before anything is shown (the caller
        answers the interaction with the refusal), or ``Restarting`` while the bot drains; returns
        once the progress message is up.
        """
        self._check_accepting()
        gateway = request.gateway if request.gateway is not None else await self.gateways.for_guild(
            interaction.guild_id)
        runner = self.runner(request.kind, gateway)
        media = request.kind in MEDIA_KINDS
        job = await self.jobs.create(
            request.params, kind=request.kind, user_id=interaction.user.id, guild_id=interaction.guild_id,
            channel_id=interaction.channel_id, profile=gateway_mark(gateway), origin=origin,
            parent_id=parent.id if parent else None, source_index=source_index,
            max_active=self.media.max_concurrent_per_user if media else self.settings.max_concurrent_per_user,
            active_kinds=MEDIA_KINDS if media else IMAGE_KINDS, sources=request.sources,
        )
        try:
            hold = await self.quotas.reserve(
                Requester.from_interaction(interaction), runner.feature, model=request.params.model,
                ttl_seconds=self._hold_ttl(request.kind), **runner.amounts(request.params))
        except BudgetExceeded:
            await self.jobs.mark_failed(job.id, "refused: budget")
            raise
        except BaseException:
            await self.jobs.mark_failed(job.id, "refused: budget check failed")
            raise
        try:
            await self.jobs.set_reservation(job.id, hold.id)
            job = replace(job, reservation_id=hold.id)
            message = await self._show(job, runner, interaction)
        except BaseException as exc:
            await _release(hold, "error" if isinstance(exc, Exception) else "cancelled", exc)
            raise
        self._start(job, message, hold, upload_limit(interaction), gateway, request=request)
        return job

    async def run_without_message(self, requester: Requester, request: MediaRequest) -> list[tuple[StoredFile, bytes]]:
        """An image job with no interaction and no message of its own (the chat tool ``generate_image``):
        recorded, reserved and charged to ``requester`` like /imagine create, run in the [imagine] queue
        under the same per-member limit; returns the stored images for the caller to show. Raises the
        same refusals as ``submit`` (and the gateway's errors, the hold released); no buttons, no
        progress message, no recovery announcement (the caller's answer is where it is shown)."""
        self._check_accepting()
        if request.kind not in IMAGE_KINDS:
            raise KindUnsupported(request.kind)
        gateway = request.gateway if request.gateway is not None else await self.gateways.for_guild(
            requester.guild_id)
        runner = self.runner(request.kind, gateway)
        job = await self.jobs.create(
            request.params, kind=request.kind, user_id=requester.user_id, guild_id=requester.guild_id,
            channel_id=requester.channel_id, profile=gateway_mark(gateway),
            max_active=self.settings.max_concurrent_per_user, active_kinds=IMAGE_KINDS, sources=request.sources,
        )
        try:
            hold = await self.quotas.reserve(requester, runner.feature, model=request.params.model,
                                             **runner.amounts(request.params))
        except BaseException as exc:
            await self.jobs.mark_failed(job.id, "refused: budget" if isinstance(exc, BudgetExceeded)
                                        else "refused: budget check failed")
            raise
        queue = self._queue(request.kind)
        ticket = queue.enter()
        try:
            async with hold:  # a failure or a cancellation releases it
                await self.jobs.set_reservation(job.id, hold.id)
                async with queue.slot(ticket):
                    if not await self.jobs.mark_running(job.id):
                        raise RuntimeError("the job is no longer pending")
                    run = JobRun(job=replace(job, status="running", reservation_id=hold.id), request=request,
                                 hold=hold, message=JobMessage(self.client, channel_id=None, message_id=None),
                                 upload_limit=0, started=self._clock())
                    produced = await runner.produce(run)
                await self.jobs.save_generated(job.id, produced.files, model_used=produced.model_used,
                                               request_id=produced.request_id)
                await hold.settle(meta=produced.meta, images=produced.amounts.get("images", 0))
        except BaseException as exc:
            if isinstance(exc, Exception):
                await self.jobs.mark_failed(job.id, f"{error_code(exc)}: {type(exc).__name__}")
            raise
        finally:
            queue.leave(ticket)
        stored = await self.jobs.read_all(job.id)
        await self.jobs.mark_done(job.id)
        return stored

    def _hold_ttl(self, kind: str) -> float | None:
        """Video and music may wait behind videos in the [media] queue: their hold lives as long as a video
        may take, plus the usual TTL; images and edits take the default."""
        if kind not in MEDIA_KINDS:
            return None
        return float(self.media.video_timeout_seconds) + self._default_ttl

    def _new_run(self, job: MediaJob, request: MediaRequest | None, hold: Reservation | None, message: JobMessage,
                 upload: int) -> JobRun:
        run = JobRun(job=job, request=request, hold=hold, message=message, upload_limit=upload,
                     started=self._clock(), reporter=self._report, submitter=self._submitted)

        async def moved(message_id: int) -> None:
            await self.jobs.set_message(job.id, message.channel_id, message_id)

        message.on_moved = moved
        return run

    async def _show(self, job: MediaJob, runner: KindRunner, interaction: discord.Interaction) -> JobMessage:
        queue = self._queue(job.kind)
        position = 0 if (queue.running < queue.slots and not queue.waiting) else queue.waiting + 1
        probe = JobRun(job=job, request=None, hold=None, message=None,  # type: ignore[arg-type]
                       upload_limit=0, started=self._clock(), position=position)
        content = runner.progress_text(probe, elapsed=0, position=position)
        try:
            message = await self.presenter.open(interaction, content, runner.buttons(job, running=True))
        except BaseException as exc:
            await self.jobs.mark_failed(job.id, f"progress message failed: {type(exc).__name__}")
            raise
        assert message.message_id is not None
        await self.jobs.set_message(job.id, interaction.channel_id, message.message_id)
        return message

    def _queue(self, kind: str) -> FairQueue:
        return self.queues["media" if kind in MEDIA_KINDS else "imagine"]

    # -- running a job --------------------------------------------------------------------------------

    async def _run(self, active: _Active, *, resumed: bool = False) -> None:
        run, runner = active.run, active.runner
        queue = self._queue(run.job.kind)
        active.ticket = ticket = queue.enter()
        progress = asyncio.create_task(self._progress_loop(run, runner, ticket), name=f"media-progress-{run.job.id}")
        try:
            async with queue.slot(ticket):
                run.position = 0
                if resumed:
                    run.status = "processing"
                    produced = await runner.resume(run)
                else:
                    if not await self.jobs.mark_running(run.job.id):
                        raise RuntimeError("the job is no longer pending")
                    run.job = replace(run.job, status="running")
                    run.status = "running"
                    produced = await runner.produce(run)
                active.finishing = True
            progress.cancel()
            await self._finish(run, runner, produced)
        except asyncio.CancelledError:
            if active.cancelled:
                return  # a member cancelled it: the cancel settles the hold and shows the message
            # The bot is stopping. A submitted job keeps its hold (resumed next start); otherwise the hold goes
            # back. A paid call cut off here leaves the job "running", shown as unknown next start.
            if run.hold is not None and run.job.status != "submitted" and not run.hold.closed:
                await _release(run.hold, "cancelled", None)
            raise
        except Exception as exc:
            if active.cancelled:
                return
            refunded = run.hold is None or not run.hold.settled
            if run.hold is not None and not run.hold.closed:
                await _release(run.hold, "error", exc)
            await self._fail(run, exc, refunded=refunded, gateway=active.gateway)
        finally:
            progress.cancel()
            queue.leave(ticket)
            if self._active.get(run.job.id) is active:
                del self._active[run.job.id]

    async def _finish(self, run: JobRun, runner: KindRunner, produced: Produced) -> None:
        """Keep the files, charge what was produced, show the result, done."""
        job = run.job
        await self.jobs.save_generated(job.id, produced.files, model_used=produced.model_used,
                                       request_id=produced.request_id)
        if produced.link is not None:
            await self.jobs.set_result_url(job.id, *produced.link)
        await self._charge(run, runner, produced.amounts, produced.meta)
        await self._deliver(job.id, run.message, run.upload_limit, elapsed=self._clock() - run.started,
                            link=produced.link)

    async def _charge(self, run: JobRun, runner: KindRunner, amounts: dict[str, int], meta: CallMeta | None,
                      *, outcome: str = "ok") -> None:
        """Settle the hold with ``amounts``; without a hold (gone while the bot was down) charge afterwards."""
        if run.hold is not None and not run.hold.closed:
            await run.hold.settle(meta=meta, outcome=outcome, **amounts)
            return
        if any(amounts.values()):
            job = run.job
            await self.quotas.charge_after(
                Requester(guild_id=job.guild_id, channel_id=job.channel_id, user_id=job.user_id), runner.feature,
                model=job.params.model, meta=meta, outcome=outcome, reservation_id=job.reservation_id, **amounts)

    async def _report(self, run: JobRun) -> None:
        """JobRun.report: the row's progress, then a progress edit (skipped when one was made < 1 s ago)."""
        if run.progress is not None and run.progress != run.job.progress:
            try:
                await self.jobs.set_progress(run.job.id, run.progress)
                run.job = replace(run.job, progress=run.progress)
            except StorageError as exc:
                log.info("media job %s: progress not recorded: %s", run.job.id, exc)
        active = self._active.get(run.job.id)
        runner = active.runner if active is not None else self.runner(run.job.kind)
        await run.message.tick(runner.progress_text(run, elapsed=self._clock() - run.started, position=run.position))

    async def _submitted(self, run: JobRun, gateway_job_id: str) -> bool:
        if not await self.jobs.mark_submitted(run.job.id, gateway_job_id):
            return False
        run.job = replace(run.job, status="submitted", gateway_job_id=gateway_job_id)
        return True

    async def _progress_loop(self, run: JobRun, runner: KindRunner, ticket: Ticket) -> None:
        interval = self.settings.progress_interval
        while True:
            await asyncio.sleep(interval)
            run.position = ticket.position
            content = runner.progress_text(run, elapsed=self._clock() - run.started, position=run.position)
            await run.message.tick(content)

    async def _fail(self, run: JobRun, exc: Exception, *, refunded: bool, gateway: GatewayClient | None = None) -> None:
        if isinstance(exc, (GatewayError, UserFacingError)):
            log.info("media job %s failed: %r", run.job.id, exc)
        else:
            log.warning("media job %s failed", run.job.id, exc_info=exc)
        if isinstance(exc, UserFacingError):
            reason = exc.user_message()
        else:
            kind = ModelKind(MODEL_KINDS.get(run.job.kind, "image"))
            reason = await describe_error(exc, gateway=gateway or self.gateway, model=run.job.params.model,
                                          kinds=[kind])
        await self.jobs.mark_failed(run.job.id, f"{error_code(exc)}: {reason}")
        await self.presenter.show_failure(run.message, run.job.id, run.job.params.prompt, reason, refunded=refunded)

    async def _deliver(self, job_id: int, message: JobMessage, upload: int, *, elapsed: float,
                       link: tuple[str, float] | None = None) -> None:
        """Put the result and its buttons on the job's message, then mark the job done."""
        job = await self.jobs.get(job_id)
        stored = await self.jobs.read_all(job_id)
        if job is None or (not stored and link is None):
            raise RuntimeError("the generated files are missing")
        await self.runner(job.kind).present(message, job, stored, upload, elapsed=elapsed, link=link)
        await self.jobs.mark_done(job_id)

    # -- cancel ---------------------------------------------------------------------------------------

    def check_cancel(self, job: MediaJob, user_id: int, permissions: discord.Permissions) -> None:
        if user_id != job.user_id and not is_moderator(permissions):
            raise NotJobOwner("cancel")
        if job.status not in ACTIVE_STATUSES:
            raise JobNotRunning()

    async def cancel(self, job: MediaJob, user_id: int, permissions: discord.Permissions) -> None:
        """Stop a waiting, running or submitted job (its requester or an admin): the local work stops, the
        runner stops it at the gateway and says what was billed — settled (nothing: the hold released) —
        and the job's message says who cancelled it and what was charged."""
        self.check_cancel(job, user_id, permissions)
        active = self._active.get(job.id)
        runner: KindRunner | None
        if active is not None:
            runner = active.runner
        else:  # another process's (or nobody's) job: stopped on the gateway that took it, if still the guild's
            gateway = await self.gateways.for_guild(job.guild_id)
            runner = self.runner(job.kind, gateway) if gateway_mark(gateway) == job.profile else None
        if active is not None:
            if active.finishing:
                raise JobNotRunning()
            active.cancelled = True
            if active.task is not None:
                active.task.cancel()
                await asyncio.wait([active.task])
        fresh = await self.jobs.get(job.id)
        if fresh is None or fresh.status not in ACTIVE_STATUSES:
            raise JobNotRunning()
        try:
            billed = await runner.cancel(fresh) if runner is not None else None
        except BaseException:
            if active is not None and fresh.status == "submitted":  # it goes on at the gateway: keep polling it
                self._start(fresh, active.run.message, active.run.hold, active.run.upload_limit, active.gateway,
                            resumed=True)
            raise
        amounts, meta = billed if billed is not None else ({}, None)
        why = f"cancelled by {user_id}: {_worded(amounts) or 'nothing'} billed"
        if not await self.jobs.mark_cancelled(job.id, why):
            raise JobNotRunning()  # it finished meanwhile (another process): its own outcome stands
        hold = active.run.hold if active is not None else None
        if hold is None and fresh.reservation_id:
            hold = await self.quotas.reopen(fresh.reservation_id)
        run = active.run if active is not None else None
        if any(amounts.values()):
            if run is None:
                message = self.presenter.reopen(fresh)
                run = JobRun(job=fresh, request=None, hold=hold, message=message,  # type: ignore[arg-type]
                             upload_limit=0, started=self._clock())
            run.hold = hold
            await self._charge(run, runner or self.runner(job.kind), amounts, meta, outcome="cancelled")
        elif hold is not None and not hold.closed:
            await _release(hold, "cancelled", None)
        message = active.run.message if active is not None else self.presenter.reopen(fresh)
        if message is not None:
            await self.presenter.show_cancelled(message, fresh, by=user_id, charged=_worded(amounts))

    # -- button actions -------------------------------------------------------------------------------

    async def job(self, job_id: int) -> MediaJob:
        """The job a button names; ``JobGone`` when it was deleted or never existed."""
        job = await self.jobs.get(job_id)
        if job is None or job.status == "deleted":
            raise JobGone()
        return job

    async def stored_image(self, job: MediaJob, index: int) -> tuple[StoredFile, bytes]:
        found = await self.jobs.read_image(job.id, index)
        if found is None:
            raise ImageNotStored(job.id, index)
        return found

    async def single_image(
        self, job: MediaJob, found: tuple[StoredFile, bytes], upload: int
    ) -> tuple[str, discord.File]:
        """Image ``found`` alone at full size, for U-n. No gateway call, so nothing is charged."""
        stored, data = found
        count = len(await self.jobs.images(job.id))
        return await self.presenter.single(job, stored, data, count, upload)

    async def regenerate(self, interaction: discord.Interaction, job: MediaJob, action: str,
                         index: int | None) -> MediaJob:
        """V-n, re-roll and retry: a new job for whoever pressed, reserved and charged like the command."""
        self._check_accepting()
        gateway = await self.gateways.for_guild(interaction.guild_id)
        if not self.supports(job.kind, gateway):
            raise KindUnsupported(job.kind, gateway)
        if action == "v" and job.kind not in IMAGE_KINDS:
            raise JobGone()
        try:
            runner = self.runner(job.kind, gateway)
            if not isinstance(runner, Repeater):
                raise KindUnsupported(job.kind, gateway)
            request = replace(await runner.again(job, action, index), gateway=gateway)
        except Unsupported:
            raise KindUnsupported(job.kind, gateway) from None
        return await self.submit(interaction, request, origin=ORIGINS[action], parent=job,
                                 source_index=index if action == "v" else None)

    def check_delete(self, job: MediaJob, user_id: int, permissions: discord.Permissions) -> None:
        """Only the member who asked (or a moderator), and not while it is generating."""
        if user_id != job.user_id and not is_moderator(permissions):
            raise NotJobOwner()
        if job.status in ACTIVE_STATUSES:
            raise JobStillRunning()

    async def delete(self, job: MediaJob) -> None:
        """Mark the job deleted and remove its files (the caller deletes the message)."""
        await self.jobs.mark_deleted(job.id)

    # -- recovery after a restart ---------------------------------------------------------------------

    async def _announce_recovered(self, jobs: list[MediaJob]) -> None:
        await self.client.wait_until_ready()
        for job in jobs:
            message = self.presenter.reopen(job)
            if message is None:
                log.warning("interrupted media job %s has no message to show it on", job.id)
                continue
            try:
                if job.status == "submitted":
                    await self._resume(job, message)
                elif job.status == "generated":
                    link = (job.result_url, job.result_expires_at or 0.0) if job.result_url else None
                    upload = self.presenter.channel_upload_limit(job.guild_id)
                    await self._deliver(job.id, message, upload, elapsed=0, link=link)
                elif job.status == "unknown":
                    await self.presenter.show_unknown(message, job)
                else:
                    await message.edit(
                        content=render_failure(prompt=job.params.prompt, job_id=job.id,
                                               reason="the bot restarted before it was sent."),
                        view=retry_view(job.id))
            except Exception as exc:
                log.warning("could not update the message of interrupted media job %s: %r", job.id, exc)

    async def _resume(self, job: MediaJob, message: JobMessage) -> None:
        """A submitted job of a stopped process: poll on (never a new POST) with its hold reopened, on the
        gateway of its guild — only if that is still the gateway that took it; else the job fails and
        its hold is released."""
        if job.kind not in self.runners:
            raise RuntimeError(f"no runner for {job.kind} jobs")
        hold = await self.quotas.reopen(job.reservation_id) if job.reservation_id else None
        try:
            gateway = await self.gateways.for_guild(job.guild_id)
            now = gateway_mark(gateway)
            if now != job.profile:
                raise GatewayChanged(job.profile, now)
        except (GatewayError, UserFacingError) as exc:  # changed, removed, or its key unreadable: stop here
            log.info("media job %s not resumed: %r", job.id, exc)
            if hold is not None and not hold.closed:
                await _release(hold, "error", exc)
            run = JobRun(job=job, request=None, hold=hold, message=message, upload_limit=0, started=self._clock())
            await self._fail(run, exc, refunded=True, gateway=self.gateways.peek(job.guild_id))
            return
        self._start(job, message, hold, self.presenter.channel_upload_limit(job.guild_id), gateway, resumed=True)

    def _start(self, job: MediaJob, message: JobMessage, hold: Reservation | None, upload: int,
               gateway: GatewayClient, *, resumed: bool = False, request: MediaRequest | None = None) -> None:
        """Work on ``job`` in this process, on ``gateway``: a task that waits for a slot, then produces (or
        resumes)."""
        run = self._new_run(job, request, hold, message, upload)
        active = _Active(run=run, runner=self.runner(job.kind, gateway), gateway=gateway)
        self._active[job.id] = active
        active.task = self._spawn(self._run(active, resumed=resumed), f"media-job-{job.id}")
        self._jobs.add(active.task)


def _build_runners(ctx: KindContext) -> list[KindRunner]:
    """The kinds this bot knows (whether the gateway offers each one is ``supports``)."""
    return [ImageRunner(ctx), EditRunner(ctx), MusicRunner(ctx), VideoRunner(ctx)]


async def _release(hold: Reservation, outcome: str, exc: BaseException | None) -> None:
    """Give the hold back, even while being cancelled; if the store is gone its TTL returns it later."""
    if hold.closed:
        return
    try:
        await asyncio.shield(hold.release(
            outcome=outcome, meta=getattr(exc, "meta", None),
            error_code=error_code(exc) if isinstance(exc, Exception) else ("cancelled" if outcome == "cancelled"
                                                                          else None)))
    except Exception:
        log.warning("could not release reservation %s; it will expire", hold.id, exc_info=True)


def _worded(amounts: dict[str, int]) -> str:
    parts = []
    for kind, n in amounts.items():
        if n:
            one, many = KIND_NOUNS.get(kind, (kind, kind))
            parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts)


def _same_model(typed: str, listed: str) -> bool:
    """Equal, or equal up to a provider prefix ("dall-e-3" ~ "openai/dall-e-3")."""
    a, b = typed.lower(), listed.lower()
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)
