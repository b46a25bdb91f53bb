"""/imagine: FLUX (or a gateway's OpenAI images endpoint) with a live progress message, a grid, and
U/V/re-roll/delete buttons that survive restarts and are billed like any generation.

Life of a job: options validated (nothing reserved yet) → job row ``pending`` (per-member limit,
atomic) → budget reserved → progress message sent as the interaction response → FIFO queue slot →
``running`` → paid gateway call → images stored (``generated``) → charged per image → grid posted
with buttons (``done``). A failure releases the reservation and says why. A job found ``running`` at
start-up is shown as unknown with a Retry button — never resubmitted on its own.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.rendering import limits as discord_limits
from bot.app.factory import GatecordBot
from bot.media.grid import EncodedImage, ImageTooLarge, fit_image, make_grid
from bot.media.jobs import ConcurrencyLimitReached, ImageJob, ImageToStore, JobParams, JobStore, images_dir_for
from bot.budgets.quotas import BudgetExceeded, Feature, Requester, Reservation
from bot.rendering.errors import describe_error, error_code
from cogs._imagine_options import ImagineOptions, OptionError, build_request, new_seed
from cogs._imagine_progress import NONE, JobMessage
from bot.media.queue import FairQueue, Ticket
from cogs._imagine_render import (
    render_failure,
    render_progress,
    render_result,
    render_single,
    render_unknown,
)
from cogs._imagine_views import ImagineButton, result_view, retry_view
from gateway_client import GatewayError, ImageRequest, ModelKind, Unsupported

log = logging.getLogger(__name__)

MODEL_CACHE_SECONDS = 300.0
AUTOCOMPLETE_TIMEOUT = 2.0
MODEL_CHECK_TIMEOUT = 1.5
DEFAULT_EXPECTED_SECONDS = 8.0


@dataclass
class _Run:
    """One job being worked on in this process."""

    job: ImageJob
    request: ImageRequest
    reservation: Reservation
    message: JobMessage
    upload_limit: int
    started: float = field(default_factory=time.monotonic)
    ticket: Ticket | None = None


class Imagine(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.settings = bot.settings.imagine
        self.jobs = JobStore(bot.store, images_dir_for(bot.settings.storage.path))
        self.queue = FairQueue(self.settings.max_concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expected: dict[str, float] = {}
        self._models: tuple[float, list[str]] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ImagineButton)
        recovered = await self.jobs.recover_interrupted()
        if recovered:
            self._spawn(self._announce_recovered(recovered), "imagine-recovery")

    async def cog_unload(self) -> None:
        """Stop work in flight. A paid call cut off here stays ``running`` → shown as unknown next start."""
        self.bot.remove_dynamic_items(ImagineButton)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- /imagine -------------------------------------------------------------------------------

    @app_commands.command(name="imagine", description="Generate images from a text prompt")
    @app_commands.describe(
        prompt="What to draw",
        model="Image model (default: this server's)",
        count="How many images, 1–4",
        steps="Generation steps (FLUX: 1–4)",
        seed="Seed for reproducible results",
        size="WIDTHxHEIGHT, e.g. 1024x1024 (or give width and height)",
        width="Width in pixels (FLUX: a multiple of 16)",
        height="Height in pixels (FLUX: a multiple of 32)",
        negative_prompt="What the image should not show",
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        model: str | None = None,
        count: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        size: str | None = None,
        width: int | None = None,
        height: int | None = None,
        negative_prompt: str | None = None,
    ) -> None:
        opts = ImagineOptions(prompt=prompt, model=model, count=count, steps=steps, seed=seed, size=size,
                              width=width, height=height, negative_prompt=negative_prompt)
        try:
            default_model = await self._default_model(interaction)
            request = build_request(
                self.bot.gateway, opts, default_model=default_model,
                default_count=self.settings.default_count, default_steps=self.settings.default_steps,
            )
            await self._check_model_listed(model)
        except OptionError as exc:
            await self._refuse(interaction, exc.user_message())
            return
        except Unsupported:
            await self._refuse(interaction, "This bot's AI gateway does not generate images.")
            return
        await self._start_job(interaction, request, origin="command")

    @imagine.autocomplete("model")
    async def _model_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        try:
            ids = await asyncio.wait_for(self._image_model_ids(), AUTOCOMPLETE_TIMEOUT)
        except Exception as exc:  # autocomplete must answer; an empty list is an answer
            log.info("image model list unavailable for autocomplete: %r", exc)
            ids = self._models[1] if self._models else []
        needle = current.lower().strip()
        matches = [m for m in ids if needle in m.lower()] if needle else list(ids)
        return [
            app_commands.Choice(name=m[: discord_limits.CHOICE_NAME], value=m)
            for m in matches
            if len(m) <= discord_limits.CHOICE_VALUE
        ][: discord_limits.AUTOCOMPLETE_CHOICES]

    async def _image_model_ids(self) -> list[str]:
        now = time.monotonic()
        if self._models and now - self._models[0] < MODEL_CACHE_SECONDS:
            return self._models[1]
        models = await self.bot.gateway.image_models()
        ids = list(dict.fromkeys(m.id for m in models))
        self._models = (now, ids)
        return ids

    async def _check_model_listed(self, model: str | None) -> None:
        """Refuse a typed model missing from the gateway's image model list (when the list can be had
        quickly; otherwise the gateway decides, and a refusal there is refunded)."""
        if not model:
            return
        try:
            ids = await asyncio.wait_for(self._image_model_ids(), MODEL_CHECK_TIMEOUT)
        except Exception as exc:
            log.info("image model list unavailable, not checking %r: %r", model, exc)
            return
        if ids and not any(_same_model(model, listed) for listed in ids):
            raise OptionError("model", ids, model)

    async def _default_model(self, interaction: discord.Interaction) -> str | None:
        guild_config = getattr(self.bot, "guild_config", None)
        if guild_config is None:
            return None
        channel = interaction.channel
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        effective = await guild_config.effective(interaction.guild_id, interaction.channel_id, parent_id)
        return effective.image_model or None

    # -- starting a job (command and buttons) -------------------------------------------------------

    async def _start_job(
        self,
        interaction: discord.Interaction,
        request: ImageRequest,
        *,
        origin: str,
        parent: ImageJob | None = None,
        source_index: int | None = None,
    ) -> None:
        params = JobParams(
            prompt=request.prompt, model=request.model, count=request.n, width=request.width,
            height=request.height, size=request.size, steps=request.steps, seed=request.seed,
            negative_prompt=request.negative_prompt,
        )
        requester = Requester.from_interaction(interaction)
        try:
            job = await self.jobs.create(
                params, user_id=interaction.user.id, guild_id=interaction.guild_id,
                channel_id=interaction.channel_id, profile=self.bot.settings.gateway.profile, origin=origin,
                parent_id=parent.id if parent else None, source_index=source_index,
                max_active=self.settings.max_concurrent_per_user,
            )
        except ConcurrencyLimitReached as exc:
            await self._refuse(
                interaction,
                f"You already have {exc.active} image job{'s' if exc.active != 1 else ''} in progress — the limit "
                f"is {exc.limit} at a time. Try again when one has finished.",
            )
            return
        try:
            reservation = await self.bot.quotas.reserve(requester, Feature.IMAGE, images=request.n,
                                                        model=request.model)
        except BudgetExceeded as exc:
            await self.jobs.mark_failed(job.id, "refused: budget")
            await self._refuse(interaction, exc.user_message())
            return
        except BaseException:
            await self.jobs.mark_failed(job.id, "refused: budget check failed")
            raise

        position = 0 if (self.queue.running < self.queue.slots and not self.queue.waiting) else self.queue.waiting + 1
        content = render_progress(prompt=request.prompt, model=request.model or "default", count=request.n,
                                  elapsed=0, expected=self._expected_for(request.model), queue_position=position,
                                  job_id=job.id)
        try:
            response = await interaction.response.send_message(content, allowed_mentions=NONE)
            message_id = response.message_id
            if message_id is None:
                message_id = (await interaction.original_response()).id
        except BaseException as exc:
            await self.bot.quotas.release(reservation, outcome="error", error_code=error_code(exc))
            await self.jobs.mark_failed(job.id, f"progress message failed: {type(exc).__name__}")
            raise
        await self.jobs.set_message(job.id, interaction.channel_id, message_id)
        message = JobMessage(self.bot, channel_id=interaction.channel_id, message_id=message_id,
                             interaction=interaction)
        run = _Run(job=job, request=request, reservation=reservation, message=message,
                   upload_limit=self._upload_limit(interaction))
        self._spawn(self._run(run), f"imagine-job-{job.id}")

    # -- running a job -----------------------------------------------------------------------------

    async def _run(self, run: _Run) -> None:
        job, request = run.job, run.request
        progress: asyncio.Task[None] | None = None
        settled = False
        try:
            run.ticket = self.queue.enter()
            progress = asyncio.create_task(self._progress_loop(run), name=f"imagine-progress-{job.id}")
            async with self.queue.slot(run.ticket):
                if not await self.jobs.mark_running(job.id):
                    raise RuntimeError("the job is no longer pending")
                generation_started = time.monotonic()
                result = await self.bot.gateway.generate_images(request)
                self._learn_duration(request.model, time.monotonic() - generation_started)
            if not result.images:
                raise GatewayError("the gateway returned no images")
            to_store = [
                ImageToStore(img.data, img.mime, img.width, img.height,
                             img.seed if img.seed is not None else (request.seed if len(result.images) == 1 else None))
                for img in result.images
            ]
            meta = result.meta
            await self.jobs.save_generated(job.id, to_store, model_used=meta.model_used or request.model,
                                           request_id=meta.request_id)
            await self.bot.quotas.settle(run.reservation, usage_tokens=0, images=len(to_store), meta=meta)
            settled = True
            if progress is not None:
                progress.cancel()
            await self._deliver(job.id, run.message, run.upload_limit, elapsed=time.monotonic() - run.started)
        except asyncio.CancelledError:
            # The bot is stopping. Nothing was delivered: give the hold back. A paid call cut off here
            # leaves the job "running", which the next start shows as unknown (never resubmitted).
            if not settled:
                await _shielded(self.bot.quotas.release(run.reservation, outcome="cancelled", error_code="cancelled"))
            raise
        except Exception as exc:
            if not settled:
                await _quietly(self.bot.quotas.release(
                    run.reservation, outcome="error", meta=getattr(exc, "meta", None), error_code=error_code(exc)))
            await self._fail(run, exc, refunded=not settled)
        finally:
            if progress is not None:
                progress.cancel()
            if run.ticket is not None:
                self.queue.leave(run.ticket)

    async def _progress_loop(self, run: _Run) -> None:
        interval = self.settings.progress_interval
        while True:
            await asyncio.sleep(interval)
            ticket = run.ticket
            content = render_progress(
                prompt=run.request.prompt, model=run.request.model or "default", count=run.request.n,
                elapsed=time.monotonic() - run.started, expected=self._expected_for(run.request.model),
                queue_position=ticket.position if ticket else 0, job_id=run.job.id,
            )
            await run.message.tick(content)

    async def _fail(self, run: _Run, exc: Exception, *, refunded: bool) -> None:
        if isinstance(exc, GatewayError):
            log.info("image job %s failed at the gateway: %r", run.job.id, exc)
        else:
            log.warning("image job %s failed", run.job.id, exc_info=exc)
        reason = await describe_error(exc, gateway=self.bot.gateway, model=run.request.model,
                                      kinds=[ModelKind.IMAGE])
        await self.jobs.mark_failed(run.job.id, f"{error_code(exc)}: {reason}")
        try:
            await run.message.edit(content=render_failure(prompt=run.request.prompt, job_id=run.job.id,
                                                          reason=reason, refunded=refunded),
                                   view=retry_view(run.job.id), attachments=[])
        except discord.HTTPException as edit_error:
            log.warning("could not show the failure of image job %s: %s", run.job.id, edit_error)

    async def _deliver(self, job_id: int, message: JobMessage, upload_limit: int, *, elapsed: float) -> None:
        """Compose the grid within the upload limit and put it, with the buttons, on the job's message."""
        job = await self.jobs.get(job_id)
        stored = await self.jobs.read_all(job_id)
        if job is None or not stored:
            raise RuntimeError("the generated images are missing")
        grid = await make_grid([data for _, data in stored], upload_limit)
        notes = _size_notes(grid, "grid") if grid.scaled else []  # a grid is always freshly encoded
        content = render_result(
            prompt=job.params.prompt, model=job.model_used or job.params.model or "default",
            seeds=[s.seed for s, _ in stored] if any(s.seed is not None for s, _ in stored) else [job.params.seed],
            user_id=job.user_id, job_id=job_id, elapsed=elapsed, notes=notes,
        )
        file = discord.File(_bytes_io(grid.data), filename=grid.filename(f"imagine-{job_id}"))
        await message.edit(content=content, attachments=[file], view=result_view(job_id, len(stored)))
        await self.jobs.mark_done(job_id)

    # -- buttons ----------------------------------------------------------------------------------

    async def handle_button(self, interaction: discord.Interaction, action: str, job_id: int, index: int | None) -> None:
        job = await self.jobs.get(job_id)
        if job is None or job.status == "deleted":
            await self._refuse(interaction, "This image job no longer exists.")
            return
        if action == "u":
            await self._upscale(interaction, job, index or 1)
        elif action == "delete":
            await self._delete(interaction, job)
        else:
            await self._regenerate(interaction, job, action, index)

    async def _upscale(self, interaction: discord.Interaction, job: ImageJob, index: int) -> None:
        """Post image ``index`` alone at full size (downscaled/re-encoded only when over the upload limit).
        No gateway call is made, so nothing is charged."""
        found = await self.jobs.read_image(job.id, index)
        if found is None:
            await self._refuse(interaction, f"Image {index} of job #{job.id} is not stored (any more).")
            return
        await interaction.response.defer(thinking=True)
        stored, data = found
        try:
            fitted = await fit_image(data, self._upload_limit(interaction))
        except (ImageTooLarge, ValueError) as exc:
            await interaction.followup.send(f"Image {index} could not be prepared for upload: {exc}.",
                                            allowed_mentions=NONE)
            return
        count = len(await self.jobs.images(job.id))
        content = render_single(prompt=job.params.prompt, index=index, count=count, seed=stored.seed,
                                job_id=job.id, notes=_size_notes(fitted, "image"))
        file = discord.File(_bytes_io(fitted.data), filename=fitted.filename(f"imagine-{job.id}-{index}"))
        await interaction.followup.send(content, file=file, allowed_mentions=NONE)

    async def _regenerate(self, interaction: discord.Interaction, job: ImageJob, action: str, index: int | None) -> None:
        """V-n, re-roll and retry: a new job for whoever pressed, reserved and charged like /imagine."""
        p = job.params
        seed = p.seed
        if action in ("v", "reroll") and seed is not None:
            seed = new_seed()
        request = ImageRequest(prompt=p.prompt, model=p.model, n=p.count, width=p.width, height=p.height,
                               size=p.size, steps=p.steps, seed=seed, negative_prompt=p.negative_prompt)
        try:
            request = self.bot.gateway.validate_image_request(request)
        except GatewayError as exc:
            await self._refuse(interaction, await describe_error(exc))
            return
        origin = {"v": "variation", "reroll": "reroll", "retry": "retry"}[action]
        await self._start_job(interaction, request, origin=origin, parent=job,
                              source_index=index if action == "v" else None)

    async def _delete(self, interaction: discord.Interaction, job: ImageJob) -> None:
        if not _may_delete(interaction, job):
            await self._refuse(interaction, "Only the member who asked for these images, or a server admin, "
                                            "can delete them.")
            return
        if job.status in ("pending", "running"):
            await self._refuse(interaction, "This job is still generating; delete it when it has finished.")
            return
        await interaction.response.defer()
        await self.jobs.mark_deleted(job.id)
        try:
            await interaction.delete_original_response()
        except discord.NotFound:
            pass

    # -- recovery after a restart ---------------------------------------------------------------------

    async def _announce_recovered(self, jobs: list[ImageJob]) -> None:
        await self.bot.wait_until_ready()
        for job in jobs:
            if job.message_id is None or job.channel_id is None:
                continue
            message = JobMessage(self.bot, channel_id=job.channel_id, message_id=job.message_id)
            try:
                if job.status == "generated":
                    await self._deliver(job.id, message, self._channel_upload_limit(job.guild_id), elapsed=0)
                elif job.status == "unknown":
                    await message.edit(content=render_unknown(prompt=job.params.prompt, job_id=job.id),
                                       view=retry_view(job.id))
                else:
                    await message.edit(
                        content=render_failure(prompt=job.params.prompt, job_id=job.id,
                                               reason="the bot restarted before it was sent."),
                        view=retry_view(job.id))
            except Exception as exc:
                log.warning("could not update the message of interrupted image job %s: %r", job.id, exc)

    # -- helpers ------------------------------------------------------------------------------------

    def _upload_limit(self, interaction: discord.Interaction) -> int:
        limit = getattr(interaction, "filesize_limit", None) or discord_limits.DEFAULT_FILE_SIZE
        return min(limit, discord_limits.REQUEST_FILES_TOTAL)

    def _channel_upload_limit(self, guild_id: int | None) -> int:
        guild = self.bot.get_guild(guild_id) if guild_id else None
        return guild.filesize_limit if guild is not None else discord_limits.DEFAULT_FILE_SIZE

    def _expected_for(self, model: str | None) -> float:
        return self._expected.get(model or "", DEFAULT_EXPECTED_SECONDS)

    def _learn_duration(self, model: str | None, seconds: float) -> None:
        key = model or ""
        old = self._expected.get(key)
        self._expected[key] = seconds if old is None else 0.7 * old + 0.3 * seconds

    async def _refuse(self, interaction: discord.Interaction, text: str) -> None:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NONE)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NONE)


def _same_model(typed: str, listed: str) -> bool:
    """Equal, or equal up to a provider prefix ("dall-e-3" ~ "openai/dall-e-3")."""
    a, b = typed.lower(), listed.lower()
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


def _may_delete(interaction: discord.Interaction, job: ImageJob) -> bool:
    if interaction.user.id == job.user_id:
        return True
    perms = interaction.permissions
    return bool(perms.administrator or perms.manage_messages or perms.manage_guild)


def _size_notes(encoded: EncodedImage, what: str) -> list[str]:
    if encoded.scaled:
        return [f"The {what} was downscaled to {encoded.width}×{encoded.height} to fit this server's upload limit."]
    if encoded.reencoded:
        return [f"The {what} was re-encoded as {encoded.extension.upper()} to fit the upload limit."]
    return []


def _bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


async def _shielded(coro: Any) -> None:
    try:
        await asyncio.shield(coro)
    except Exception:
        log.warning("cleanup after a cancelled image job failed", exc_info=True)


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        log.warning("releasing an image reservation failed; it will expire", exc_info=True)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Imagine(bot))
