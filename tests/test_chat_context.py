"""Context windows, unit by unit: where a window is learned (the gateway's list, a context-length error's
numbers, the configuration), how a turn is fitted inside one, and the shorter retry."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app.settings import Settings
from bot.chat.context import (
    MIN_ANSWER_TOKENS,
    ContextWindows,
    fit_to_window,
    merge_user_runs,
    shorten,
    usable,
)
from bot.chat.conversation import HistoryTurn, estimate_tokens
from gateway_client import ChatMessage, ContextTooLong, ModelKind
from gateway_client.catalog import parse_model_list
from gateway_client.errors import context_numbers, error_from_payload, error_from_response
from gateway_client.profiles import ModelSource


def exchange(n: int, answer_chars: int = 1600) -> list[HistoryTurn]:
    return [HistoryTurn.of("user", f"question {n}"), HistoryTurn.of("assistant", f"answer {n} " + "x" * answer_chars)]


# --------------------------------------------------------------------------------------------------
# Learning the window
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "numbers"), [
    ("This model's maximum context length is 2048 tokens. However, you requested 2065 tokens (1041 in the "
     "messages, 1024 in the completion).", (2048, 2065)),
    ("This model's maximum context length is 8,192 tokens. However, your messages resulted in 9,001 tokens.",
     (8192, 9001)),
    ("prompt is too long: 208310 tokens > 200000 maximum", (200000, 208310)),
    ('the request exceeds the available context size {"n_prompt_tokens": 2065, "n_ctx": 2048}', (2048, 2065)),
    ("the input exceeds the model's context window", (None, None)),
])
def test_a_context_length_message_gives_its_numbers(message: str, numbers: tuple[Any, Any]) -> None:
    assert context_numbers(message) == numbers


def test_context_length_errors_carry_the_window_whatever_their_shape() -> None:
    openai = error_from_response(400, b'{"error": {"message": "This model\'s maximum context length is 2048 tokens. '
                                      b'However, you requested 2065 tokens.", "type": "invalid_request_error", '
                                      b'"code": "context_length_exceeded"}}')
    assert isinstance(openai, ContextTooLong)
    assert (openai.context_window, openai.requested_tokens) == (2048, 2065)
    llama = error_from_payload({"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 2065,
                                          "n_ctx": 2048, "message": "the request exceeds the available context "
                                                                    "size, try increasing it"}}, status=400)
    assert isinstance(llama, ContextTooLong)
    assert (llama.context_window, llama.requested_tokens) == (2048, 2065)


def test_the_model_list_gives_the_window_under_any_of_its_names() -> None:
    source = ModelSource(path="/v1/models")
    listed = parse_model_list({"data": [
        {"id": "a", "context_window": 2048}, {"id": "b", "context_length": 4096},
        {"id": "c", "max_context_length": 8192}, {"id": "d", "max_model_len": 1024},
        {"id": "e", "max_input_tokens": 512}, {"id": "f", "context_window": None, "context_length": 300},
        {"id": "g"},
    ]}, source)
    assert {m.id: m.context_window for m in listed} == {"a": 2048, "b": 4096, "c": 8192, "d": 1024, "e": 512,
                                                         "f": 300, "g": None}


def test_the_configuration_takes_windows_per_model() -> None:
    settings = Settings(chat={"context_windows": {"gemma-3-270m": 2048}})
    assert settings.chat.context_windows == {"gemma-3-270m": 2048}
    with pytest.raises(ValueError, match="context_windows"):
        Settings(chat={"context_windows": {"gemma-3-270m": 0}})


async def test_a_window_from_an_error_wins_over_the_configuration_and_the_list() -> None:
    from gateway_client import ModelInfo

    windows = ContextWindows({"small": 4096}, default_model=lambda: "small")

    async def listing() -> list[ModelInfo]:
        return [ModelInfo(id="small", kind=ModelKind.CHAT, context_window=8192),
                ModelInfo(id="other", kind=ModelKind.CHAT, context_window=1024),
                ModelInfo(id="unknown", kind=ModelKind.CHAT)]

    windows.start(listing)
    await windows.loaded()
    assert windows.window("other") == 1024
    assert windows.window("unknown") is None and windows.window("never-heard-of") is None
    assert windows.window("small") == 4096  # the configuration over the list
    windows.learn(None, 2048)  # None: the gateway's chat model
    assert windows.window(None) == windows.window("small") == 2048
    await windows.close()


async def test_a_gateway_without_a_model_list_leaves_the_windows_unknown() -> None:
    windows = ContextWindows({}, default_model=lambda: None)

    async def listing() -> list[Any]:
        raise RuntimeError("no /models here")

    windows.start(listing)
    await windows.loaded()
    assert windows.window(None) is None and windows.window("x") is None


# --------------------------------------------------------------------------------------------------
# Fitting a turn
# --------------------------------------------------------------------------------------------------


def test_an_unknown_window_changes_nothing() -> None:
    history = exchange(1) + exchange(2) + exchange(3)
    fit = fit_to_window(history, fixed_tokens=50, max_tokens=1024, window=None)
    assert fit.history == history and fit.max_tokens == 1024 and fit.note == ""


def test_history_is_trimmed_oldest_first_to_leave_max_tokens_within_the_window() -> None:
    history = exchange(1) + exchange(2) + exchange(3)
    fit = fit_to_window(history, fixed_tokens=50, max_tokens=1024, window=2048)
    assert fit.history == exchange(3)
    assert fit.max_tokens == 1024
    assert 50 + sum(t.tokens for t in fit.history) + fit.max_tokens <= usable(2048) < 2048
    assert fit.dropped == 4 and fit.note == "history shortened to fit the model's 2,048-token context"


def test_what_fits_is_kept_whole() -> None:
    history = exchange(1, 100) + exchange(2, 100)
    fit = fit_to_window(history, fixed_tokens=50, max_tokens=1024, window=2048)
    assert fit.history == history and fit.max_tokens == 1024 and fit.note == ""


def test_max_tokens_is_lowered_once_only_the_latest_exchange_is_left() -> None:
    history = exchange(1) + exchange(2, 3600)  # the latest exchange alone: ~900 tokens
    fit = fit_to_window(history, fixed_tokens=50, max_tokens=1024, window=2048)
    assert fit.history == exchange(2, 3600)
    assert MIN_ANSWER_TOKENS <= fit.max_tokens < 1024
    assert 50 + sum(t.tokens for t in fit.history) + fit.max_tokens == usable(2048)


def test_the_latest_exchange_goes_too_when_it_leaves_no_room_for_an_answer() -> None:
    history = exchange(1, 6400)  # ~1,600 tokens
    fit = fit_to_window(history, fixed_tokens=50, max_tokens=1024, window=2048)
    assert fit.history == [] and fit.max_tokens == 1024 and fit.dropped == 2


def test_a_prompt_past_the_window_is_still_sent_for_the_gateway_to_refuse() -> None:
    fit = fit_to_window([], fixed_tokens=5000, max_tokens=1024, window=2048)
    assert fit.history == [] and fit.max_tokens == 1


# --------------------------------------------------------------------------------------------------
# The shorter retry, and prompts in a row
# --------------------------------------------------------------------------------------------------


def messages_of(*turns: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role, text) for role, text in turns]


def test_the_retry_keeps_the_newer_half_of_the_history() -> None:
    sent = messages_of(("system", "be brief"), ("user", "q1"), ("assistant", "a1"), ("user", "q2"),
                       ("assistant", "a2"), ("user", "q3"), ("assistant", "a3"), ("user", "q4"))
    shorter = shorten(sent, max_tokens=1024, window=None)
    assert shorter is not None
    messages, max_tokens, note = shorter
    assert [m.content for m in messages] == ["be brief", "q3", "a3", "q4"]
    assert max_tokens == 1024 and note == "history shortened to fit the model's context"
    messages, _, _ = shorten(messages, max_tokens=1024, window=None) or ([], 0, "")
    assert [m.content for m in messages] == ["be brief", "q4"]
    assert shorten(messages, max_tokens=1024, window=None) is None, "nothing left to leave out"


def test_the_retry_fits_max_tokens_to_a_window_the_error_stated() -> None:
    sent = messages_of(("user", "x" * 6000))
    shorter = shorten(sent, max_tokens=1024, window=2048)
    assert shorter is not None
    _, max_tokens, note = shorter
    assert max_tokens == usable(2048) - estimate_tokens("x" * 6000)
    assert note == f"answer capped at {max_tokens:,} tokens by the model's 2,048-token context"


def test_no_retry_when_the_prompt_alone_leaves_no_room_for_an_answer() -> None:
    sent = messages_of(("user", "q1"), ("assistant", "a1"), ("user", "word " * 2000))
    assert shorten(sent, max_tokens=1024, window=1024) is None
    assert shorten(sent, max_tokens=1024, window=None) is not None  # unknown: half the history may do


def test_prompts_in_a_row_become_one_message() -> None:
    merged = merge_user_runs(messages_of(("system", "s"), ("user", "my number is 42"), ("user", "what is it?"),
                                         ("assistant", "42"), ("user", "thanks")))
    assert [(m.role, m.content) for m in merged] == [
        ("system", "s"), ("user", "my number is 42\n\nwhat is it?"), ("assistant", "42"), ("user", "thanks")]
