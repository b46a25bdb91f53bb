"""GatewayClient against injected faults: retries, timeouts, broken streams, fallbacks, secrets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway_client import (
    AuthenticationError,
    ChatMessage,
    ChatRequest,
    ClientOptions,
    ContextTooLong,
    GatewayClient,
    GatewayConfig,
    GatewayError,
    GatewayTimeout,
    ImageRequest,
    InsufficientCredits,
    QuotaExceeded,
    RateLimited,
    StreamInterrupted,
    UpstreamUnavailable,
)
from gateway_client.errors import InvalidResponse
from sandbox.gateways import MODEL_ROLES, PROFILES, GatewayEmulator, expected_reply
from sandbox.gateways.answers import split_text

pytestmark = pytest.mark.timeout(60)

FAST = dict(backoff_base=0.01, backoff_max=0.05)
IMAGE_PROFILES = ["digicord", "aicredits", "openai"]


def cfg(emu: GatewayEmulator, **kw: str) -> GatewayConfig:
    r = MODEL_ROLES[emu.profile]
    args = dict(chat_model=r["chat"] or "", vision_model=r["vision"] or "", image_model=r["image"] or "")
    args.update(kw)
    return GatewayConfig(emu.profile, emu.root_url, emu.api_key, **args)


def client(emu: GatewayEmulator, *, fallbacks: list[GatewayConfig] = (), **opts: object) -> GatewayClient:
    return GatewayClient(cfg(emu), fallbacks=list(fallbacks), options=ClientOptions(**{**FAST, **opts}))


def posts(emu: GatewayEmulator, part: str = "") -> list:
    return [r for r in emu.requests if r.method == "POST" and part in r.path]


def hello(text: str = "hello") -> ChatRequest:
    return ChatRequest([ChatMessage.user(text)])


@pytest.fixture(params=PROFILES)
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator(request.param) as e:
        yield e


# ------------------------------------------------------------------------------------ retries


class SleepRecorder:
    """Stands in for asyncio.sleep in the client's retry waits: records them, sleeps not at all."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_429_with_retry_after_then_success(emu: GatewayEmulator) -> None:
    emu.faults.fail_next(1, status=429, retry_after=0.3)
    sleep = SleepRecorder()
    async with GatewayClient(cfg(emu), options=ClientOptions(**FAST), sleep=sleep) as c:
        res = await c.chat(hello())
    assert res.text == expected_reply("hello")
    assert res.meta.attempts == 2 and len(posts(emu)) == 2
    assert [r.status for r in posts(emu)] == [429, 200]
    assert sleep.waits == [0.3]  # Retry-After honoured (not the 10 ms backoff)


async def test_retry_after_above_cap_raises_at_once(emu: GatewayEmulator) -> None:
    emu.faults.fail_next(1, status=429, retry_after=20)
    sleep = SleepRecorder()
    async with GatewayClient(cfg(emu), options=ClientOptions(**FAST, max_retry_after=5.0), sleep=sleep) as c:
        with pytest.raises(RateLimited) as ei:
            await c.chat(hello())
    assert sleep.waits == []  # not slept: raised at once
    assert ei.value.retry_after == 20 and ei.value.status == 429
    assert len(posts(emu)) == 1


async def test_rate_limit_reset_header_used_when_no_retry_after() -> None:
    async with GatewayEmulator("aiproxy") as emu:
        emu.faults.fail_next(1, status=429, retry_after=None)  # X-RateLimit-Reset: the window's end (~60 s)
        async with client(emu, max_retry_after=5.0) as c:
            with pytest.raises(RateLimited) as ei:
                await c.chat(hello())
        assert ei.value.retry_after is not None and 5 < ei.value.retry_after <= 61
        assert len(posts(emu)) == 1
    async with GatewayEmulator("openai") as emu:  # no reset header: exponential backoff
        emu.faults.fail_next(1, status=429, retry_after=None)
        async with client(emu, max_retry_after=5.0) as c:
            assert (await c.chat(hello())).meta.attempts == 2


async def test_5xx_retried_then_success(emu: GatewayEmulator) -> None:
    emu.faults.fail_next(2, status=503, retry_after=None)
    async with client(emu, max_retries=2) as c:
        res = await c.chat(hello())
    assert res.text == expected_reply("hello") and res.meta.attempts == 3
    assert [r.status for r in posts(emu)] == [503, 503, 200]


async def test_5xx_exhausted_raises_upstream_unavailable(emu: GatewayEmulator) -> None:
    emu.faults.fail_next(3, status=500, retry_after=None)
    async with client(emu, max_retries=2) as c:
        with pytest.raises(UpstreamUnavailable) as ei:
            await c.chat(hello())
    assert ei.value.status == 500 and len(posts(emu)) == 3


async def test_client_errors_are_not_retried(emu: GatewayEmulator) -> None:
    async with client(emu, max_retries=3) as c:
        with pytest.raises(ContextTooLong):
            await c.chat(ChatRequest([ChatMessage.user("word " * 2000)], model=MODEL_ROLES[emu.profile]["small"]))
    assert len(posts(emu)) == 1


async def test_html_502_page_mapped(emu: GatewayEmulator) -> None:
    emu.faults.html_error_next(1, status=502)
    async with client(emu, max_retries=0) as c:
        with pytest.raises(UpstreamUnavailable) as ei:
            await c.chat(hello())
        assert ei.value.status == 502 and "502 Bad Gateway" in str(ei.value) and "<" not in str(ei.value)
        emu.faults.html_error_next(1, status=502)
    async with client(emu, max_retries=1) as c:
        assert (await c.chat(hello())).meta.attempts == 2


async def test_invalid_json_mapped_and_not_retried(emu: GatewayEmulator) -> None:
    emu.faults.invalid_json_next(1)
    async with client(emu, max_retries=2) as c:
        with pytest.raises(InvalidResponse) as ei:
            await c.chat(hello())
    assert ei.value.status == 200 and "invalid JSON" in str(ei.value)
    assert isinstance(ei.value, GatewayError) and len(posts(emu)) == 1


# ------------------------------------------------------------------------------------ timeouts


TIMEOUT_PROFILES = ["digicord", "openai"]  # timeouts are the client's own: two profiles suffice


@pytest.mark.parametrize("profile", TIMEOUT_PROFILES)
async def test_slow_answer_hits_total_timeout(profile: str) -> None:
    async with GatewayEmulator(profile) as emu:
        await _slow_answer(emu)


async def _slow_answer(emu: GatewayEmulator) -> None:
    emu.faults.slow_next(1, delay=0.5)
    async with client(emu, total_timeout=0.15, max_retries=0) as c:
        with pytest.raises(GatewayTimeout) as ei:  # the answer comes after 0.5 s: only the timeout raises here
            await c.chat(hello())
        assert "0.15" in str(ei.value)
    emu.faults.slow_next(1, delay=0.5)
    async with client(emu, total_timeout=0.15, max_retries=1) as c:  # a chat is safe to repeat
        res = await c.chat(hello())
    assert res.meta.attempts == 2


@pytest.mark.parametrize("profile", TIMEOUT_PROFILES)
async def test_slow_stream_start_hits_idle_timeout(profile: str) -> None:
    async with GatewayEmulator(profile) as emu:
        await _slow_stream(emu)


async def _slow_stream(emu: GatewayEmulator) -> None:
    emu.faults.slow_next(1, delay=0.5)
    async with client(emu, stream_idle_timeout=0.15, max_retries=0) as c:
        stream = c.stream_chat(hello())
        with pytest.raises(GatewayTimeout):
            async for _ in stream:
                pass
        assert stream.received_text == ""


@pytest.mark.parametrize("profile", TIMEOUT_PROFILES)
async def test_stream_gap_between_chunks_is_interrupted(profile: str) -> None:
    async with GatewayEmulator(profile) as emu:
        await _stream_gap(emu)


async def _stream_gap(emu: GatewayEmulator) -> None:
    emu.keepalive_comments = False
    emu.chunk_delay = 0.4
    async with client(emu, stream_idle_timeout=0.15) as c:
        got: list[str] = []
        with pytest.raises(StreamInterrupted) as ei:
            async with c.stream_chat(hello()) as stream:
                async for d in stream:
                    got.append(d)
    assert got and ei.value.partial_text == "".join(got) == stream.received_text
    assert expected_reply("hello").startswith(ei.value.partial_text)
    assert stream.result is None and len(posts(emu)) == 1  # never restarted


# ------------------------------------------------------------------------------------ broken streams


async def test_cut_stream_raises_with_partial_text(emu: GatewayEmulator) -> None:
    emu.stream_chunk_count = 8
    emu.faults.cut_stream_next(1, after_chunks=3)
    pieces = split_text(expected_reply("hello"), chunk_count=8)
    async with client(emu) as c:
        got: list[str] = []
        with pytest.raises(StreamInterrupted) as ei:
            async with c.stream_chat(hello()) as stream:
                async for d in stream:
                    got.append(d)
    assert ei.value.partial_text == "".join(pieces[:3]) == "".join(got)
    assert stream.result is None and len(posts(emu)) == 1


async def test_error_inside_200_stream(emu: GatewayEmulator) -> None:
    emu.stream_chunk_count = 8
    emu.faults.error_in_stream_next(1, after_chunks=2)
    pieces = split_text(expected_reply("hello"), chunk_count=8)
    async with client(emu) as c:
        stream = c.stream_chat(hello())
        got = []
        with pytest.raises(StreamInterrupted) as ei:
            async for d in stream:
                got.append(d)
    err = ei.value
    assert err.partial_text == "".join(pieces[:2]) == "".join(got)
    assert isinstance(err.cause, UpstreamUnavailable) and "mid-stream" in str(err)
    assert "upstream provider failed" in err.cause.message


async def test_stream_without_done_is_a_failed_stream() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"partial "}}]}\n\n')
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"answer"},"finish_reason":"stop"}]}\n\n')
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    try:
        async with GatewayClient(GatewayConfig("openai", f"http://127.0.0.1:{port}", "k", chat_model="m")) as c:
            stream = c.stream_chat(hello())
            with pytest.raises(StreamInterrupted, match=r"\[DONE\]") as ei:
                async for _ in stream:
                    pass
        assert ei.value.partial_text == "partial answer"
    finally:
        await runner.cleanup()


async def test_stream_http_errors_checked_before_parsing(emu: GatewayEmulator) -> None:
    async with client(emu) as c:
        with pytest.raises(GatewayError) as ei:
            async for _ in c.stream_chat(ChatRequest([ChatMessage.user("x")], model="no-such/model")):
                pass
        assert ei.value.status == 404 and not isinstance(ei.value, StreamInterrupted)
        emu.faults.fail_next(1, status=429, retry_after=0.05)
        stream = c.stream_chat(hello())
        assert "".join([d async for d in stream]) == expected_reply("hello")
        assert stream.result is not None and stream.result.meta.attempts == 2


async def test_leaving_a_stream_early_closes_it(emu: GatewayEmulator) -> None:
    emu.stream_chunk_count = 20
    async with client(emu) as c:
        async with c.stream_chat(hello()) as stream:
            async for _ in stream:
                break
        assert stream.result is None
        assert (await c.chat(hello("again"))).text == expected_reply("again")


# ------------------------------------------------------------------------------------ auth, quota


async def test_revoked_key_is_authentication_error_without_retry_or_fallback(emu: GatewayEmulator) -> None:
    emu.faults.revoke_key()
    async with GatewayEmulator("openai") as other:
        async with client(emu, fallbacks=[cfg(other)], max_retries=3) as c:
            with pytest.raises(AuthenticationError) as ei:
                await c.chat(hello())
        assert other.requests == []
    assert ei.value.status == 401 and len(posts(emu)) == 1


async def test_budget_exhausted_is_quota_exceeded(emu: GatewayEmulator) -> None:
    emu.faults.set_budget(1)
    async with client(emu, max_retries=2) as c:
        await c.chat(hello())
        with pytest.raises(QuotaExceeded) as ei:
            await c.chat(hello())
    assert isinstance(ei.value, InsufficientCredits) and ei.value.status == 402
    assert len(posts(emu)) == 2


# ------------------------------------------------------------------------------------ images are not re-sent


@pytest.mark.parametrize("profile", IMAGE_PROFILES)
async def test_image_generation_not_resent_after_5xx_or_timeout(profile: str) -> None:
    async with GatewayEmulator(profile) as emu, GatewayEmulator(profile) as other:
        async with client(emu, fallbacks=[cfg(other)], max_retries=3, image_timeout=0.25) as c:
            emu.faults.fail_next(1, status=502, retry_after=None)
            with pytest.raises(UpstreamUnavailable):
                await c.generate_images(ImageRequest("a lighthouse"))
            assert len(posts(emu, "images")) == 1
            emu.faults.slow_next(1, delay=0.6)
            with pytest.raises(GatewayTimeout):
                await c.generate_images(ImageRequest("a lighthouse"))
            assert len(posts(emu, "images")) == 2
            assert posts(other) == []  # not sent to the fallback gateway either
            emu.faults.fail_next(1, status=429, retry_after=0.05)  # refused before any work: safe to repeat
            res = await c.generate_images(ImageRequest("a lighthouse"))
            assert res.images[0].data.startswith(b"\x89PNG") and res.meta.attempts == 2


# ------------------------------------------------------------------------------------ fallbacks


async def test_fallback_model_on_unknown_model_and_on_5xx(emu: GatewayEmulator) -> None:
    chat_model = MODEL_ROLES[emu.profile]["chat"]
    async with client(emu, fallback_models=[chat_model], max_retries=0) as c:
        res = await c.chat(ChatRequest([ChatMessage.user("hello")], model="no-such/model"))
        assert res.text == expected_reply("hello")
        assert res.meta.fallback_from == "no-such/model" and res.meta.fallback_depth >= 1
        assert res.meta.model_requested == chat_model and res.meta.fell_back
        assert res.meta.fallback_errors and "ModelNotFound" in res.meta.fallback_errors[0]
        small = MODEL_ROLES[emu.profile]["small"]
        emu.faults.fail_next(1, status=503, retry_after=None)
        res = await c.chat(ChatRequest([ChatMessage.user("hello")], model=small))
        assert res.meta.model_requested == chat_model and res.meta.fallback_from == small
        assert res.meta.fallback_depth == 1 and "UpstreamUnavailable 503" in res.meta.fallback_errors[0]
        before = len(posts(emu))
        with pytest.raises(ContextTooLong):  # the user's input: no fallback
            await c.chat(ChatRequest([ChatMessage.user("word " * 2000)], model=small))
        assert len(posts(emu)) == before + 1


async def test_fallback_gateway_used_and_visible(emu: GatewayEmulator) -> None:
    other_profile = "openai" if emu.profile != "openai" else "aiproxy"
    async with GatewayEmulator(other_profile) as other:
        backup = cfg(other, name="backup")
        async with client(emu, fallbacks=[backup], max_retries=1) as c:
            emu.faults.fail_next(2, status=503, retry_after=None)
            res = await c.chat(hello())
            assert res.text == expected_reply("hello")
            assert res.meta.profile == other_profile and res.meta.gateway == "backup"
            assert res.meta.gateway_fallback_from == emu.profile
            assert res.meta.model_requested == MODEL_ROLES[other_profile]["chat"]
            primary_model = MODEL_ROLES[emu.profile]["chat"]
            expected_from = primary_model if primary_model != res.meta.model_requested else None
            assert res.meta.fallback_from == expected_from and res.meta.fell_back
            assert len(posts(emu)) == 2 and len(posts(other)) == 1

            emu.faults.html_error_next(2, status=502)  # streams fall back too, before any text
            stream = c.stream_chat(hello("streamed"))
            assert "".join([d async for d in stream]) == expected_reply("streamed")
            assert stream.result is not None and stream.result.meta.gateway_fallback_from == emu.profile


async def test_stream_that_yielded_text_is_never_restarted(emu: GatewayEmulator) -> None:
    emu.faults.cut_stream_next(1, after_chunks=2)
    async with GatewayEmulator("openai") as other:
        async with client(emu, fallbacks=[cfg(other)], fallback_models=[MODEL_ROLES[emu.profile]["small"]]) as c:
            with pytest.raises(StreamInterrupted) as ei:
                async for _ in c.stream_chat(hello()):
                    pass
        assert ei.value.partial_text and other.requests == []
    assert len(posts(emu)) == 1


async def test_gateway_side_fallback_visible_in_meta() -> None:
    async with GatewayEmulator("openai") as emu, client(emu) as c:
        res = await c.chat(ChatRequest([ChatMessage.user("hello")], model="openai/gpt-unavailable"))
        assert res.meta.fallback_from == "openai/gpt-unavailable" and res.meta.fallback_depth == 1
        assert res.meta.model_used == "openai/gpt-4o-mini" and res.meta.gateway_fallback_from is None
        stream = c.stream_chat(ChatRequest([ChatMessage.user("hello")], model="openai/gpt-retired"))
        [d async for d in stream]
        assert stream.result is not None
        assert stream.result.meta.fallback_from == "openai/gpt-retired" and stream.result.meta.fallback_depth == 2


# ------------------------------------------------------------------------------------ lifecycle and secrets


def test_no_session_before_start() -> None:
    c = GatewayClient(GatewayConfig("openai", "http://127.0.0.1:9", "k"))  # no event loop needed
    assert not c.started and c._transport.session is None  # noqa: SLF001


async def test_call_before_start_is_a_clear_error() -> None:
    c = GatewayClient(GatewayConfig("openai", "http://127.0.0.1:9", "k", chat_model="m"))
    with pytest.raises(RuntimeError, match="start"):
        await c.chat(hello())


async def test_connection_refused_is_upstream_unavailable() -> None:
    async with GatewayEmulator("openai") as emu:
        url = emu.root_url
    async with GatewayClient(GatewayConfig("openai", url, "k", chat_model="m"),
                             options=ClientOptions(max_retries=1, **FAST)) as c:
        with pytest.raises(UpstreamUnavailable) as ei:
            await c.chat(hello())
    assert ei.value.connection_error and ei.value.status is None


SECRET_KEYS = {
    "aicredits": "sk-" + "9f" * 32,
}


@pytest.mark.parametrize("profile", PROFILES)
async def test_api_key_never_in_errors_reprs_or_logs(profile: str, caplog: pytest.LogCaptureFixture) -> None:
    key = SECRET_KEYS.get(profile, f"secret-{profile}-Zq8xW3kP0vR7")
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with GatewayEmulator(profile, api_key=key) as emu:
        config = cfg(emu)
        async with GatewayClient(config, options=ClientOptions(max_retries=1, total_timeout=0.15, **FAST)) as c:
            faults = [
                lambda: emu.faults.fail_next(2, status=429, retry_after=0.01),
                lambda: emu.faults.fail_next(2, status=500, retry_after=None),
                lambda: emu.faults.html_error_next(2),
                lambda: emu.faults.invalid_json_next(1),
                lambda: emu.faults.slow_next(2, delay=0.3),
                lambda: emu.faults.revoke_key(),
            ]
            for arm in faults:
                arm()
                try:
                    await c.chat(hello())
                except GatewayError as err:
                    errors.append(err)
            emu.faults.reset()
            for arm in (lambda: emu.faults.cut_stream_next(1, 2), lambda: emu.faults.error_in_stream_next(1, 1)):
                arm()
                try:
                    async for _ in c.stream_chat(hello()):
                        pass
                except GatewayError as err:
                    errors.append(err)
            texts = [repr(c), str(c), repr(config), str(config)]
    assert len(errors) == 8
    for err in errors:
        texts += [str(err), repr(err), str(err.args)]
        if isinstance(err, StreamInterrupted) and err.cause is not None:
            texts += [str(err.cause), repr(err.cause)]
    texts.append(caplog.text)
    assert any("retry" in t for t in texts)  # the log did capture the client's lines
    for t in texts:
        assert key not in t


async def test_key_echoed_by_a_gateway_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    key = "gw-live-" + "A1b2C3d4" * 4

    async def handler(request: web.Request) -> web.Response:
        sent = request.headers["Authorization"].split(" ", 1)[1]
        return web.json_response({"error": {"message": f"Invalid API key provided: {sent}",
                                            "type": "invalid_request_error", "code": "invalid_api_key"}}, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    caplog.set_level(logging.DEBUG)
    try:
        async with GatewayClient(GatewayConfig("openai", f"http://127.0.0.1:{port}", key, chat_model="m")) as c:
            with pytest.raises(AuthenticationError) as ei:
                await c.chat(hello())
    finally:
        await runner.cleanup()
    assert "Invalid API key provided: ***" in str(ei.value)
    for t in (str(ei.value), repr(ei.value), caplog.text):
        assert key not in t
