"""The one retry helper: what it repeats, how long it waits, when it gives up (no real sleeping)."""

from __future__ import annotations

import pytest

from gateway_client import (
    AuthenticationError,
    ChatMessage,
    ChatRequest,
    ClientOptions,
    GatewayClient,
    GatewayConfig,
    GatewayError,
    GatewayTimeout,
    InvalidRequest,
    RateLimited,
    StreamInterrupted,
    UpstreamUnavailable,
)
from gateway_client.errors import InvalidResponse
from gateway_client.meta import CallMeta
from gateway_client.retry import Jitter, RetryPolicy, call_with_retries
from sandbox.gateways import MODEL_ROLES, GatewayEmulator, expected_reply

pytestmark = pytest.mark.timeout(30)


class Clock:
    """Records the waits asked for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def upper_jitter(low: float, high: float) -> float:
    return high


def policy(clock: Clock, *, max_retries: int = 3, backoff_base: float = 0.5, backoff_max: float = 8.0,
           max_wait: float = 30.0, jitter: Jitter = upper_jitter) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max,
                       max_wait=max_wait, jitter=jitter, sleep=clock.sleep)


def not_connected() -> UpstreamUnavailable:
    err = UpstreamUnavailable("cannot connect")
    err.request_sent, err.connection_error = False, True
    return err


def dropped_after_send() -> UpstreamUnavailable:
    err = UpstreamUnavailable("connection reset")
    err.connection_error = True  # request_sent stays True: the body may have arrived
    return err


class Script:
    """A call that raises the given errors in turn, then answers 'ok'; counts its attempts."""

    def __init__(self, *errors: GatewayError, meta_setup: dict[str, object] | None = None) -> None:
        self.errors = list(errors)
        self.metas: list[CallMeta] = []
        self.meta_setup = meta_setup or {}

    async def __call__(self, meta: CallMeta) -> str:
        self.metas.append(meta)
        if self.errors:
            for k, v in self.meta_setup.items():
                setattr(meta, k, v)
            raise self.errors.pop(0)
        return "ok"

    @property
    def calls(self) -> int:
        return len(self.metas)


def new_meta() -> CallMeta:
    return CallMeta(profile="openai", gateway="test", operation="chat")


async def run(script: Script, pol: RetryPolicy, *, safe: bool = True, max_retries: int | None = None) -> str:
    return await call_with_retries(script, new_meta, pol, safe=safe, what="test chat", max_retries=max_retries)


# ------------------------------------------------------------------------------ what is retried

RETRIED_EVEN_IF_UNSAFE = [
    pytest.param(lambda: RateLimited("slow down", status=429), id="429"),
    pytest.param(not_connected, id="never-connected"),
]
RETRIED_ONLY_IF_SAFE = [
    pytest.param(lambda: UpstreamUnavailable("bad gateway", status=502), id="5xx"),
    pytest.param(lambda: GatewayTimeout("no answer"), id="timeout"),
    pytest.param(dropped_after_send, id="dropped-after-send"),
]
NEVER_RETRIED = [
    pytest.param(lambda: InvalidRequest("bad temperature", status=400), id="400"),
    pytest.param(lambda: AuthenticationError("bad key", status=401), id="401"),
    pytest.param(lambda: UpstreamUnavailable("teapot", status=418), id="other-4xx-as-unavailable"),
    pytest.param(lambda: InvalidResponse("not JSON", status=200), id="unreadable-2xx"),
    pytest.param(lambda: StreamInterrupted("cut", partial_text="Hel",
                                           cause=RateLimited("mid-stream 429", status=429)), id="mid-stream"),
]


@pytest.mark.parametrize("make", RETRIED_EVEN_IF_UNSAFE)
@pytest.mark.parametrize("safe", [True, False])
async def test_refused_or_unsent_requests_are_retried_even_when_unsafe(make, safe: bool) -> None:
    clock = Clock()
    script = Script(make())
    assert await run(script, policy(clock), safe=safe) == "ok"
    assert script.calls == 2 and [m.attempts for m in script.metas] == [1, 2]
    assert len(clock.waits) == 1


@pytest.mark.parametrize("make", RETRIED_ONLY_IF_SAFE)
async def test_failures_after_the_request_was_sent_are_retried_only_when_safe(make) -> None:
    clock = Clock()
    script = Script(make())
    assert await run(script, policy(clock), safe=True) == "ok"
    assert script.calls == 2

    clock = Clock()
    err = make()
    script = Script(err)
    with pytest.raises(GatewayError) as ei:
        await run(script, policy(clock), safe=False)  # e.g. image generation: it may have been charged
    assert ei.value is err and script.calls == 1 and clock.waits == []


@pytest.mark.parametrize("make", NEVER_RETRIED)
@pytest.mark.parametrize("safe", [True, False])
async def test_errors_a_repeat_cannot_cure_are_raised_at_once(make, safe: bool) -> None:
    clock = Clock()
    err = make()
    script = Script(err)
    with pytest.raises(GatewayError) as ei:
        await run(script, policy(clock), safe=safe)
    assert ei.value is err and script.calls == 1 and clock.waits == []


# ------------------------------------------------------------------------------ how long it waits


async def test_waits_what_retry_after_asked() -> None:
    clock = Clock()
    script = Script(RateLimited("slow", status=429, retry_after=3.0), UpstreamUnavailable("x", status=503,
                                                                                         retry_after=1.5))
    assert await run(script, policy(clock)) == "ok"
    assert clock.waits == [3.0, 1.5]


async def test_waits_for_the_rate_limit_window_when_no_retry_after() -> None:
    clock = Clock()
    script = Script(RateLimited("slow", status=429), meta_setup={"ratelimit_reset": 7.0, "ratelimit_remaining": 0})
    assert await run(script, policy(clock)) == "ok"
    assert clock.waits == [7.0]


async def test_reset_header_ignored_while_the_window_has_requests_left() -> None:
    clock = Clock()
    script = Script(RateLimited("slow", status=429), meta_setup={"ratelimit_reset": 7.0, "ratelimit_remaining": 4})
    assert await run(script, policy(clock)) == "ok"
    assert clock.waits == [0.5]  # backoff, not the window


async def test_backoff_doubles_up_to_its_cap_with_the_injected_jitter() -> None:
    clock = Clock()
    script = Script(*(UpstreamUnavailable("down", status=503) for _ in range(5)))
    assert await run(script, policy(clock, max_retries=5, backoff_base=1.0, backoff_max=4.0)) == "ok"
    assert clock.waits == [1.0, 2.0, 4.0, 4.0, 4.0]

    clock = Clock()
    lows = policy(clock, max_retries=2, backoff_base=1.0, jitter=lambda low, high: low)
    assert await run(Script(UpstreamUnavailable("down", status=503)), lows) == "ok"
    assert clock.waits == [0.5]  # jitter draws from [ceiling/2, ceiling]


@pytest.mark.parametrize("meta_setup, retry_after", [({}, 45.0), ({"ratelimit_reset": 60.0,
                                                                   "ratelimit_remaining": 0}, None)])
async def test_a_wait_above_the_cap_raises_at_once_saying_how_long(meta_setup, retry_after) -> None:
    clock = Clock()
    err = RateLimited("slow", status=429, retry_after=retry_after)
    script = Script(err, meta_setup=meta_setup)
    with pytest.raises(RateLimited) as ei:
        await run(script, policy(clock, max_wait=30.0))
    assert ei.value is err and ei.value.retry_after in (45.0, 60.0)
    assert script.calls == 1 and clock.waits == []


# ------------------------------------------------------------------------------ when it gives up


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_gives_up_after_max_retries_with_the_last_error(max_retries: int) -> None:
    clock = Clock()
    errors = [UpstreamUnavailable(f"down {i}", status=503) for i in range(max_retries + 2)]
    script = Script(*errors)
    with pytest.raises(UpstreamUnavailable) as ei:
        await run(script, policy(clock, max_retries=max_retries))
    assert script.calls == max_retries + 1 and ei.value is errors[max_retries]
    assert len(clock.waits) == max_retries


async def test_a_per_call_limit_overrides_the_policy() -> None:
    clock = Clock()
    script = Script(UpstreamUnavailable("down", status=503))
    with pytest.raises(UpstreamUnavailable):
        await run(script, policy(clock, max_retries=3), max_retries=0)  # e.g. health probes
    assert script.calls == 1 and clock.waits == []


# ------------------------------------------------------------------------------ through the client


def _client(emu: GatewayEmulator, clock: Clock, options: ClientOptions) -> GatewayClient:
    config = GatewayConfig(emu.profile, emu.root_url, emu.api_key, chat_model=MODEL_ROLES[emu.profile]["chat"] or "")
    return GatewayClient(config, options=options, sleep=clock.sleep, jitter=upper_jitter)


def _posts(emu: GatewayEmulator) -> list:
    return [r for r in emu.requests if r.method == "POST"]


async def test_a_stream_is_retried_while_opening_never_after_its_first_byte() -> None:
    clock = Clock()
    async with GatewayEmulator("openai") as emu, _client(emu, clock, ClientOptions(max_retries=3)) as c:
        emu.faults.fail_next(1, status=429, retry_after=2)  # refused before the stream opened: retried
        stream = c.stream_chat(ChatRequest([ChatMessage.user("hello")]))
        assert "".join([d async for d in stream]) == expected_reply("hello")
        assert clock.waits == [2.0] and len(_posts(emu)) == 2

        emu.stream_chunk_count = 8
        emu.faults.cut_stream_next(1, after_chunks=1)  # cut after the first chunk reached us: never repeated
        got: list[str] = []
        with pytest.raises(StreamInterrupted) as ei:
            async with c.stream_chat(ChatRequest([ChatMessage.user("hello")])) as stream:
                async for d in stream:
                    got.append(d)
        assert got and ei.value.partial_text == "".join(got)
        assert clock.waits == [2.0] and len(_posts(emu)) == 3


async def test_the_client_waits_the_gateways_retry_after() -> None:
    clock = Clock()
    async with GatewayEmulator("openai") as emu, _client(emu, clock, ClientOptions(backoff_base=0.01)) as c:
        emu.faults.fail_next(1, status=429, retry_after=0.3)
        res = await c.chat(ChatRequest([ChatMessage.user("hello")]))
    assert res.text == expected_reply("hello") and res.meta.attempts == 2
    assert clock.waits == [0.3]  # the gateway's Retry-After, not the 10 ms backoff
