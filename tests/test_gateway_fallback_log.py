"""The "trying the next fallback" log line: only when a next fallback exists, and it names it."""

from __future__ import annotations

import logging

import pytest

from gateway_client import (
    ChatMessage,
    ChatRequest,
    ClientOptions,
    GatewayClient,
    GatewayConfig,
    UpstreamUnavailable,
)
from sandbox.gateways import MODEL_ROLES, GatewayEmulator, expected_reply

pytestmark = pytest.mark.timeout(60)

CHAT = MODEL_ROLES["aiproxy"]["chat"] or ""
SMALL = MODEL_ROLES["aiproxy"]["small"] or ""


def config(emu: GatewayEmulator, name: str = "") -> GatewayConfig:
    return GatewayConfig(emu.profile, emu.root_url, emu.api_key, chat_model=MODEL_ROLES[emu.profile]["chat"] or "",
                         name=name)


def fallback_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway_client" and "fallback" in r.getMessage()]


def hello() -> ChatRequest:
    return ChatRequest([ChatMessage.user("hello")])


async def test_no_fallback_configured_no_fallback_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway_client")
    async with GatewayEmulator("aiproxy") as emu:
        emu.faults.fail_next(1, status=500, retry_after=None, path="/chat/completions")
        async with GatewayClient(config(emu), options=ClientOptions(max_retries=0)) as client:
            with pytest.raises(UpstreamUnavailable):
                await client.chat(hello())
    assert fallback_lines(caplog) == []


async def test_a_fallback_model_is_named_in_the_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway_client")
    async with GatewayEmulator("aiproxy") as emu:
        emu.faults.fail_next(1, status=500, retry_after=None, path="/chat/completions")
        options = ClientOptions(max_retries=0, fallback_models=[SMALL])
        async with GatewayClient(config(emu), options=options) as client:
            result = await client.chat(hello())
    assert result.text == expected_reply("hello")
    assert fallback_lines(caplog) == [
        f"gateway aiproxy model {CHAT} failed (UpstreamUnavailable); trying the next fallback: model {SMALL}"]


async def test_a_fallback_gateway_is_named_in_the_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway_client")
    async with GatewayEmulator("aiproxy") as emu, GatewayEmulator("openai") as other:
        emu.faults.fail_next(1, status=500, retry_after=None, path="/chat/completions")
        backup = config(other, name="backup")
        async with GatewayClient(config(emu), fallbacks=[backup], options=ClientOptions(max_retries=0)) as client:
            result = await client.chat(hello())
    assert result.meta.gateway == "backup"
    assert fallback_lines(caplog) == [
        f"gateway aiproxy model {CHAT} failed (UpstreamUnavailable); trying the next fallback: "
        f"gateway backup model {backup.chat_model}"]
