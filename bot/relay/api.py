"""HTTP handlers: ``POST /send-data``, ``GET /send-data/{id}``.

They need no Discord connection and no delivery worker in the same process: posts are stored in the
outbox (any process's workers deliver them), channel facts come from a ``ChannelScope`` (discord.py's
cache, or the ``discord_channels`` table in ``gatecord web``), and ``?wait=true`` watches the post's
row until it is settled.

Checks run cheapest first and every refusal is JSON ``{"error", "message", …}``:
401 key → 415 content type → 413 size → 429 per-key rate → 400 JSON → 400 body (path + rule) →
403 channel scope (same answer whether or not the channel exists) → 422 idempotency key reused
with another body → store (group commit) → 202 ``{"id", "status": "queued"}``.
While the bot drains before it stops, every new post gets 503 ``restarting`` with a Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from bot.relay.identity import apply_identity
from bot.relay.jsonbody import BodyError, parse_body
from bot.relay.keys import KeyExpired, KeyStore, RelayKey
from bot.relay.metrics import RelayMetrics
from bot.relay.outbox import FINISHED, Accepted, NewPost, Outbox, OutboxUnavailable, PostNotStorable, post_id_time
from bot.relay.ratelimit import KeyRateLimiter
from bot.relay.validation import PayloadError, validate_payload
from bot.relay.worker import DeliveryWorker
from bot.storage.errors import StorageError

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 255
JSON_CONTENT_TYPES = ("application/json",)
TRUE_VALUES = ("1", "true", "yes")
RESTART_RETRY_AFTER = "30"  # seconds: a restart's drain plus start-up
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    guild_id: int
    parent_id: int | None  # a thread's parent channel
    messageable: bool


class ChannelScope(Protocol):
    """What the relay needs to know about Discord channels when accepting a post."""

    async def ready(self) -> bool:
        """False while the channels are not known yet (the bot is still connecting)."""
        ...

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        """The channel's facts; None when unknown. May raise ``StorageError`` (the post then gets 503)."""
        ...


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status, headers=headers)


def _forbidden() -> tuple[str, web.Response]:
    return ("forbidden", error_response(403, "forbidden", "this key may not post to that channel"))


class RelayApi:
    def __init__(
        self,
        *,
        keys: KeyStore,
        limiter: KeyRateLimiter,
        outbox: Outbox,
        worker: DeliveryWorker | None,
        scope: ChannelScope,
        metrics: RelayMetrics,
        max_body_bytes: int,
        wait_timeout: float,
        retention: float | None = None,
        poll_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``worker``: this process's delivery worker, None when posts are delivered by other processes;
        ``retention``: seconds after which finished posts are deleted (for the 404 of such a post);
        ``poll_interval``: how often ``?wait=true`` re-reads a post another process is delivering."""
        self.keys = keys
        self.limiter = limiter
        self.outbox = outbox
        self.worker = worker
        self.scope = scope
        self.max_body_bytes = max_body_bytes
        self.wait_timeout = wait_timeout
        self.retention = retention
        self.poll_interval = poll_interval
        self.clock = clock
        self.posts = metrics.posts
        self.accepting = True  # False while the bot drains before it stops: new posts get 503

    def stop_accepting(self) -> None:
        """New posts get 503 + Retry-After from now on; posts already accepted stay in the outbox."""
        self.accepting = False

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/send-data", self._database_guard(self.post))
        router.add_get("/send-data/{id}", self._database_guard(self.get))

    def _database_guard(self, handler: Handler) -> Handler:
        """A database that fails (unreachable, locked, read-only) is a 503 to retry, not a 500."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except StorageError as exc:
                log.warning("relay %s %s: the database failed (%s)", request.method, request.path, exc)
                if request.method == "POST":
                    self.posts.labels(result="unavailable").inc()
                return error_response(503, "unavailable", "the database is unavailable; retry later",
                                      headers={"Retry-After": "1"})
        return guarded

    # -- helpers ----------------------------------------------------------------------------------
    async def _authenticate(self, request: web.Request) -> RelayKey | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        headers = {"WWW-Authenticate": 'Bearer realm="gatecord-relay"'}
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(
                401, "unauthorized", "send the relay key as 'Authorization: Bearer <key>'", headers=headers
            )
        try:
            key = await self.keys.authenticate(token.strip())
        except KeyExpired as exc:
            return error_response(401, "key_expired", str(exc), headers=headers)
        if key is None:
            return error_response(401, "unauthorized", "unknown or revoked relay key", headers=headers)
        return key

    def _too_large(self) -> web.Response:
        return error_response(413, "payload_too_large", f"the body must be at most {self.max_body_bytes} bytes",
                              max_bytes=self.max_body_bytes)

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The body, or 413 as soon as it passes the cap (also without a Content-Length)."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self._too_large()
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > self.max_body_bytes:
                return self._too_large()
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _reject(self, result: str, response: web.Response) -> web.Response:
        self.posts.labels(result=result).inc()
        return response

    # -- POST /send-data --------------------------------------------------------------------------
    async def post(self, request: web.Request) -> web.Response:
        if not self.accepting:
            return self._reject("restarting", error_response(
                503, "restarting", "the bot is restarting; retry shortly",
                headers={"Retry-After": RESTART_RETRY_AFTER}))
        key = await self._authenticate(request)
        if isinstance(key, web.Response):
            return self._reject("unauthorized", key)
        if request.content_type not in JSON_CONTENT_TYPES:
            shown = request.content_type if request.headers.get("Content-Type") else "none"
            return self._reject("unsupported_media_type", error_response(
                415, "unsupported_media_type", f"Content-Type must be application/json (got {shown})"))
        charset = request.charset
        if charset is not None and charset.lower().replace("-", "") != "utf8":
            return self._reject("unsupported_media_type", error_response(
                415, "unsupported_media_type", f"the body must be UTF-8 JSON (got charset {charset})"))
        raw = await self._read_body(request)
        if isinstance(raw, web.Response):
            return self._reject("payload_too_large", raw)
        try:
            wait_for = await self.limiter.acquire(key.key_id)
        except StorageError:
            return self._reject("unavailable", error_response(
                503, "unavailable", "the key's rate limit could not be checked; retry later",
                headers={"Retry-After": "1"}))
        if wait_for > 0:
            retry = self.limiter.retry_after_header(wait_for)
            return self._reject("rate_limited", error_response(
                429, "rate_limited", f"this key is over its rate limit; retry after {retry} s",
                headers={"Retry-After": retry}, retry_after=round(wait_for, 3)))
        try:
            body = parse_body(raw)
        except BodyError as exc:
            return self._reject("invalid_json", error_response(400, "invalid_json", str(exc)))
        try:
            message = apply_identity(key, validate_payload(body))  # the key's name/avatar; 400 if it forbids the post's
        except PayloadError as exc:
            first = exc.issues[0]
            return self._reject("invalid_body", error_response(
                400, "invalid_body", f"{first.path}: {first.message}", errors=[i.as_dict() for i in exc.issues]))
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None:
            idempotency_key = idempotency_key.strip()
            if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX or not idempotency_key.isprintable():
                return self._reject("invalid_idempotency_key", error_response(
                    400, "invalid_idempotency_key",
                    f"Idempotency-Key must be 1–{IDEMPOTENCY_KEY_MAX} printable characters"))
        try:
            refusal = await self._check_scope(key, message.channel_id)
        except StorageError:
            return self._reject("unavailable", error_response(
                503, "unavailable", "the channel could not be checked; retry later", headers={"Retry-After": "1"}))
        if refusal is not None:
            return self._reject(refusal[0], refusal[1])
        try:
            accepted = await self.outbox.accept(NewPost(key, message, idempotency_key))
        except PostNotStorable as exc:  # this body's own fault: the same body would fail again
            reason = f"the post cannot be stored: {exc}"
            return self._reject("invalid_body", error_response(
                400, "invalid_body", f"$: {reason}", errors=[{"path": "$", "rule": "storable", "message": reason}]))
        except OutboxUnavailable:
            return self._reject("unavailable", error_response(
                503, "unavailable", "the post could not be stored; retry later", headers={"Retry-After": "1"}))
        if accepted.replayed and not accepted.same_body:
            return self._reject("idempotency_conflict", error_response(
                422, "idempotency_key_reused", "this Idempotency-Key was used for a different post", id=accepted.id))
        self.posts.labels(result="replayed" if accepted.replayed else "accepted").inc()
        headers = {"Location": f"/send-data/{accepted.id}"}
        if accepted.replayed:
            headers["Idempotent-Replayed"] = "true"
        if request.query.get("wait", "").lower() in TRUE_VALUES:
            return await self._wait(accepted, headers)
        answer: dict[str, Any] = {"id": accepted.id, "status": "queued"}
        if message.warnings:
            answer["warnings"] = message.warnings
        return web.json_response(answer, status=202, headers=headers)

    async def _check_scope(self, key: RelayKey, channel_id: int) -> tuple[str, web.Response] | None:
        """None when ``key`` may post to ``channel_id``; the same 403 whether or not the channel exists."""
        info = await self.scope.lookup(channel_id)
        if info is None:
            if not await self.scope.ready():
                return ("not_ready", error_response(
                    503, "not_ready", "the bot is still connecting to Discord; retry shortly",
                    headers={"Retry-After": "5"}))
            return _forbidden()
        if info.guild_id != key.guild_id:
            return _forbidden()
        if key.channel_ids and channel_id not in key.channel_ids and info.parent_id not in key.channel_ids:
            return _forbidden()
        if not info.messageable:
            reason = "that channel cannot hold messages (a category or forum); post to a text channel or thread"
            return ("invalid_channel", error_response(
                400, "invalid_body", f"$.channelId: {reason}",
                errors=[{"path": "$.channelId", "rule": "channel:messageable", "message": reason}]))
        return None

    async def _wait(self, accepted: Accepted, headers: dict[str, str]) -> web.Response:
        """The post's answer once it is delivered or failed, or after ``wait_timeout`` (202). A post this
        process delivers wakes the wait at once; one another process delivers is seen by re-reading it
        every ``poll_interval``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        future = self.worker.waiter(accepted.id) if self.worker is not None else None
        try:
            while True:
                record = await self.outbox.get(accepted.id)
                left = deadline - loop.time()
                if record is None or record.status in FINISHED or left <= 0:
                    break
                pause = min(left, self.poll_interval)
                if future is None:
                    await asyncio.sleep(pause)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), pause)
        finally:
            if future is not None and self.worker is not None:
                self.worker.drop_waiter(accepted.id, future)
        if record is None:  # not readable (finished posts are kept for days): the 202 of an accepted post
            return web.json_response({"id": accepted.id, "status": "queued"}, status=202, headers=headers)
        status = {"delivered": 200, "failed": 502}.get(record.status, 202)
        return web.json_response(record.public(), status=status, headers=headers)

    # -- GET /send-data/{id} ----------------------------------------------------------------------
    async def get(self, request: web.Request) -> web.Response:
        key = await self._authenticate(request)
        if isinstance(key, web.Response):
            return key
        post_id = request.match_info["id"]
        record = await self.outbox.get(post_id) if len(post_id) <= 64 else None
        if record is None and self.retention is not None and self._expired(post_id, self.retention):
            days = round(self.retention / 86400, 3)
            return error_response(
                404, "not_found",
                f"post {post_id} is older than the retention period ({days:g} days): delivered and failed posts"
                " are deleted after that", reason="retention", retention_days=days)
        if record is None or record.key_id != key.key_id:
            return error_response(404, "not_found", "no post with that id was sent with this key")
        return web.json_response(record.public())

    def _expired(self, post_id: str, retention: float) -> bool:
        """The id carries a creation time older than the retention period (so it may have been deleted)."""
        created = post_id_time(post_id)
        return created is not None and created < self.clock() - retention

