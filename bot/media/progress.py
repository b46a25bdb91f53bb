"""One job's message, edited in place at a bounded rate until the result replaces it.

While the interaction token lives (15 min) the message is the interaction's response, edited through
its webhook. Once the token is dead — Discord refuses it (401 / 50027) or its age passes — the job
carries on in the channel as normal messages: one new message replying to the job's message (pinging
nobody) takes the progress, and the result is posted as a reply of its own that pings the requester
only (``allowed_mentions`` users=[requester]; the progress reply is then removed). Each time the job
moves to a new message ``on_moved`` hears its id, so the row (and with it recovery and the buttons)
follows. A message reopened after a restart (no interaction in this process) is edited in place
through the channel (it is the bot's own).

Consecutive edits are at least ``min_interval`` (≥ 1 s, Discord's advice for one message) apart;
progress ticks that would come too soon are skipped, the final edit waits for its turn. How often
ticks come is the caller's business (``imagine.progress_interval``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.rendering import limits as discord_limits
from bot.rendering.replies import NO_MENTIONS

log = logging.getLogger(__name__)

#: stop using the interaction token a little before Discord expires it
TOKEN_MARGIN = 60.0
#: what the job's first message says once the job continues in a reply below it
MOVED_NOTE = "-# ⤵️ Continued in a reply below (this command's interaction expired)."

OnMoved = Callable[[int], Awaitable[None]]


class JobMessage:
    def __init__(
        self,
        client: discord.Client,
        *,
        channel_id: int | None,
        message_id: int | None,
        interaction: discord.Interaction | None = None,
        requester_id: int | None = None,
        min_interval: float = discord_limits.MIN_EDIT_INTERVAL,
        clock: Any = time.monotonic,
        on_moved: OnMoved | None = None,
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        #: the message the job is shown on now
        self.message_id = message_id
        #: the job's first message (the command's response): what a continuation replies to
        self.origin_id = message_id
        self.interaction = interaction
        self.requester_id = requester_id
        self.min_interval = max(min_interval, discord_limits.MIN_EDIT_INTERVAL)
        self.on_moved = on_moved
        self._clock = clock
        self._opened = clock()
        self._last_edit = clock()  # the message was just sent
        self._lock = asyncio.Lock()
        self._refused = False  # Discord said the token is gone
        self._continued = False  # the job's progress went on in a reply of its own (message_id)
        self._last_content: str | None = None
        self.edits = 0

    @property
    def token_alive(self) -> bool:
        return (self.interaction is not None and not self._refused
                and self._clock() - self._opened < discord_limits.INTERACTION_TOKEN_SECONDS - TOKEN_MARGIN)

    @property
    def in_channel(self) -> bool:
        """The job had an interaction whose token is dead: it carries on in channel messages."""
        return self.interaction is not None and not self.token_alive

    def mark_sent(self) -> None:
        self._last_edit = self._clock()

    async def tick(self, content: str, **fields: Any) -> bool:
        """A progress edit: skipped (False) when the previous edit is too recent or one is in flight."""
        if self._lock.locked() or self._clock() - self._last_edit < self.min_interval:
            return False
        try:
            await self.edit(content=content, **fields)
        except discord.HTTPException as exc:
            log.info("progress edit skipped: %s", exc)
            return False
        return True

    async def edit(self, *, final: bool = False, **fields: Any) -> None:
        """Edit now (waiting out ``min_interval`` since the last edit); raises on failure.

        ``final``: the job's outcome (result, failure, cancellation); once the token is dead it is posted
        as a new reply that may ping the requester.
        """
        async with self._lock:
            wait = self.min_interval - (self._clock() - self._last_edit)
            if wait > 0:
                await asyncio.sleep(wait)
            fields.setdefault("allowed_mentions", NO_MENTIONS)
            try:
                if self.token_alive:
                    assert self.interaction is not None
                    try:
                        await self.interaction.edit_original_response(**fields)
                    except discord.HTTPException as exc:
                        if not _token_expired(exc):
                            raise
                        log.info("interaction token refused; the job continues in the channel")
                        self._refused = True
                        await self._in_channel(_rewound(fields), final=final)
                elif self.in_channel:
                    await self._in_channel(fields, final=final)
                else:
                    await self._partial(self.message_id).edit(**fields)
            finally:
                self._last_edit = self._clock()
            if isinstance(fields.get("content"), str):
                self._last_content = fields["content"]
            self.edits += 1

    # -- after the token: replies in the channel ----------------------------------------------------

    async def _in_channel(self, fields: dict[str, Any], *, final: bool) -> None:
        if final:
            await self._post_final(fields)
        elif self._continued:
            await self._partial(self.message_id).edit(**fields)
        else:
            try:
                message = await self._reply(fields, mention=False)
            except discord.Forbidden as exc:  # no Send Messages here: edit the job's message in place
                log.info("cannot post in the channel (%s); editing the job's message instead", exc)
                await self._partial(self.message_id).edit(**_rewound(fields))
                return
            self._continued = True
            await self._moved(message.id)
            await self._retire_origin()

    async def _post_final(self, fields: dict[str, Any]) -> None:
        """The outcome as a new reply to the job's first message (pinging the requester only); the
        progress reply, if any, is removed (the outcome replaces it)."""
        progress_id = self.message_id if self._continued else None
        try:
            message = await self._reply(fields, mention=True)
        except discord.Forbidden as exc:
            log.info("cannot post in the channel (%s); editing the job's message instead", exc)
            await self._partial(self.message_id).edit(**_rewound(fields))
            return
        if progress_id is None:
            await self._retire_origin()
        self._continued = True
        await self._moved(message.id)
        if progress_id is not None:
            try:
                await self._partial(progress_id).delete()
            except discord.HTTPException as exc:
                log.info("could not remove the job's progress reply: %s", exc)

    async def _reply(self, fields: dict[str, Any], *, mention: bool) -> discord.Message:
        if self.channel_id is None or self.origin_id is None:
            raise RuntimeError("no channel to continue in")
        channel = self.client.get_partial_messageable(self.channel_id)
        kwargs: dict[str, Any] = {
            "content": fields.get("content"),
            "reference": channel.get_partial_message(self.origin_id).to_reference(fail_if_not_exists=False),
            "allowed_mentions": (discord.AllowedMentions(everyone=False, roles=False, replied_user=False,
                                                         users=[discord.Object(self.requester_id)])
                                 if mention and self.requester_id is not None else NO_MENTIONS),
        }
        files = [f for f in fields.get("attachments") or () if isinstance(f, discord.File)]
        if files:
            kwargs["files"] = files
        view = fields.get("view")
        if isinstance(view, discord.ui.View):
            kwargs["view"] = view
        return await channel.send(**kwargs)

    async def _retire_origin(self) -> None:
        """The first message points at the reply that carries on (its buttons move there)."""
        if self.origin_id is None:
            return
        head = (self._last_content or "").split("\n", 1)[0]
        content = f"{head}\n{MOVED_NOTE}" if head else MOVED_NOTE
        try:
            await self._partial(self.origin_id).edit(content=content[: discord_limits.MESSAGE_CONTENT], view=None,
                                                     allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.info("could not point the job's first message at its continuation: %s", exc)

    async def _moved(self, message_id: int) -> None:
        self.message_id = message_id
        if self.on_moved is not None:
            try:
                await self.on_moved(message_id)
            except Exception:
                log.warning("could not record the job's new message %s", message_id, exc_info=True)

    def _partial(self, message_id: int | None) -> discord.PartialMessage:
        if self.channel_id is None or message_id is None:
            raise RuntimeError("no message to edit")
        channel = self.client.get_partial_messageable(self.channel_id)
        return channel.get_partial_message(message_id)


def _token_expired(exc: discord.HTTPException) -> bool:
    """401 / 50027 Invalid Webhook Token, or 404 / 10015 Unknown Webhook: the interaction token is unusable."""
    return exc.status == 401 or exc.code in (50027, 10015)


def _rewound(fields: dict[str, Any]) -> dict[str, Any]:
    """Files were read by the failed attempt: rewind them so the retry uploads the same bytes."""
    for f in fields.get("attachments") or ():
        if isinstance(f, discord.File):
            f.reset()
    return fields
