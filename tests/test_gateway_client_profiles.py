"""GatewayClient capabilities against every profile's emulator (sandbox.gateways)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator

import av
import pytest
from aiohttp import web
from PIL import Image

from gateway_client import (
    ChatMessage,
    ChatRequest,
    ClientOptions,
    ContextTooLong,
    GatewayClient,
    GatewayConfig,
    ImageRequest,
    InvalidRequest,
    InvalidResponse,
    ModelKind,
    ModelNotFound,
    SpeechAudio,
    Transcription,
    Unsupported,
)
from sandbox.gateways import MODEL_ROLES, PROFILES, GatewayEmulator, expected_reply, expected_thought
from tests.e2e import serve_app

pytestmark = pytest.mark.timeout(60)


def roles(emu: GatewayEmulator) -> dict[str, str | None]:
    return MODEL_ROLES[emu.profile]


def config_for(emu: GatewayEmulator, *, base_url: str | None = None, **kw: str) -> GatewayConfig:
    r = roles(emu)
    args = dict(chat_model=r["chat"] or "", vision_model=r["vision"] or "", image_model=r["image"] or "")
    args.update(kw)
    return GatewayConfig(emu.profile, base_url or emu.root_url, emu.api_key, **args)


@pytest.fixture(params=PROFILES)
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator(request.param) as e:
        yield e


@pytest.fixture
async def client(emu: GatewayEmulator) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(config_for(emu), options=ClientOptions(backoff_base=0.01, backoff_max=0.05)) as c:
        yield c


def png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def api_posts(emu: GatewayEmulator) -> list:
    return [r for r in emu.requests if r.method == "POST"]


# ------------------------------------------------------------------------------------------- chat


async def test_chat_non_streaming(emu: GatewayEmulator, client: GatewayClient) -> None:
    res = await client.chat(ChatRequest([ChatMessage.system("be brief"), ChatMessage.user("hello there")]))
    assert res.text == expected_reply("hello there")
    assert res.reasoning == ""
    assert res.finish_reason == "stop"
    assert res.usage.total_tokens and res.usage.prompt_tokens
    meta = res.meta
    assert meta.profile == emu.profile and meta.operation == "chat" and meta.status == 200
    assert meta.model_requested == roles(emu)["chat"]
    assert meta.model_from_body and meta.model_used
    assert meta.latency_ms is not None and meta.latency_ms > 0
    assert meta.request_id
    sent = api_posts(emu)[-1]
    assert sent.json["stream"] is False and sent.json["messages"][1] == {"role": "user", "content": "hello there"}


async def test_chat_metadata_per_profile(emu: GatewayEmulator, client: GatewayClient) -> None:
    meta = (await client.chat(ChatRequest([ChatMessage.user("meta please")]))).meta
    name = emu.profile
    if name == "aicordcloud":
        assert meta.tier == "fast" and meta.upstream == "groq"
        assert meta.model_from_header == "llama-3.1-8b-instant" and meta.model_from_body == "aicord/fast"
        assert meta.model_used == "llama-3.1-8b-instant"
        assert meta.gateway_latency_ms is not None and meta.ratelimit_remaining is not None
    elif name == "digicord":
        assert meta.provider == "Fireworks" and meta.model_used == roles(emu)["chat"]
    elif name == "aicredits":
        assert meta.model_from_body == "gpt-4o-mini"  # the gateway strips the vendor prefix
    elif name == "aiproxy":
        assert meta.provider == "openai"
        assert meta.ratelimit_limit == 1000 and meta.ratelimit_remaining is not None
        assert meta.ratelimit_reset is not None and 0 <= meta.ratelimit_reset <= 61
    else:
        assert meta.model_from_header == roles(emu)["chat"] and meta.credits_used is not None
        assert len(meta.request_id or "") == 36  # UUID from x-request-id


async def test_chat_streaming_with_usage_and_keepalives(emu: GatewayEmulator, client: GatewayClient) -> None:
    emu.keepalive_comments = True
    emu.stream_chunk_count = 12
    deltas: list[str] = []
    async with client.stream_chat(ChatRequest([ChatMessage.user("stream this")])) as stream:
        async for d in stream:
            deltas.append(d)
    assert len(deltas) >= 10
    assert "".join(deltas) == expected_reply("stream this") == stream.received_text
    res = stream.result
    assert res is not None and res.text == expected_reply("stream this")
    assert res.finish_reason == "stop"
    assert res.usage.total_tokens and res.usage.completion_tokens  # include_usage honoured
    assert res.meta.profile == emu.profile and res.meta.model_from_body
    sent = api_posts(emu)[-1].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_stream_queued_reply_exact_chunks(emu: GatewayEmulator, client: GatewayClient) -> None:
    text = "Line one.\n\nLine two with ünïcode ✓ and a < sign."
    emu.queue_reply(text, chunk_size=3)
    stream = client.stream_chat(ChatRequest([ChatMessage.user("x")]))
    got = [d async for d in stream]
    assert "".join(got) == text
    assert stream.result is not None and stream.result.text == text


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_separated(emu: GatewayEmulator, client: GatewayClient, stream: bool) -> None:
    r = roles(emu)
    for model in {r["reasoning"], r["reasoning_field"]} - {None}:
        req = ChatRequest([ChatMessage.user("why is the sky blue")], model=model)
        if stream:
            s = client.stream_chat(req)
            visible = "".join([d async for d in s])
            res = s.result
            assert res is not None and visible == res.text
        else:
            res = await client.chat(req)
        assert res.text == expected_reply("why is the sky blue"), model
        assert res.reasoning == expected_thought("why is the sky blue"), model
        assert "<think>" not in res.text


async def test_vision_with_data_url_and_http_url(emu: GatewayEmulator, client: GatewayClient) -> None:
    red = png((255, 0, 0))
    res = await client.chat(ChatRequest([ChatMessage.user("what is this?", images=[red])]))
    assert res.text.startswith("I see a 64x48 image, mostly red")
    assert res.meta.model_requested == roles(emu)["vision"]  # images present -> configured vision model
    url = emu.store_file(png((0, 0, 255), (32, 32)), "image/png", ".png")
    res2 = await client.chat(ChatRequest([ChatMessage.user("and this?", images=[url])]))
    assert res2.text.startswith("I see a 32x32 image, mostly blue")
    block = api_posts(emu)[-1].json["messages"][0]["content"][1]
    if emu.profile == "digicord":
        assert block == {"type": "image_url", "image_url": url}  # DigiCord's documented form
    else:
        assert block == {"type": "image_url", "image_url": {"url": url}}


async def test_image_on_model_without_vision_is_refused(emu: GatewayEmulator, client: GatewayClient) -> None:
    with pytest.raises((Unsupported, InvalidRequest)) as ei:
        await client.chat(ChatRequest([ChatMessage.user("see?", images=[png((0, 255, 0))])],
                                      model=roles(emu)["non_vision"]))
    assert ei.value.status == 400


async def test_bad_image_reference_refused_before_sending(emu: GatewayEmulator, client: GatewayClient) -> None:
    with pytest.raises(InvalidRequest) as ei:
        await client.chat(ChatRequest([ChatMessage.user("x", images=["file:///etc/passwd"])]))
    assert "image_url" in (ei.value.field or "")
    assert api_posts(emu) == []


async def test_sampling_options_and_tools_passed_through(emu: GatewayEmulator, client: GatewayClient) -> None:
    res = await client.chat(ChatRequest([ChatMessage.user("json please")], temperature=0.3, max_tokens=200,
                                        response_format={"type": "json_object"}, user="u-1",
                                        extra={"top_p": 0.9}))
    assert json.loads(res.text) == {"answer": expected_reply("json please")}
    sent = api_posts(emu)[-1].json
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 200 and sent["user"] == "u-1"
    assert sent["response_format"] == {"type": "json_object"} and sent["top_p"] == 0.9

    short = await client.chat(ChatRequest([ChatMessage.user("cut me short")], max_tokens=3))
    assert short.finish_reason == "length" and short.text == expected_reply("cut me short")[:12]

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    res = await client.chat(ChatRequest([ChatMessage.user("weather in Paris")], tools=tools, tool_choice="required"))
    assert res.finish_reason == "tool_calls"
    assert res.tool_calls[0]["function"]["name"] == "get_weather"
    assert json.loads(res.tool_calls[0]["function"]["arguments"]) == {"city": "weather in Paris"}
    assert api_posts(emu)[-1].json["tool_choice"] == "required"

    s = client.stream_chat(ChatRequest([ChatMessage.user("weather in Oslo")], tools=tools, tool_choice="required"))
    assert [d async for d in s] == []
    assert s.result is not None and s.result.finish_reason == "tool_calls"
    call = s.result.tool_calls[0]
    assert call["id"] and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "weather in Oslo"}


async def test_gateway_errors_mapped(emu: GatewayEmulator, client: GatewayClient) -> None:
    with pytest.raises(ModelNotFound) as ei:
        await client.chat(ChatRequest([ChatMessage.user("x")], model="no-such/model"))
    assert ei.value.status == 404
    with pytest.raises(ContextTooLong):
        await client.chat(ChatRequest([ChatMessage.user("word " * 2000)], model=roles(emu)["small"]))
    with pytest.raises(InvalidRequest) as ei2:
        await client.chat(ChatRequest([ChatMessage.user("x")], temperature=5))
    assert ei2.value.field == "temperature"


async def test_base_url_with_base_path_accepted(emu: GatewayEmulator) -> None:
    async with GatewayClient(config_for(emu, base_url=emu.api_base + "/")) as c:
        res = await c.chat(ChatRequest([ChatMessage.user("hi")]))
    assert res.text == expected_reply("hi")


# ------------------------------------------------------------------------------------------- models


async def test_list_models_normalised(emu: GatewayEmulator, client: GatewayClient) -> None:
    models = await client.list_models()
    ids = {m.id for m in models}
    r = roles(emu)
    assert r["chat"] in ids
    by_id = {m.id: m for m in models}
    assert by_id[r["chat"]].kind in (ModelKind.CHAT, ModelKind.VISION)
    name = emu.profile
    if name in ("aicredits", "aiproxy"):  # prices are published
        chat = by_id[r["chat"]]
        assert chat.input_price_per_1m == pytest.approx(0.15) and chat.output_price_per_1m == pytest.approx(0.6)
        assert chat.context_window == 128000
    if r["embedding"]:
        assert by_id[r["embedding"]].kind is ModelKind.EMBEDDING
        embs = await client.list_models(kind=ModelKind.EMBEDDING)
        assert embs and all(m.kind is ModelKind.EMBEDDING for m in embs)
    if name == "aiproxy":
        anth = await client.list_models(provider="anthropic")
        assert anth and {m.provider for m in anth} == {"anthropic"}
        models_q = [rq.query for rq in emu.requests if rq.path == "/v1/models"]
        assert {"provider": "anthropic"} in models_q and {"type": "embedding"} in models_q
        assert by_id["gpt-3.5-turbo-instruct"].kind is ModelKind.COMPLETION
    if name == "digicord":
        assert by_id["black-forest-labs/FLUX.1-schnell"].image_price == pytest.approx(0.003375)
    # cached for a short TTL: a second call sends nothing
    before = len(emu.requests)
    await client.list_models()
    assert len(emu.requests) == before


async def test_which_models_see_and_draw(emu: GatewayEmulator, client: GatewayClient) -> None:
    r = roles(emu)
    assert await client.can_see_images(r["vision"])
    assert not await client.can_see_images(r["non_vision"])
    draws = await client.image_models()
    if r["image"]:
        assert r["image"] in {m.id for m in draws} and all(m.can_draw for m in draws)
        assert await client.can_draw(r["image"])
    else:
        assert draws == []
    if emu.profile == "digicord":
        assert {m.id for m in draws} == {"black-forest-labs/FLUX.1-schnell-Free", "black-forest-labs/FLUX.1-schnell",
                                         "black-forest-labs/FLUX.1-pro", "black-forest-labs/FLUX.1.1-pro"}
        vision = await client.vision_models()
        assert {m.id for m in vision} == {"google/gemini-flash-1.5", "meta-llama/llama-3.2-11b-vision-instruct",
                                          "openai/gpt-4o-mini"}
        assert {m.source for m in vision} == {"/api/v1/models"}  # the gateway says so (vision: true)
    if emu.profile in ("aicredits", "openai"):  # the gateway does not say: configuration does
        assert [(m.id, m.source) for m in await client.vision_models()] == [(r["vision"], "config")]


# ------------------------------------------------------------------------------------------- health


async def test_health_uses_each_profiles_probe(emu: GatewayEmulator, client: GatewayClient) -> None:
    h = await client.health()
    assert h.ok is True
    expected = {"aicordcloud": "/health", "digicord": "/api/v1/models", "aicredits": "/health",
                "aiproxy": "/v1/models", "openai": "/v1/models"}[emu.profile]
    assert h.probe == expected == h.detail["probe"] == h.meta.probe
    assert emu.requests[0].path == expected
    if emu.profile == "aicredits":
        assert h.ready is True and h.detail["ready_response"]["db"] == "ok"
    else:
        assert h.ready is None
    if emu.profile == "aicordcloud":
        assert h.detail["response"] == {"ok": True}


async def test_health_reports_failure_without_raising(emu: GatewayEmulator, client: GatewayClient) -> None:
    emu.faults.html_error_next(2, status=503)
    h = await client.health()
    assert h.ok is False and h.detail["status"] == 503 and h.detail["error"] == "UpstreamUnavailable"


# ------------------------------------------------------------------------------------------- images


async def test_generate_images(emu: GatewayEmulator, client: GatewayClient) -> None:
    name = emu.profile
    if name in ("aicordcloud", "aiproxy"):
        with pytest.raises(Unsupported):
            client.validate_image_request(ImageRequest("a cat"))
        with pytest.raises(Unsupported):
            await client.generate_images(ImageRequest("a cat"))
        assert api_posts(emu) == []
        return
    if name == "digicord":
        req = ImageRequest("a red fox", n=2, width=512, height=256, steps=2, seed=42, negative_prompt="blur")
    else:
        req = ImageRequest("a red fox", size="1024x1792")  # OpenAI images take no seed
    res = await client.generate_images(req)
    assert res.images and res.meta.profile == name and res.meta.operation == "images"
    first = res.images[0]
    assert first.mime == "image/png" and first.data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(first.data)) as im:
        assert im.size == (first.width, first.height)
    sent = api_posts(emu)[-1].json
    if name == "digicord":
        assert first.seed == 42 and len(res.images) == 2 and res.images[1].seed == 43
        assert (first.width, first.height) == (512, 256)
        assert sent == {"prompt": "a red fox", "model": "black-forest-labs/FLUX.1-schnell-Free", "n": 2, "steps": 2,
                        "seed": 42, "width": 512, "height": 256, "negative_prompt": "blur"}
        assert res.meta.provider == "Together"
    else:
        assert (first.width, first.height) == (1024, 1792)
        assert isinstance(first.seed, int)  # the seed the gateway reports
        assert sent["size"] == "1024x1792" and sent["response_format"] == "b64_json"
        assert first.revised_prompt == "a red fox"


@pytest.mark.parametrize("profile", ["aicredits", "openai"])  # the OpenAI-style image gateways
async def test_image_url_result_downloaded_with_cap(profile: str) -> None:
    async with GatewayEmulator(profile) as emu, GatewayClient(config_for(emu)) as c:
        res = await c.generate_images(ImageRequest("a blue whale", response_format="url", size="1024x1024"))
        img = res.images[0]
        assert img.url and img.url.startswith(emu.root_url) and img.data.startswith(b"\x89PNG")
        assert (img.width, img.height) == (1024, 1024)
        download = [r for r in emu.requests if r.path.startswith("/_files/")]
        assert download and "Authorization" in download[0].headers  # same origin as the gateway
        small = ClientOptions(max_download_bytes=1000)
        async with GatewayClient(config_for(emu), options=small) as c2:
            with pytest.raises(InvalidResponse, match="cap"):
                await c2.generate_images(ImageRequest("a blue whale", response_format="url", size="1024x1024"))


@pytest.mark.parametrize(
    ("profile", "req", "field", "allowed_has"),
    [
        ("digicord", ImageRequest("x", width=1000), "width", "16"),
        ("digicord", ImageRequest("x", height=1008), "height", "32"),
        ("digicord", ImageRequest("x", width=2048), "width", "1792"),
        ("digicord", ImageRequest("x", steps=5), "steps", 4),
        ("digicord", ImageRequest("x", n=9), "n", 4),
        ("digicord", ImageRequest("x", seed=-1), "seed", "0"),
        ("digicord", ImageRequest("x", quality="hd"), "quality", None),
        ("digicord", ImageRequest(""), "prompt", "text"),
        ("aicredits", ImageRequest("x", size="999x999"), "size", "1792x1024"),
        ("aicredits", ImageRequest("x", n=2), "n", 1),
        ("aicredits", ImageRequest("x", steps=2), "steps", None),
        ("aicredits", ImageRequest("x", negative_prompt="no"), "negative_prompt", None),
        ("aicredits", ImageRequest("x", response_format="png"), "response_format", "b64_json"),
        ("openai", ImageRequest("x", model="openai/dall-e-2", size="1024x1792"), "size", "512x512"),
        ("openai", ImageRequest("x", width=1024), "size", "1024x1024"),
    ],
)
async def test_image_validation_refuses_before_any_call(profile: str, req: ImageRequest, field: str,
                                                        allowed_has: object) -> None:
    async with GatewayEmulator(profile) as emu:
        async with GatewayClient(config_for(emu)) as c:
            with pytest.raises(InvalidRequest) as ei:
                c.validate_image_request(req)
            assert ei.value.field == field
            if allowed_has is not None:
                assert allowed_has in ei.value.allowed or str(allowed_has) in str(ei.value.allowed)
            assert field in str(ei.value) or field in repr(ei.value)
            with pytest.raises(InvalidRequest):
                await c.generate_images(req)
        assert api_posts(emu) == []


async def test_image_validation_normalises() -> None:
    async with GatewayEmulator("digicord") as emu:
        c = GatewayClient(config_for(emu, image_model=""))
        norm = c.validate_image_request(ImageRequest("x", size="768x512"))
        assert (norm.model, norm.width, norm.height, norm.size) == ("black-forest-labs/FLUX.1-schnell-Free",
                                                                    768, 512, None)
        assert c.validate_image_request(ImageRequest("x")).width == 1024


# ------------------------------------------------------------------------- embeddings, completions, credits, audio


async def test_embeddings(emu: GatewayEmulator, client: GatewayClient) -> None:
    model = roles(emu)["embedding"]
    if model is None:
        with pytest.raises(Unsupported):
            await client.embed(["a"], "any")
        assert api_posts(emu) == []
        return
    res = await client.embed(["alpha", "beta", "alpha"], model)
    assert len(res.vectors) == 3 and len(res.vectors[0]) == 1536
    assert res.vectors[0] == res.vectors[2] != res.vectors[1]
    assert res.usage.prompt_tokens and res.meta.operation == "embeddings"
    single = await client.embed("alpha", model, dimensions=8)
    assert len(single.vectors) == 1 and len(single.vectors[0]) == 8


async def test_text_completions(emu: GatewayEmulator, client: GatewayClient) -> None:
    if emu.profile != "aiproxy":
        with pytest.raises(Unsupported):
            await client.complete("Once upon", "m")
        return
    res = await client.complete("Once upon a time", roles(emu)["completion"], max_tokens=500, temperature=0.7)
    assert res.text == expected_reply("Once upon a time") and res.finish_reason == "stop"
    assert res.meta.provider == "openai" and res.usage.total_tokens
    assert api_posts(emu)[-1].json == {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time",
                                       "max_tokens": 500, "temperature": 0.7}


async def test_credits(emu: GatewayEmulator, client: GatewayClient) -> None:
    if emu.profile != "aicredits":
        with pytest.raises(Unsupported):
            await client.credits()
        return
    bal = await client.credits()
    assert bal.amount == 1000.0 and bal.currency == "INR" and bal.meta.status == 200
    emu.balance_inr = 12.5
    assert (await client.credits()).amount == 12.5


async def test_speech_and_transcription(emu: GatewayEmulator, client: GatewayClient) -> None:
    r = roles(emu)
    if r["tts"] is None:
        assert not client.profile.supports("speech") and not client.profile.supports("transcriptions")
        assert client.profile.voices == () and client.profile.speech_formats == ()
        with pytest.raises(Unsupported):
            await client.speech("hi", "m", "alloy", "mp3")
        with pytest.raises(Unsupported):
            await client.transcribe(b"abc", "mp3", "m")
        assert api_posts(emu) == []
        return
    profile = client.profile
    assert profile.supports("speech") and profile.supports("transcriptions")
    assert profile.default_voice in profile.voices and profile.speech_formats[:4] == ("mp3", "opus", "aac", "flac")
    said = "Hello from Gatecord"
    speech = await client.speech(said, profile.default_speech_model, profile.default_voice, "mp3")
    assert isinstance(speech, SpeechAudio) and speech.format == "mp3"
    with av.open(io.BytesIO(speech.data)) as container:
        assert container.format.name == "mp3"
        seconds = sum(f.samples for f in container.decode(audio=0)) / container.streams.audio[0].rate
    assert abs(seconds - len(said) / 15) <= 0.1
    assert speech.meta.operation == "speech" and speech.meta.status == 200
    assert speech.meta.model_used and speech.meta.model_used.endswith("tts-1")
    heard = await client.transcribe(speech.data, "mp3", profile.default_transcription_model, language="en")
    assert isinstance(heard, Transcription) and heard.text == said
    assert heard.meta.operation == "transcriptions" and heard.meta.model_used
    assert emu.received_audio == [speech.data]  # exactly the bytes given
    if emu.profile == "openai":  # multipart with verbose_json: the decoded duration and the OpenAI headers
        assert heard.duration == pytest.approx(seconds, abs=0.01)
        assert api_posts(emu)[-1].form == {"model": "whisper-1", "language": "en", "response_format": "verbose_json",
                                           "file": {"filename": "audio.mp3", "content_type": "audio/mp3"}}
        assert speech.meta.credits_used and heard.meta.credits_used and speech.meta.request_id
        assert speech.meta.model_used == "openai/tts-1" and heard.meta.model_used == "openai/whisper-1"
    else:  # AICredits: the documented JSON style, which gives no duration
        assert heard.duration is None
        sent = api_posts(emu)[-1].json
        assert sent["input_audio"] == {"data": base64.b64encode(speech.data).decode(), "format": "mp3"}
        assert "response_format" not in sent


async def test_every_speech_format_decodes(emu: GatewayEmulator, client: GatewayClient) -> None:
    profile = client.profile
    if not profile.speech_formats:
        return
    said = "Every format the gateway speaks is real audio."
    for fmt in profile.speech_formats:
        speech = await client.speech(said, profile.default_speech_model, profile.voices[-1], fmt)
        assert speech.format == fmt
        opts = {"format": "s16le", "options": {"sample_rate": "24000", "ch_layout": "mono"}} if fmt == "pcm" else {}
        with av.open(io.BytesIO(speech.data), **opts) as container:
            samples = sum(f.samples for f in container.decode(audio=0))
            seconds = samples / container.streams.audio[0].codec_context.sample_rate
        assert abs(seconds - len(said) / 15) <= 0.1, fmt
        heard = await client.transcribe(speech.data, fmt, profile.default_transcription_model)
        if fmt in ("aac", "pcm"):  # no container metadata to carry the text
            assert heard.text.startswith(f"Heard {seconds:.1f} s of audio (")
        else:
            assert heard.text == said
    assert emu.received_audio and len(emu.received_audio) == len(profile.speech_formats)


async def test_speech_requests_checked_before_sending(emu: GatewayEmulator, client: GatewayClient) -> None:
    profile = client.profile
    if not profile.supports("speech"):
        return
    with pytest.raises(InvalidRequest) as ei:
        await client.speech("x" * (profile.max_speech_chars + 1), profile.default_speech_model)
    assert ei.value.field == "input"
    with pytest.raises(InvalidRequest) as ei:
        await client.speech("hi", profile.default_speech_model, "robot")
    assert ei.value.field == "voice" and "alloy" in (ei.value.allowed or "")
    with pytest.raises(InvalidRequest) as ei:
        await client.speech("hi", profile.default_speech_model, "alloy", "ogg")
    assert ei.value.field == "response_format"
    with pytest.raises(InvalidRequest) as ei:
        await client.transcribe(b"", "ogg", profile.default_transcription_model)
    assert ei.value.field == "audio"
    assert api_posts(emu) == []


async def test_undecodable_audio_is_the_gateways_invalid_request(emu: GatewayEmulator, client: GatewayClient) -> None:
    junk = b"not audio, only words " * 20
    if not client.profile.supports("transcriptions"):
        with pytest.raises(Unsupported, match="transcriptions is not offered"):
            await client.transcribe(junk, "ogg", "whisper-1")
        assert emu.received_audio == []
        return
    with pytest.raises(InvalidRequest, match="Could not decode the audio file") as ei:
        await client.transcribe(junk, "ogg", client.profile.default_transcription_model)
    assert ei.value.status == 400
    assert emu.received_audio == [junk]


async def test_empty_audio_and_missing_text_are_invalid_responses() -> None:
    answers = {"speech": web.Response(body=b"", content_type="audio/mpeg"),
               "transcriptions": web.json_response({"text": "", "duration": 1.0})}

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return answers[request.path.rsplit("/", 1)[-1]]

    app = web.Application()
    app.router.add_post("/v1/audio/speech", handler)
    app.router.add_post("/v1/audio/transcriptions", handler)
    async with serve_app(app) as url, GatewayClient(GatewayConfig("openai", url, "k")) as c:
        with pytest.raises(InvalidResponse, match="speech answer is empty"):
            await c.speech("hi", "tts-1")
        with pytest.raises(InvalidResponse, match="no text"):
            await c.transcribe(b"OggS", "ogg", "whisper-1")
        answers["speech"] = web.json_response({"audio": ""})
        with pytest.raises(InvalidResponse, match="no audio"):
            await c.speech("hi", "tts-1")


async def test_gateway_side_invalid_request_names_field(emu: GatewayEmulator, client: GatewayClient) -> None:
    with pytest.raises(InvalidRequest) as ei:
        await client.chat(ChatRequest([{"role": "robot", "content": "x"}]))
    assert ei.value.status == 400
    if emu.profile in ("digicord", "aiproxy", "openai"):  # their error shape carries "param"
        assert ei.value.field == "messages[0]"


# ------------------------------------------------------------------------------------------- profiles as data


async def test_new_gateway_is_a_profile_entry() -> None:
    """Another OpenAI-compatible gateway: x-api-key auth, its own headers and probe — data only, no code."""
    from gateway_client import PROFILES as CLIENT_PROFILES
    from gateway_client import Profile, register_profile
    from gateway_client.profiles import HealthProbe

    register_profile(Profile(
        name="keyed-gateway",
        auth_style="x-api-key",
        endpoints={"chat": "chat/completions"},
        health=HealthProbe("/", "any_2xx"),
        meta_headers={"tier": ("x-aicord-tier",), "upstream": ("x-aicord-upstream",)},
    ))
    register_profile(Profile(
        name="multipart-stt",
        endpoints={"chat": "chat/completions", "speech": "audio/speech", "transcriptions": "audio/transcriptions"},
        transcription_style="multipart",
    ))
    try:
        async with GatewayEmulator("aicordcloud") as emu:
            async with GatewayClient(GatewayConfig("keyed-gateway", emu.root_url, emu.api_key,
                                                   chat_model="aicord/smart")) as c:
                res = await c.chat(ChatRequest([ChatMessage.user("hi")]))
                assert res.text == expected_reply("hi") and res.meta.tier == "smart" and res.meta.upstream == "openai"
                assert (await c.health()).probe == "/"
            headers = api_posts(emu)[-1].headers
            assert headers.get("x-api-key") == "<redacted>" and "Authorization" not in headers
        async with GatewayEmulator("openai") as emu:
            async with GatewayClient(GatewayConfig("multipart-stt", emu.root_url, emu.api_key)) as c:
                speech = await c.speech("multipart works", "openai/tts-1", "alloy", "wav")
                assert (await c.transcribe(speech.data, "wav", "openai/whisper-1")).text == "multipart works"
            form = api_posts(emu)[-1].form
            assert form["model"] == "openai/whisper-1" and form["file"]["filename"] == "audio.wav"
            assert "response_format" not in form  # the profile does not ask for one
    finally:
        CLIENT_PROFILES.pop("keyed-gateway", None)
        CLIENT_PROFILES.pop("multipart-stt", None)
