"""Where an answer goes in Discord, and the one way to tell a member something privately.

``InteractionTarget`` and ``ChannelReplyTarget`` are the two places an answer is written (a deferred
interaction, or a reply in a channel); the stream renderer only sees their ``put``/``remove``.
``reply_privately`` is the single "answer or follow up, ephemeral, pinging nobody" helper that
commands and the command tree's error handler use; ``refuse`` tells a member privately why a deferred
command was refused.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.app.installs import GUEST_FOLLOWUPS, is_guest
from bot.rendering import limits
from bot.rendering.premium import premium_view
from bot.rendering.stream import FileData, MessageTarget
from bot.rendering.text import truncate

log = logging.getLogger(__name__)

__all__ = [
    "ERROR_PREFIX",
    "NO_MENTIONS",
    "ChannelReplyTarget",
    "InteractionTarget",
    "refuse",
    "reply_privately",
    "reply_quietly",
]

#: model output, relay posts and bot replies never ping anyone
NO_MENTIONS = discord.AllowedMentions.none()
ERROR_PREFIX = "⚠️ "
#: interaction tokens live 15 minutes; past this age new messages go to the channel instead
TOKEN_SAFE_SECONDS = 14 * 60
#: Discord's error code for an interaction token past its 15 minutes ("Invalid Webhook Token")
INVALID_WEBHOOK_TOKEN = 50027
#: ``interaction.extras`` flag: the deferred "thinking…" message already became an answer
_ANSWERED = "gatecord_answered"

#: a guest answer's messages: the response and 3 of the 5 follow-ups Discord allows, leaving 2 for a refusal,
#: a "no thread" note or a voice reply
GUEST_ANSWER_MESSAGES = GUEST_FOLLOWUPS - 1

#: called with each new answer message's id as soon as Discord created it
OnCreated = Callable[[int], Awaitable[None]]


def discord_files(files: Sequence[FileData]) -> list[discord.File]:
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in files]


async def reply_privately(
    interaction: discord.Interaction, content: str, *, file: discord.File | None = None,
    cause: BaseException | None = None,
) -> None:
    """Tell the member something privately: the first response (ephemeral), the deferred "thinking…"
    message while nothing else replaced it (so it never stays on screen; it is public when the
    command deferred publicly), or an ephemeral followup. Long text is cut to Discord's limit.
    ``cause``: the refusal being told (a tier's budget limit brings Discord's premium button)."""
    content = truncate(content, limits.MESSAGE_CONTENT)
    kwargs: dict[str, Any] = {"ephemeral": True, "allowed_mentions": NO_MENTIONS}
    if file is not None:
        kwargs["file"] = file
    view = premium_view(cause)
    if view is not None:
        kwargs["view"] = view
    response = interaction.response
    if not response.is_done():
        await response.send_message(content, **kwargs)
    elif (
        response.type is discord.InteractionResponseType.deferred_channel_message
        and not interaction.extras.get(_ANSWERED)
    ):
        # the "thinking…" message becomes the reply, so it never stays on screen
        interaction.extras[_ANSWERED] = True
        await interaction.edit_original_response(
            content=content, allowed_mentions=NO_MENTIONS,
            attachments=[file] if file is not None else discord.utils.MISSING,
            view=view if view is not None else discord.utils.MISSING,
        )
    else:
        await interaction.followup.send(content, **kwargs)


async def reply_quietly(message: discord.Message, text: str) -> None:
    """Reply in the channel without pinging; a refusal is logged, never raised."""
    try:
        await message.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
    except discord.HTTPException as exc:
        log.warning("could not reply: %r", exc)


class _AnswerMessages:
    """The Discord messages of one answer, in order; ``on_created`` hears of each new one."""

    #: the most messages the answer may create (None: no limit); past it the renderer attaches a file
    max_messages: int | None = None

    def __init__(self) -> None:
        self.messages: list[discord.Message] = []
        self.on_created: OnCreated | None = None

    @property
    def message_ids(self) -> list[int]:
        return [m.id for m in self.messages]

    async def _created(self, msg: discord.Message) -> None:
        self.messages.append(msg)
        if self.on_created is not None:
            await self.on_created(msg.id)

    async def remove(self, index: int) -> None:
        msg = self.messages.pop(index)
        await msg.delete()


class InteractionTarget(_AnswerMessages):
    """Answer messages of a (deferred) interaction: the original response, then followups.

    Past the token's 15 minutes (or once Discord refuses it) a public answer continues in the channel —
    except for a guest (``bot.app.installs.is_guest``: a server where only the member installed the app,
    a group DM): there everything goes through the interaction, and the answer keeps room for a refusal
    or a note within Discord's follow-up limit (a longer answer becomes a file).
    """

    def __init__(
        self, interaction: discord.Interaction, *, ephemeral: bool = False, clock: Callable[[], float] = time.monotonic,
        guest: bool | None = None,
    ) -> None:
        super().__init__()
        self.interaction = interaction
        self.ephemeral = ephemeral
        self.guest = is_guest(interaction) if guest is None else guest
        if self.guest:
            self.max_messages = GUEST_ANSWER_MESSAGES
        self._clock = clock
        self._started = clock()
        self._refused = False  # Discord already said the token is no longer valid

    def _token_expired(self) -> bool:
        return self._refused or self._clock() - self._started > TOKEN_SAFE_SECONDS

    def _channel_usable(self) -> bool:
        return not self.ephemeral and not self.guest and self.interaction.channel is not None

    async def put(self, index: int, content: str, *, files: Sequence[FileData] = ()) -> None:
        try:
            await self._put(index, content, files)
        except discord.HTTPException as exc:
            # The clock is only an estimate: once Discord refuses the token, carry on in the channel.
            if exc.code != INVALID_WEBHOOK_TOKEN or self._refused or not self._channel_usable():
                raise
            log.info("interaction token refused; continuing the answer in the channel")
            self._refused = True
            await self._put(index, content, files)

    async def _put(self, index: int, content: str, files: Sequence[FileData]) -> None:
        if index < len(self.messages):
            kwargs: dict[str, Any] = {"content": content, "allowed_mentions": NO_MENTIONS}
            if files:
                kwargs["attachments"] = discord_files(files)
            msg = self.messages[index]
            if index == 0 and not self._token_expired():
                self.messages[0] = await self.interaction.edit_original_response(**kwargs)
            elif self._token_expired() and not self.ephemeral and not self.guest and msg.channel is not None:
                await msg.channel.get_partial_message(msg.id).edit(**kwargs)  # type: ignore[union-attr]
            else:
                await msg.edit(**kwargs)
            return
        channel = self.interaction.channel
        if index == 0 and not (self._token_expired() and self._channel_usable()):
            self.interaction.extras[_ANSWERED] = True
            msg = await self.interaction.edit_original_response(
                content=content, allowed_mentions=NO_MENTIONS, attachments=discord_files(files)
            )
        elif self._token_expired() and self._channel_usable():
            msg = await channel.send(  # type: ignore[union-attr]
                content, files=discord_files(files), allowed_mentions=NO_MENTIONS
            )
        else:
            msg = await self.interaction.followup.send(
                content, files=discord_files(files), ephemeral=self.ephemeral, allowed_mentions=NO_MENTIONS, wait=True
            )
        await self._created(msg)


    async def refuse(self, content: str, *, cause: BaseException | None = None) -> None:
        """Tell only the member why nothing was asked (a budget, a refused file …); ``cause`` a tier's
        budget limit brings Discord's premium button (bot/rendering/premium.py).

        A public deferral cannot become private (the "thinking…" response keeps the visibility it was
        deferred with, and so does the first followup after it), so a public one is deleted and the
        refusal is sent as an ephemeral followup. Once an answer is on screen, or past the token's
        lifetime, the refusal goes where the answer would have gone.
        """
        view = premium_view(cause)
        if self.ephemeral or self.messages or self._token_expired():
            if view is not None and not self.messages and not self._token_expired():
                self.interaction.extras[_ANSWERED] = True
                await self._created(await self.interaction.edit_original_response(
                    content=content, allowed_mentions=NO_MENTIONS, view=view))
                return
            await self.put(0, content)
            return
        self.interaction.extras[_ANSWERED] = True
        try:
            await self.interaction.delete_original_response()
        except discord.NotFound:
            pass  # already gone: the followup below is all the member sees
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        await self.interaction.followup.send(content, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)


async def refuse(target: MessageTarget, content: str, *, cause: BaseException | None = None) -> None:
    """Show why a request was refused: privately when the target is an interaction's answer, else
    where the answer would have gone (a reply to a message can't be private). ``cause``: see
    ``InteractionTarget.refuse``."""
    if isinstance(target, InteractionTarget):
        await target.refuse(content, cause=cause)
    else:
        await target.put(0, content)


class ChannelReplyTarget(_AnswerMessages):
    """Answer messages in a channel: a reply to the member's message, then plain messages."""

    def __init__(self, message: discord.Message) -> None:
        super().__init__()
        self.source = message

    async def put(self, index: int, content: str, *, files: Sequence[FileData] = ()) -> None:
        if index < len(self.messages):
            kwargs: dict[str, Any] = {"content": content, "allowed_mentions": NO_MENTIONS}
            if files:
                kwargs["attachments"] = discord_files(files)
            self.messages[index] = await self.messages[index].edit(**kwargs)
            return
        if index == 0:
            msg = await self.source.reply(
                content, files=discord_files(files), allowed_mentions=NO_MENTIONS, mention_author=False
            )
        else:
            msg = await self.source.channel.send(content, files=discord_files(files), allowed_mentions=NO_MENTIONS)
        await self._created(msg)
