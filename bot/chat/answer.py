"""One streamed answer from the gateway into Discord, shared by chat turns and vision questions.

``AnswerRunner.answer(target, spec)`` does, in order: hold the budget through the one budget flow
(``quotas.charge``; the granted tokens become ``max_tokens``) → stream from the gateway into a
``StreamRenderer`` → start the final edit (footer: model, fallback, tokens/credits; optional
reasoning file) → ``on_answered`` (the caller records the exchange, while the edit is on its way)
→ settle the real usage, or release the hold on failure. It returns as soon as the bookkeeping is
done, without waiting for the final edit: the caller frees its admission slot and conversation
lock, then awaits ``outcome.wait_shown()``, which may sit on a Discord rate-limit sleep. Failures end as one short,
specific message (bot/rendering/errors.py); a stream cut mid-way keeps the text received so far,
marked incomplete.

A request the model refuses as longer than its context window, or answers with nothing at all (a
proxy hiding the server's failure inside a 200 stream), is asked once more with its history halved
(bot/chat/context.py) and charged like any call; the failed one only as the gateway reported it. The
footer says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.budgets.engine import Reservation
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.chat.context import ContextWindows, shorten
from bot.chat.conversation import estimate_tokens
from bot.chat.tools.loop import ToolSession, run_rounds
from bot.gateways.directory import GatewayDirectory
from bot.rendering.errors import describe_error, error_code, incomplete_notice
from bot.rendering.replies import ERROR_PREFIX, refuse
from bot.rendering.stream import FileData, MessageTarget, Pressure, RenderStats, StreamRenderer
from bot.rendering.text import footer_line
from bot.rendering.user_facing import UserFacingError
from gateway_client import (
    CallMeta,
    ChatMessage,
    ChatRequest,
    ChatResult,
    ContextTooLong,
    GatewayClient,
    GatewayError,
    ModelKind,
    StreamInterrupted,
)

if TYPE_CHECKING:
    from bot.app.settings import ChatSettings
    from bot.budgets.service import BudgetService

log = logging.getLogger(__name__)

__all__ = ["AnswerOutcome", "AnswerRunner", "AnswerSpec"]

CUT_OFF_SHOW_SECONDS = 1.5  # the final edit of an answer cut off by the bot's stop (within the drain's grace)
OnAnswered = Callable[["AnswerOutcome"], Awaitable[None]]


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
    #: a line above the answer in its first message (the quoted transcript of a voice message)
    header: str = ""
    #: prompt size estimate, held in the token budget until the real usage is known
    prompt_tokens: int | None = None
    #: a budget hold made beforehand with ``AnswerRunner.hold`` (vision holds its budget before it downloads
    #: anything); the runner then uses it instead of reserving, and settles or releases it as usual
    hold: Reservation | None = None
    #: this is the retry with the history halved (there is no other)
    shortened: bool = False
    #: the tools the model may call during this answer (bot/chat/tools/); None or empty: none offered
    tools: ToolSession | None = None
    #: the gateway that answers (the guild's, ``GatewayDirectory.for_guild``); None: the runner looks it up
    #: for ``requester.guild_id`` before holding any budget
    gateway: GatewayClient | None = None


@dataclass
class AnswerOutcome:
    """What happened: ``complete`` answers are recorded as history; ``text`` is what the member saw."""

    complete: bool
    text: str = ""
    reasoning: str = ""
    result: ChatResult | None = None
    error: BaseException | None = None
    stats: RenderStats = field(default_factory=RenderStats)
    #: the final edit in flight (None when nothing is left to show)
    showing: asyncio.Task[None] | None = field(default=None, repr=False)

    async def wait_shown(self) -> None:
        """Wait until the final edit is done (Discord may delay it on a rate limit); never raises."""
        if self.showing is None:
            return
        try:
            await self.showing
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the answer was paid for and recorded; only its display failed
            log.warning("final answer could not be shown: %r", exc)


class AnswerRunner:
    """Streams chat answers: built once by the chat service, used for chat turns and vision questions."""

    def __init__(self, gateway: GatewayClient, quotas: BudgetService, settings: ChatSettings, *,
                 gateways: GatewayDirectory | None = None) -> None:
        #: the operator's gateway; a request goes to its guild's (``gateways``)
        self.gateway = gateway
        self.gateways = gateways if gateways is not None else GatewayDirectory(gateway)
        self.quotas = quotas
        self.settings = settings
        #: the process's Discord budget (set by the factory): renderers skip intermediate edits under load
        self.pressure: Pressure | None = None
        #: the models' context windows on a gateway (set by the chat service); None: no retry with a shorter
        #: history
        self.context_for: Callable[[GatewayClient], ContextWindows] | None = None

    def _renderer(self, target: MessageTarget, header: str = "") -> StreamRenderer:
        return StreamRenderer(
            target, edit_interval=self.settings.edit_interval, file_over=self.settings.attach_as_file_over,
            file_name="answer.txt", pressure=self.pressure, header=header,
            max_messages=getattr(target, "max_messages", None),  # an interaction's target may be limited
        )

    async def answer(
        self, target: MessageTarget, spec: AnswerSpec, *, on_answered: OnAnswered | None = None
    ) -> AnswerOutcome:
        """Budget → stream → final edit started → ``on_answered`` → settle. Never raises for a gateway
        or budget failure (the member sees the message); re-raises cancellation."""
        prompt_tokens = _prompt_tokens(spec)
        if spec.gateway is None:
            try:
                spec.gateway = await self.gateways.for_guild(spec.requester.guild_id)
            except GatewayError as exc:  # the guild's own gateway can't be used (its key unreadable …)
                if spec.hold is not None:
                    await self._quietly(self.quotas.release(spec.hold, outcome="error", error_code=error_code(exc)))
                await self.show_refusal(target, exc, spec)
                return AnswerOutcome(complete=False, error=exc)
        try:
            reservation = spec.hold if spec.hold is not None else await self.hold(spec)
        except BudgetExceeded as exc:
            await self.show_refusal(target, exc, spec)
            return AnswerOutcome(complete=False, error=exc)
        async with reservation:  # a failure, a cancellation or no settle releases the hold
            outcome = await self._stream(target, spec, reservation, prompt_tokens, on_answered)
        if isinstance(outcome, AnswerSpec):  # too long for the model: once more, with less history
            return await self.answer(target, outcome, on_answered=on_answered)
        return outcome

    async def hold(self, spec: AnswerSpec) -> Reservation:
        """Reserve the budget ``answer(spec)`` needs; raises ``BudgetExceeded``. The caller hands it back
        as ``spec.hold`` (or releases it)."""
        return await self.quotas.reserve(spec.requester, spec.feature, tokens=spec.max_tokens,
                                         prompt_tokens=_prompt_tokens(spec), model=spec.model)

    async def _stream(
        self, target: MessageTarget, spec: AnswerSpec, reservation: Reservation, prompt_tokens: int,
        on_answered: OnAnswered | None,
    ) -> AnswerOutcome | AnswerSpec:
        """The answer shown, or the shorter request to make instead (this one's hold closed). With tools,
        each round of calls is one more request, reserved and settled on its own (bot/chat/tools/loop.py),
        streamed into the same answer."""
        renderer = self._renderer(target, spec.header)
        session = spec.tools if spec.tools is not None and spec.tools.tools else None
        request = ChatRequest(
            messages=list(spec.messages), model=spec.model or None, temperature=spec.temperature,
            max_tokens=reservation.granted_tokens or spec.max_tokens, user=str(spec.requester.user_id),
            tools=session.param() if session is not None else None,
        )
        gateway = self._gateway(spec)
        current = _Round(reservation, gateway.stream_chat(request), prompt_tokens)
        async with contextlib.AsyncExitStack() as holds:  # the later rounds' holds: released on a failure
            try:
                async with current.stream as stream:
                    async for delta in stream:
                        renderer.feed(delta)
                result = current.stream.result
                assert result is not None
                said = result.text
                if session is not None and result.tool_calls:
                    result, said = await self._tool_rounds(session, spec, renderer, request, result, current, holds)
            except asyncio.CancelledError:  # only the bot's stop cancels an answer (its drain ran out of time)
                await _show_cut_off(renderer)
                raise  # the budget flow releases the hold as "cancelled"
            except Exception as exc:
                again = None if session is not None and session.rounds else await self._shorter(
                    spec, renderer, current.reservation, current.stream.meta, error=exc)
                if again is not None:
                    return again
                return await self._after_failure(target, spec, renderer, current.reservation, current.stream, exc,
                                                 current.prompt_tokens, on_answered)
            reservation, prompt_tokens = current.reservation, current.prompt_tokens
            if _empty(result) and not (session is not None and session.rounds):
                again = await self._shorter(spec, renderer, reservation, result.meta, result=result)
                if again is not None:
                    return again
            extra = list(spec.footer_extra) + (session.footer() if session is not None else [])
            if result.finish_reason == "length":
                extra.append("stopped at the token limit")
            if reservation.granted_tokens is not None and reservation.granted_tokens < spec.max_tokens:
                extra.append(f"answer capped at {reservation.granted_tokens} tokens by the budget")
            footer = footer_line(result.meta, result.usage, extra=extra)
            tool_files = list(session.files) if session is not None else []
            shown = result.text
            if session is not None and session.rounds:
                sources = session.sources_line()
                shown = renderer.text + (f"\n{sources}" if sources else "")
            showing = _start(renderer.finish(text=shown, footer=footer,
                                             files=tool_files + self._reasoning_files(result.reasoning)))
            outcome = AnswerOutcome(complete=True, text=said, reasoning=result.reasoning, result=result,
                                    stats=renderer.stats, showing=showing)
            await self._notify(on_answered, outcome)  # recorded while the final edit is on its way
            await self._quietly(self.quotas.settle(reservation, usage_tokens=_used_tokens(result, prompt_tokens),
                                                   credits=result.meta.credits_used, meta=result.meta, outcome="ok"))
            return outcome

    async def _tool_rounds(
        self, session: ToolSession, spec: AnswerSpec, renderer: StreamRenderer, request: ChatRequest,
        result: ChatResult, current: _Round, holds: contextlib.AsyncExitStack,
    ) -> tuple[ChatResult, str]:
        """The rounds of calls ``result`` starts: each round's request reserved (``spec.feature``, like the
        first) and settled with what the gateway reports; the next one's hold kept in ``current``."""

        async def settle(answered: ChatResult) -> None:
            tokens = _used_tokens(answered, current.prompt_tokens, extra=json.dumps(answered.tool_calls))
            await self._quietly(self.quotas.settle(current.reservation, usage_tokens=tokens,
                                                   credits=answered.meta.credits_used, meta=answered.meta,
                                                   outcome="tool_calls"))

        async def ask(again: ChatRequest) -> ChatResult:
            prompt = sum(estimate_tokens(m.content if isinstance(m, ChatMessage) else str(m)) for m in again.messages)
            prompt += estimate_tokens(json.dumps(again.tools)) if again.tools else 0
            hold = await self.quotas.reserve(spec.requester, spec.feature, tokens=spec.max_tokens,
                                             prompt_tokens=prompt, model=spec.model)
            await holds.enter_async_context(hold)
            current.reservation, current.prompt_tokens = hold, prompt
            current.stream = self._gateway(spec).stream_chat(
                dataclasses.replace(again, max_tokens=hold.granted_tokens or spec.max_tokens))
            async with current.stream as stream:
                async for delta in stream:
                    renderer.feed(delta)
            answered = current.stream.result
            assert answered is not None
            return answered

        return await run_rounds(session, request, result, settle=settle, ask=ask, feed=renderer.feed,
                                shown=lambda: renderer.text)

    async def _shorter(
        self, spec: AnswerSpec, renderer: StreamRenderer, reservation: Reservation, meta: Any, *,
        error: Exception | None = None, result: ChatResult | None = None,
    ) -> AnswerSpec | None:
        """``spec`` with its history halved (and ``max_tokens`` fitted to a window the error stated), when
        the model refused it as too long or answered nothing, nothing was shown, and this is not the retry
        already; else None. The failed call's hold is closed: charged only what the gateway reported."""
        if spec.shortened or self.context_for is None or renderer.text.strip():
            return None
        context = self.context_for(self._gateway(spec))
        cause: BaseException | None = error
        if isinstance(error, StreamInterrupted) and error.cause is not None:
            cause = error.cause
        if error is not None and not isinstance(cause, ContextTooLong):
            return None
        if isinstance(cause, ContextTooLong):
            context.learn(spec.model, cause.context_window)
        window = context.window(spec.model)
        shorter = shorten(spec.messages, max_tokens=spec.max_tokens, window=window)
        if shorter is None:
            return None
        messages, max_tokens, note = shorter
        if result is not None:
            usage = result.usage
            tokens = usage.total_tokens or ((usage.prompt_tokens or 0) + (usage.completion_tokens or 0))
            if tokens or meta.credits_used:  # the gateway says the empty answer cost something
                await self._quietly(self.quotas.settle(reservation, usage_tokens=tokens, meta=meta, outcome="empty"))
            else:
                await self._quietly(self.quotas.release(reservation, outcome="empty", meta=meta))
        elif cause is not None:
            await self._quietly(self.quotas.release(reservation, outcome="error", meta=meta,
                                                    error_code=error_code(cause)))
        await renderer.aclose()
        log.info("model %s: %s; asking again with %d of %d messages", spec.model, "context too long"
                 if result is None else "empty answer", len(messages), len(spec.messages))
        extra = tuple(e for e in spec.footer_extra if not e.startswith("history shortened"))
        return dataclasses.replace(spec, messages=messages, max_tokens=max_tokens, prompt_tokens=None, hold=None,
                                   shortened=True, footer_extra=(*extra, note))

    async def _after_failure(
        self, target: MessageTarget, spec: AnswerSpec, renderer: StreamRenderer, reservation: Reservation,
        stream: Any, exc: Exception, prompt_tokens: int, on_answered: OnAnswered | None,
    ) -> AnswerOutcome:
        partial = renderer.text
        if isinstance(exc, StreamInterrupted) and exc.partial_text.strip():
            partial = exc.partial_text
        meta = getattr(stream, "meta", None)
        if meta is None:  # the request failed before an answer began: the ledger still says who was asked
            gateway = self._gateway(spec)
            meta = CallMeta(profile=gateway.profile.name, gateway=gateway.config.label, operation="chat",
                            model_requested=spec.model)
        if partial.strip():
            # Keep what arrived, marked incomplete; it was (probably) paid for: charge the estimate.
            reasoning = getattr(exc, "partial_reasoning", "") or ""
            showing = _start(renderer.finish(text=partial, notice=incomplete_notice(exc),
                                             footer=footer_line(meta, None, extra=spec.footer_extra),
                                             files=self._reasoning_files(reasoning)))
            outcome = AnswerOutcome(complete=False, text=partial, reasoning=reasoning, error=exc,
                                    stats=renderer.stats, showing=showing)
            await self._notify(on_answered, outcome)
            if not reservation.closed:  # (a later round refused by the budget left the last one settled)
                await self._quietly(self.quotas.settle(
                    reservation, usage_tokens=prompt_tokens + estimate_tokens(partial), meta=meta,
                    outcome="interrupted"))
            log.info("answer interrupted after %d chars: %r", len(partial), exc)
            return outcome
        cause: BaseException = exc
        if isinstance(exc, StreamInterrupted) and exc.cause is not None:
            cause = exc.cause
        if not reservation.closed:
            await self._quietly(self.quotas.release(reservation, outcome="error", meta=meta,
                                                    error_code=error_code(cause)))
        log.info("answer failed: %r", cause)
        text = ERROR_PREFIX + await describe_error(cause, gateway=self._gateway(spec), model=spec.model,
                                                   kinds=spec.model_kinds)
        return AnswerOutcome(complete=False, error=cause, stats=renderer.stats,
                             showing=_start(renderer.finish(notice=text)))

    async def show_refusal(self, target: MessageTarget, exc: BaseException, spec: AnswerSpec | None = None, *,
                           gateway: GatewayClient | None = None) -> None:
        """Show why nothing was asked (a budget, a refused image …) as the answer's only message (under
        the spec's header line, if any); a slash command's refusal is private to the member. ``gateway``:
        the one that refused (else the spec's, else the operator's)."""
        if gateway is None:
            gateway = self._gateway(spec) if spec is not None else self.gateway
        text = ERROR_PREFIX + await describe_error(exc, gateway=gateway, model=spec.model if spec else None,
                                                   kinds=spec.model_kinds if spec else (ModelKind.CHAT,))
        if spec is not None and spec.header:
            text = f"{spec.header}\n{text}"
        try:
            await refuse(target, text, cause=exc)  # private for a slash command
        except Exception as show_error:
            log.warning("error message could not be shown: %r", show_error)

    def _gateway(self, spec: AnswerSpec) -> GatewayClient:
        """The gateway answering ``spec`` (set by ``answer``; the operator's before that)."""
        return spec.gateway if spec.gateway is not None else self.gateway

    @staticmethod
    async def _notify(on_answered: OnAnswered | None, outcome: AnswerOutcome) -> None:
        if on_answered is None:
            return
        try:
            await on_answered(outcome)
        except Exception:
            log.exception("after-answer hook failed")

    def _reasoning_files(self, reasoning: str) -> list[FileData]:
        if reasoning and reasoning.strip() and self.settings.attach_reasoning:
            return [FileData("reasoning.txt", reasoning.strip().encode("utf-8"))]
        return []

    @staticmethod
    async def _quietly(coro: Awaitable[None]) -> None:
        """Budget bookkeeping must not turn a shown answer into a failure; it is logged instead."""
        try:
            await coro
        except Exception as exc:
            log.error("budget bookkeeping failed: %r", exc)


def _empty(result: ChatResult) -> bool:
    """No text, no reasoning, no tool call, and not a token generated: the answer ended at once."""
    return (not result.text.strip() and not result.reasoning.strip() and not result.tool_calls
            and not result.usage.completion_tokens)


@dataclass
class _Round:
    """The request of an answer in progress: its hold, its stream, its prompt estimate (one per round)."""

    reservation: Reservation
    stream: Any
    prompt_tokens: int


def _used_tokens(result: ChatResult, prompt_tokens: int, extra: str = "") -> int:
    """The tokens a call used as the gateway reported them, else estimated."""
    usage = result.usage
    tokens = usage.total_tokens or ((usage.prompt_tokens or 0) + (usage.completion_tokens or 0))
    return tokens or prompt_tokens + estimate_tokens(result.text + extra)


def _prompt_tokens(spec: AnswerSpec) -> int:
    if spec.prompt_tokens is not None:
        return spec.prompt_tokens
    return sum(estimate_tokens(m.content) for m in spec.messages)


class _Stopped(UserFacingError):
    code = "stopped"

    def user_message(self) -> str:
        return "The bot was restarting and could not wait for the rest."


async def _show_cut_off(renderer: StreamRenderer) -> None:
    """A final edit for an answer the bot's stop cut off (never "still writing"), tried briefly."""
    if renderer.text.strip():
        notice = incomplete_notice(_Stopped())
    else:
        notice = ERROR_PREFIX + "The bot restarted before it could answer — please ask again in a minute."
    try:
        await asyncio.wait_for(renderer.finish(notice=notice), CUT_OFF_SHOW_SECONDS)
    except Exception as exc:
        log.info("a cut-off answer could not be marked: %r", exc)
        await renderer.aclose()


def _start(coro: Awaitable[None]) -> asyncio.Task[None]:
    return asyncio.ensure_future(coro)
