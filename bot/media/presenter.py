"""What a media job shows in Discord that every kind shares: its progress message, a failure, an
unknown outcome or a cancellation — and, for image kinds, the grid with buttons and one image on its
own (U buttons). The media-job service owns one presenter; each kind's runner shows its own result.

Every message carries member text (the prompt) and is sent with ``allowed_mentions`` none.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import discord

from bot.media.buttons import result_view, retry_view
from bot.media.grid import EncodedImage, fit_image, make_grid
from bot.media.jobs import MediaJob, StoredFile
from bot.media.progress import JobMessage
from bot.media.render import render_cancelled, render_failure, render_result, render_single, render_unknown
from bot.rendering import limits as discord_limits
from bot.rendering.replies import NO_MENTIONS

log = logging.getLogger(__name__)


def upload_limit(interaction: discord.Interaction) -> int:
    """The most a message may upload where this interaction happened."""
    limit = getattr(interaction, "filesize_limit", None) or discord_limits.DEFAULT_FILE_SIZE
    return min(limit, discord_limits.REQUEST_FILES_TOTAL)


def size_notes(encoded: EncodedImage, what: str) -> list[str]:
    if encoded.scaled:
        return [f"The {what} was downscaled to {encoded.width}×{encoded.height} to fit this server's upload limit."]
    if encoded.reencoded:
        return [f"The {what} was re-encoded as {encoded.extension.upper()} to fit the upload limit."]
    return []


class JobPresenter:
    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def open(self, interaction: discord.Interaction, content: str,
                   view: discord.ui.View | None = None) -> JobMessage:
        """Send the progress message as the interaction's response (or as its deferred response: an edit
        downloads its picture first); the job's message from then on."""
        kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if view is not None and view.children:
            kwargs["view"] = view
        if interaction.response.is_done():
            message_id: int | None = (await interaction.edit_original_response(content=content, **kwargs)).id
        else:
            response = await interaction.response.send_message(content, **kwargs)
            message_id = response.message_id
        if message_id is None:
            message_id = (await interaction.original_response()).id
        return JobMessage(self.client, channel_id=interaction.channel_id, message_id=message_id,
                          interaction=interaction, requester_id=interaction.user.id)

    def reopen(self, job: MediaJob) -> JobMessage | None:
        """The message of a job from before a restart (edited through the channel), if it had one."""
        if job.message_id is None or job.channel_id is None:
            return None
        return JobMessage(self.client, channel_id=job.channel_id, message_id=job.message_id,
                          requester_id=job.user_id)

    def channel_upload_limit(self, guild_id: int | None) -> int:
        guild = self.client.get_guild(guild_id) if guild_id else None
        return guild.filesize_limit if guild is not None else discord_limits.DEFAULT_FILE_SIZE

    async def show_result(
        self, message: JobMessage, job: MediaJob, stored: Sequence[tuple[StoredFile, bytes]], upload: int,
        *, elapsed: float,
    ) -> None:
        """The grid (within the upload limit), its text and the U/V/re-roll/delete buttons."""
        grid = await make_grid([data for _, data in stored], upload)
        notes = size_notes(grid, "grid") if grid.scaled else []  # a grid is always freshly encoded
        content = render_result(
            prompt=job.params.prompt, model=job.model_used or job.params.model or "default",
            seeds=[s.seed for s, _ in stored] if any(s.seed is not None for s, _ in stored) else [job.params.seed],
            user_id=job.user_id, job_id=job.id, elapsed=elapsed, notes=notes,
        )
        file = discord.File(io.BytesIO(grid.data), filename=grid.filename(f"imagine-{job.id}"))
        await message.edit(content=content, attachments=[file], view=result_view(job.id, len(stored)), final=True)

    async def show_failure(self, message: JobMessage, job_id: int, prompt: str, reason: str, *,
                           refunded: bool = True) -> None:
        """The reason and a Retry button; a failed edit is logged (the job's state is already stored)."""
        try:
            await message.edit(content=render_failure(prompt=prompt, job_id=job_id, reason=reason, refunded=refunded),
                               view=retry_view(job_id), attachments=[], final=True)
        except discord.HTTPException as exc:
            log.warning("could not show the failure of media job %s: %s", job_id, exc)

    async def show_unknown(self, message: JobMessage, job: MediaJob) -> None:
        await message.edit(content=render_unknown(prompt=job.params.prompt, job_id=job.id), view=retry_view(job.id),
                           final=True)

    async def show_cancelled(self, message: JobMessage, job: MediaJob, *, by: int, charged: str) -> None:
        """Who cancelled it and what was charged; Retry runs it again."""
        try:
            await message.edit(content=render_cancelled(prompt=job.params.prompt, job_id=job.id, by=by,
                                                         charged=charged),
                               view=retry_view(job.id), attachments=[], final=True)
        except discord.HTTPException as exc:
            log.warning("could not show the cancellation of media job %s: %s", job.id, exc)

    async def single(self, job: MediaJob, stored: StoredFile, data: bytes, count: int,
                     upload: int) -> tuple[str, discord.File]:
        """One image at full size (downscaled/re-encoded only when over ``upload``); raises
        ``ImageTooLarge``/``ValueError`` when it cannot be made to fit."""
        fitted = await fit_image(data, upload)
        content = render_single(prompt=job.params.prompt, index=stored.index, count=count, seed=stored.seed,
                                job_id=job.id, notes=size_notes(fitted, "image"))
        filename = fitted.filename(f"imagine-{job.id}-{stored.index}")
        return content, discord.File(io.BytesIO(fitted.data), filename=filename)
