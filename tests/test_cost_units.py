"""The footer shows a call's cost in the unit the gateway reported: LiteLLM's ``x-litellm-response-cost``
is US dollars, ``x-credits-used`` is credits, a bare ``usage.cost`` has no stated unit. Through the
real gateway client against a LiteLLM-like server (openai profile), streamed as /chat does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.rendering.text import footer_line
from gateway_client import ChatMessage, ChatRequest, ClientOptions, GatewayClient, GatewayConfig
from tests.e2e import serve_app


def proxy_app(headers: dict[str, str], usage: dict[str, Any]) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response({"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini",
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                                   "finish_reason": "stop"}], "usage": usage}, headers=headers)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await resp.prepare(request)
        for chunk in ({"choices": [{"index": 0, "delta": {"content": "hi"}}]},
                      {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}):
            await resp.write(f"data: {json.dumps({'id': 'c1', 'model': 'gpt-4o-mini', **chunk})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


USAGE = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}


async def footers(headers: dict[str, str], usage: dict[str, Any]) -> AsyncIterator[str]:
    async with serve_app(proxy_app(headers, usage)) as url:
        async with GatewayClient(GatewayConfig("openai", url, "sk-test", chat_model="gpt-4o-mini"),
                                 options=ClientOptions(max_retries=0)) as client:
            request = ChatRequest(messages=[ChatMessage.user("hello")])
            result = await client.chat(request)
            yield footer_line(result.meta, result.usage)
            stream = client.stream_chat(request)
            async with stream:
                async for _ in stream:
                    pass
            assert stream.result is not None
            yield footer_line(stream.result.meta, stream.result.usage)


@pytest.mark.parametrize(("headers", "usage", "shown"), [
    ({"x-litellm-response-cost": "0.00042"}, USAGE, "$0.00042"),
    ({"x-credits-used": "0.5"}, USAGE, "0.5 credits"),
    ({}, {**USAGE, "cost": 0.0007}, "cost 0.0007"),
])
async def test_the_footer_shows_the_unit_the_gateway_reported(headers: dict[str, str], usage: dict[str, Any],
                                                              shown: str) -> None:
    lines = [line async for line in footers(headers, usage)]
    assert len(lines) == 2  # non-streamed and streamed
    for line in lines:
        assert line == f"-# `gpt-4o-mini` · 12 tokens · {shown}", line


async def test_no_cost_no_unit() -> None:
    lines = [line async for line in footers({}, USAGE)]
    assert lines == ["-# `gpt-4o-mini` · 12 tokens"] * 2
