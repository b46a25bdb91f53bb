"""The vision use case: a question about images, from ``/vision``, "Describe image", or a message.

Every question: the image attachments, checked and prepared (bot/vision/images.py: declared
type/size, CDN host, capped download, pixel cap, thread decoding, downscale, data URL) → a model
that can see images (bot/vision/models.py; the footer says when the bot switched) → the chat
service's answer pipeline with the VISION budget (admission, streaming, footer, error messages).

Mentions and replies stay chat turns: the chat service asks ``wants(message)`` and hands the
turn's spec to ``with_images``, so conversation history and recording stay in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord

from bot.budgets.engine import Reservation
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.chat.answer import AnswerSpec
from bot.chat.conversation import new_conversation_id, render_system_prompt
from bot.gateways.defaults import default_model
from bot.rendering.errors import user_error_message
from bot.rendering.replies import ERROR_PREFIX, InteractionTarget, refuse
from bot.rendering.stream import MessageTarget
from bot.rendering.text import truncate
from bot.vision.inputs import (
    DEFAULT_PROMPT,
    Gathered,
    Screened,
    fetch_images,
    image_attachments,
    image_links,
    screen_images,
    vision_message,
)
from bot.vision.models import VisionChoice, choose_vision_model
from gateway_client import ChatMessage, GatewayClient, ModelKind

if TYPE_CHECKING:
    import aiohttp

    from bot.app.settings import Settings
    from bot.chat.admission import Ticket
    from bot.chat.service import ChatService

log = logging.getLogger(__name__)

__all__ = ["VISION_KINDS", "VisionQuestion", "VisionService"]

VISION_KINDS: tuple[ModelKind, ...] = (ModelKind.VISION,)
FOOTER_NOTE_MAX = 80
MAX_NOTES = 3
MESSAGE_MAX = 1900


@dataclasses.dataclass(frozen=True)
class VisionQuestion:
    """What a member asked about which pictures."""

    attachments: Sequence[Any]
    links: Sequence[str] = ()
    prompt: str = DEFAULT_PROMPT
    model: str | None = None
    #: the member picked this attachment themselves (an unreadable one is an error, not skipped)
    chosen: bool = False


class VisionService:
    """Vision questions for one bot; built once by the factory (``bot.vision``)."""

    def __init__(self, settings: Settings, chat: ChatService, *, cdn_http: Callable[[], aiohttp.ClientSession]) -> None:
        self.settings = settings
        self.chat = chat
        self._cdn_http = cdn_http
        #: decodes in flight at once, bot-wide: each may hold a decoded picture in memory
        self._decodes = asyncio.Semaphore(settings.vision.max_concurrent_decodes)

    @property
    def decodes(self) -> asyncio.Semaphore:
        """The bot-wide limit on pictures decoded at once (image edits take theirs in through it too)."""
        return self._decodes

    def admit(self) -> Ticket:
        """A place in the chat service's admission line (a new conversation); raises ``Busy``."""
        return self.chat.admission.admit(new_conversation_id())

    async def answer_interaction(self, interaction: discord.Interaction, ticket: Ticket, ask: VisionQuestion) -> None:
        """Answer a deferred ``/vision`` or "Describe image"; ``ticket`` is given back whatever happens."""
        target = InteractionTarget(interaction)
        requester = Requester.from_interaction(interaction)
        try:
            async with self.chat.tracked():
                gateway: GatewayClient | None = None
                try:
                    gateway = await self.chat.gateways.for_guild(requester.guild_id)  # the guild's own, if any
                    cfg = await self.chat.guild_config.effective(
                        interaction.guild_id, interaction.channel_id,
                        interaction.channel.parent_id if isinstance(interaction.channel, discord.Thread) else None,
                        gateway=gateway,
                    )
                    screened = screen_images(list(ask.attachments), self.settings, links=list(ask.links),
                                             chosen=ask.chosen)
                    choice = await self._choose(gateway, ask.model or cfg.vision_model, cfg.vision_model)
                except Exception as exc:
                    await self._refuse(target, exc, gateway)
                    return
                system = render_system_prompt(
                    cfg.system_prompt, now=datetime.now(UTC),
                    server=interaction.guild.name if interaction.guild else None,
                    channel=getattr(interaction.channel, "name", None),
                    user=getattr(interaction.user, "display_name", None),
                )
                head = [ChatMessage.system(system)] if system.strip() else []
                spec = AnswerSpec(
                    messages=[*head, _placeholder(ask.prompt, screened)],
                    requester=requester, model=choice.model,
                    temperature=cfg.temperature, max_tokens=cfg.max_tokens, feature=Feature.VISION,
                    model_kinds=VISION_KINDS, gateway=gateway,
                )
                gathered, spec = await self._hold_and_fetch(target, spec, screened, ask.prompt)
                if gathered is None:
                    return
                spec.footer_extra = self._footer(choice, gathered)
                try:
                    async with ticket:
                        outcome = await self.chat.runner.answer(target, spec)
                except BaseException as exc:  # the line refused or was cancelled before the runner took the hold
                    if spec.hold is not None and not spec.hold.closed:
                        await _release(spec.hold, exc)
                    raise
                await outcome.wait_shown()
        finally:
            ticket.cancel()  # a no-op once the question used it

    def wants(self, message: discord.Message) -> bool:
        """Whether a message for the bot carries pictures (or image links) that are this service's to answer."""
        return bool(image_attachments(message.attachments) or image_links(message))

    async def with_images(self, message: discord.Message, spec: AnswerSpec, target: MessageTarget) -> AnswerSpec | None:
        """The chat turn ``spec`` with the message's images added, a vision model and the VISION budget held
        (``spec.hold``); None when the images or the budget were refused — the member was told why through
        ``target``."""
        last = spec.messages[-1]
        text = last.content if isinstance(last.content, str) else DEFAULT_PROMPT
        gateway = spec.gateway
        try:
            if gateway is None:
                gateway = await self.chat.gateways.for_guild(spec.requester.guild_id)
            screened = screen_images(list(message.attachments), self.settings, links=image_links(message))
            channel = message.channel
            parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
            cfg = await self.chat.guild_config.effective(message.guild.id if message.guild else None,
                                                         channel.id, parent_id, gateway=gateway)
            choice = await self._choose(gateway, spec.model or cfg.chat_model, cfg.vision_model)
        except Exception as exc:
            await self._refuse(target, exc, gateway)
            return None
        spec = dataclasses.replace(
            spec, messages=[*spec.messages[:-1], _placeholder(text, screened)], model=choice.model,
            feature=Feature.VISION, model_kinds=VISION_KINDS, prompt_tokens=None, gateway=gateway,
        )
        gathered, spec = await self._hold_and_fetch(target, spec, screened, text)
        if gathered is None:
            return None
        spec.footer_extra = self._footer(choice, gathered) + tuple(spec.footer_extra)
        return spec

    async def _hold_and_fetch(
        self, target: MessageTarget, spec: AnswerSpec, screened: Screened, text: str
    ) -> tuple[Gathered | None, AnswerSpec]:
        """Hold the VISION budget, *then* download and decode: a member over budget costs no download and no
        decode, and two questions cannot both pass for the last unit. The returned spec carries the hold
        and the real images; (None, spec) when refused — the member was told why and the hold released."""
        runner = self.chat.runner
        try:
            hold = await runner.hold(spec)
        except BudgetExceeded as exc:
            await runner.show_refusal(target, exc, spec)
            return None, spec
        try:
            gathered = await fetch_images(self._cdn_http(), screened, self.settings, decodes=self._decodes)
        except Exception as exc:
            await _release(hold, exc)
            await self._refuse(target, exc, spec.gateway)
            return None, spec
        except BaseException as exc:  # cancelled: nothing was asked
            await _release(hold, exc)
            raise
        messages = [*spec.messages[:-1], vision_message(text, gathered, send_as=self.settings.vision.send_as)]
        return gathered, dataclasses.replace(spec, messages=messages, prompt_tokens=None, hold=hold)

    async def _choose(self, gateway: GatewayClient, wanted: str | None, channel_vision_model: str) -> VisionChoice:
        """A model of ``gateway`` (the guild's) that sees images; its default vision model is preferred."""
        configured = default_model(gateway, "vision", self.settings)
        return await choose_vision_model(gateway, wanted=wanted,
                                         preferred=(channel_vision_model, configured), configured=configured)

    @staticmethod
    def _footer(choice: VisionChoice, gathered: Gathered) -> tuple[str, ...]:
        notes = [n for n in (choice.footer_note(),) if n]
        notes += [truncate(n, FOOTER_NOTE_MAX) for n in gathered.notes[:MAX_NOTES]]
        return tuple(notes)

    @staticmethod
    async def _refuse(target: MessageTarget, exc: BaseException, gateway: GatewayClient | None = None) -> None:
        own = getattr(exc, "user_message", None)
        if callable(own):  # image refusals word their own (possibly several lines) message
            text = truncate(own(), MESSAGE_MAX)
        else:
            text = user_error_message(exc, gateway=gateway)  # logs unexpected errors with a reference
        try:
            await refuse(target, ERROR_PREFIX + text, cause=exc)  # private for a slash command, like budget refusals
        except Exception as show_error:
            log.warning("could not tell the member why the image was refused: %r", show_error)


def _placeholder(text: str, screened: Screened) -> ChatMessage:
    """The user message as it will be, one empty reference per picture to download: what the budget hold
    estimates before any image is fetched (the real usage is settled afterwards)."""
    return ChatMessage.user(text or DEFAULT_PROMPT, images=[""] * len(screened.pictures))


async def _release(hold: Reservation, exc: BaseException) -> None:
    """Give back a hold whose question was never asked (its images were refused, or it was cancelled)."""
    if isinstance(exc, asyncio.CancelledError):
        outcome, code = "cancelled", "cancelled"
    else:
        outcome, code = "refused", str(getattr(exc, "code", "") or type(exc).__name__)
    try:
        await asyncio.shield(hold.release(outcome=outcome, error_code=code))
    except Exception as failed:  # the TTL sweep returns it later
        log.warning("could not release vision budget hold %s: %r", hold.id, failed)
