"""One place that turns an exception into a short, specific sentence for the member who asked.

Every feature shows failures through ``user_error_message`` (or ``describe_error``, which also looks
up the closest model names when a model was not found). Unknown exceptions get a generic sentence
with a short reference that is also logged, so nothing fails silently.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import discord

from bot.gateways.directory import GUILD_LABEL_PREFIX, is_guild_client
from bot.gateways.errors import GuildGatewayUnavailable
from bot.rendering.user_facing import UserFacingError
from gateway_client.errors import (
    AuthenticationError,
    ContextTooLong,
    GatewayError,
    GatewayTimeout,
    InsufficientCredits,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ResultDownloadFailed,
    StreamInterrupted,
    Unsupported,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

__all__ = ["closest_models", "describe_error", "error_code", "guild_gateway_lacks", "incomplete_notice", "plain_text",
           "user_error_message"]

MAX_MESSAGE = 600


def _seconds(value: float | None) -> str:
    if value is None or value <= 0:
        return "a few seconds"
    n = math.ceil(value)
    if n < 120:
        return f"{n} s"
    return f"{math.ceil(n / 60)} min"


def _code(name: str | None) -> str:
    """A model name shown in inline code; backticks and mentions neutralised."""
    if not name:
        return "that model"
    return "`" + name.replace("`", "'").replace("@", "@\u200b")[:100] + "`"


def closest_models(name: str, available: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` model ids closest to ``name`` (difflib), comparing both full ids and their last part."""
    ids = list(dict.fromkeys(available))
    if not name or not ids:
        return []
    wanted = name.lower()
    scored: list[tuple[float, str]] = []
    for mid in ids:
        low = mid.lower()
        tail = low.rsplit("/", 1)[-1]
        score = max(
            difflib.SequenceMatcher(None, wanted, low).ratio(),
            difflib.SequenceMatcher(None, wanted.rsplit("/", 1)[-1], tail).ratio(),
        )
        if wanted in low:
            score += 0.3
        scored.append((score, mid))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [mid for score, mid in scored[:n] if score >= 0.35]


def error_code(exc: BaseException) -> str:
    """A stable short code for ledgers and logs (``rate_limited``, ``model_not_found`` …)."""
    if isinstance(exc, StreamInterrupted):
        return "stream_interrupted"
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, UserFacingError):
        return exc.code
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    return type(exc).__name__.lower()[:40]


_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (RateLimited, "rate_limited"),
    (ModelNotFound, "model_not_found"),
    (ContextTooLong, "context_too_long"),
    (InsufficientCredits, "insufficient_credits"),
    (QuotaExceeded, "quota_exceeded"),
    (GatewayTimeout, "timeout"),
    (ResultDownloadFailed, "result_download"),
    (UpstreamUnavailable, "gateway_down"),
    (AuthenticationError, "gateway_auth"),
    (PermissionDenied, "gateway_permission"),
    (InvalidRequest, "invalid_request"),
    (Unsupported, "unsupported"),
    (GatewayError, "gateway_error"),
)


def incomplete_notice(exc: BaseException | None = None) -> str:
    """The line added under a partial answer when the stream stopped early."""
    why = ""
    if isinstance(exc, StreamInterrupted) and exc.cause is not None:
        why = " " + _sentence_for(exc.cause, model=None, suggestions=())
    elif isinstance(exc, (GatewayTimeout, asyncio.TimeoutError, TimeoutError)):
        why = " The AI gateway stopped sending in time."
    elif exc is not None and not isinstance(exc, StreamInterrupted):
        why = " " + user_error_message(exc)
    else:
        why = " The connection to the AI gateway dropped mid-answer."
    return f"⚠️ **Incomplete answer** — it stopped mid-way.{why} Ask again to get the rest."[:MAX_MESSAGE]


def user_error_message(
    exc: BaseException,
    *,
    model: str | None = None,
    suggestions: Sequence[str] = (),
    gateway: Any | None = None,
) -> str:
    """A short, specific sentence for the member. ``model`` is the model that was asked for;
    ``suggestions`` the closest available names (see ``describe_error``); ``gateway`` the client that
    served the request (a guild's own gateway's refusals say so, and what a server manager can do)."""
    return _sentence_for(exc, model=model, suggestions=suggestions, gateway=gateway)[:MAX_MESSAGE]


GUILD_GATEWAY = "This server's own AI gateway ({profile})"


def guild_gateway_lacks(profile: str, feature: str) -> str:
    """What a member reads when the guild's own gateway does not offer ``feature`` (e.g. "text-to-speech")."""
    return (f"{GUILD_GATEWAY.format(profile=profile)} does not offer {feature}. A server manager can go back to "
            "the bot's gateway with `/gateway remove`.")


def _guild_profile(gateway: Any | None) -> str | None:
    """The profile name of a guild's own gateway client (``is_guild_client``), else None."""
    if gateway is None or not is_guild_client(gateway):
        return None
    return str(getattr(getattr(gateway, "profile", None), "name", "") or gateway.config.label[len(GUILD_LABEL_PREFIX):])


def _guild_sentence(exc: BaseException, profile: str) -> str | None:
    """A guild gateway's refusal of its key or its credit, or a missing feature; None: worded as usual."""
    own = GUILD_GATEWAY.format(profile=profile)
    if isinstance(exc, (AuthenticationError, PermissionDenied)):
        return (f"{own} refused its key: {plain_text(exc.message)}. Nothing was charged. A server manager can set "
                "a new key with `/gateway set`, or go back to the bot's gateway with `/gateway remove`.")
    if isinstance(exc, (QuotaExceeded, InsufficientCredits)):
        return (f"{own} says its credit is used up: {plain_text(exc.message)}. A server manager can top up its "
                "account, or go back to the bot's gateway with `/gateway remove`.")
    if isinstance(exc, Unsupported):
        return guild_gateway_lacks(profile, "that request")
    return None


def _sentence_for(
    exc: BaseException, *, model: str | None, suggestions: Sequence[str], gateway: Any | None = None,
) -> str:
    # Budgets (bot.budgets.rules.BudgetExceeded) and anything else that words its own message.
    own = getattr(exc, "user_message", None)
    if callable(own):
        try:
            text = own()
        except Exception:  # pragma: no cover - defensive
            text = None
        if isinstance(text, str) and text:
            return text
    if isinstance(exc, GuildGatewayUnavailable):  # the guild's key can't be read: its own sentence
        return exc.message
    profile = _guild_profile(gateway)
    if profile is not None:
        cause = exc.cause if isinstance(exc, StreamInterrupted) and exc.cause is not None else exc
        guild_text = _guild_sentence(cause, profile)
        if guild_text is not None:
            return guild_text
    if isinstance(exc, StreamInterrupted):
        return incomplete_notice(exc)
    if isinstance(exc, RateLimited):
        return f"The AI gateway is rate limiting requests right now — try again in {_seconds(exc.retry_after)}."
    if isinstance(exc, ModelNotFound):
        name = model or _model_from(exc)
        text = f"The model {_code(name)} is not available on this gateway."
        if suggestions:
            text += " Closest matches: " + ", ".join(_code(s) for s in suggestions) + "."
        return text + " Use `/models` to see every model."
    if isinstance(exc, ContextTooLong):
        return (
            f"This conversation is too long for {_code(model) if model else 'the model'}. "
            "Start a new conversation (a fresh `/chat` or mention instead of a reply), shorten your message "
            "or attachment, or pick a model with a larger context window."
        )
    if isinstance(exc, InsufficientCredits):
        return "The bot's AI gateway account is out of credits. A server admin needs to top it up."
    if isinstance(exc, QuotaExceeded):
        return "The bot's AI gateway quota is used up for now. Try again later, or ask a server admin."
    if isinstance(exc, GatewayTimeout) or isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "The AI gateway did not answer in time. Please try again — a shorter question may help."
    if isinstance(exc, UpstreamUnavailable):
        status = f" (HTTP {exc.status})" if exc.status else ""
        return f"The AI gateway is unavailable right now{status}. Please try again in a minute."
    if isinstance(exc, AuthenticationError):
        return "The AI gateway rejected the bot's API key. A server admin needs to fix the bot's configuration."
    if isinstance(exc, PermissionDenied):
        return f"The bot's API key may not use {_code(model) if model else 'this model'}. Try another model."
    if isinstance(exc, InvalidRequest):
        field = f" (`{exc.field}`)" if exc.field else ""
        allowed = ""
        if exc.allowed:
            shown = exc.allowed if isinstance(exc.allowed, str) else ", ".join(str(a) for a in list(exc.allowed)[:10])
            allowed = f" Allowed: {shown}."
        return f"The AI gateway refused the request{field}: {plain_text(exc.message)}.{allowed}"
    if isinstance(exc, Unsupported):
        return "This AI gateway does not support that request."
    if isinstance(exc, GatewayError):
        return f"The AI gateway returned an error: {plain_text(exc.message)}. Please try again."
    if isinstance(exc, discord.Forbidden):
        return "I don't have permission to do that here (check my channel permissions)."
    if isinstance(exc, discord.NotFound):
        return "The message or channel I was answering in is gone."
    if isinstance(exc, discord.HTTPException):
        return "Discord refused my reply. Please try again."
    ref = secrets.token_hex(3)
    log.error("unexpected error shown to a user as ref %s", ref, exc_info=exc)
    return f"Something went wrong on my side (ref `{ref}`). Please try again."


def plain_text(text: str, fallback: str = "no details") -> str:
    """Someone else's words (a gateway's or a library's) made safe to quote to a member: no pings, no code spans."""
    text = (text or "").strip().rstrip(".")
    return text.replace("@", "@\u200b").replace("`", "'")[:250] or fallback


def _model_from(exc: GatewayError) -> str | None:
    param = getattr(exc, "param", None)
    return param if param and param != "model" else None


async def describe_error(
    exc: BaseException,
    *,
    gateway: Any | None = None,
    model: str | None = None,
    kinds: Sequence[Any] | None = None,
) -> str:
    """``user_error_message`` plus, for an unknown model, the closest names from ``gateway.list_models``."""
    suggestions: list[str] = []
    if isinstance(exc, ModelNotFound) and gateway is not None and model:
        try:
            listed = await asyncio.wait_for(gateway.list_models(), timeout=5)
            ids = [m.id for m in listed if kinds is None or getattr(m, "kind", None) in kinds]
            suggestions = closest_models(model, ids)
        except Exception as lookup_error:  # the list is a nicety; the message still goes out
            log.info("could not list models for suggestions: %r", lookup_error)
    return user_error_message(exc, model=model, suggestions=suggestions, gateway=gateway)
