"""Embeddings, images (OpenAI-shaped and DigiCord FLUX) and audio (speech, transcriptions).

Shapes chosen where documents are silent:

* DigiCord ``POST /images/flux/generations`` answers (Together-like, which serves these FLUX
  models): ``{"id", "object": "list", "created", "model", "provider": "Together", "seed",
  "data": [{"index", "url", "b64_json", "seed", "width", "height"}]}`` — both ``url`` (served by
  the emulator) and ``b64_json`` unless ``response_format`` (``url`` | ``b64_json``) picks one.
  Image *i* uses ``seed + i``. Defaults: model FLUX.1-schnell-Free, steps 4, n 1, 1024×1024;
  limits: steps 1–4, n 1–4, width multiple of 16 and height multiple of 32, each 64–1792.
* OpenAI-shaped image answers (aicredits, openai) add ``seed`` to each ``data`` item (and
  ``revised_prompt`` for DALL·E 3); an optional ``seed`` request field is honoured.
* Speech answers real audio in ``response_format`` (see ``audio``: ~15 characters per second, the
  text in the container's metadata where the format has any).
* Transcriptions answer ``{"text": ...}``; aicredits takes JSON ``input_audio {data, format}``,
  the openai profile takes multipart ``file`` or the same JSON, and ``response_format``
  (json, text, verbose_json with the decoded ``duration``) in both. Every audio payload received is
  kept, byte for byte, in ``GatewayEmulator.received_audio``; bytes FFmpeg cannot decode get 400
  "Could not decode the audio file.".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import answers, audio, images
from .errors import GatewayError
from .profiles import Profile

if TYPE_CHECKING:
    from .app import GatewayEmulator, Handler

VOICES = {"alloy", "echo", "fable", "onyx", "nova", "shimmer"}
OPENAI_EXTRA_VOICES = {"ash", "ballad", "coral", "sage", "verse"}


def _int_field(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayError("invalid_request", f"Invalid '{name}': must be an integer.", param=name)
    if not lo <= value <= hi:
        raise GatewayError("invalid_request", f"Invalid '{name}': must be between {lo} and {hi} (got {value}).",
                           param=name)
    return value


def _prompt(body: dict[str, Any], max_len: int) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise GatewayError("invalid_request", "'prompt' is required.", param="prompt")
    if len(prompt) > max_len:
        raise GatewayError("invalid_request", f"Invalid 'prompt': at most {max_len} characters.", param="prompt")
    return prompt


async def _render(prompt: str, seed: int, width: int, height: int) -> bytes:
    return await asyncio.to_thread(images.make_png, width, height, images.colour_for(prompt, seed))


# -- embeddings -----------------------------------------------------------------------------------

async def embeddings(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model"), "embedding")
    raw = body.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        texts = [" ".join(map(str, raw))]  # one token array
    elif isinstance(raw, list) and raw and all(isinstance(x, (str, list)) for x in raw):
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]
    else:
        raise GatewayError("invalid_request", "'input' must be a string or an array of strings.", param="input")
    if any(t == "" for t in texts):
        raise GatewayError("invalid_request", "'input' must not contain empty strings.", param="input")
    assert info.dimensions is not None
    dims = info.dimensions
    if body.get("dimensions") is not None:
        if not info.flexible_dimensions:
            raise GatewayError("invalid_request", f"The model '{info.id}' does not support 'dimensions'.",
                               param="dimensions")
        dims = _int_field(body, "dimensions", None, 1, info.dimensions) or dims
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise GatewayError("invalid_request", "Invalid 'encoding_format': float or base64.", param="encoding_format")
    for t in texts:
        if info.context_window and answers.estimate_tokens(t) > info.context_window:
            raise GatewayError("context_length", f"This model's maximum context length is {info.context_window} "
                               "tokens; an input is longer.", param="input")
    ptoks = sum(answers.estimate_tokens(t) for t in texts)
    cost = info.input_per_1m * ptoks / 1_000_000
    emu.charge(cost)
    emu.set_model_headers(request, info, info, cost)
    data = []
    for i, t in enumerate(texts):
        vec = answers.embedding(t, dims)
        data.append({"object": "embedding", "index": i,
                     "embedding": answers.embedding_b64(vec) if fmt == "base64" else vec})
    out: dict[str, Any] = {"object": "list", "data": data, "model": emu.answer_model_name(info, info),
                           "usage": {"prompt_tokens": ptoks, "total_tokens": ptoks}}
    if emu.spec.provider_in_body:
        out["provider"] = info.provider
    return web.json_response(out)


# -- images (OpenAI-shaped) -----------------------------------------------------------------------

async def images_generations(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    body = emu.json_body(request)
    default = "dall-e-3" if emu.profile == "aicredits" else "openai/dall-e-3"
    info = emu.resolve_model(body.get("model") or default, "image")
    prompt = _prompt(body, 1000 if "dall-e-2" in info.id else 4000)
    n = _int_field(body, "n", 1, 1, info.max_images)
    assert n is not None
    size = body.get("size") or "1024x1024"
    if size == "auto" and info.b64_only:
        size = "1024x1024"
    if size not in info.image_sizes:
        raise GatewayError("invalid_request", f"Invalid 'size' {size!r} for {info.id}: one of "
                           f"{', '.join(info.image_sizes)}.", param="size")
    qualities = {"standard", "hd"} if emu.profile == "aicredits" else {"standard", "hd", "low", "medium",
                                                                           "high", "auto"}
    if body.get("quality") is not None and body["quality"] not in qualities:
        raise GatewayError("invalid_request", f"Invalid 'quality': one of {', '.join(sorted(qualities))}.",
                           param="quality")
    fmt = body.get("response_format") or ("b64_json" if info.b64_only else "url")
    if fmt not in ("url", "b64_json"):
        raise GatewayError("invalid_request", "Invalid 'response_format': url or b64_json.", param="response_format")
    if info.b64_only:
        fmt = "b64_json"
    elif emu.image_urls_only:
        fmt = "url"
    seed = _int_field(body, "seed", None, 0, 2**32 - 1)
    seed = images.seed_for(prompt) if seed is None else seed
    width, height = (int(x) for x in size.split("x"))
    cost = info.price_per_image * n
    emu.charge(cost)
    emu.set_model_headers(request, info, info, cost)
    data = []
    for i in range(n):
        png = await _render(prompt, seed + i, width, height)
        item: dict[str, Any] = ({"url": emu.store_file(png, "image/png", ".png")} if fmt == "url"
                                else {"b64_json": base64.b64encode(png).decode()})
        if "dall-e-3" in info.id:
            item["revised_prompt"] = prompt
        item["seed"] = seed + i
        data.append(item)
    return web.json_response({"created": int(time.time()), "data": data})


# -- images (DigiCord FLUX) -----------------------------------------------------------------------

async def flux_generations(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model") or "black-forest-labs/FLUX.1-schnell-Free", "image")
    prompt = _prompt(body, 4000)
    steps = _int_field(body, "steps", 4, 1, 4)
    n = _int_field(body, "n", 1, 1, info.max_images)
    width = _int_field(body, "width", 1024, 64, 1792)
    height = _int_field(body, "height", 1024, 64, 1792)
    assert steps is not None and n is not None and width is not None and height is not None
    if width % 16:
        raise GatewayError("invalid_request", f"Invalid 'width': must be a multiple of 16 (got {width}).",
                           param="width")
    if height % 32:
        raise GatewayError("invalid_request", f"Invalid 'height': must be a multiple of 32 (got {height}).",
                           param="height")
    negative = body.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise GatewayError("invalid_request", "Invalid 'negative_prompt': must be a string.", param="negative_prompt")
    seed = _int_field(body, "seed", None, 0, 2**32 - 1)
    seed = images.seed_for(prompt) if seed is None else seed
    fmt = body.get("response_format")
    if fmt not in (None, "url", "b64_json", "base64"):
        raise GatewayError("invalid_request", "Invalid 'response_format': url or b64_json.", param="response_format")
    emu.charge(info.price_per_image * n)
    data = []
    for i in range(n):
        png = await _render(prompt, seed + i, width, height)
        item: dict[str, Any] = {"index": i}
        if fmt in (None, "url"):
            item["url"] = emu.store_file(png, "image/png", ".png")
        if fmt in (None, "b64_json", "base64") and not emu.image_urls_only:
            item["b64_json"] = base64.b64encode(png).decode()
        item.update({"seed": seed + i, "width": width, "height": height})
        data.append(item)
    return web.json_response({"id": emu.new_id(""), "object": "list", "created": int(time.time()),
                              "model": info.id, "provider": info.provider, "seed": seed, "data": data})


# -- audio ----------------------------------------------------------------------------------------

async def speech(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model"), "tts")
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise GatewayError("invalid_request", "'input' is required.", param="input")
    if len(text) > 4096:
        raise GatewayError("invalid_request", "Invalid 'input': at most 4096 characters.", param="input")
    voices = VOICES | (OPENAI_EXTRA_VOICES if emu.profile == "openai" else set())
    if body.get("voice") not in voices:
        raise GatewayError("invalid_request", f"Invalid 'voice': one of {', '.join(sorted(voices))}.", param="voice")
    formats = ("mp3", "opus", "aac", "flac") + (("wav", "pcm") if emu.profile == "openai" else ())
    fmt = body.get("response_format") or "mp3"
    if fmt not in formats:
        raise GatewayError("invalid_request", f"Invalid 'response_format': one of {', '.join(formats)}.",
                           param="response_format")
    cost = info.input_per_1m * len(text) / 1_000_000
    emu.charge(cost)
    emu.set_model_headers(request, info, info, cost)
    data = await asyncio.to_thread(audio.synthesize, text, fmt)
    return web.Response(body=data, content_type=audio.CONTENT_TYPES[fmt])


def _json_audio(body: dict[str, Any]) -> tuple[bytes, str]:
    src = body.get("input_audio")
    if not isinstance(src, dict) or not isinstance(src.get("data"), str) or not src["data"]:
        raise GatewayError("invalid_request", "'input_audio.data' (base64) is required.", param="input_audio.data")
    fmt = src.get("format")
    if not isinstance(fmt, str) or not fmt:
        raise GatewayError("invalid_request", "'input_audio.format' is required.", param="input_audio.format")
    try:
        return base64.b64decode(src["data"], validate=True), fmt
    except (binascii.Error, ValueError):
        raise GatewayError("invalid_request", "'input_audio.data' is not valid base64.",
                           param="input_audio.data") from None


async def transcriptions(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    ctype = request.headers.get("Content-Type", "")
    response_format = "json"
    audio_param = "input_audio.data"
    if ctype.startswith("multipart/") and emu.profile == "openai":
        audio_param = "file"
        form = await request.post()
        emu.ctx(request).record.form = {
            k: (v if isinstance(v, str) else {"filename": v.filename, "content_type": v.content_type})
            for k, v in form.items()}
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise GatewayError("invalid_request", "'file' is required.", param="file")
        data = upload.file.read()
        emu.received_audio.append(data)
        fmt = (upload.filename or "").rsplit(".", 1)[-1].lower() if "." in (upload.filename or "") else ""
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        response_format = fields.get("response_format", "json")
    else:
        fields = emu.json_body(request)
        data, fmt = _json_audio(fields)
        emu.received_audio.append(data)
        if emu.profile == "openai":  # the OpenAI surface takes the same fields in both styles
            response_format = fields.get("response_format") or "json"
    info = emu.resolve_model(fields.get("model"), "stt")
    language = fields.get("language")
    if language is not None and (not isinstance(language, str) or len(language) != 2):
        raise GatewayError("invalid_request", "Invalid 'language': an ISO-639-1 code.", param="language")
    if response_format not in ("json", "text", "verbose_json"):
        raise GatewayError("invalid_request", "Invalid 'response_format'.", param="response_format")
    try:
        heard = await asyncio.to_thread(audio.analyse, data, fmt)
    except audio.UndecodableAudio:
        raise GatewayError("invalid_request", "Could not decode the audio file.",
                           param=audio_param) from None
    cost = info.input_per_1m * len(data) / 1_000_000_000
    emu.charge(cost)
    emu.set_model_headers(request, info, info, cost)
    if response_format == "text":
        return web.Response(text=heard.text, content_type="text/plain")
    out: dict[str, Any] = {"text": heard.text}
    if response_format == "verbose_json":
        out.update({"task": "transcribe", "language": language or "en", "duration": round(heard.duration, 3)})
    return web.json_response(out)


def routes(profile: Profile) -> list[tuple[str, str, "Handler"]]:
    b = profile.base_path
    if profile.name == "digicord":
        return [("POST", f"{b}/images/flux/generations", flux_generations)]
    if profile.name == "aiproxy":
        return [("POST", f"{b}/embeddings", embeddings)]
    if profile.name in ("aicredits", "openai"):
        return [("POST", f"{b}/embeddings", embeddings), ("POST", f"{b}/images/generations", images_generations),
                ("POST", f"{b}/audio/speech", speech), ("POST", f"{b}/audio/transcriptions", transcriptions)]
    return []
