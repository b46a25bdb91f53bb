"""bot/rendering/errors.py: each failure becomes a short, specific sentence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import discord
import pytest

from bot.budgets.rules import BudgetExceeded
from bot.chat.admission import Busy
from bot.media.jobs import ConcurrencyLimitReached
from bot.rendering.errors import closest_models, describe_error, error_code, incomplete_notice, user_error_message
from gateway_client.errors import (
    ContextTooLong,
    GatewayTimeout,
    InsufficientCredits,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    StreamInterrupted,
    UpstreamUnavailable,
)
from bot.vision.models import NoVisionModel
from gateway_client.models import ModelInfo, ModelKind


def test_rate_limited_says_when_to_retry() -> None:
    msg = user_error_message(RateLimited("slow down", status=429, retry_after=7.2))
    assert "try again in 8 s" in msg
    assert "try again in a few seconds" in user_error_message(RateLimited(status=429))


def test_context_too_long_says_what_to_do() -> None:
    msg = user_error_message(ContextTooLong(status=400), model="tiny")
    assert "too long for `tiny`" in msg and "new conversation" in msg


def test_gateway_down_timeout_and_credits() -> None:
    assert "unavailable right now (HTTP 500)" in user_error_message(UpstreamUnavailable("boom", status=500))
    assert "did not answer in time" in user_error_message(GatewayTimeout())
    assert "did not answer in time" in user_error_message(TimeoutError())
    assert "out of credits" in user_error_message(InsufficientCredits(status=402))


def test_stream_cut_is_marked_incomplete() -> None:
    exc = StreamInterrupted(partial_text="Half of it")
    assert "Incomplete answer" in user_error_message(exc)
    assert "Incomplete answer" in incomplete_notice(exc)
    assert error_code(exc) == "stream_interrupted"


def test_budget_exceeded_uses_its_own_sentence() -> None:
    moment = datetime(2026, 1, 1, 21, 0, tzinfo=UTC)
    exc = BudgetExceeded("chat_requests", "guild", 50, 50, moment + timedelta(hours=3), at=moment)
    assert user_error_message(exc) == (
        "This server's daily chat request budget (50) is used up; it resets in 3 h (00:00 UTC)."
    )
    assert error_code(exc) == "budget_exceeded"


def test_each_refusal_kind_has_its_own_code() -> None:
    assert error_code(Busy(3, 2)) == "busy"
    assert error_code(NoVisionModel("x")) == "no_vision_model"
    assert error_code(ConcurrencyLimitReached(2, 2)) == "too_many_jobs"
    assert len({error_code(Busy(1, 1)), error_code(ConcurrencyLimitReached(1, 1)),
                error_code(BudgetExceeded("images", "member", 1, 1, datetime.now(UTC)))}) == 3


def test_invalid_request_names_field_and_allowed_values_without_pinging() -> None:
    msg = user_error_message(InvalidRequest("bad steps @everyone", field="steps", allowed=[1, 2, 3, 4]))
    assert "(`steps`)" in msg and "Allowed: 1, 2, 3, 4." in msg
    assert "@everyone" not in msg


def test_unknown_error_gets_a_reference_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    msg = user_error_message(ValueError("secret internals"))
    assert "Something went wrong" in msg and "secret internals" not in msg
    assert any("unexpected error" in r.message for r in caplog.records)


def test_discord_errors() -> None:
    class Resp:
        status = 403
        reason = "Forbidden"

    assert "permission" in user_error_message(discord.Forbidden(Resp(), "Missing Access"))


def test_closest_models() -> None:
    names = ["openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3-haiku", "meta/llama-3-70b"]
    assert closest_models("gpt-4o-mni", names)[0] == "openai/gpt-4o-mini"
    assert closest_models("claude-haiku", names)[0] == "anthropic/claude-3-haiku"
    assert closest_models("zzzzzzzzzzzzzzzz", names) == []


async def test_describe_error_suggests_close_names_from_the_gateway() -> None:
    class FakeGateway:
        async def list_models(self) -> list[ModelInfo]:
            return [ModelInfo(id="openai/gpt-4o-mini", kind=ModelKind.CHAT),
                    ModelInfo(id="openai/gpt-4o", kind=ModelKind.VISION),
                    ModelInfo(id="flux/schnell", kind=ModelKind.IMAGE)]

    msg = await describe_error(ModelNotFound(status=404), gateway=FakeGateway(), model="gpt-4o-mimi",
                               kinds=(ModelKind.CHAT, ModelKind.VISION))
    assert "`gpt-4o-mimi` is not available" in msg
    assert "Closest matches: `openai/gpt-4o-mini`" in msg
    assert "flux" not in msg
