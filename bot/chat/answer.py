"""Run one chat request and stream its answer into Discord — shared by /chat, mentions and vision.

``AnswerRunner.run(target, spec, ticket)`` does, in order: wait for the admission ticket (conversation
lock, then a global slot) → reserve the budget (its granted tokens become ``max_tokens``) → stream
from the gateway into a ``StreamRenderer`` → final edit with footer (model, fallback, tokens/credits)
and optional reasoning/answer files → settle the real usage, or release the reservation on failure.
Failures end as one short, specific message (bot/rendering/errors.py); a stream cut mid-way keeps the text
received so far, marked incomplete. The targets below pass ``allowed_mentions`` explicitly (nobody
is ever pinged by model output).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.chat.admission import Admission, Ticket
from bot.chat.conversation import estimate_tokens
from bot.budgets.quotas import BudgetExceeded, Feature, Requester, Reservation
from bot.rendering.stream import FileData, RenderStats, StreamRenderer, footer_line
from bot.rendering.errors import describe_error, error_code, incomplete_notice
from gateway_client import ChatMessage, ChatRequest, ChatResult, ModelKind, StreamInterrupted

log = logging.getLogger(__name__)

__all__ = [
    "NO_MENTIONS",
    "shared_admission",
    "AnswerOutcome",
    "AnswerRunner",
    "AnswerSpec",
    "ChannelReplyTarget",
    "InteractionTarget",
    "ERROR_PREFIX",
]

NO_MENTIONS = discord.AllowedMentions.none()
ERROR_PREFIX = "⚠️ "
#: interaction tokens live 15 minutes; past this age new messages go to the channel instead
TOKEN_SAFE_SECONDS = 14 * 60
#: Discord's error code for an interaction token past its 15 minutes ("Invalid Webhook Token")
INVALID_WEBHOOK_TOKEN = 50027


OnShown = Callable[["AnswerOutcome"], Awaitable[None]]

_ADMISSIONS: weakref.WeakKeyDictionary[Any, Admission] = weakref.WeakKeyDictionary()


def shared_admission(bot: Any) -> Admission:
    """The one admission gate for chat-like gateway calls of this bot (chat, mentions, vision)."""
    gate = _ADMISSIONS.get(bot)
    if gate is None:
        chat = bot.settings.chat
        gate = _ADMISSIONS[bot] = Admission(chat.max_concurrency, chat.max_queue)
    return gate


def _files(files: Sequence[FileData]) -> list[discord.File]:
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in files]


class InteractionTarget:
    """Answer messages of a (deferred) interaction: the original response, then followups."""

    def __init__(self, interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral
        self.messages: list[discord.Message] = []
        self._started = time.monotonic()
        self._refused = False  # Discord already said the token is no longer valid

    @property
    def message_ids(self) -> list[int]:
        return [m.id for m in self.messages]

    def _token_expired(self) -> bool:
        return self._refused or time.monotonic() - self._started > TOKEN_SAFE_SECONDS

    def _channel_usable(self) -> bool:
        return not self.ephemeral and self.interaction.channel is not None

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
                kwargs["attachments"] = _files(files)
            msg = self.messages[index]
            if index == 0 and not self._token_expired():
                self.messages[0] = await self.interaction.edit_original_response(**kwargs)
            elif self._token_expired() and not self.ephemeral and msg.channel is not None:
                await msg.channel.get_partial_message(msg.id).edit(**kwargs)  # type: ignore[union-attr]
            else:
                await msg.edit(**kwargs)
            return
        if index == 0 and not (self._token_expired() and self._channel_usable()):
            msg = await self.interaction.edit_original_response(
                content=content, allowed_mentions=NO_MENTIONS, attachments=_files(files)
            )
        elif self._token_expired() and self._channel_usable():
            msg = await self.interaction.channel.send(  # type: ignore[union-attr]
                content, files=_files(files), allowed_mentions=NO_MENTIONS
            )
        else:
            msg = await self.interaction.followup.send(
                content, files=_files(files), ephemeral=self.ephemeral, allowed_mentions=NO_MENTIONS, wait=True
            )
        self.messages.append(msg)

    async def remove(self, index: int) -> None:
        msg = self.messages.pop(index)
        await msg.delete()


class ChannelReplyTarget:
    """Answer messages in a channel: a reply to the member's message, then plain messages."""

    def __init__(self, message: discord.Message) -> None:
        self.source = message
        self.messages: list[discord.Message] = []

    @property
    def message_ids(self) -> list[int]:
        return [m.id for m in self.messages]

    async def put(self, index: int, content: str, *, files: Sequence[FileData] = ()) -> None:
        if index < len(self.messages):
            kwargs: dict[str, Any] = {"content": content, "allowed_mentions": NO_MENTIONS}
            if files:
                kwargs["attachments"] = _files(files)
            self.messages[index] = await self.messages[index].edit(**kwargs)
            return
        if index == 0:
            msg = await self.source.reply(
                content, files=_files(files), allowed_mentions=NO_MENTIONS, mention_author=False
            )
        else:
            msg = await self.source.channel.send(content, files=_files(files), allowed_mentions=NO_MENTIONS)
        self.messages.append(msg)

    async def remove(self, index: int) -> None:
        msg = self.messages.pop(index)
        await msg.delete()


@dataclass
class AnswerSpec:
    """What to ask and on whose account."""

    messages: list[ChatMessage]
    requester: Requester
    model: str | None = None
    temperature: float | None = None
    max_tokens: int = 1024
    feature: Feature = Feature.CHAT
    model_kinds: tuple[ModelKind, ...] = (ModelKind.CHAT, ModelKind.VISION)
    footer_extra: tuple[str, ...] = ()
    #: prompt size estimate, held in the token budget until the real usage is known
    prompt_tokens: int | None = None


@dataclass
class AnswerOutcome:
    """What happened: ``complete`` answers are recorded as history; ``text`` is what the member saw."""

    complete: bool
    text: str = ""
    reasoning: str = ""
    result: ChatResult | None = None
    error: BaseException | None = None
    stats: RenderStats = field(default_factory=RenderStats)

    @property
    def partial(self) -> bool:
        return not self.complete and bool(self.text.strip())


class AnswerRunner:
    """Runs chat requests for a bot (``bot.gateway``, ``bot.quotas``, ``bot.settings.chat``)."""

    def __init__(self, bot: Any) -> None:
        self.bot = bot

    def _renderer(self, target: Any) -> StreamRenderer:
        chat = self.bot.settings.chat
        return StreamRenderer(
            target, edit_interval=chat.edit_interval, file_over=chat.attach_as_file_over, file_name="answer.txt"
        )

    async def run(self, target: Any, spec: AnswerSpec, ticket: Ticket, *, on_shown: OnShown | None = None) -> AnswerOutcome:
        """Admission → budget → stream → final edit → settle. Never raises for a gateway or budget
        failure (the member sees the message); re-raises cancellation."""
        async with ticket:
            return await self.run_admitted(target, spec, on_shown=on_shown)

    async def run_admitted(self, target: Any, spec: AnswerSpec, *, on_shown: OnShown | None = None) -> AnswerOutcome:
        """``run`` for a caller already holding its admission ticket (e.g. to read history under the
        conversation lock first). ``on_shown`` is awaited once the answer (or partial answer) is on
        screen, before the budget is settled — the place to record the exchange."""
        bot = self.bot
        prompt_tokens = spec.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = sum(estimate_tokens(m.content) for m in spec.messages)  # type: ignore[arg-type]
        try:
            reservation = await bot.quotas.reserve(
                spec.requester, spec.feature, tokens=spec.max_tokens, prompt_tokens=prompt_tokens, model=spec.model
            )
        except BudgetExceeded as exc:
            await self._show_failure(target, exc, spec)
            return AnswerOutcome(complete=False, error=exc)
        renderer = self._renderer(target)
        max_tokens = reservation.granted_tokens or spec.max_tokens
        request = ChatRequest(
            messages=list(spec.messages), model=spec.model or None, temperature=spec.temperature,
            max_tokens=max_tokens, user=str(spec.requester.user_id),
        )
        stream = bot.gateway.stream_chat(request)
        try:
            try:
                async with stream:
                    async for delta in stream:
                        renderer.feed(delta)
                result = stream.result
                assert result is not None
            except asyncio.CancelledError:
                await renderer.aclose()
                await asyncio.shield(self._release(reservation, "cancelled", stream, "cancelled"))
                raise
            except Exception as exc:
                return await self._after_failure(target, spec, renderer, reservation, stream, exc, prompt_tokens,
                                                 on_shown)
            extra = list(spec.footer_extra)
            if result.finish_reason == "length":
                extra.append("stopped at the token limit")
            if reservation.granted_tokens is not None and reservation.granted_tokens < spec.max_tokens:
                extra.append(f"answer capped at {reservation.granted_tokens} tokens by the budget")
            files = self._reasoning_files(result.reasoning)
            try:
                await renderer.finish(text=result.text, footer=footer_line(result.meta, result.usage, extra=extra),
                                      files=files)
            except Exception as exc:  # Discord refused the final edit: the answer was still paid for
                log.warning("final answer could not be shown: %r", exc)
            outcome = AnswerOutcome(complete=True, text=result.text, reasoning=result.reasoning, result=result,
                                    stats=renderer.stats)
            await self._notify(on_shown, outcome)
            usage = result.usage
            tokens = usage.total_tokens or ((usage.prompt_tokens or 0) + (usage.completion_tokens or 0))
            if not tokens:
                tokens = prompt_tokens + estimate_tokens(result.text)
            await self._quietly(bot.quotas.settle(reservation, usage_tokens=tokens, credits=result.meta.credits_used,
                                                  meta=result.meta, outcome="ok"))
            return outcome
        finally:
            if not renderer.stats.finished_at:
                await renderer.aclose()

    @staticmethod
    async def _notify(on_shown: OnShown | None, outcome: AnswerOutcome) -> None:
        if on_shown is None:
            return
        try:
            await on_shown(outcome)
        except Exception:
            log.exception("after-answer hook failed")

    async def _after_failure(
        self, target: Any, spec: AnswerSpec, renderer: StreamRenderer, reservation: Reservation,
        stream: Any, exc: Exception, prompt_tokens: int, on_shown: OnShown | None = None,
    ) -> AnswerOutcome:
        partial = renderer.text
        if isinstance(exc, StreamInterrupted) and exc.partial_text.strip():
            partial = exc.partial_text
        meta = getattr(stream, "meta", None)
        if partial.strip():
            # Keep what arrived, marked incomplete; it was (probably) paid for: charge the estimate.
            reasoning = getattr(exc, "partial_reasoning", "") or ""
            try:
                await renderer.finish(text=partial, notice=incomplete_notice(exc),
                                      footer=footer_line(meta, None, extra=spec.footer_extra),
                                      files=self._reasoning_files(reasoning))
            except Exception as show_error:
                log.warning("partial answer could not be shown: %r", show_error)
            outcome = AnswerOutcome(complete=False, text=partial, reasoning=reasoning, error=exc, stats=renderer.stats)
            await self._notify(on_shown, outcome)
            await self._quietly(self.bot.quotas.settle(
                reservation, usage_tokens=prompt_tokens + estimate_tokens(partial), meta=meta, outcome="interrupted"))
            log.info("answer interrupted after %d chars: %r", len(partial), exc)
            return outcome
        cause: BaseException = exc
        if isinstance(exc, StreamInterrupted) and exc.cause is not None:
            cause = exc.cause
        await self._release(reservation, "error", stream, error_code(cause))
        log.info("answer failed: %r", cause)
        text = ERROR_PREFIX + await describe_error(cause, gateway=self.bot.gateway, model=spec.model,
                                                   kinds=spec.model_kinds)
        try:
            await renderer.finish(notice=text)
        except Exception as show_error:
            log.warning("error message could not be shown: %r", show_error)
        return AnswerOutcome(complete=False, error=cause, stats=renderer.stats)

    async def _show_failure(self, target: Any, exc: BaseException, spec: AnswerSpec) -> None:
        text = ERROR_PREFIX + await describe_error(exc, gateway=self.bot.gateway, model=spec.model,
                                                   kinds=spec.model_kinds)
        try:
            await target.put(0, text)
        except Exception as show_error:
            log.warning("error message could not be shown: %r", show_error)

    def _reasoning_files(self, reasoning: str) -> list[FileData]:
        if reasoning and reasoning.strip() and self.bot.settings.chat.attach_reasoning:
            return [FileData("reasoning.txt", reasoning.strip().encode("utf-8"))]
        return []

    async def _release(self, reservation: Reservation, outcome: str, stream: Any, code: str) -> None:
        await self._quietly(self.bot.quotas.release(reservation, outcome=outcome,
                                                    meta=getattr(stream, "meta", None), error_code=code))

    @staticmethod
    async def _quietly(coro: Any) -> None:
        """Budget bookkeeping must not turn a shown answer into a failure; it is logged instead."""
        try:
            await coro
        except Exception as exc:
            log.error("budget bookkeeping failed: %r", exc)
