"""The gateway emulators, checked with plain aiohttp (and the official openai SDK) against the
documents in shared/gateway-docs/."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from sandbox.gateways import audio
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
    model = MODEL_ROLES[emu.profile][name]
    assert model is not None
    return model


def assert_error(emu: GatewayEmulator, status: int, body: Any, expected_status: int) -> dict[str, Any]:
    """The body is the profile's documented error shape; returns the inner object."""
    assert status == expected_status, body
    assert set(body) == {"error"}
    inner = body["error"]
    assert set(inner) == ERROR_KEYS[emu.profile]
    assert isinstance(inner["message"], str) and inner["message"]
    if emu.profile == "aicredits":
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
    name = emu.profile
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
    name = emu.profile
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
    if emu.profile == "aicordcloud":
        assert inner == {"message": "Unauthorized", "type": "authentication_error"}
    if emu.profile == "aiproxy":
        assert inner["code"] == "invalid_api_key" and inner["type"] == "authentication_error"
    assert emu.api_key not in json.dumps(body)
    assert emu.requests[-1].status == 401


async def test_aicordcloud_accepts_x_api_key_but_others_do_not(emu: GatewayEmulator,
                                                               http: aiohttp.ClientSession) -> None:
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu),
                                      {"x-api-key": emu.api_key})
    if emu.profile == "aicordcloud":
        assert status == 200 and body["choices"][0]["message"]["content"] == expected_reply("hello there")
        assert emu.requests[-1].headers["x-api-key"] == "<redacted>"
    else:
        assert_error(emu, status, body, 401)


async def test_recorded_requests_redact_the_key(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    rec = emu.requests[-1]
    assert rec.method == "POST" and rec.path == emu.spec.base_path + "/chat/completions"
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
    name = emu.profile
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
    if emu.spec.provider_in_body:
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
    roles = MODEL_ROLES[emu.profile]
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
    if emu.profile in {"aiproxy", "openai", "digicord"}:
        assert inner["code"] == "model_not_found"
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions",
                                      {**chat_body(emu, "word " * 2000), "model": role(emu, "small")}, auth(emu))
    inner = assert_error(emu, status, body, 400)
    assert "context length" in inner["message"]
    key = "type" if emu.profile in {"aicordcloud", "aicredits"} else "code"
    assert inner[key] == "context_length_exceeded"


# -- faults ---------------------------------------------------------------------------------------

async def test_fail_next_429_with_retry_after_then_recovers(emu: GatewayEmulator,
                                                           http: aiohttp.ClientSession) -> None:
    emu.faults.fail_next(2, status=429, retry_after=3)
    for _ in range(2):
        status, body, r = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
        inner = assert_error(emu, status, body, 429)
        assert r.headers["Retry-After"] == "3"
    if emu.profile == "aiproxy":
        assert inner["code"] == "rate_limit_exceeded"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time()) + 2
    if emu.profile == "aicordcloud":
        assert r.headers["x-ratelimit-remaining"] == "0"
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert status == 200
    assert [q.status for q in emu.requests[-3:]] == [429, 429, 200]


async def test_fail_next_5xx_and_path_filter(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.fail_next(status=503, retry_after=None, path="/chat/completions")
    models_url = emu.root_url + "/api/models" if emu.profile == "aicredits" else emu.api_base + "/models"
    async with http.get(models_url, headers=auth(emu)) as r:
        assert r.status == 200  # another path does not consume the fault
    status, body, r = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert_error(emu, status, body, 503)
    assert "Retry-After" not in r.headers


async def test_html_error_and_invalid_json(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.html_error_next(status=502)
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu), headers=auth(emu)) as r:
        assert r.status == 502 and r.content_type == "text/html"
        assert "<h1>502 Bad Gateway</h1>" in await r.text()
    emu.faults.invalid_json_next()
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu), headers=auth(emu)) as r:
        assert r.status == 200 and r.content_type == "application/json"
        with pytest.raises(ValueError):
            json.loads(await r.text())
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert status == 200 and body["choices"][0]["message"]["content"] == expected_reply("hello there")


async def test_slow_next_delays_the_answer_and_the_first_stream_byte(emu: GatewayEmulator,
                                                                    http: aiohttp.ClientSession) -> None:
    emu.faults.slow_next(2, delay=0.15)
    t0 = time.monotonic()
    status, _, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert status == 200 and time.monotonic() - t0 >= 0.15
    t0 = time.monotonic()
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, stream=True),
                         headers=auth(emu)) as r:
        await r.content.readany()
        assert time.monotonic() - t0 >= 0.15
        await r.read()
    t0 = time.monotonic()
    await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert time.monotonic() - t0 < 0.15


async def test_cut_stream_drops_the_connection_without_done(emu: GatewayEmulator,
                                                           http: aiohttp.ClientSession) -> None:
    emu.faults.cut_stream_next(after_chunks=3)
    received = b""
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, stream=True),
                         headers=auth(emu)) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for piece in r.content.iter_any():
                received += piece
    text = received.decode()
    assert text.count("data: ") == 3 and "[DONE]" not in text
    expected = expected_reply("hello there")
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert expected.startswith(stream_text(events)) and len(stream_text(events)) < len(expected)
    status, _, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert status == 200  # the server survived


async def test_error_event_inside_a_200_stream(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.error_in_stream_next(after_chunks=2)
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, stream=True),
                         headers=auth(emu)) as r:
        assert r.status == 200
        events, _, done = parse_sse(await r.text())
    assert not done and len(events) == 3
    err = events[-1]["error"]
    assert set(err) == ERROR_KEYS[emu.profile] and err["message"]
    async with http.post(emu.api_base + "/chat/completions", json=chat_body(emu, stream=True),
                         headers=auth(emu)) as r:
        events, _, done = parse_sse(await r.text())
    assert done and stream_text(events) == expected_reply("hello there")


async def test_revoked_key_gets_401_everywhere_authenticated(emu: GatewayEmulator,
                                                            http: aiohttp.ClientSession) -> None:
    emu.faults.revoke_key()
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert_error(emu, status, body, 401)
    if emu.profile == "aicredits":
        async with http.get(emu.api_base + "/credits", headers=auth(emu)) as r:
            assert_error(emu, r.status, await r.json(), 401)
        async with http.get(emu.root_url + "/api/models") as r:
            assert r.status == 200  # public
    emu.faults.reset()
    status, _, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    assert status == 200


async def test_budget_runs_out_with_insufficient_credits(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.set_budget(2)
    for _ in range(2):
        status, _, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
        assert status == 200
    status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
    inner = assert_error(emu, status, body, 402)
    assert "insufficient credits" in inner["message"].lower()
    if emu.profile == "aicredits":
        async with http.get(emu.api_base + "/credits", headers=auth(emu)) as r:
            assert await r.json() == {"object": "credits", "balance": 0.0, "currency": "INR"}


async def test_aicredits_credits_balance_goes_down(http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator("aicredits") as emu:
        assert emu.api_key.startswith("sk-") and len(emu.api_key) == 67
        async with http.get(emu.api_base + "/credits", headers=auth(emu)) as r:
            before = await r.json()
        assert before["currency"] == "INR" and before["balance"] > 0
        await post_json(http, emu.api_base + "/chat/completions", chat_body(emu, "x" * 4000), auth(emu))
        async with http.get(emu.api_base + "/credits", headers=auth(emu)) as r:
            assert (await r.json())["balance"] < before["balance"]
        other = "sk-" + "0" * 64
        status, body, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu),
                                          {"Authorization": f"Bearer {other}"})
        assert_error(emu, status, body, 401)


# -- vision ---------------------------------------------------------------------------------------

def png_bytes(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def image_message(url: str, text: str = "what is this?", *, bare: bool = False) -> dict[str, Any]:
    block = {"type": "image_url", "image_url": url if bare else {"url": url}}
    return {"role": "user", "content": [{"type": "text", "text": text}, block]}


@functools.cache
def noise_png() -> bytes:
    """~2.4 MB of incompressible PNG: arrives in many chunks."""
    import io
    import os

    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (1000, 800), os.urandom(1000 * 800 * 3)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
async def cdn() -> AsyncIterator[str]:
    """A tiny image host on 127.0.0.1 serving /red.png (64x48), /blue.jpg (30x20), /noise.png (1000x800)."""
    import asyncio
    import io

    from aiohttp import web
    from PIL import Image

    jpg = io.BytesIO()
    Image.new("RGB", (30, 20), (0, 0, 255)).save(jpg, format="JPEG", quality=95)
    files = {"/red.png": (png_bytes((64, 48), (255, 0, 0)), "image/png"), "/blue.jpg": (jpg.getvalue(), "image/jpeg"),
             "/noise.png": (await asyncio.to_thread(noise_png), "image/png")}

    async def serve(request: web.Request) -> web.Response:
        body, ctype = files[request.path]
        return web.Response(body=body, content_type=ctype)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_vision_reports_real_size_and_colour(emu: GatewayEmulator, http: aiohttp.ClientSession,
                                                   cdn: str) -> None:
    import base64

    data_url = "data:image/png;base64," + base64.b64encode(png_bytes((64, 48), (255, 0, 0))).decode()
    body = {"model": role(emu, "vision"), "messages": [image_message(data_url)]}
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
    assert status == 200, out
    assert out["choices"][0]["message"]["content"] == (
        'I see a 64x48 image, mostly red (#ff0000). You asked: "what is this?"')
    assert out["usage"]["prompt_tokens"] > 85
    body = {"model": role(emu, "vision"), "stream": True,
            "messages": [image_message(cdn + "/blue.jpg", bare=emu.profile == "digicord")]}
    async with http.post(emu.api_base + "/chat/completions", json=body, headers=auth(emu)) as r:
        events, _, _ = parse_sse(await r.text())
    assert stream_text(events).startswith("I see a 30x20 image, mostly blue (#")
    body = {"model": role(emu, "vision"), "messages": [image_message(cdn + "/noise.png")]}
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
    assert out["choices"][0]["message"]["content"].startswith("I see a 1000x800 image, mostly ")


async def test_vision_errors(emu: GatewayEmulator, http: aiohttp.ClientSession, cdn: str) -> None:
    body = {"model": role(emu, "non_vision"), "messages": [image_message(cdn + "/red.png")]}
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
    inner = assert_error(emu, status, out, 400)
    assert "image" in inner["message"]
    body = {"model": role(emu, "vision"), "messages": [image_message("data:image/png;base64,bm90IGFuIGltYWdl")]}
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
    assert_error(emu, status, out, 400)
    body = {"model": role(emu, "vision"), "messages": [image_message("https://example.com/cat.png")]}
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
    assert_error(emu, status, out, 400)


async def test_digicord_accepts_bare_image_url_in_angle_brackets(http: aiohttp.ClientSession, cdn: str) -> None:
    async with GatewayEmulator("digicord") as emu:
        body = {"stream": "false", "messages": [image_message(f"<{cdn}/red.png>", bare=True)]}  # default model
        status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
        assert status == 200 and out["model"] == "google/gemini-flash-1.5" and out["provider"] == "Google"
        assert out["choices"][0]["message"]["content"].startswith("I see a 64x48 image, mostly red (#ff0000).")


# -- images ---------------------------------------------------------------------------------------

def decode_png(data: bytes) -> tuple[tuple[int, int], tuple[int, int, int]]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return img.size, img.convert("RGB").getpixel((img.width // 2, img.height // 2))


async def test_digicord_flux_generation(http: aiohttp.ClientSession) -> None:
    import base64

    async with GatewayEmulator("digicord") as emu:
        body = {"prompt": "a red fox", "n": 2, "steps": 2, "seed": 42, "width": 512, "height": 384,
                "negative_prompt": "blurry", "model": "black-forest-labs/FLUX.1-schnell"}
        status, out, _ = await post_json(http, emu.api_base + "/images/flux/generations", body, auth(emu))
        assert status == 200, out
        assert out["model"] == "black-forest-labs/FLUX.1-schnell" and out["seed"] == 42
        assert [d["seed"] for d in out["data"]] == [42, 43]
        colours = []
        for d in out["data"]:
            size, colour = decode_png(base64.b64decode(d["b64_json"]))
            assert size == (512, 384)
            async with http.get(d["url"]) as r:
                assert r.status == 200 and r.content_type == "image/png"
                assert decode_png(await r.read()) == (size, colour)
            colours.append(colour)
        assert colours[0] != colours[1]
        status, again, _ = await post_json(http, emu.api_base + "/images/flux/generations", body, auth(emu))
        assert base64.b64decode(again["data"][0]["b64_json"]) == base64.b64decode(out["data"][0]["b64_json"])
        status, plain, _ = await post_json(http, emu.api_base + "/images/flux/generations", {"prompt": "x"}, auth(emu))
        assert status == 200 and plain["model"] == "black-forest-labs/FLUX.1-schnell-Free"
        assert decode_png(base64.b64decode(plain["data"][0]["b64_json"]))[0] == (1024, 1024)
        assert isinstance(plain["seed"], int)


@pytest.mark.parametrize("bad, field", [
    ({"prompt": ""}, "prompt"), ({"prompt": "x", "steps": 5}, "steps"), ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "width": 1000}, "width"), ({"prompt": "x", "height": 1008}, "height"),
    ({"prompt": "x", "n": 0}, "n"), ({"prompt": "x", "seed": "abc"}, "seed"),
    ({"prompt": "x", "negative_prompt": 3}, "negative_prompt"),
])
async def test_digicord_flux_rejects_invalid_fields(http: aiohttp.ClientSession, bad: dict[str, Any],
                                                    field: str) -> None:
    async with GatewayEmulator("digicord") as emu:
        status, out, _ = await post_json(http, emu.api_base + "/images/flux/generations", bad, auth(emu))
        inner = assert_error(emu, status, out, 400)
        assert inner["param"] == field and field in inner["message"]


@pytest.mark.parametrize("profile", ["aicredits", "openai"])
async def test_openai_shaped_image_generation(http: aiohttp.ClientSession, profile: str) -> None:
    import base64

    async with GatewayEmulator(profile) as emu:
        body = {"model": "dall-e-3", "prompt": "A serene view of the Himalayas at sunrise", "size": "1792x1024"}
        status, out, _ = await post_json(http, emu.api_base + "/images/generations", body, auth(emu))
        assert status == 200, out
        item = out["data"][0]
        assert item["revised_prompt"] == body["prompt"] and isinstance(item["seed"], int)
        assert item["url"].startswith(emu.root_url)
        async with http.get(item["url"]) as r:  # hosted by the emulator itself, no key needed
            assert decode_png(await r.read())[0] == (1792, 1024)
        body = {"model": "dall-e-2", "prompt": "tiny", "size": "256x256", "n": 3, "response_format": "b64_json"}
        status, out, _ = await post_json(http, emu.api_base + "/images/generations", body, auth(emu))
        assert status == 200 and len(out["data"]) == 3
        assert {decode_png(base64.b64decode(d["b64_json"]))[0] for d in out["data"]} == {(256, 256)}
        for bad, field in [({"model": "dall-e-3", "prompt": "x", "n": 2}, "n"),
                           ({"model": "dall-e-3", "prompt": "x", "size": "512x512"}, "size"),
                           ({"model": "dall-e-2", "prompt": "x", "size": "1792x1024"}, "size"),
                           ({"model": "dall-e-2", "prompt": "x", "n": 11}, "n"),
                           ({"prompt": "x", "response_format": "png"}, "response_format"),
                           ({"prompt": "x", "quality": "ultra"}, "quality"), ({"size": "1024x1024"}, "prompt")]:
            status, out, _ = await post_json(http, emu.api_base + "/images/generations", bad, auth(emu))
            assert assert_error(emu, status, out, 400)["message"], bad


async def test_generated_image_is_seen_by_vision(http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator("openai") as emu:
        status, out, _ = await post_json(http, emu.api_base + "/images/generations",
                                         {"model": "dall-e-2", "prompt": "p", "size": "512x512", "seed": 7}, auth(emu))
        url = out["data"][0]["url"]
        async with http.get(url) as r:
            _, colour = decode_png(await r.read())
        body = {"model": "openai/gpt-4o", "messages": [image_message(url, "hm")]}
        status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
        assert "I see a 512x512 image" in out["choices"][0]["message"]["content"]
        assert "#{:02x}{:02x}{:02x}".format(*colour) in out["choices"][0]["message"]["content"]


# -- audio and embeddings -------------------------------------------------------------------------

SPEECH_FORMATS = {"aicredits": ("mp3", "opus", "aac", "flac"), "openai": ("mp3", "opus", "aac", "flac", "wav", "pcm")}
SPOKEN = "Hello from Gatecord: the emulator speaks, and what it says can be heard again."


def decoded(data: bytes, fmt: str) -> tuple[np.ndarray, int, dict[str, str]]:
    """Mono float samples, sample rate and tags (container and stream) of ``data``, decoded with PyAV."""
    opts = {"format": "s16le", "options": {"sample_rate": "24000", "ch_layout": "mono"}} if fmt == "pcm" else {}
    with av.open(io.BytesIO(data), **opts) as container:
        stream = container.streams.audio[0]
        tags = {**container.metadata, **stream.metadata}
        chunks = [frame.to_ndarray().astype(np.float32).reshape(frame.samples, -1)[:, 0]
                  / (32768.0 if frame.format.name.startswith("s16") else 1.0)
                  for frame in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    return np.concatenate(chunks), rate, tags


def reencode_ogg_opus(data: bytes, fmt: str) -> bytes:
    """What the bot does to a clip: Ogg/Opus, 48 kHz mono (the container's tags are not carried over)."""
    samples, rate, _ = decoded(data, fmt)
    frame = av.AudioFrame.from_ndarray((samples * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
    frame.sample_rate = rate
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(piece))
        container.mux(stream.encode(None))
    return out.getvalue()


def heard(data: bytes, seconds: float) -> str:
    return f"Heard {seconds:.1f} s of audio ({hashlib.sha256(data).hexdigest()[:8]})."


async def speak(http: aiohttp.ClientSession, emu: GatewayEmulator, text: str, fmt: str) -> bytes:
    body = {"model": role(emu, "tts"), "input": text, "voice": "nova", "response_format": fmt}
    async with http.post(emu.api_base + "/audio/speech", json=body, headers=auth(emu)) as r:
        assert r.status == 200 and r.content_type == audio.CONTENT_TYPES[fmt]
        return await r.read()


async def transcribe_json(http: aiohttp.ClientSession, emu: GatewayEmulator, data: bytes, fmt: str,
                          **extra: str) -> tuple[int, Any]:
    body = {"model": role(emu, "stt"), "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt},
            **extra}
    status, out, _ = await post_json(http, emu.api_base + "/audio/transcriptions", body, auth(emu))
    return status, out


async def transcribe_multipart(http: aiohttp.ClientSession, emu: GatewayEmulator, data: bytes, filename: str,
                               response_format: str = "verbose_json") -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    form.add_field("model", "whisper-1")
    form.add_field("response_format", response_format)
    async with http.post(emu.api_base + "/audio/transcriptions", data=form, headers=auth(emu)) as r:
        return r.status, await r.json()


@pytest.mark.parametrize(("profile", "fmt"), [(p, f) for p, fmts in SPEECH_FORMATS.items() for f in fmts])
async def test_speech_is_real_audio_in_every_format(http: aiohttp.ClientSession, profile: str, fmt: str) -> None:
    async with GatewayEmulator(profile) as emu:
        data = await speak(http, emu, SPOKEN, fmt)
        samples, rate, tags = decoded(data, fmt)
        assert rate == (48000 if fmt == "opus" else 24000)  # an Opus decoder always gives 48 kHz
        assert abs(len(samples) / rate - len(SPOKEN) / 15) <= 0.1
        peaks = [float(np.abs(b).max()) for b in np.array_split(samples, 64)]
        assert max(peaks) > 0.2 and min(peaks) < max(peaks) / 4  # loud words and pauses: a waveform, not a line
        assert len({round(p, 2) for p in peaks}) > 16
        assert (tags.get("comment") == "gatecord-tts:" + SPOKEN) is audio.has_metadata(fmt)
        if profile == "aicredits":
            status, out = await transcribe_json(http, emu, data, fmt)
            assert status == 200
            assert out == {"text": SPOKEN if audio.has_metadata(fmt) else heard(data, len(samples) / rate)}
        else:
            status, out = await transcribe_multipart(http, emu, data, f"speech.{fmt}")
            assert status == 200 and out["duration"] == pytest.approx(len(samples) / rate, abs=0.01)
            assert out["text"] == (SPOKEN if audio.has_metadata(fmt) else heard(data, len(samples) / rate))
        assert emu.received_audio == [data]


async def test_bot_reencoded_speech_is_heard_by_its_length(http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator("openai") as emu:
        clip = reencode_ogg_opus(await speak(http, emu, SPOKEN, "mp3"), "mp3")
        samples, rate, _ = decoded(clip, "opus")
        assert rate == 48000
        status, out = await transcribe_json(http, emu, clip, "ogg", response_format="verbose_json")
        assert status == 200 and out["text"] == heard(clip, len(samples) / rate)
        assert out["text"].startswith(f"Heard {len(SPOKEN) / 15:.1f} s of audio")
        assert out["duration"] == pytest.approx(len(SPOKEN) / 15, abs=0.1)
        assert emu.received_audio == [clip]  # the base64 JSON style keeps the decoded bytes too


async def test_aicredits_speech_errors_and_json_transcription(http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator("aicredits") as emu:
        body = {"model": "openai/tts-1", "input": "Namaste, world", "voice": "nova"}
        async with http.post(emu.api_base + "/audio/speech", json=body, headers=auth(emu)) as r:
            assert r.status == 200 and r.content_type == "audio/mpeg"  # mp3 by default
            mp3 = await r.read()
        assert decoded(mp3, "mp3")[1] == 24000
        status, out = await transcribe_json(http, emu, mp3, "mp3")
        assert status == 200 and out == {"text": "Namaste, world"}
        status, out, _ = await post_json(http, emu.api_base + "/audio/speech",
                                         {"model": "openai/tts-1", "input": "x", "voice": "robot"}, auth(emu))
        assert assert_error(emu, status, out, 400)["message"].startswith("Invalid 'voice'")
        status, out, _ = await post_json(http, emu.api_base + "/audio/speech",
                                         {"model": "openai/tts-1", "input": "x", "voice": "nova",
                                          "response_format": "wav"}, auth(emu))
        assert assert_error(emu, status, out, 400)["message"].startswith("Invalid 'response_format'")
        status, out, _ = await post_json(http, emu.api_base + "/audio/transcriptions",
                                         {"model": "openai/whisper-1"}, auth(emu))
        assert "input_audio.data" in assert_error(emu, status, out, 400)["message"]
        assert emu.received_audio == [mp3]


@pytest.mark.parametrize(("profile", "style"), [("aicredits", "json"), ("openai", "json"), ("openai", "multipart")])
async def test_undecodable_audio_is_a_400(http: aiohttp.ClientSession, profile: str, style: str) -> None:
    junk = b"this is not audio at all " * 40
    async with GatewayEmulator(profile) as emu:
        if style == "json":
            status, out = await transcribe_json(http, emu, junk, "mp3")
        else:
            status, out = await transcribe_multipart(http, emu, junk, "voice.ogg")
        inner = assert_error(emu, status, out, 400)
        assert inner["message"] == "Could not decode the audio file."
        if profile == "openai":
            assert inner["param"] == ("file" if style == "multipart" else "input_audio.data")
        assert emu.received_audio == [junk]


def test_synthesize_lengths_and_the_old_marker() -> None:
    short = audio.synthesize("hi", "wav")
    assert len(decoded(short, "wav")[0]) == 12000  # 0.5 s at least
    longest = audio.synthesize("word " * 1000, "pcm")  # 5000 characters would be 333 s: capped
    assert len(longest) == 300 * 24000 * 2
    assert audio.transcribe(b"GCTTS[" + base64.b64encode("older emulator".encode()) + b"]", "opus") == "older emulator"


@pytest.mark.parametrize("profile", ["aicredits", "aiproxy", "openai"])
async def test_embeddings(http: aiohttp.ClientSession, profile: str) -> None:
    async with GatewayEmulator(profile) as emu:
        model = MODEL_ROLES[profile]["embedding"]
        body = {"model": model, "input": ["The quick brown fox", "The quick brown fox", "other"]}
        status, out, _ = await post_json(http, emu.api_base + "/embeddings", body, auth(emu))
        assert status == 200
        vecs = [d["embedding"] for d in out["data"]]
        assert len(vecs[0]) == 1536 and vecs[0] == vecs[1] != vecs[2]
        assert abs(sum(v * v for v in vecs[0]) - 1) < 1e-3
        assert out["usage"]["prompt_tokens"] > 0
        status, out, _ = await post_json(http, emu.api_base + "/embeddings", {**body, "dimensions": 256}, auth(emu))
        assert status == 200 and len(out["data"][0]["embedding"]) == 256
        status, out, _ = await post_json(http, emu.api_base + "/embeddings", {**body, "dimensions": 99999}, auth(emu))
        assert assert_error(emu, status, out, 400)
        if profile == "aiproxy":
            status, out, _ = await post_json(http, emu.api_base + "/embeddings",
                                             {"model": "text-embedding-ada-002", "input": "x", "dimensions": 8},
                                             auth(emu))
            assert assert_error(emu, status, out, 400)["param"] == "dimensions"


# -- tools, JSON mode, fallback, text completions -------------------------------------------------

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}


async def test_tool_calls_and_json_mode(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    body = chat_body(emu, "please get_weather for Pune", tools=[WEATHER_TOOL])
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
    choice = out["choices"][0]
    assert status == 200 and choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "please get_weather for Pune", "days": 1}
    followup = body["messages"] + [choice["message"],
                                   {"role": "tool", "tool_call_id": call["id"], "content": "31C"}]
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions", {**body, "messages": followup},
                                     auth(emu))
    assert out["choices"][0]["message"]["content"] == "Tool result received: 31C"
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions",
                                     chat_body(emu, "hi", tools=[WEATHER_TOOL], tool_choice="none"), auth(emu))
    assert out["choices"][0]["message"]["content"] == expected_reply("hi")
    async with http.post(emu.api_base + "/chat/completions", headers=auth(emu),
                         json=chat_body(emu, "x", tools=[WEATHER_TOOL], tool_choice="required", stream=True)) as r:
        events, _, _ = parse_sse(await r.text())
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    args = "".join(d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if "tool_calls" in d)
    assert json.loads(args) == {"city": "x", "days": 1} and events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    status, out, _ = await post_json(http, emu.api_base + "/chat/completions",
                                     chat_body(emu, "hi", response_format={"type": "json_object"}), auth(emu))
    assert json.loads(out["choices"][0]["message"]["content"]) == {"answer": expected_reply("hi")}


async def test_openai_fallback_metadata(http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator("openai") as emu:
        body = {"model": "openai/gpt-unavailable", "messages": [{"role": "user", "content": "hi"}]}
        status, out, r = await post_json(http, emu.api_base + "/chat/completions", body, auth(emu))
        assert status == 200 and out["model"] == "openai/gpt-4o-mini"
        assert r.headers["x-model-used"] == "openai/gpt-4o-mini"
        assert r.headers["x-fallback-from"] == "openai/gpt-unavailable" and r.headers["x-fallback-depth"] == "1"
        async with http.post(emu.api_base + "/chat/completions", headers=auth(emu),
                             json={**body, "model": "openai/gpt-retired", "stream": True}) as r:
            assert r.headers["x-fallback-depth"] == "2" and r.headers["x-request-id"]
            assert stream_text(parse_sse(await r.text())[0]) == expected_reply("hi")


async def test_aiproxy_text_completions(http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator("aiproxy") as emu:
        body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Explain quantum computing in simple terms"}
        status, out, _ = await post_json(http, emu.api_base + "/completions", body, auth(emu))
        assert status == 200 and out["object"] == "text_completion" and out["provider"] == "openai"
        choice = out["choices"][0]
        assert choice["text"] == expected_reply(body["prompt"])[:64] and choice["finish_reason"] == "length"
        assert out["usage"]["completion_tokens"] == 16
        status, out, _ = await post_json(http, emu.api_base + "/completions",
                                         {**body, "max_tokens": 500, "prompt": ["a", "b"]}, auth(emu))
        assert [c["text"] for c in out["choices"]] == [expected_reply("a"), expected_reply("b")]
        assert {c["finish_reason"] for c in out["choices"]} == {"stop"}
        async with http.post(emu.api_base + "/completions", json={**body, "stream": True, "max_tokens": 500},
                             headers=auth(emu)) as r:
            events, _, done = parse_sse(await r.text())
        assert done and "".join(e["choices"][0]["text"] for e in events) == expected_reply(body["prompt"])
        status, out, _ = await post_json(http, emu.api_base + "/completions",
                                         {"model": "gpt-3.5-turbo-instruct", "prompt": "w " * 9000}, auth(emu))
        assert assert_error(emu, status, out, 400)["code"] == "context_length_exceeded"
        status, out, _ = await post_json(http, emu.api_base + "/chat/completions",
                                         {"model": "gpt-3.5-turbo-instruct", "messages": [{"role": "user",
                                                                                         "content": "x"}]}, auth(emu))
        assert_error(emu, status, out, 400)


# -- the official openai SDK ----------------------------------------------------------------------

SDK_PROFILES = ["aicordcloud", "digicord", "aicredits", "aiproxy", "openai"]


@pytest.mark.parametrize("profile", SDK_PROFILES)
async def test_openai_sdk_chat_and_stream(profile: str) -> None:
    import openai

    async with GatewayEmulator(profile) as emu:
        client = openai.AsyncOpenAI(base_url=emu.api_base, api_key=emu.api_key, max_retries=0)
        async with client:
            model = MODEL_ROLES[profile]["chat"]
            messages: Any = [{"role": "user", "content": "Hello!"}]
            resp = await client.chat.completions.create(model=model, messages=messages)
            assert resp.choices[0].message.content == expected_reply("Hello!")
            assert resp.usage is not None and resp.usage.total_tokens > 0
            stream = await client.chat.completions.create(model=model, messages=messages, stream=True,
                                                          stream_options={"include_usage": True})
            pieces, usage = [], None
            async for chunk in stream:
                if chunk.choices:
                    pieces.append(chunk.choices[0].delta.content or "")
                usage = chunk.usage or usage
            assert "".join(pieces) == expected_reply("Hello!") and usage is not None
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="no/such-model", messages=messages)
            emu.faults.fail_next(status=429, retry_after=0)
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model=model, messages=messages)
        async with openai.AsyncOpenAI(base_url=emu.api_base, api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model=model, messages=messages)


@pytest.mark.parametrize("profile", ["aicredits", "aiproxy", "openai"])
async def test_openai_sdk_embeddings(profile: str) -> None:
    import openai

    async with GatewayEmulator(profile) as emu:
        async with openai.AsyncOpenAI(base_url=emu.api_base, api_key=emu.api_key, max_retries=0) as client:
            model = MODEL_ROLES[profile]["embedding"]
            assert model is not None
            res = await client.embeddings.create(model=model, input=["fox", "dog"])  # SDK asks for base64
            assert [len(d.embedding) for d in res.data] == [1536, 1536]
            plain = await client.embeddings.create(model=model, input="fox", encoding_format="float")
            assert max(abs(a - b) for a, b in zip(plain.data[0].embedding, res.data[0].embedding)) < 1e-6


@pytest.mark.parametrize("profile", ["aicredits", "openai"])
async def test_openai_sdk_images_and_models(profile: str) -> None:
    import base64

    import openai

    async with GatewayEmulator(profile) as emu:
        async with openai.AsyncOpenAI(base_url=emu.api_base, api_key=emu.api_key, max_retries=0) as client:
            img = await client.images.generate(model="dall-e-2", prompt="a lake", size="256x256",
                                               response_format="b64_json", n=2)
            assert img.data is not None and len(img.data) == 2
            assert decode_png(base64.b64decode(img.data[0].b64_json or ""))[0] == (256, 256)
            img = await client.images.generate(model="dall-e-3", prompt="a lake", size="1024x1792")
            assert img.data is not None and img.data[0].url and img.data[0].url.startswith(emu.root_url)
            models = [m.id async for m in client.models.list()]
            assert MODEL_ROLES[profile]["chat"] in models


async def test_openai_sdk_audio_on_openai_profile() -> None:
    import openai

    async with GatewayEmulator("openai") as emu:
        async with openai.AsyncOpenAI(base_url=emu.api_base, api_key=emu.api_key, max_retries=0) as client:
            speech = await client.audio.speech.create(model="openai/tts-1", voice="alloy", input="sdk says hi")
            mp3 = speech.read()
            result = await client.audio.transcriptions.create(model="whisper-1", file=("say.mp3", mp3, "audio/mpeg"))
            assert result.text == "sdk says hi"


# -- standalone -----------------------------------------------------------------------------------

async def test_standalone_process_prints_ready_and_serves(http: aiohttp.ClientSession) -> None:
    import asyncio
    import signal
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox.gateways", "--profile", "digicord", "--port", "0", "--api-key", "k-123456789",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
        assert line[0] == "READY" and line[1].startswith("http://127.0.0.1:") and "k-123456789" not in line[2]
        async with http.get(line[1] + "/api/v1/models", headers={"Authorization": "Bearer k-123456789"}) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_emulator_attributes_for_settings() -> None:
    emu = GatewayEmulator("aicordcloud")
    with pytest.raises(RuntimeError):
        emu.root_url
    async with emu:
        assert emu.profile == "aicordcloud" and emu.api_key == "test-aicordcloud-key"
        assert emu.api_base == emu.root_url + "/v1" and emu.root_url.startswith("http://127.0.0.1:")
        assert (emu.default_chat_model, emu.default_vision_model, emu.default_image_model) == (
            "aicord/fast", "aicord/vision", "")
        assert emu.api_key not in repr(emu)
    async with GatewayEmulator("digicord", api_key="custom") as emu:
        assert emu.api_base == emu.root_url + "/api/v1" and emu.api_key == "custom"
        assert emu.default_image_model == "black-forest-labs/FLUX.1-schnell-Free"
    with pytest.raises(ValueError):
        GatewayEmulator("nope")


async def test_digicord_send_data(http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator("digicord") as emu:
        body = {"channelId": "123456789012345678", "content": "Hello",
                "embeds": [{"title": "Title here", "fields": [{"name": "a", "value": "b", "inline": True}]}],
                "components": []}
        status, out, _ = await post_json(http, emu.api_base + "/send-data", body, auth(emu))
        assert status == 200 and out["success"] is True and out["channelId"] == body["channelId"]
        assert emu.sent_data == [body]
        status, out, _ = await post_json(http, emu.api_base + "/send-data", {**body, "channelId": ""}, auth(emu))
        assert assert_error(emu, status, out, 400)["param"] == "channelId"
        status, out, _ = await post_json(http, emu.api_base + "/send-data", body)
        assert_error(emu, status, out, 401)


async def test_aicredits_responses_endpoint_with_sdk() -> None:
    import openai

    async with GatewayEmulator("aicredits") as emu:
        async with openai.AsyncOpenAI(base_url=emu.api_base, api_key=emu.api_key, max_retries=0) as client:
            resp = await client.responses.create(model="openai/gpt-4o-mini", input="Hello!", instructions="be nice")
            assert resp.output_text == expected_reply("Hello!") and resp.status == "completed"
            assert resp.usage is not None and resp.usage.output_tokens > 0
            short = await client.responses.create(model="openai/gpt-4o-mini", input="Hello!", max_output_tokens=2)
            assert short.output_text == expected_reply("Hello!")[:8] and short.status == "incomplete"


async def test_slow_call_abandoned_by_the_client_does_no_work(http: aiohttp.ClientSession) -> None:
    import asyncio

    async with GatewayEmulator("openai") as emu:
        emu.faults.slow_next(delay=0.4)
        emu.faults.set_budget(1)
        emu.queue_reply("the queued answer")
        with pytest.raises(asyncio.TimeoutError):
            await http.post(emu.api_base + "/chat/completions", json=chat_body(emu), headers=auth(emu),
                            timeout=aiohttp.ClientTimeout(total=0.1))

        await emu.wait_for(lambda: emu.requests[0].status is not None, timeout=5)
        assert emu.requests[0].status == 499
        status, out, _ = await post_json(http, emu.api_base + "/chat/completions", chat_body(emu), auth(emu))
        assert status == 200 and out["choices"][0]["message"]["content"] == "the queued answer"
