"""The emulator server: one aiohttp app per profile, with request recording, faults and auth.

Request flow (middleware): record → response faults (``fail``/``html``/``invalid_json``, with
``slow`` delay first) → authentication (401 in the profile's shape; revoked keys too) → handler.
Common headers (request id, rate-limit headers, aicord latency) are added in
``on_response_prepare`` so streamed answers get them too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import ClientSession, ClientTimeout, web
from yarl import URL

from ..discord_emulator.changes import ChangeSignal
from . import chat, media, media_jobs, meta, relay
from .errors import GatewayError, error_body
from .faults import FILES_PREFIX, Fault, FaultInjector
from .models import MODEL_ROLES, ModelInfo, find_model, served_model
from .profiles import Profile, default_api_key, get_profile

T = TypeVar("T")
Handler = Callable[["GatewayEmulator", web.Request], Awaitable[web.StreamResponse]]
_AICREDITS_KEY = re.compile(r"^sk-[0-9a-f]{64}$")
INR_PER_USD = 84.0
RATE_LIMIT = 1000
RATE_WINDOW = 60.0


@dataclass
class RecordedRequest:
    """One request the emulator received (the auth header value is redacted)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    time: float
    status: int | None = None
    form: dict[str, Any] | None = None
    body_size: int = 0


@dataclass
class QueuedReply:
    text: str
    chunk_size: int | None = None
    reasoning: str | None = None
    cut_at_max_tokens: bool = False  # cut at 4 * max_tokens chars, finish_reason "length", as generated answers


@dataclass
class RequestContext:
    start: float
    record: RecordedRequest
    authed: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)
    latency_header: bool = False


CTX_KEY = web.RequestKey("gw_ctx", RequestContext)


class _RateWindow:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._start = time.time()
        self._used = 0

    def hit(self) -> None:
        self._roll()
        self._used += 1

    @property
    def remaining(self) -> int:
        self._roll()
        return max(0, self.limit - self._used)

    @property
    def reset_epoch(self) -> int:
        return math.ceil(self._start + self.window)

    def _roll(self) -> None:
        now = time.time()
        if now - self._start >= self.window:
            self._start, self._used = now, 0


def _redact(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers.items():
        lk = k.lower()
        if lk == "authorization":
            scheme = v.split(" ", 1)[0] if " " in v else ""
            out[k] = f"{scheme} <redacted>".strip()
        elif lk == "x-api-key":
            out[k] = "<redacted>"
        else:
            out[k] = v
    return out


class GatewayEmulator:
    """A local emulator of one AI gateway profile (see the package docstring for the contract)."""

    def __init__(self, profile: str, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = None, stream_tps: float = 0.0,
                 sleep: Callable[[float], Awaitable[None]] | None = None, demo_answers: bool = False) -> None:
        """``stream_tps``: stream chat answers in token-sized pieces at this many per second (0: as fast
        as they are written, 8 pieces, as tests expect); ``sleep``: what waits between pieces
        (``asyncio.sleep``; a test can pass a gate); ``demo_answers``: the sandbox's longer answers
        (:func:`.answers.demo_reply`), so that the pace can be seen."""
        self.spec: Profile = get_profile(profile)
        self.profile: str = self.spec.name
        self.host = host
        self.port = port
        self.api_key: str = api_key or default_api_key(profile)
        self.requests: list[RecordedRequest] = []
        self.changes = ChangeSignal()  # poked when a request is recorded and when it is answered
        self.faults = FaultInjector()
        self.stream_chunk_count: int | None = None
        self.keepalive_comments: bool = True
        self.chunk_delay: float = 0.0  # optional pause between streamed chunks
        self.stream_tps: float = stream_tps
        self.sleep: Callable[[float], Awaitable[None]] = sleep or asyncio.sleep
        self.demo_answers: bool = demo_answers
        #: what a model that counts its answer in its window (``counts_answer``) does past it: "error" (400
        #: context_length_exceeded with the numbers, OpenAI-style) or "empty" (200, a stream with no content:
        #: a proxy such as LiteLLM hiding llama.cpp's failure)
        self.context_overflow: str = "error"
        self.balance_inr: float = 1000.0  # aicredits wallet shown by /v1/credits
        self.sent_data: list[dict[str, Any]] = []  # digicord /send-data bodies accepted
        self.received_audio: list[bytes] = []  # every transcription upload, byte for byte (both styles)
        #: image calls answer with URLs only (like a gateway that hosts its results), whatever was asked
        self.image_urls_only: bool = False
        #: video jobs by id (see media_jobs); by default each status GET advances a job by one step and
        #: ``video_polls_to_complete`` GETs complete it; ``video_seconds_to_complete`` paces them by time instead
        self.video_jobs: dict[str, media_jobs.VideoJobState] = {}
        self.video_polls_to_complete: int = 4
        self.video_seconds_to_complete: float | None = None
        self._replies: deque[QueuedReply] = deque()
        self._files: dict[str, tuple[bytes, str]] = {}
        self._media_expiry: dict[str, float] = {}  # produced media file name -> unix expiry
        self._rate = _RateWindow(RATE_LIMIT, RATE_WINDOW)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._bound_port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._middleware])
        app.on_response_prepare.append(self._on_prepare)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 — the only way to learn the bound port
        assert server is not None and server.sockets
        self._bound_port = server.sockets[0].getsockname()[1]
        self._session = ClientSession(timeout=ClientTimeout(total=30))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait (without polling) until ``predicate()`` is truthy; returns its value."""
        return await self.changes.wait_for(predicate, timeout)

    async def __aenter__(self) -> "GatewayEmulator":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def root_url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self._bound_port}"

    @property
    def api_base(self) -> str:
        return self.root_url + self.spec.base_path

    def model_for(self, role: str) -> str:
        """The catalogue's model for ``role`` (see ``MODEL_ROLES``); ``""`` when the gateway has none."""
        return MODEL_ROLES[self.profile].get(role) or ""

    @property
    def default_chat_model(self) -> str:
        return self.model_for("chat")

    @property
    def default_vision_model(self) -> str:
        return self.model_for("vision")

    @property
    def default_image_model(self) -> str:
        return self.model_for("image")

    def __repr__(self) -> str:
        where = self.root_url if self._bound_port else "not started"
        return f"<GatewayEmulator {self.profile} {where}>"

    # -- test controls --------------------------------------------------------------------------
    def queue_reply(self, text: str, *, chunk_size: int | None = None, reasoning: str | None = None,
                    cut_at_max_tokens: bool = False) -> None:
        """The next chat answer is exactly ``text`` (streamed in ``chunk_size``-char pieces); with
        ``cut_at_max_tokens`` the request's ``max_tokens`` cuts it as it cuts a generated answer."""
        self._replies.append(QueuedReply(text, chunk_size, reasoning, cut_at_max_tokens))

    def pop_reply(self) -> QueuedReply | None:
        return self._replies.popleft() if self._replies else None

    # -- helpers for handlers -------------------------------------------------------------------
    @staticmethod
    def ctx(request: web.Request) -> RequestContext:
        return request[CTX_KEY]

    def json_body(self, request: web.Request) -> dict[str, Any]:
        body = self.ctx(request).record.json
        if not isinstance(body, dict):
            raise GatewayError("invalid_request", "Request body must be a JSON object.")
        return body

    def resolve_model(self, model_id: Any, cap: str, *, param: str = "model") -> ModelInfo:
        """The catalogue entry for ``model_id``: 404 when unknown, 400 when it lacks ``cap``."""
        if not isinstance(model_id, str) or not model_id:
            raise GatewayError("invalid_request", f"'{param}' is required.", param=param)
        info = find_model(self.profile, model_id)
        if info is None:
            raise GatewayError("model_not_found", f"The model '{model_id}' does not exist.", param=param)
        if cap not in info.caps:
            raise GatewayError("invalid_request", f"The model '{model_id}' does not support {cap}.",
                               param=param, code="invalid_model")
        return info

    def served(self, info: ModelInfo) -> ModelInfo:
        return served_model(self.profile, info)

    def answer_model_name(self, requested: ModelInfo, served: ModelInfo) -> str:
        """The ``model`` field of an answer."""
        if self.profile == "aicordcloud":
            return requested.id
        if self.spec.strip_model_prefix:
            return served.id.split("/", 1)[-1]
        return served.id

    def charge(self, cost_usd: float) -> None:
        """Spend one paid call: 402 (insufficient credits) when the budget is exhausted."""
        if not self.faults.spend_paid_call():
            self.balance_inr = 0.0
            raise GatewayError("insufficient_credits",
                               "Insufficient credits: the key's balance is too low for this request.")
        self.balance_inr = max(0.0, self.balance_inr - cost_usd * INR_PER_USD)

    def set_model_headers(self, request: web.Request, requested: ModelInfo, served: ModelInfo,
                          cost_usd: float) -> None:
        """The profile's per-answer metadata headers."""
        ctx = self.ctx(request)
        if self.spec.aicord_meta_headers:
            ctx.extra_headers.update({
                "x-aicord-tier": requested.tier or "standard",
                "x-aicord-model": requested.upstream or requested.id,
                "x-aicord-upstream": requested.provider,
            })
            ctx.latency_header = True
        if self.spec.openai_meta_headers:
            ctx.extra_headers["x-model-used"] = served.id
            ctx.extra_headers["x-credits-used"] = f"{cost_usd:.6f}"
            if requested.fallback_to:
                ctx.extra_headers["x-fallback-from"] = requested.id
                ctx.extra_headers["x-fallback-depth"] = str(requested.fallback_depth)

    def new_id(self, prefix: str = "chatcmpl-") -> str:
        if self.spec.object_id_ids:
            return f"{int(time.time()):08x}" + secrets.token_hex(8)
        return prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")[:24]

    def store_file(self, data: bytes, content_type: str, suffix: str, *, expires_at: float | None = None) -> str:
        """Keep ``data`` and return the public URL the emulator serves it at; with ``expires_at`` (unix s)
        it is produced media: 410 Gone after that time, or at once after ``faults.expire_media()``."""
        name = uuid.uuid4().hex + suffix
        self._files[name] = (data, content_type)
        if expires_at is not None:
            self._media_expiry[name] = expires_at
        return f"{self.root_url}{FILES_PREFIX}{name}"

    async def fetch_image(self, url: str, max_bytes: int = 20 * 1024 * 1024) -> bytes:
        """Bytes of an image reference: a base64 data URL or an ``http://127.0.0.1`` URL."""
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            if ";base64" not in header:
                raise GatewayError("invalid_request", "Image data URL must be base64.", param="messages")
            try:
                return base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError):
                raise GatewayError("invalid_request", "Image data URL is not valid base64.",
                                   param="messages") from None
        try:
            parsed = URL(url)
        except ValueError:
            parsed = URL()
        if parsed.scheme != "http" or parsed.host not in {"127.0.0.1", "localhost"}:
            raise GatewayError("invalid_request", "Failed to download image: only loopback URLs are "
                               "reachable from the emulator.", param="messages", code="invalid_image_url")
        assert self._session is not None
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    raise GatewayError("invalid_request", f"Failed to download image (HTTP {resp.status}).",
                                       param="messages", code="invalid_image_url")
                data = bytearray()
                async for piece in resp.content.iter_any():
                    data += piece
                    if len(data) > max_bytes:
                        break
        except GatewayError:
            raise
        except Exception as exc:
            raise GatewayError("invalid_request", f"Failed to download image ({exc.__class__.__name__}).",
                               param="messages", code="invalid_image_url") from None
        if len(data) > max_bytes:
            raise GatewayError("invalid_request", "Image too large.", param="messages")
        return bytes(data)

    def ratelimit_headers(self, *, exhausted: bool = False, retry_after: float | None = None) -> dict[str, str]:
        style = self.spec.ratelimit_style
        remaining = 0 if exhausted else self._rate.remaining
        if style == "aicord":
            return {"x-ratelimit-remaining": str(remaining)}
        if style == "aiproxy":
            reset = self._rate.reset_epoch
            if exhausted and retry_after is not None:
                reset = math.ceil(time.time() + retry_after)
            return {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": str(remaining),
                    "X-RateLimit-Reset": str(reset)}
        return {}

    # -- server internals -----------------------------------------------------------------------
    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = (meta.routes(self.spec) + chat.routes(self.spec)
                                                  + media.routes(self.spec) + media_jobs.routes(self.spec)
                                                  + relay.routes(self.spec))
        for method, path, handler in routes:
            app.router.add_route(method, path, self._bind(handler))
        app.router.add_get(FILES_PREFIX + "{name}", self._serve_file)

    def _bind(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def bound(request: web.Request) -> web.StreamResponse:
            return await handler(self, request)
        return bound

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        item = self._files.get(name)
        if item is None:
            raise GatewayError("not_found", "File not found.")
        expiry = self._media_expiry.get(name)
        if expiry is not None and (self.faults.media_expired or time.time() >= expiry):
            raise GatewayError("not_found", "This link has expired.", status=410, code="expired")
        data, ctype = item
        return web.Response(body=data, content_type=ctype)

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: Any = None
        size = 0
        ctype = request.headers.get("Content-Type", "")
        if request.body_exists and not ctype.startswith("multipart/"):
            raw = await request.read()
            size = len(raw)
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
        rec = RecordedRequest(request.method, request.path, dict(request.query), _redact(request.headers),
                              body, time.monotonic(), body_size=size)
        self.requests.append(rec)
        self.changes.changed()
        return rec

    def _is_public(self, path: str) -> bool:
        return path.startswith(FILES_PREFIX) or path in self.spec.public_paths

    def _authenticate(self, request: web.Request) -> None:
        supplied: str | None = None
        auth = request.headers.get("Authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                supplied = token.strip()
        if supplied is None and self.spec.accepts_x_api_key:
            supplied = request.headers.get("x-api-key") or None
        aicord = self.spec.error_style == "aicord"
        if supplied is None:
            raise GatewayError("authentication", "Unauthorized" if aicord else
                               "Missing API key. Send 'Authorization: Bearer <API_KEY>'.")
        if self.profile == "aicredits" and not _AICREDITS_KEY.match(supplied):
            raise GatewayError("authentication", "Invalid API key format: expected sk- followed by 64 "
                               "hex characters.")
        if not secrets.compare_digest(supplied.encode(), self.api_key.encode()):
            raise GatewayError("authentication", "Unauthorized" if aicord else "Invalid API key provided.")
        if self.faults.revoked:
            raise GatewayError("authentication", "Unauthorized" if aicord else "This API key has been revoked.")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        rec = await self._record(request)
        ctx = RequestContext(start=time.monotonic(), record=rec)
        request[CTX_KEY] = ctx
        try:
            resp = await self._dispatch(request, handler, ctx)
        except GatewayError as err:
            resp = self.error_response(err)
        except web.HTTPNotFound:
            resp = self.error_response(GatewayError("not_found", f"Unknown path: {request.path}"))
        except web.HTTPMethodNotAllowed:
            resp = self.error_response(GatewayError(
                "invalid_request", f"Method {request.method} not allowed on {request.path}", status=405))
        rec.status = resp.status
        self.changes.changed()
        return resp

    async def _dispatch(self, request: web.Request, handler: Any, ctx: RequestContext) -> web.StreamResponse:
        path = request.path
        slow = self.faults.take(("slow",), path)
        fault = self.faults.take(("fail", "html", "invalid_json"), path)
        if slow is not None:
            await asyncio.sleep(float(slow.params["delay"]))
            if request.transport is None or request.transport.is_closing():
                # The caller gave up while we were "slow": do no work (no queued reply or budget spent).
                return web.Response(status=499, text="client closed request")
        if fault is not None:
            return self._fault_response(fault)
        if not self._is_public(path):
            self._authenticate(request)
            ctx.authed = True
            self._rate.hit()
        return await handler(request)

    def error_response(self, err: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(error_body(self.spec.error_style, err), status=err.status, headers=headers)

    def _fault_response(self, fault: Fault) -> web.Response:
        if fault.kind == "html":
            status = int(fault.params["status"])
            reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                      504: "Gateway Timeout"}.get(status, "Error")
            page = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
                    f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    "</body>\r\n</html>\r\n")
            return web.Response(text=page, status=status, content_type="text/html")
        if fault.kind == "invalid_json":
            return web.Response(body=b'{"id": "chatcmpl-trunc", "choices": [<<not json>>',
                                status=200, content_type="application/json")
        status = int(fault.params["status"])
        retry_after = fault.params.get("retry_after")
        headers: dict[str, str] = {}
        if retry_after is not None:
            ra = float(retry_after)
            headers["Retry-After"] = str(int(ra)) if ra == int(ra) else f"{ra:g}"
        if status == 429:
            headers.update(self.ratelimit_headers(exhausted=True, retry_after=retry_after))
            err = GatewayError("rate_limit", "Rate limit exceeded: too many requests, retry later.")
        elif status >= 500:
            err = GatewayError("server", f"The gateway had an error while processing your request "
                               f"(HTTP {status}).", status=status)
        elif status == 401:
            err = GatewayError("authentication", "Unauthorized")
        elif status == 402:
            err = GatewayError("insufficient_credits", "Insufficient credits.")
        elif status == 404:
            err = GatewayError("not_found", "Not found.")
        else:
            err = GatewayError("invalid_request", f"Request failed (HTTP {status}).", status=status)
        return self.error_response(err, headers)

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        ctx: RequestContext | None = request.get(CTX_KEY)
        if self.spec.request_id_header:
            response.headers.setdefault(self.spec.request_id_header, str(uuid.uuid4()))
        if ctx is None:
            return
        counted = ctx.authed or (self.spec.ratelimit_style == "aicord" and request.path.startswith("/v1"))
        if counted and response.status != 429:
            for k, v in self.ratelimit_headers().items():
                response.headers.setdefault(k, v)
        for k, v in ctx.extra_headers.items():
            response.headers[k] = v
        if ctx.latency_header:
            response.headers["x-aicord-latency-ms"] = str(int((time.monotonic() - ctx.start) * 1000))
