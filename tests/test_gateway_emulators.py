"""The gateway emulators, checked with plain aiohttp (and the official openai SDK) against the
documents in shared/gateway-docs/."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.gateways import MODEL_ROLES, PROFILES, GatewayEmulator, expected_reply, expected_thought

pytestmark = pytest.mark.timeout(60)

ERROR_KEYS = {
    "aicordcloud": {"message", "type"},
    "digicord": {"message", "type", "param", "code"},
    "aicredits": {"message", "type", "code"},
    "aiproxy": {"type", "code", "message", "param"},
    "openai": {"message", "type", "param", "code"},
}


@pytest.fixture(params=PROFILES)
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator(request.param) as e:
        yield e


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def auth(emu: GatewayEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.api_key}"}


def role(emu: GatewayEmulator, name: str) -> str:
    model = MODEL_ROLES[emu.profile.name][name]
    assert model is not None
    return model


def assert_error(emu: GatewayEmulator, status: int, body: Any, expected_status: int) -> dict[str, Any]:
    """The body is the profile's documented error shape; returns the inner object."""
    assert status == expected_status, body
    assert set(body) == {"error"}
    inner = body["error"]
    assert set(inner) == ERROR_KEYS[emu.profile.name]
    assert isinstance(inner["message"], str) and inner["message"]
    if emu.profile.name == "aicredits":
        assert inner["code"] == expected_status
    return inner


async def post_json(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
                    ) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None), r


def chat_body(emu: GatewayEmulator, text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": role(emu, "chat"), "messages": [{"role": "system", "content": "be brief"},
                                                     {"role": "user", "content": text}], **extra}


def parse_sse(raw: str) -> tuple[list[Any], list[str], bool]:
    """(data events as JSON, comment lines, saw [DONE]) from an SSE body; checks the framing."""
    events: list[Any] = []
    comments: list[str] = []
    done = False
    assert raw.endswith("\n\n")
    for block in raw.split("\n\n")[:-1]:
        assert block, "empty SSE block"
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line)
            else:
                assert line.startswith("data: "), line
                assert not done, "event after [DONE]"
                payload = line[len("data: "):]
                if payload == "[DONE]":
                    done = True
                else:
                    events.append(json.loads(payload))
    return events, comments, done


def stream_text(events: list[Any]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))


# -- health, metadata, models ---------------------------------------------------------------------

async def test_health_endpoints_follow_each_document(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    name = emu.profile.name
    if name == "aicordcloud":
        async with http.get(emu.root_url + "/health") as r:
            assert r.status == 200 and await r.json() == {"ok": True}
        async with http.get(emu.root_url + "/") as r:
            meta = await r.json()
            assert r.status == 200 and meta["name"] == "AiCordCloud API"
            assert "POST /v1/chat/completions" in meta["endpoints"]
    elif name == "aicredits":
        async with http.get(emu.root_url + "/health") as r:
            assert r.status == 200 and await r.json() == {"status": "ok"}
        async with http.get(emu.root_url + "/health/ready") as r:
            assert r.status == 200 and await r.json() == {"status": "ready", "db": "ok", "redis": "ok"}
    else:  # no documented health endpoint: unknown path → 404 in the profile's error shape
        async with http.get(emu.api_base + "/health", headers=auth(emu)) as r:
            assert_error(emu, r.status, await r.json(), 404)


async def test_model_listings(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    name = emu.profile.name
    url = emu.root_url + "/api/models" if name == "aicredits" else emu.api_base + "/models"
    headers = {} if name in {"aicredits", "aicordcloud"} else auth(emu)  # public listings need no key
    async with http.get(url, headers=headers) as r:
        assert r.status == 200
        data = (await r.json())["data"]
    ids = {m["id"] for m in data}
    assert role(emu, "chat") in ids
    if name == "aicordcloud":
        assert {"aicord/fast", "aicord/smart", "aicord/vision"} <= ids
        assert r.headers["x-ratelimit-remaining"].isdigit()
    if name == "aicredits":
        row = next(m for m in data if m["id"] == "openai/gpt-4o-mini")
        assert row == {"id": "openai/gpt-4o-mini", "name": "GPT-4o Mini", "provider": "openai",
                       "context_window": 128000, "input_cost_per_1m": 0.15, "output_cost_per_1m": 0.60}
        async with http.get(emu.api_base + "/models", headers=auth(emu)) as r2:  # OpenAI-shaped for SDKs
            assert r2.status == 200 and (await r2.json())["data"][0]["object"] == "model"
    if name == "aiproxy":
        row = next(m for m in data if m["id"] == "gpt-4-turbo")
        assert row["provider"] == "openai" and row["type"] == "chat" and row["context_window"] == 128000
        assert row["pricing"] == {"input": 0.01, "output": 0.03}
        async with http.get(url, headers=auth(emu), params={"provider": "anthropic"}) as r2:
            assert {m["provider"] for m in (await r2.json())["data"]} == {"anthropic"}
        async with http.get(url, headers=auth(emu), params={"type": "embedding"}) as r2:
            rows = (await r2.json())["data"]
            assert rows and {m["type"] for m in rows} == {"embedding"}
        assert int(r.headers["X-RateLimit-Limit"]) == 1000
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time())
    if name == "digicord":
        async with http.get(emu.api_base + "/vision-models", headers=auth(emu)) as r2:
            vision = {m["id"] for m in (await r2.json())["data"]}
        assert "meta-llama/llama-3.2-11b-vision-instruct" in vision
        assert "meta-llama/llama-3.2-3b-instruct" not in vision
        async with http.get(emu.api_base + "/images/flux/models", headers=auth(emu)) as r2:
            flux = {m["id"]: m["price"] for m in (await r2.json())["data"]}
        assert flux == {"black-forest-labs/FLUX.1-schnell-Free": 0.0, "black-forest-labs/FLUX.1-schnell": 0.003375,
                        "black-forest-labs/FLUX.1-pro": 0.0625, "black-forest-labs/FLUX.1.1-pro": 0.05}


# -- authentication -------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}], ids=["missing", "wrong"])
async def test_missing_or_wrong_key_is_401_in_profile_shape(emu: GatewayEmulator, http: aiohttp.ClientSession,
                                                             headers: dict[str, str]) -> None:
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), headers)
    inner = assert_error(emu, status, body, 401)
    if emu.profile.name == "aicordcloud":
        assert inner == {"message": "Unauthorized", "type": "authentication_error"}
    if emu.profile.name == "aiproxy":
        assert inner["code"] == "invalid_api_key" and inner["type"] == "authentication_error"
    assert emu.api_key not in json.dumps(body)
    assert emu.requests[-1].status == 401


async def test_aicordcloud_accepts_x_api_key_but_others_do_not(emu: GatewayEmulator,
                                                               http: aiohttp.ClientSession) -> None:
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu),
                                      {"x-api-key": emu.api_key})
    if emu.profile.name == "aicordcloud":
        assert status == 200 and body["choices"][0]["message"]["content"] == expected_reply("hello there")
        assert emu.requests[-1].headers["x-api-key"] == "<redacted>"
    else:
        assert_error(emu, status, body, 401)


async def test_recorded_requests_redact_the_key(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    rec = emu.requests[-1]
    assert rec.method == "POST" and rec.path == emu.profile.base_path + "/chat/completions"
    assert rec.headers["Authorization"] == "Bearer <redacted>"
    assert rec.json["messages"][-1]["content"] == "hello there" and rec.status == 200
    assert emu.api_key not in repr(emu.requests)


# -- chat -----------------------------------------------------------------------------------------

async def test_chat_non_stream(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    status, body, r = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert status == 200
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"] == {**choice["message"], "role": "assistant", "content": expected_reply("hello there")}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == -(-len(expected_reply("hello there")) // 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    name = emu.profile.name
    if name == "aicordcloud":
        assert body["model"] == "aicord/fast"
        assert r.headers["x-aicord-tier"] == "fast" and r.headers["x-aicord-model"] == "llama-3.1-8b-instant"
        assert r.headers["x-aicord-upstream"] == "groq" and r.headers["x-aicord-latency-ms"].isdigit()
        assert r.headers["x-ratelimit-remaining"].isdigit()
    elif name == "digicord":
        assert body["provider"] == "Fireworks" and len(body["id"]) == 24
        assert choice["logprobs"] is None and choice["message"]["refusal"] == ""
    elif name == "aicredits":
        assert body["model"] == "gpt-4o-mini"  # the documented example drops the vendor prefix
    elif name == "aiproxy":
        assert body["provider"] == "openai"
        assert int(r.headers["X-RateLimit-Remaining"]) < int(r.headers["X-RateLimit-Limit"])
    elif name == "openai":
        assert len(r.headers["x-request-id"]) == 36
        assert r.headers["x-model-used"] == "openai/gpt-4o-mini"
        assert float(r.headers["x-credits-used"]) > 0 and "x-fallback-from" not in r.headers
    if name != "openai":
        assert "x-request-id" not in r.headers


async def test_chat_stream_framing_done_and_usage(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    body = chat_body(emu, stream=True, stream_options={"include_usage": True})
    async with http.post(emu.api_base + "/chat/completions", json=body, headers=auth(emu)) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.text()
    events, comments, done = parse_sse(raw)
    assert done and comments and comments[0] == ": PROCESSING"
    assert len(events) >= 5
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert stream_text(events) == expected_reply("hello there")
    finish = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] > 0
    if emu.profile.provider_in_body:
        assert all("provider" in e for e in events)


async def test_stream_without_include_usage_has_no_usage_chunk(emu: GatewayEmulator,
                                                               http: aiohttp.ClientSession) -> None:
    emu.keepalive_comments = False
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, stream=True),
                         headers=auth(emu)) as r:
        events, comments, done = parse_sse(await r.text())
    assert done and not comments and all(e["choices"] for e in events)


async def test_queue_reply_and_chunking(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.queue_reply("abcdefghij", chunk_size=3)
    emu.stream_chunk_count = None
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, stream=True),
                         headers=auth(emu)) as r:
        events, _, _ = parse_sse(await r.text())
    pieces = [e["choices"][0]["delta"].get("content") for e in events if e["choices"][0]["delta"]]
    assert pieces == ["abc", "def", "ghi", "j"]
    emu.stream_chunk_count = 20
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, "x" * 100, stream=True),
                         headers=auth(emu)) as r:
        events, _, _ = parse_sse(await r.text())
    assert len([e for e in events if e["choices"][0]["delta"]]) == 20
    assert stream_text(events) == expected_reply("x" * 100)
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert body["choices"][0]["message"]["content"] == expected_reply("hello there")  # queue consumed


async def test_max_tokens_cuts_with_finish_reason_length(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu, max_tokens=3),
                                      auth(emu))
    assert status == 200
    assert body["choices"][0]["message"]["content"] == expected_reply("hello there")[:12]
    assert body["choices"][0]["finish_reason"] == "length"


async def test_reasoning_model(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    roles = MODEL_ROLES[emu.profile.name]
    if roles["reasoning"]:
        status, body, _ = await post_json(http, emu.api_base + "/chat/completions",
                                          {**chat_body(emu, "why?"), "model": roles["reasoning"]}, auth(emu))
        assert body["choices"][0]["message"]["content"] == (
            f"<think>{expected_thought('why?')}</think>\n{expected_reply('why?')}")
    if roles["reasoning_field"]:
        body = {**chat_body(emu, "why?", stream=True), "model": roles["reasoning_field"]}
        async with http.post(emu.api_base + "/chat/completions", json=body, headers=auth(emu)) as r:
            events, _, _ = parse_sse(await r.text())
        thought = "".join(e["choices"][0]["delta"].get("reasoning") or "" for e in events)
        assert thought == expected_thought("why?") and stream_text(events) == expected_reply("why?")


async def test_unknown_model_and_context_too_long(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions",
                                      {**chat_body(emu), "model": "nobody/no-such-model"}, auth(emu))
    inner = assert_error(emu, status, body, 404)
    assert "nobody/no-such-model" in inner["message"]
    if emu.profile.name in {"aiproxy", "openai", "digicord"}:
        assert inner["code"] == "model_not_found"
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions",
                                      {**chat_body(emu, "word " * 2000), "model": role(emu, "small")}, auth(emu))
    inner = assert_error(emu, status, body, 400)
    assert "context length" in inner["message"]
    key = "type" if emu.profile.name in {"aicordcloud", "aicredits"} else "code"
    assert inner[key] == "context_length_exceeded"


# -- faults ---------------------------------------------------------------------------------------

async def test_fail_next_429_with_retry_after_then_recovers(emu: GatewayEmulator,
                                                           http: aiohttp.ClientSession) -> None:
    emu.faults.fail_next(2, status=429, retry_after=3)
    for _ in range(2):
        status, body, r = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
        inner = assert_error(emu, status, body, 429)
        assert r.headers["Retry-After"] == "3"
    if emu.profile.name == "aiproxy":
        assert inner["code"] == "rate_limit_exceeded"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time()) + 2
    if emu.profile.name == "aicordcloud":
        assert r.headers["x-ratelimit-remaining"] == "0"
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert status == 200
    assert [q.status for q in emu.requests[-3:]] == [429, 429, 200]


async def test_fail_next_5xx_and_path_filter(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.fail_next(status=503, retry_after=None, path="/chat/completions")
    models_url = emu.root_url + "/api/models" if emu.profile.name == "aicredits" else emu.api_base + "/models"
    async with http.get(models_url, headers=auth(emu)) as r:
        assert r.status == 200  # another path does not consume the fault
    status, body, r = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert_error(emu, status, body, 503)
    assert "Retry-After" not in r.headers
