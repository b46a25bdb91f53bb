"""Unit tests of the gateway client's pure parts: SSE decoding, error mapping, metadata, reasoning, profiles."""

from __future__ import annotations

import json
import pickle
import time

import pytest
from multidict import CIMultiDict

from gateway_client import (
    PROFILES,
    AuthenticationError,
    CallMeta,
    ChatMessage,
    ContextTooLong,
    GatewayConfig,
    GatewayError,
    GatewayTimeout,
    InsufficientCredits,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    StreamInterrupted,
    Unsupported,
    UpstreamUnavailable,
    get_profile,
)
from gateway_client.errors import error_from_payload, error_from_response, parse_retry_after, redact
from gateway_client.meta import apply_body, apply_headers, parse_reset
from gateway_client.reasoning import ThinkSplitter, split_think
from gateway_client.sse import SSEDecoder

KEY = "sk-" + "ab12" * 16


# ---------------------------------------------------------------- SSE


def _events(chunks: list[bytes]) -> list[tuple[str | None, bytes]]:
    dec = SSEDecoder()
    out: list[tuple[str | None, bytes]] = []
    for c in chunks:
        out.extend(dec.feed(c))
    out.extend(dec.finish())
    return out


def test_sse_basic_events_and_done() -> None:
    raw = b'data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n'
    assert _events([raw]) == [(None, b'{"a":1}'), (None, b'{"a":2}'), (None, b"[DONE]")]


def test_sse_split_anywhere_gives_same_events() -> None:
    raw = (b': keep-alive\n\ndata: {"x":"h\\u00e9llo"}\r\n\r\n'
           b'event: error\ndata: {"error":{"message":"boom"}}\n\ndata: [DONE]\n\n')
    whole = _events([raw])
    assert whole == [(None, b'{"x":"h\\u00e9llo"}'), ("error", b'{"error":{"message":"boom"}}'), (None, b"[DONE]")]
    for cut in range(1, len(raw)):
        assert _events([raw[:cut], raw[cut:]]) == whole, cut
    # byte at a time
    assert _events([raw[i:i + 1] for i in range(len(raw))]) == whole


def test_sse_comments_skipped_and_multiline_data_joined() -> None:
    raw = b":ping\n: another\ndata: line1\ndata: line2\n\n:\n\n"
    assert _events([raw]) == [(None, b"line1\nline2")]


def test_sse_tolerates_missing_blank_lines() -> None:
    raw = b'data: {"a":1}\ndata: {"a":2}\ndata: [DONE]\n'
    assert _events([raw]) == [(None, b'{"a":1}'), (None, b'{"a":2}'), (None, b"[DONE]")]


def test_sse_last_event_without_newline_is_flushed() -> None:
    dec = SSEDecoder()
    assert dec.feed(b'data: {"a":1}') == []
    assert dec.pending
    assert dec.finish() == [(None, b'{"a":1}')]


def test_sse_data_without_space_and_unknown_fields() -> None:
    assert _events([b'id: 7\nretry: 100\ndata:{"a":1}\n\n']) == [(None, b'{"a":1}')]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, {"error": {"message": "Unauthorized", "type": "authentication_error"}}, AuthenticationError),
        (400, {"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "bad", "param": None}},
         AuthenticationError),
        (429, {"error": {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "slow down"}},
         RateLimited),
        (404, {"error": {"type": "invalid_request_error", "code": "model_not_found", "message": "no"}}, ModelNotFound),
        (400, {"error": {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "x"}},
         ContextTooLong),
        (400, {"error": {"message": "Bad prompt", "type": "invalid_request_error", "code": 400}}, InvalidRequest),
        (402, {"error": {"message": "Insufficient balance", "type": "billing", "code": 402}}, InsufficientCredits),
        (429, {"error": {"message": "You exceeded your quota", "type": "insufficient_quota", "code": None}},
         QuotaExceeded),
        (403, {"error": {"message": "Forbidden", "type": "permission_error"}}, PermissionDenied),
        (503, {"error": {"message": "overloaded", "type": "server_error", "code": 503}}, UpstreamUnavailable),
        (504, {"error": {"message": "upstream timed out"}}, GatewayTimeout),
        (400, {"error": {"message": "audio", "code": "audio_not_supported_by_model"}}, Unsupported),
        (422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}, InvalidRequest),
        (404, {"error": "Model xyz not found"}, ModelNotFound),
        (500, {"message": "internal"}, UpstreamUnavailable),
    ],
)
def test_error_mapping_from_documented_shapes(status: int, body: dict, cls: type) -> None:
    err = error_from_response(status, json.dumps(body).encode(), {})
    assert type(err) is cls
    assert err.status == status
    assert err.message


def test_error_code_number_string_or_null() -> None:
    e1 = error_from_payload({"error": {"message": "m", "type": "t", "code": 429}})
    assert isinstance(e1, RateLimited) and e1.code == "429" and e1.status == 429
    e2 = error_from_payload({"error": {"message": "m", "code": "rate_limit_exceeded"}}, status=200)
    assert isinstance(e2, RateLimited) and e2.code == "rate_limit_exceeded"
    e3 = error_from_payload({"error": {"message": "m", "code": None, "type": "server_error"}})
    assert isinstance(e3, UpstreamUnavailable) and e3.code is None


def test_invalid_request_carries_field() -> None:
    err = error_from_response(
        400, b'{"error":{"message":"bad temperature","param":"temperature","code":"invalid_value"}}')
    assert isinstance(err, InvalidRequest)
    assert err.field == "temperature"


def test_html_502_page_is_mapped() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>" \
           b"<hr><center>nginx</center></body></html>"
    err = error_from_response(502, page, {"content-type": "text/html"})
    assert isinstance(err, UpstreamUnavailable)
    assert err.status == 502
    assert "502 Bad Gateway" in str(err)
    assert "<html>" not in str(err)


def test_plain_text_error_and_retry_after_header() -> None:
    err = error_from_response(429, b"Too Many Requests", {"retry-after": "7"})
    assert isinstance(err, RateLimited)
    assert err.retry_after == 7.0
    assert "Too Many Requests" in str(err)


def test_retry_after_variants() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    v = parse_retry_after({"retry-after": date})
    assert v is not None and 55 <= v <= 61
    assert parse_retry_after({}, {"retry_after": 2}) == 2.0
    assert parse_retry_after({}) is None


def test_api_key_never_in_error_str_or_repr() -> None:
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}", "type": "authentication_error"}})
    err = error_from_response(401, body.encode(), {}, secrets=[KEY])
    assert isinstance(err, AuthenticationError)
    for text in (str(err), repr(err), err.message, str(err.args)):
        assert KEY not in text
        assert KEY[:20] not in text
    # even without knowing the exact key, key-shaped strings and bearer values are scrubbed
    assert KEY not in redact(f"header Authorization: Bearer {KEY}")
    assert "abcdefghijkl" not in redact("Bearer abcdefghijklmnop")


def test_stream_interrupted_keeps_partial_text_and_cause() -> None:
    cause = error_from_payload({"error": {"message": "upstream died", "code": 502}})
    err = StreamInterrupted("stream failed", partial_text="Hello wor", cause=cause)
    assert err.partial_text == "Hello wor"
    assert err.status == 502 and isinstance(err.cause, UpstreamUnavailable)
    assert isinstance(err, GatewayError)
    clone = pickle.loads(pickle.dumps(err))
    assert clone.partial_text == "Hello wor" and clone.status == 502


def test_gateway_config_repr_hides_key() -> None:
    cfg = GatewayConfig("openai", "http://127.0.0.1:1", KEY, chat_model="m")
    assert KEY not in repr(cfg) and KEY not in str(cfg)
    assert "m" in repr(cfg)


# ---------------------------------------------------------------- metadata


def test_meta_from_headers_per_profile() -> None:
    meta = CallMeta(profile="aicordcloud")
    apply_headers(meta, {"x-aicord-tier": "pro", "x-aicord-model": "llama-70b", "x-aicord-upstream": "groq",
                         "x-aicord-latency-ms": "123", "x-ratelimit-remaining": "42"},
                  PROFILES["aicordcloud"].meta_headers)
    assert (meta.tier, meta.model_used, meta.upstream, meta.gateway_latency_ms, meta.ratelimit_remaining) == \
        ("pro", "llama-70b", "groq", 123.0, 42)

    meta = CallMeta(profile="openai")
    apply_headers(meta, {"x-request-id": "r-1", "x-credits-used": "0.25", "x-model-used": "gpt-b",
                         "x-fallback-from": "gpt-a", "x-fallback-depth": "1"}, PROFILES["openai"].meta_headers)
    apply_body(meta, {"model": "gpt-b-2024", "id": "chatcmpl-1"})
    assert meta.request_id == "r-1" and meta.credits_used == 0.25
    assert meta.model_used == "gpt-b" and meta.model_from_header == "gpt-b" and meta.model_from_body == "gpt-b-2024"
    assert meta.fallback_from == "gpt-a" and meta.fallback_depth == 1 and meta.fell_back

    meta = CallMeta(profile="digicord")
    apply_headers(meta, {}, PROFILES["digicord"].meta_headers)
    apply_body(meta, {"model": "meta-llama/x", "provider": "Fireworks", "id": "66f5"})
    assert meta.model_used == "meta-llama/x" and meta.provider == "Fireworks" and meta.request_id == "66f5"


def test_rate_limit_reset_formats() -> None:
    now = 1_699_000_000.0
    assert parse_reset("1699000030", now=now) == 30.0
    assert parse_reset("20", now=now) == 20.0
    assert parse_reset("6m0s") == 360.0
    assert parse_reset("250ms") == 0.25
    assert parse_reset("1h2m3.5s") == 3723.5
    assert parse_reset("soon") is None
    meta = CallMeta(profile="aiproxy")
    headers = CIMultiDict({"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "950",
                           "X-RateLimit-Reset": str(int(time.time()) + 100)})
    apply_headers(meta, headers, PROFILES["aiproxy"].meta_headers)
    assert meta.ratelimit_limit == 1000 and meta.ratelimit_remaining == 950
    assert meta.ratelimit_reset is not None and 95 <= meta.ratelimit_reset <= 101


# ---------------------------------------------------------------- reasoning


def test_split_think_whole_text() -> None:
    assert split_think("<think>plan it</think>\n\nAnswer") == ("Answer", "plan it")
    assert split_think("no tags 1 < 2") == ("no tags 1 < 2", "")


def test_think_splitter_tags_cut_across_deltas() -> None:
    text = "<think>step one, step two</think>Visible <b>answer</b> 3<4"
    for cut in range(1, len(text)):
        for cut2 in range(cut, len(text)):
            sp = ThinkSplitter()
            vis, rea = [], []
            for piece in (text[:cut], text[cut:cut2], text[cut2:]):
                v, r = sp.feed(piece)
                vis.append(v)
                rea.append(r)
            v, r = sp.flush()
            vis.append(v)
            rea.append(r)
            assert "".join(vis) == "Visible <b>answer</b> 3<4", (cut, cut2)
            assert "".join(rea) == "step one, step two", (cut, cut2)


def test_think_splitter_fast_path_returns_same_object() -> None:
    sp = ThinkSplitter()
    s = "plain delta"
    assert sp.feed(s)[0] is s


# ---------------------------------------------------------------- profiles & messages


def test_profiles_are_data() -> None:
    assert set(PROFILES) == {"aicordcloud", "digicord", "aicredits", "aiproxy", "openai"}
    assert get_profile("DigiCord").path("chat") == "/api/v1/chat/completions"
    assert get_profile("aicredits").path("credits") == "/v1/credits"
    assert get_profile("aicordcloud").health.path == "/health"
    assert get_profile("aiproxy").path("completions") == "/v1/completions"
    assert get_profile("openai").path("completions") is None
    with pytest.raises(KeyError, match="known"):
        get_profile("nope")


def test_chat_message_user_with_images() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 10
    msg = ChatMessage.user("what is this?", images=["https://example.test/a.png", png])
    assert msg.has_images
    assert msg.content[0] == {"type": "text", "text": "what is this?"}
    assert msg.content[1] == {"type": "image_url", "image_url": {"url": "https://example.test/a.png"}}
    assert msg.content[2]["image_url"]["url"].startswith("data:image/png;base64,")
    assert ChatMessage.user("hi").content == "hi"


# ---------------------------------------------------------------- model catalogues


def test_catalog_shapes_normalised() -> None:
    from gateway_client import ModelKind
    from gateway_client.catalog import merge_models, parse_model_list
    from gateway_client.profiles import ModelSource

    flux = parse_model_list(["black-forest-labs/FLUX.1-schnell-Free", "black-forest-labs/FLUX.1-schnell ($0,003375)"],
                            ModelSource("images/flux/models", kind=ModelKind.IMAGE))
    assert [(m.id, m.kind, m.image_price) for m in flux] == [
        ("black-forest-labs/FLUX.1-schnell-Free", ModelKind.IMAGE, None),
        ("black-forest-labs/FLUX.1-schnell", ModelKind.IMAGE, 0.003375)]

    aiproxy = parse_model_list({"object": "list", "data": [
        {"id": "gpt-4-turbo", "object": "model", "provider": "openai", "type": "chat", "context_window": 128000,
         "pricing": {"input": 0.01, "output": 0.03}}]}, ModelSource("models", price_unit="per_1k"))
    m = aiproxy[0]
    assert (m.kind, m.provider, m.context_window, m.input_price_per_1m, m.output_price_per_1m) == \
        (ModelKind.CHAT, "openai", 128000, 10.0, 30.0)

    aicredits = parse_model_list({"object": "list", "data": [
        {"id": "openai/gpt-4o-mini", "name": "GPT-4o Mini", "provider": "openai", "context_window": 128000,
         "input_cost_per_1m": 0.15, "output_cost_per_1m": 0.60},
        {"id": "openai/text-embedding-3-small", "provider": "openai", "input_cost_per_1m": 0.02}]},
        ModelSource("/api/models"))
    assert (aicredits[0].name, aicredits[0].input_price_per_1m, aicredits[0].output_price_per_1m) == \
        ("GPT-4o Mini", 0.15, 0.6)
    assert aicredits[1].kind is ModelKind.EMBEDDING

    openrouter_like = parse_model_list({"data": [
        {"id": "x/vl", "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
         "pricing": {"prompt": "0.000001", "completion": "0.000002"}, "context_length": 32000}]},
        ModelSource("models", price_unit="per_token"))
    assert (openrouter_like[0].kind, openrouter_like[0].input_price_per_1m, openrouter_like[0].context_window) == \
        (ModelKind.VISION, 1.0, 32000)

    vision = ModelSource("vision-models", kind=ModelKind.VISION)
    merged = merge_models([parse_model_list({"data": [{"id": "a"}, {"id": "b"}]}, ModelSource("models")),
                           parse_model_list({"data": [{"id": "b"}]}, vision)])
    assert [(m.id, m.kind) for m in merged] == [("a", ModelKind.CHAT), ("b", ModelKind.VISION)]
