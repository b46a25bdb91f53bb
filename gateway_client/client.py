"""``GatewayClient``: the one object the bot talks to.

Every operation goes to the primary gateway; chat, streams and image generation fall back, in
order, to ``ClientOptions.fallback_models`` (chat, on the primary gateway) and then to the fallback
gateways (each with its own profile, key and configured model names) when the failure is one a
different model or gateway can cure: unavailable, timeout, rate limit, unknown model (quota and
"unsupported" skip to the next gateway). Invalid requests and authentication failures are raised
at once. An image generation that may already have been accepted (5xx/timeout after the body was
sent) is neither retried nor sent elsewhere. The fallback is visible in ``CallMeta``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from . import audio as _audio
from . import image_edits as _edits
from . import images as _images
from . import media_jobs as _media
from .audio import SpeechAudio, Transcription
from .catalog import merge_models, parse_model_list
from .chat import chat_body, parse_chat_answer
from .config import ClientOptions, GatewayConfig
from .errors import (
    AuthenticationError,
    ContextTooLong,
    GatewayError,
    GatewayTimeout,
    InvalidRequest,
    InvalidResponse,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ResultDownloadFailed,
    StreamInterrupted,
    Unsupported,
    UpstreamUnavailable,
)
from .http import Gateway, Reply, ResultTooLarge, Transport, url_host
from .image_edits import ImageEditRequest
from .media_jobs import DownloadedMedia, MediaExpired, MusicRequest, MusicResult, VideoJob, VideoRequest
from .meta import CallMeta, apply_body
from .models import (
    ChatRequest,
    ChatResult,
    CreditsBalance,
    EmbeddingResult,
    GeneratedImage,
    HealthStatus,
    ImageRequest,
    ImageResult,
    ModelInfo,
    ModelKind,
    Usage,
    sniff_image_mime,
)
from .profiles import Profile
from .retry import Jitter, Sleep
from .streaming import ChatStream

__all__ = ["GatewayClient"]

log = logging.getLogger("gateway_client")
T = TypeVar("T")
_Req = TypeVar("_Req", ImageRequest, ImageEditRequest, MusicRequest)  # what a fallback gateway validates again

_TYPE_FILTER = {ModelKind.CHAT: "chat", ModelKind.VISION: "chat", ModelKind.EMBEDDING: "embedding",
                ModelKind.COMPLETION: "completion", ModelKind.IMAGE: "image", ModelKind.AUDIO: "audio",
                ModelKind.VIDEO: "video", ModelKind.MUSIC: "music"}
_HEALTHY = {"ok", "ready", "healthy", "up", "pass", "green", "operational"}
_BALANCE_KEYS = ("balance", "credits", "amount", "remaining", "available", "wallet_balance", "credit_balance",
                 "remaining_credits", "total_balance")


class GatewayClient:
    """Async client for one primary gateway plus optional fallback gateways (see module docstring)."""

    def __init__(
        self,
        primary: GatewayConfig,
        *,
        fallbacks: Sequence[GatewayConfig] = (),
        options: ClientOptions | None = None,
        sleep: Sleep | None = None,
        jitter: Jitter | None = None,
    ) -> None:
        """``sleep``/``jitter`` replace ``asyncio.sleep``/``random.uniform`` in retry waits (for tests)."""
        self.options = options if options is not None else ClientOptions()
        self._primary = Gateway.from_config(primary)
        self._fallbacks = [Gateway.from_config(c) for c in fallbacks]
        self._transport = Transport(self.options, sleep=sleep, jitter=jitter)
        self._models_cache: dict[tuple[Any, ...], tuple[float, list[ModelInfo]]] = {}

    # ------------------------------------------------------------------ lifecycle & identity
    async def start(self) -> None:
        """Open the pooled HTTP session (nothing connects before this)."""
        await self._transport.start()

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> GatewayClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def profile(self) -> Profile:
        return self._primary.profile

    @property
    def config(self) -> GatewayConfig:
        return self._primary.config

    @property
    def fallback_configs(self) -> list[GatewayConfig]:
        return [g.config for g in self._fallbacks]

    @property
    def started(self) -> bool:
        return self._transport.session is not None and not self._transport.session.closed

    def __repr__(self) -> str:
        fb = ", ".join(g.label for g in self._fallbacks)
        return f"GatewayClient(profile={self.profile.name!r}, base_url={self.config.base_url!r}, fallbacks=[{fb}])"

    # ------------------------------------------------------------------ helpers
    def _path(self, gw: Gateway, op: str) -> str:
        path = gw.profile.path(op)
        if path is None:
            raise Unsupported(f"{op} is not offered by the {gw.profile.name} gateway", profile=gw.profile.name)
        return path

    def _json(self, gw: Gateway, reply: Reply, *, job: bool = False) -> Any:
        """The JSON body; an ``error`` in a 2xx answer raises, except in a job object (``job``: a failed
        video job carries its reason there)."""
        if "html" in reply.content_type:
            raise InvalidResponse(f"the gateway answered HTTP {reply.status} with an HTML page",
                                  status=reply.status, request_id=reply.meta.request_id, profile=gw.profile.name)
        data = reply.json()
        if isinstance(data, dict) and data.get("error") and not ("choices" in data or "data" in data
                                                                 or (job and "status" in data)):
            err = self._transport.payload_error(gw, reply.meta, data)
            if type(err) is GatewayError:
                err = UpstreamUnavailable(err.message, request_id=err.request_id, profile=gw.profile.name)
            raise err
        return data

    @staticmethod
    def _default_model(gw: Gateway, kind: str) -> str | None:
        cfg = gw.config
        if kind == "image":
            rules = gw.profile.images
            return cfg.image_model or (rules.default_model if rules else "") or None
        if kind == "vision":
            return cfg.vision_model or cfg.chat_model or gw.profile.default_chat_model or None
        if kind == "edit":
            return _edits.default_edit_model(gw.profile, cfg) or None
        if kind == "music":
            return cfg.music_model or gw.profile.default_music_model or None
        return cfg.chat_model or gw.profile.default_chat_model or None

    def _targets(self, kind: str, requested: str | None) -> list[tuple[Gateway, str | None]]:
        out: list[tuple[Gateway, str | None]] = [(self._primary, requested or self._default_model(self._primary, kind))]
        if kind == "chat":
            out += [(self._primary, m) for m in self.options.fallback_models if m]
        for gw in self._fallbacks:
            out.append((gw, self._default_model(gw, kind) or requested))
        seen: set[tuple[int, str | None]] = set()
        unique = []
        for gw, model in out:
            key = (id(gw), model)
            if key not in seen:
                seen.add(key)
                unique.append((gw, model))
        return unique

    @staticmethod
    def _fallback_policy(err: GatewayError, *, paid_once: bool) -> tuple[bool, bool]:
        """(may fall back, skip the rest of this gateway)."""
        if isinstance(err, (InvalidRequest, ContextTooLong, AuthenticationError, PermissionDenied,
                            StreamInterrupted)):
            return False, False
        if isinstance(err, (QuotaExceeded, Unsupported)):
            return True, True
        if isinstance(err, (RateLimited, ModelNotFound)):
            return True, False
        if isinstance(err, (UpstreamUnavailable, GatewayTimeout)):
            if paid_once and err.request_sent:
                return False, False  # the gateway may have accepted (and charged) it: never re-send blindly
            return True, False
        return False, False

    async def _with_fallback(
        self,
        kind: str,
        requested: str | None,
        run: Callable[[Gateway, str | None], Awaitable[T]],
        meta_of: Callable[[T], CallMeta],
        *,
        paid_once: bool = False,
    ) -> T:
        targets = self._targets(kind, requested)
        first_gw, first_model = targets[0]
        failures: list[str] = []
        skip: set[int] = set()
        last: GatewayError | None = None
        for i, (gw, model) in enumerate(targets):
            if id(gw) in skip:
                continue
            try:
                result = await run(gw, model)
            except GatewayError as err:
                last = err
                allowed, skip_gw = self._fallback_policy(err, paid_once=paid_once)
                if gw is not first_gw and isinstance(err, InvalidRequest) and err.status is None:
                    allowed, skip_gw = True, True  # a fallback gateway's own rules refuse it: try the next
                if not allowed:
                    raise
                if skip_gw:
                    skip.add(id(gw))
                following = next(((g, m) for g, m in targets[i + 1:] if id(g) not in skip), None)
                if following is None:
                    raise  # nothing configured to fall back to: the caller reports the error
                failures.append(f"{gw.label}/{model or '-'}: {type(err).__name__}"
                                + (f" {err.status}" if err.status else ""))
                next_gw, next_model = following
                log.warning("gateway %s model %s failed (%s); trying the next fallback: %s", gw.label, model,
                            type(err).__name__, _describe_target(next_gw, next_model, same=next_gw is gw))
                continue
            meta = meta_of(result)
            if gw is not first_gw:
                meta.gateway_fallback_from = first_gw.label
            if model != first_model:
                meta.fallback_from = first_model
            meta.fallback_depth += len(failures)
            meta.fallback_errors = failures
            return result
        assert last is not None  # pragma: no cover - the last failure is raised inside the loop
        raise last

    # ------------------------------------------------------------------ chat
    async def chat(self, req: ChatRequest) -> ChatResult:
        """A complete chat answer (reasoning separated, tool calls, usage, metadata)."""
        kind = "vision" if req.has_images else "chat"

        async def run(gw: Gateway, model: str | None) -> ChatResult:
            path = self._path(gw, "chat")
            body = chat_body(gw.profile, req, model, stream=False)
            reply = await self._transport.request(gw, "chat", "POST", path, json_body=body, model=model)
            return parse_chat_answer(self._json(gw, reply), reply.meta)

        return await self._with_fallback(kind, req.model, run, lambda r: r.meta)

    def stream_chat(self, req: ChatRequest) -> ChatStream:
        """A ``ChatStream`` (nothing is sent until iteration starts)."""
        kind = "vision" if req.has_images else "chat"

        async def open_one(gw: Gateway, model: str | None) -> tuple[aiohttp.ClientResponse, CallMeta, float, Gateway]:
            path = self._path(gw, "chat")
            body = chat_body(gw.profile, req, model, stream=True)
            resp, meta, started = await self._transport.open_stream(gw, "chat", path, body, model=model)
            return resp, meta, started, gw

        async def opener() -> tuple[aiohttp.ClientResponse, CallMeta, float, Gateway]:
            return await self._with_fallback(kind, req.model, open_one, lambda r: r[1])

        return ChatStream(opener)

    async def complete(self, prompt: str | list[str], model: str, *, max_tokens: int | None = None,
                       temperature: float | None = None, **extra: Any) -> ChatResult:
        """Legacy text completion (AIProxy ``/v1/completions``)."""
        gw = self._primary
        path = self._path(gw, "completions")
        if not prompt:
            raise InvalidRequest("the prompt is empty", field="prompt")
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        body.update(extra)
        reply = await self._transport.request(gw, "completions", "POST", path, json_body=body, model=model)
        return parse_chat_answer(self._json(gw, reply), reply.meta)

    def _for_target(self, gw: Gateway, model: str | None, primary: _Req, req: _Req,
                    validate: Callable[[Profile, GatewayConfig | None, _Req], _Req]) -> _Req:
        """The request as ``gw`` takes it with ``model``: the primary's validated one, or ``req`` validated
        again by that gateway's rules (a fallback may differ in sizes, counts and models)."""
        if gw is self._primary and model == primary.model:
            return primary
        return validate(gw.profile, gw.config, dataclasses.replace(req, model=model))

    # ------------------------------------------------------------------ images
    def validate_image_request(self, req: ImageRequest) -> ImageRequest:
        """Normalised request, or ``InvalidRequest(field=..., allowed=...)`` before anything is sent."""
        return _images.validate_image_request(self._primary.profile, self._primary.config, req)

    async def generate_images(self, req: ImageRequest) -> ImageResult:
        """Generate images; results are bytes (URL results are downloaded with a size cap)."""
        primary_req = self.validate_image_request(req)

        async def run(gw: Gateway, model: str | None) -> ImageResult:
            norm = self._for_target(gw, model, primary_req, req, _images.validate_image_request)
            rules = gw.profile.images
            assert rules is not None
            body = _images.image_body(gw.profile, norm)
            reply = await self._transport.request(
                gw, "images", "POST", gw.profile.resolve(rules.path), json_body=body, safe=False,
                total=self.options.image_timeout, model=norm.model)
            data = self._json(gw, reply)
            apply_body(reply.meta, data)
            if reply.meta.model_used is None and norm.model:
                reply.meta.model_used = norm.model
            images = await self._collect_images(gw, data, norm)
            return ImageResult(images=images, meta=reply.meta, request=norm)

        return await self._with_fallback("image", primary_req.model, run, lambda r: r.meta, paid_once=True)

    async def _collect_images(self, gw: Gateway, data: Any, req: ImageRequest) -> list[GeneratedImage]:
        items = _images.image_items(data)
        top_seed = data.get("seed") if isinstance(data, dict) else None

        async def one(item: dict[str, Any]) -> GeneratedImage:
            raw = _images.image_b64(item)
            url = item.get("url") if isinstance(item.get("url"), str) else None
            ctype = ""
            if raw is None:
                if not url:
                    raise InvalidResponse("an image entry has neither data nor URL", profile=gw.profile.name)
                if url.startswith("data:"):
                    raw, data_mime = _images.decode_data_url(url)
                    ctype = data_mime or ""
                else:
                    raw, ctype = await self._transport.download(gw, url, cap=self.options.max_download_bytes)
            elif len(raw) > self.options.max_download_bytes:
                raise InvalidResponse("image above the size cap", profile=gw.profile.name)
            mime = sniff_image_mime(raw) or (ctype.split(";", 1)[0].strip() or "image/png")
            dims = _images.image_size(raw) or (req.width, req.height)
            seed = item.get("seed", top_seed)
            if not isinstance(seed, int) or isinstance(seed, bool):
                seed = req.seed
            revised = item.get("revised_prompt") if isinstance(item.get("revised_prompt"), str) else None
            return GeneratedImage(data=raw, mime=mime, seed=seed, width=dims[0], height=dims[1], url=url,
                                  revised_prompt=revised)

        return list(await asyncio.gather(*(one(it) for it in items)))

    # ------------------------------------------------------------------ image edits
    def validate_image_edit_request(self, req: ImageEditRequest) -> ImageEditRequest:
        """Normalised request, or ``InvalidRequest(field=..., allowed=...)`` / ``Unsupported``; nothing is sent."""
        return _edits.validate_image_edit_request(self._primary.profile, self._primary.config, req)

    async def edit_images(self, req: ImageEditRequest) -> ImageResult:
        """Edit an image (multipart upload); the answer is read as an image generation's. Paid: not
        repeated once the gateway may have accepted it (as ``generate_images``)."""
        primary_req = self.validate_image_edit_request(req)

        async def run(gw: Gateway, model: str | None) -> ImageResult:
            norm = self._for_target(gw, model, primary_req, req, _edits.validate_image_edit_request)
            path = self._path(gw, "image_edits")
            reply = await self._transport.request(
                gw, "image_edits", "POST", path, data=lambda: _edits.edit_form(norm), safe=False,
                total=self.options.image_timeout, model=norm.model)
            data = self._json(gw, reply)
            apply_body(reply.meta, data)
            if reply.meta.model_used is None and norm.model:
                reply.meta.model_used = norm.model
            as_image = ImageRequest(prompt=norm.prompt, model=norm.model, n=norm.n, size=norm.size)
            images = await self._collect_images(gw, data, as_image)
            return ImageResult(images=images, meta=reply.meta, request=as_image)

        return await self._with_fallback("edit", primary_req.model, run, lambda r: r.meta, paid_once=True)

    # ------------------------------------------------------------------ video jobs
    def validate_video_request(self, req: VideoRequest) -> VideoRequest:
        """Normalised request, or ``InvalidRequest(field=..., allowed=...)`` / ``Unsupported``; nothing is sent."""
        return _media.validate_video_request(self._primary.profile, self._primary.config, req)

    async def submit_video(self, req: VideoRequest) -> VideoJob:
        """Start a video job on the primary gateway (its id is only good there: no fallback).

        The paid POST is never repeated once it may have reached the gateway (a timeout or 5xx raise with
        ``request_sent``); only a 429 (refused, nothing made) or a connection never opened is retried."""
        norm = self.validate_video_request(req)
        gw = self._primary
        path = self._path(gw, "videos")
        reply = await self._transport.request(gw, "videos", "POST", path, json_body=_media.video_body(norm),
                                              safe=False, model=norm.model)
        data = self._json(gw, reply, job=True)
        apply_body(reply.meta, data)
        return _media.parse_video_job(data, reply.meta)

    def _job_path(self, job_id: str) -> str:
        if not isinstance(job_id, str) or not job_id.strip():
            raise InvalidRequest("no video job id", field="job_id")
        return f"{self._path(self._primary, 'videos')}/{quote(job_id, safe='')}"

    async def video_status(self, job_id: str) -> VideoJob:
        """The job as the gateway describes it now (a GET: repeated on transient failures). A job the gateway
        does not know (404) raises ``InvalidRequest(field="job_id")``."""
        gw = self._primary
        path = self._job_path(job_id)
        try:
            reply = await self._transport.request(gw, "videos", "GET", path)
        except (Unsupported, ModelNotFound) as err:
            if err.status != 404:
                raise
            raise InvalidRequest(f"the gateway does not know video job {job_id}", field="job_id", status=404,
                                 request_id=err.request_id, profile=gw.profile.name) from None
        return _media.parse_video_job(self._json(gw, reply, job=True), reply.meta, job_id=job_id)

    async def cancel_video(self, job_id: str) -> VideoJob:
        """Cancel a job: the cancelled job with what the gateway billed (``billed_seconds``, ``meta.credits_used``).
        A job that had already finished (409) comes back as its status says; a gateway without cancelling
        (404/405) raises ``Unsupported``."""
        gw = self._primary
        path = self._job_path(job_id)
        try:
            reply = await self._transport.request(gw, "videos", "DELETE", path)
        except GatewayError as err:
            if err.status == 409:
                return await self.video_status(job_id)
            if err.status in (404, 405):
                raise Unsupported(f"the {gw.label} gateway cannot cancel video job {job_id}", status=err.status,
                                  request_id=err.request_id, profile=gw.profile.name) from None
            raise
        return _media.parse_video_job(self._json(gw, reply, job=True), reply.meta, job_id=job_id)

    # ------------------------------------------------------------------ music
    def validate_music_request(self, req: MusicRequest) -> MusicRequest:
        """Normalised request, or ``InvalidRequest(field=..., allowed=...)`` / ``Unsupported``; nothing is sent."""
        return _media.validate_music_request(self._primary.profile, self._primary.config, req)

    async def generate_music(self, req: MusicRequest) -> MusicResult:
        """Music in ``req.format`` (the gateway answers at once). Paid: as ``generate_images``."""
        primary_req = self.validate_music_request(req)

        async def run(gw: Gateway, model: str | None) -> MusicResult:
            norm = self._for_target(gw, model, primary_req, req, _media.validate_music_request)
            path = self._path(gw, "music")
            reply = await self._transport.request(gw, "music", "POST", path, json_body=_media.music_body(norm),
                                                  safe=False, total=self.options.image_timeout, model=norm.model)
            data = self._json(gw, reply)
            apply_body(reply.meta, data)
            if reply.meta.model_used is None and norm.model:
                reply.meta.model_used = norm.model
            raw, url, item = _media.music_audio(data, gw.profile.name)
            ctype = ""
            if raw is None:
                assert url is not None
                got = await self._fetch_media(gw, url, self.options.max_download_bytes)
                raw, ctype = got.data, got.mime
            fmt: str = item["format"] if isinstance(item.get("format"), str) else norm.format
            seconds = item.get("duration")
            return MusicResult(
                audio=raw, mime=_media.sniff_media_mime(raw, ctype, fmt), format=fmt,
                seconds=float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None,
                meta=reply.meta)

        return await self._with_fallback("music", primary_req.model, run, lambda r: r.meta, paid_once=True)

    # ------------------------------------------------------------------ result files
    async def download_media(self, url: str, *, max_bytes: int) -> DownloadedMedia:
        """A result file: the gateway's own origin, or http(s) on a public address only (redirects checked
        hop by hop). Above ``max_bytes`` raises ``ResultDownloadFailed`` naming the cap; 403/404/410 raise
        ``MediaExpired``."""
        return await self._fetch_media(self._primary, url, max_bytes)

    async def _fetch_media(self, gw: Gateway, url: str, cap: int) -> DownloadedMedia:
        if url.startswith("data:"):
            raw, mime = _images.decode_data_url(url)
            if len(raw) > cap:
                raise ResultDownloadFailed(f"the result is {len(raw)} bytes, above the {cap}-byte cap",
                                           host="a data URL", reason=f"larger than the {cap}-byte cap",
                                           profile=gw.profile.name)
            return DownloadedMedia(raw, _media.sniff_media_mime(raw, mime or ""))
        try:
            raw, ctype = await self._transport.download(gw, url, cap=cap)
        except ResultTooLarge as err:
            host = url_host(url)
            raise ResultDownloadFailed(f"the result on {host} is larger than the {cap}-byte cap", host=host,
                                       reason=f"larger than the {cap}-byte cap", status=err.status,
                                       profile=gw.profile.name, secrets=gw.secrets) from None
        except ResultDownloadFailed as err:
            if err.status in (403, 404, 410):
                raise MediaExpired(f"the result link on {err.host} answered HTTP {err.status}: it has expired",
                                   host=err.host, status=err.status, profile=gw.profile.name,
                                   secrets=gw.secrets) from None
            raise
        return DownloadedMedia(raw, _media.sniff_media_mime(raw, ctype))

    # ------------------------------------------------------------------ embeddings, audio, credits
    async def embed(self, texts: str | Sequence[str], model: str, *, dimensions: int | None = None) -> EmbeddingResult:
        """Vectors for ``texts`` (one per input, in order)."""
        gw = self._primary
        path = self._path(gw, "embeddings")
        inputs = [texts] if isinstance(texts, str) else list(texts)
        if not inputs:
            raise InvalidRequest("nothing to embed", field="input")
        body: dict[str, Any] = {"model": model, "input": texts if isinstance(texts, str) else inputs}
        if dimensions is not None:
            body["dimensions"] = dimensions
        reply = await self._transport.request(gw, "embeddings", "POST", path, json_body=body, model=model)
        data = self._json(gw, reply)
        apply_body(reply.meta, data)
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise InvalidResponse("the embeddings answer has no data", profile=gw.profile.name)
        rows = sorted((r for r in rows if isinstance(r, dict)), key=lambda r: r.get("index", 0))
        vectors = [_vector(r.get("embedding")) for r in rows]
        return EmbeddingResult(vectors=vectors, model=reply.meta.model_used, usage=Usage.from_dict(data.get("usage")),
                               meta=reply.meta)

    async def credits(self) -> CreditsBalance:
        """The key's wallet balance (AICredits ``/v1/credits``)."""
        gw = self._primary
        path = self._path(gw, "credits")
        reply = await self._transport.request(gw, "credits", "GET", path)
        data = self._json(gw, reply)
        amount, currency = _balance(data)
        return CreditsBalance(amount=amount, currency=currency or gw.profile.credits_currency, meta=reply.meta,
                              raw=data if isinstance(data, dict) else {"value": data})

    async def speech(self, text: str, model: str, voice: str = "alloy", format: str = "mp3") -> SpeechAudio:
        """Text-to-speech: the audio in ``format`` with the call's metadata."""
        gw = self._primary
        path = self._path(gw, "speech")
        body = _audio.speech_body(gw.profile, text, model, voice, format)
        reply = await self._transport.request(gw, "speech", "POST", path, json_body=body, model=model)
        data = self._json(gw, reply) if "json" in reply.content_type else None
        if isinstance(data, dict):
            apply_body(reply.meta, data)
        audio = _audio.speech_audio(gw.profile, reply.body, reply.content_type, data)
        if reply.meta.model_used is None:
            reply.meta.model_used = model
        return SpeechAudio(data=audio, format=format, meta=reply.meta)

    async def transcribe(self, audio: bytes, format: str, model: str, language: str | None = None) -> Transcription:
        """Speech-to-text of ``audio`` (sent unchanged); ``duration`` when the gateway gives it."""
        gw = self._primary
        path = self._path(gw, "transcriptions")
        if gw.profile.transcription_style == "multipart":
            form = _audio.transcription_form(gw.profile, audio, format, model, language)
            reply = await self._transport.request(gw, "transcriptions", "POST", path, data=form, model=model,
                                                  retries=0)  # a FormData is sent once
        else:
            body = _audio.transcription_json(gw.profile, audio, format, model, language)
            reply = await self._transport.request(gw, "transcriptions", "POST", path, json_body=body, model=model)
        if "json" in reply.content_type:
            data = self._json(gw, reply)
            if isinstance(data, dict):
                apply_body(reply.meta, data)
            text, duration = _audio.transcription_text(gw.profile, data)
        else:
            text, duration = _audio.transcription_text(gw.profile, {"text": reply.body.decode("utf-8", "replace")})
        if reply.meta.model_used is None:
            reply.meta.model_used = model
        return Transcription(text=text, duration=duration, meta=reply.meta)

    # ------------------------------------------------------------------ health
    async def health(self) -> HealthStatus:
        """Probe the gateway's own health endpoint (or its model list where it has none).

        Never raises for a gateway problem: ``ok=False`` with the error in ``detail``.
        """
        gw = self._primary
        probe = gw.profile.health
        path = gw.profile.resolve(probe.path)
        total = min(self.options.total_timeout, 15.0)
        detail: dict[str, Any] = {"probe": path, "shape": probe.shape}
        try:
            reply = await self._transport.request(gw, "health", "GET", path, auth=probe.auth, retries=0, total=total)
            data = self._json(gw, reply)
        except GatewayError as err:
            meta = gw.new_meta("health", None)
            meta.status, meta.request_id, meta.probe = err.status, err.request_id, path
            detail.update(error=type(err).__name__, status=err.status, message=err.message)
            return HealthStatus(ok=False, ready=False if gw.profile.ready else None, detail=detail, meta=meta,
                                probe=path)
        meta = reply.meta
        meta.probe = path
        ok = _healthy(probe.shape, data)
        if probe.shape == "models":
            rows = data.get("data") if isinstance(data, dict) else data
            detail["models"] = len(rows) if isinstance(rows, list) else None
        else:
            detail["response"] = data
        ready: bool | None = None
        if gw.profile.ready is not None:
            rpath = gw.profile.resolve(gw.profile.ready.path)
            detail["ready_probe"] = rpath
            try:
                rreply = await self._transport.request(gw, "health", "GET", rpath, auth=gw.profile.ready.auth,
                                                       retries=0, total=total)
                rdata = self._json(gw, rreply)
                detail["ready_response"] = rdata
                ready = _healthy(gw.profile.ready.shape, rdata) and _deps_ok(rdata)
            except GatewayError as err:
                detail["ready_error"] = f"{type(err).__name__}: {err.message}"
                ready = False
        return HealthStatus(ok=ok, ready=ready, detail=detail, meta=meta, probe=path)

    # ------------------------------------------------------------------ models
    def invalidate_models_cache(self) -> None:
        self._models_cache.clear()

    async def _fetch_models(self, kind: ModelKind | None, provider: str | None) -> list[ModelInfo]:
        gw = self._primary
        sources = gw.profile.model_sources
        filtering = any(s.filters for s in sources)
        key = (kind, provider) if filtering else (None, None)
        now = time.monotonic()
        hit = self._models_cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        lists: list[list[ModelInfo]] = []
        for src in sources:
            params: dict[str, str] = {}
            if "provider" in src.filters and provider:
                params[src.filters["provider"]] = provider
            if "type" in src.filters and kind is not None and kind in _TYPE_FILTER:
                params[src.filters["type"]] = _TYPE_FILTER[kind]
            path = gw.profile.resolve(src.path)
            reply = await self._transport.request(gw, "models", "GET", path, params=params or None, auth=src.auth)
            lists.append(parse_model_list(self._json(gw, reply), src, known_kinds=gw.profile.known_model_kinds,
                                          where=path))
        models = merge_models(lists)
        self._models_cache[key] = (now + self.options.models_cache_ttl, models)
        return models

    async def list_models(self, *, kind: ModelKind | None = None, provider: str | None = None) -> list[ModelInfo]:
        """Models of the primary gateway, normalised; ``kind=CHAT`` includes vision-capable chat models."""
        models = await self._fetch_models(kind, provider)
        out = []
        for m in models:
            if kind is not None and m.kind is not kind and not (kind is ModelKind.CHAT and m.kind is ModelKind.VISION):
                continue
            if provider and (m.provider or "").lower() != provider.lower():
                continue
            out.append(m)
        return out

    async def vision_models(self) -> list[ModelInfo]:
        """Models that accept images: as the gateway lists them, plus the configured ``vision_model``."""
        models = [m for m in await self._fetch_models(None, None) if m.kind is ModelKind.VISION]
        vm = self.config.vision_model
        if vm and all(m.id != vm for m in models):
            models.append(ModelInfo(id=vm, kind=ModelKind.VISION, source="config"))
        return models

    async def image_models(self) -> list[ModelInfo]:
        """Models that draw: as the gateway lists them, else its documented ones, plus ``image_model``."""
        rules = self.profile.images
        if rules is None:
            return []
        models = [m for m in await self._fetch_models(None, None) if m.kind is ModelKind.IMAGE]
        if not models:
            models = [ModelInfo(id=mid, kind=ModelKind.IMAGE, image_price=price, source="profile")
                      for mid, price in rules.known_models.items()]
        im = self.config.image_model
        if im and all(m.id != im for m in models):
            models.append(ModelInfo(id=im, kind=ModelKind.IMAGE, source="config"))
        return models

    async def _media_models(self, kind: ModelKind, op: str, configured: str, default: str) -> list[ModelInfo]:
        if not self.profile.supports(op):
            return []
        models = [m for m in await self._fetch_models(None, None) if m.kind is kind]
        if not models and default:
            models = [ModelInfo(id=default, kind=kind, source="profile")]
        if configured and all(m.id != configured for m in models):
            models.append(ModelInfo(id=configured, kind=kind, source="config"))
        return models

    async def video_models(self) -> list[ModelInfo]:
        """Models that make video: as the gateway lists them, else the profile's default, plus ``video_model``."""
        return await self._media_models(ModelKind.VIDEO, "videos", self.config.video_model,
                                        self.profile.default_video_model)

    async def music_models(self) -> list[ModelInfo]:
        """Models that make music: as the gateway lists them, else the profile's default, plus ``music_model``."""
        return await self._media_models(ModelKind.MUSIC, "music", self.config.music_model,
                                        self.profile.default_music_model)

    async def can_see_images(self, model_id: str) -> bool:
        return any(m.id == model_id for m in await self.vision_models())

    async def can_draw(self, model_id: str) -> bool:
        return any(m.id == model_id for m in await self.image_models())


def _describe_target(gw: Gateway, model: str | None, *, same: bool) -> str:
    """The fallback about to be tried, as a log line names it."""
    shown = model or "(its default)"
    return f"model {shown}" if same else f"gateway {gw.label} model {shown}"


def _vector(v: Any) -> list[float]:
    if isinstance(v, list):
        return [float(x) for x in v]
    if isinstance(v, str):  # encoding_format=base64: little-endian float32
        raw = base64.b64decode(v)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    raise InvalidResponse("an embedding is neither a list nor base64")


def _healthy(shape: str, data: Any) -> bool:
    if shape == "ok_flag":
        return isinstance(data, dict) and data.get("ok") is True
    if shape == "status":
        return isinstance(data, dict) and str(data.get("status", "")).lower() in _HEALTHY
    return True  # "models"/"any_2xx": a 2xx JSON answer is health


def _deps_ok(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    for k, v in data.items():
        if k != "status" and isinstance(v, str) and v.lower() not in _HEALTHY:
            return False
    return True


def _balance(data: Any) -> tuple[float | None, str | None]:
    if not isinstance(data, dict):
        return (float(data), None) if isinstance(data, (int, float)) and not isinstance(data, bool) else (None, None)
    nested = data.get("data")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else data
    currency = inner.get("currency") or data.get("currency")
    for key in _BALANCE_KEYS:
        v = inner.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v), currency
        if isinstance(v, str):
            try:
                return float(v), currency
            except ValueError:
                pass
    total, used = inner.get("total_credits"), inner.get("total_usage")
    if isinstance(total, (int, float)) and isinstance(used, (int, float)):
        return float(total) - float(used), currency
    return None, currency
