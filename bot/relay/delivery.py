"""The delivery worker: drains the outbox into Discord through discord.py's HTTP client.

* Order: posts to one channel are sent one at a time, in acceptance order; different channels are
  delivered concurrently (up to ``concurrency`` at once), paced below Discord's global limit.
  discord.py itself waits out per-route buckets and 429s (``retry_after``) and retries 5xx.
* Exactly once: a bot post carries ``nonce`` = the outbox id with ``enforce_nonce``, so re-sending
  an attempt whose outcome is unknown (timeout, 5xx, crash) returns the message already created.
  Webhook execution has no nonce: before re-sending such a post the channel's recent history is
  searched for a message from our webhook that no delivered post has claimed.
* Failures: missing access / unknown channel / other 4xx are permanent (``failed`` with the reason);
  429, 5xx and network errors are retried with exponential backoff up to ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import discord
from discord.http import Route

from bot.relay.metrics import DELIVERY_BUCKETS, Registry
from bot.relay.outbox import Outbox, PostRecord, QueuedPost
from bot.relay.ratelimit import Pacer
from bot.storage.store import Store

log = logging.getLogger(__name__)

WEBHOOK_NAME = "Gatecord relay"
RECONCILE_MARGIN = 120.0
NO_WEBHOOK_RECHECK = 300.0  # seconds before asking again for a webhook in a channel where that was refused  # seconds of history before the first in-doubt attempt to search
THREAD_TYPES = (10, 11, 12)
PERMANENT_NAMES = {
    10003: "unknown_channel",
    50001: "missing_access",
    50013: "missing_permissions",
    50035: "invalid_form_body",
    50006: "empty_message",
    40005: "request_too_large",
    10015: "unknown_webhook",
    50008: "cannot_send_in_channel",
    160005: "thread_locked",
    30007: "max_webhooks",
}
WEBHOOK_FALLBACK_CODES = {50013, 50001, 30007}


class DeliveryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PermanentError(DeliveryError):
    """Discord refused the post for good (no access, unknown channel, invalid body)."""


class RetryableError(DeliveryError):
    """Try again later. ``in_doubt``: the request may have created the message (5xx, timeout)."""

    def __init__(self, code: str, message: str, *, in_doubt: bool, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.in_doubt = in_doubt
        self.retry_after = retry_after


def classify(exc: BaseException) -> DeliveryError:
    """Map an exception from discord.py / aiohttp to a permanent or retryable delivery error."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, discord.RateLimited):
        return RetryableError("rate_limited", f"Discord rate limit, retry after {exc.retry_after:.1f}s",
                              in_doubt=False, retry_after=exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        status = exc.status
        text = (exc.text or "").strip() or (exc.response.reason if exc.response is not None else "") or "error"
        if status == 429:
            retry = None
            try:
                retry = float(exc.response.headers.get("Retry-After", "")) if exc.response is not None else None
            except ValueError:
                retry = None
            return RetryableError("rate_limited", f"Discord answered 429: {text}", in_doubt=False, retry_after=retry)
        if status >= 500:
            return RetryableError(f"discord_{status}", f"Discord answered {status}: {text}", in_doubt=True)
        name = PERMANENT_NAMES.get(exc.code) or {403: "forbidden", 404: "not_found"}.get(status, f"http_{status}")
        detail = f"Discord answered {status}" + (f" (code {exc.code})" if exc.code else "") + f": {text}"
        return PermanentError(name, detail)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RetryableError("timeout", "Discord did not answer in time", in_doubt=True)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return RetryableError("network_error", f"network error talking to Discord: {type(exc).__name__}", in_doubt=True)
    return RetryableError("internal_error", f"unexpected error: {type(exc).__name__}", in_doubt=True)


@dataclass(frozen=True, slots=True)
class Delivered:
    message_id: int
    note: str | None = None
    reconciled: bool = False


class Transport(Protocol):
    async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered: ...


class DiscordTransport:
    """Sends one outbox post through discord.py's HTTP client (bot message or channel webhook)."""

    def __init__(self, client: discord.Client, store: Store, outbox: Outbox, pacer: Pacer, *, request_timeout: float) -> None:
        self.client = client
        self.store = store
        self.outbox = outbox
        self.pacer = pacer
        self.request_timeout = request_timeout
        self._webhook_locks: dict[int, asyncio.Lock] = {}
        self._no_webhook_until: dict[int, float] = {}  # channel -> monotonic time: no permission, don't ask again yet

    async def _call(self, route: Route, **kwargs: Any) -> Any:
        await self.pacer.wait()
        return await asyncio.wait_for(self.client.http.request(route, **kwargs), self.request_timeout)

    async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered:
        if record.via == "webhook":
            target = await self._webhook_target(record)
            if target is not None:
                return await self._send_webhook(record, target, prior_doubt=prior_doubt)
            body = {k: v for k, v in record.body.items() if k not in ("username", "avatar_url")}
            note = "posted as the bot: it lacks Manage Webhooks here, so username/avatar_url were not applied"
            await self.outbox.switch_to_bot(record.id, body, note)
            return await self._send_bot(record.id, record.channel_id, body, note=note)
        return await self._send_bot(record.id, record.channel_id, record.body)

    # -- bot path ---------------------------------------------------------------------------------
    async def _send_bot(self, post_id: str, channel_id: int, body: dict[str, Any], *, note: str | None = None) -> Delivered:
        payload = {k: v for k, v in body.items() if k not in ("username", "avatar_url")}
        payload["nonce"] = post_id
        payload["enforce_nonce"] = True
        try:
            data = await self._call(Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id), json=payload)
        except Exception as exc:
            raise classify(exc) from exc
        return Delivered(int(data["id"]), note=note)

    # -- webhook path -----------------------------------------------------------------------------
    async def _channel_info(self, channel_id: int) -> tuple[int, int | None]:
        """(channel holding the webhook, thread id or None)."""
        channel = self.client.get_channel(channel_id)
        if isinstance(channel, discord.Thread):
            return int(channel.parent_id), channel.id
        if channel is not None:
            return channel_id, None
        try:
            data = await self._call(Route("GET", "/channels/{channel_id}", channel_id=channel_id))
        except Exception as exc:
            raise classify(exc) from exc
        if int(data.get("type", 0)) in THREAD_TYPES and data.get("parent_id"):
            return int(data["parent_id"]), channel_id
        return channel_id, None

    async def _webhook_target(self, record: PostRecord) -> tuple[int, str, int | None] | None:
        """(webhook id, token, thread id), creating the channel's webhook once; None = no permission."""
        parent_id, thread_id = await self._channel_info(record.channel_id)
        lock = self._webhook_locks.setdefault(parent_id, asyncio.Lock())
        async with lock:
            row = await self.store.fetchone("SELECT webhook_id, token FROM relay_webhooks WHERE channel_id = ?", (parent_id,))
            if row is not None:
                return int(row["webhook_id"]), row["token"], thread_id
            if self._no_webhook_until.get(parent_id, 0.0) > time.monotonic():
                return None
            try:
                webhook = await self._find_or_create_webhook(parent_id)
            except discord.HTTPException as exc:
                if exc.code in WEBHOOK_FALLBACK_CODES or (exc.status == 403 and exc.code == 0):
                    # Refused requests count against Discord's invalid-request limit: don't retry for a while.
                    self._no_webhook_until[parent_id] = time.monotonic() + NO_WEBHOOK_RECHECK
                    return None
                raise classify(exc) from exc
            except Exception as exc:
                raise classify(exc) from exc
            await self.store.execute(
                "INSERT INTO relay_webhooks(channel_id, webhook_id, token, created_at) VALUES (?, ?, ?, strftime('%s','now'))"
                " ON CONFLICT(channel_id) DO UPDATE SET webhook_id = excluded.webhook_id, token = excluded.token",
                (parent_id, int(webhook["id"]), webhook["token"]),
            )
            return int(webhook["id"]), webhook["token"], thread_id

    async def _find_or_create_webhook(self, channel_id: int) -> dict[str, Any]:
        """Reuse a webhook this bot created earlier (e.g. before a crash), else create one."""
        me = self.client.user.id if self.client.user else None
        existing = await self._call(Route("GET", "/channels/{channel_id}/webhooks", channel_id=channel_id))
        for hook in existing or []:
            owner = (hook.get("user") or {}).get("id")
            if hook.get("token") and owner is not None and int(owner) == me and hook.get("name") == WEBHOOK_NAME:
                return hook
        return await self._call(
            Route("POST", "/channels/{channel_id}/webhooks", channel_id=channel_id), json={"name": WEBHOOK_NAME}
        )

    async def _send_webhook(self, record: PostRecord, target: tuple[int, str, int | None], *, prior_doubt: float | None) -> Delivered:
        webhook_id, token, thread_id = target
        if prior_doubt is not None:
            found = await self._reconcile(record, webhook_id, prior_doubt)
            if found is not None:
                return Delivered(found, reconciled=True)
        params: dict[str, str] = {"wait": "true"}
        if thread_id is not None:
            params["thread_id"] = str(thread_id)
        route = Route("POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=webhook_id, webhook_token=token)
        try:
            data = await self._call(route, json=record.body, params=params)
        except discord.HTTPException as exc:
            if exc.status == 404 and exc.code in (10015, 0):
                # Someone deleted our webhook: forget it; the next attempt creates a new one.
                await self.store.execute("DELETE FROM relay_webhooks WHERE webhook_id = ?", (webhook_id,))
                raise RetryableError("unknown_webhook", "the channel webhook was deleted; recreating it",
                                     in_doubt=False, retry_after=0.0) from exc
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
        return Delivered(int(data["id"]))

    async def _reconcile(self, record: PostRecord, webhook_id: int, since: float) -> int | None:
        """Find the message an earlier, unanswered attempt created: from our webhook, after ``since``,
        claimed by no other post, with the same content. None when there is none (or history is unreadable)."""
        after = discord.utils.time_snowflake(dt.datetime.fromtimestamp(since - RECONCILE_MARGIN, dt.timezone.utc))
        try:
            messages = await self._call(
                Route("GET", "/channels/{channel_id}/messages", channel_id=record.channel_id),
                params={"limit": 100, "after": after},
            )
        except Exception as exc:
            log.warning("relay %s: cannot read history to check an earlier attempt (%s); re-sending", record.id,
                        classify(exc).code)
            return None
        ours = [m for m in messages or [] if str(m.get("webhook_id")) == str(webhook_id)]
        claimed = await self.outbox.recorded_message_ids(record.channel_id, [int(m["id"]) for m in ours])
        for message in sorted(ours, key=lambda m: int(m["id"])):
            if int(message["id"]) not in claimed and _same_message(message, record.body):
                log.info("relay %s: an earlier attempt had been delivered as %s", record.id, message["id"])
                return int(message["id"])
        return None


def _same_message(message: dict[str, Any], body: dict[str, Any]) -> bool:
    if (message.get("content") or "") != (body.get("content") or ""):
        return False
    sent, got = body.get("embeds") or [], message.get("embeds") or []
    if len(sent) != len(got):
        return False
    return all((a.get("title"), a.get("description")) == (b.get("title"), b.get("description")) for a, b in zip(sent, got))


class DeliveryWorker:
    """Schedules deliveries per channel, records every outcome in the outbox, wakes ``?wait=true`` callers."""

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        registry: Registry,
        *,
        concurrency: int,
        max_attempts: int,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.transport = transport
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.clock = clock
        self._channels: dict[int, deque[str]] = {}
        self._known: set[str] = set()
        self._active: set[int] = set()
        self._ready: asyncio.Queue[int] = asyncio.Queue()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: dict[asyncio.Task[None], str] = {}
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}
        self._stopping = False
        self.deliveries = registry.counter(
            "gatecord_relay_deliveries_total", "Relay delivery outcomes (delivered, failed, retried)", ("outcome",)
        )
        self.latency = registry.histogram(
            "gatecord_relay_delivery_latency_seconds", "Seconds from acceptance to delivery in Discord",
            buckets=DELIVERY_BUCKETS,
        )
        self.pending_gauge = registry.gauge(
            "gatecord_relay_scheduled_posts", "Posts held by the delivery scheduler (queued or retrying)"
        )

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every undelivered post (after a restart: including in-flight ones) and start the workers."""
        self._stopping = False
        self._channels.clear()
        self._known.clear()
        self._active.clear()
        self._ready = asyncio.Queue()
        pending = await self.outbox.pending()
        self._add(pending)
        for i in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._work(), name=f"relay-delivery-{i}"))
        if pending:
            log.info("relay: %d undelivered post(s) resumed from the outbox", len(pending))

    async def stop(self, grace: float = 5.0) -> None:
        """Let in-flight sends finish for up to ``grace`` seconds, then cancel (they stay in the outbox)."""
        self._stopping = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        idle = [t for t in self._tasks if t not in self._busy]
        for task in idle:
            task.cancel()
        busy = [t for t in self._tasks if t in self._busy]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # -- scheduling -------------------------------------------------------------------------------
    def enqueue(self, posts: list[QueuedPost]) -> None:
        """Called right after the outbox commits new posts."""
        self._add(posts)

    def _add(self, posts: list[QueuedPost]) -> None:
        now = self.clock()
        for post in posts:
            if post.id in self._known:
                continue
            self._known.add(post.id)
            queue = self._channels.setdefault(post.channel_id, deque())
            queue.append(post.id)
            if post.channel_id not in self._active:
                self._active.add(post.channel_id)
                delay = post.next_attempt_at - now
                if delay > 0:
                    self._later(post.channel_id, delay)
                else:
                    self._ready.put_nowait(post.channel_id)
        self.pending_gauge.set(len(self._known))

    def _later(self, channel_id: int, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(channel_id, None)
            self._ready.put_nowait(channel_id)

        self._timers[channel_id] = loop.call_later(delay, fire)

    @property
    def scheduled(self) -> int:
        return len(self._known)

    def waiter(self, post_id: str) -> asyncio.Future[str]:
        """A future set to the final status ("delivered"/"failed") when this process settles the post."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(post_id, []).append(future)
        return future

    def drop_waiter(self, post_id: str, future: asyncio.Future[str]) -> None:
        futures = self._waiters.get(post_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._waiters[post_id]

    def _settle(self, post_id: str, status: str) -> None:
        for future in self._waiters.pop(post_id, []):
            if not future.done():
                future.set_result(status)

    async def _work(self) -> None:
        while True:
            channel_id = await self._ready.get()
            queue = self._channels.get(channel_id)
            if not queue:
                self._active.discard(channel_id)
                continue
            post_id = queue[0]
            task = asyncio.current_task()
            assert task is not None
            self._busy[task] = post_id
            try:
                retry_in = await self._process(post_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the outbox itself failed (database): try the channel again shortly
                log.exception("relay %s: delivery bookkeeping failed", post_id)
                retry_in = 5.0
            finally:
                self._busy.pop(task, None)
            if self._stopping:
                return  # the outbox holds the post's state; the next start picks it up
            if retry_in is not None:
                self._later(channel_id, retry_in)
                continue
            queue.popleft()
            self._known.discard(post_id)
            self.pending_gauge.set(len(self._known))
            if queue:
                self._ready.put_nowait(channel_id)
            else:
                del self._channels[channel_id]
                self._active.discard(channel_id)

    def backoff(self, attempts: int) -> float:
        base = min(self.retry_max_delay, self.retry_base_delay * (2 ** max(0, attempts - 1)))
        return base * random.uniform(0.8, 1.2)

    async def _process(self, post_id: str) -> float | None:
        """One attempt. Returns None when the post is settled, else the seconds until the next attempt."""
        record = await self.outbox.get(post_id)
        if record is None or record.status in ("delivered", "failed"):
            self._settle(post_id, record.status if record else "failed")
            return None
        prior_doubt = record.in_doubt_since
        started = self.clock()
        await self.outbox.mark_attempt(post_id, started)
        attempts = record.attempts + 1
        try:
            result = await self.transport.deliver(record, prior_doubt=prior_doubt)
        except asyncio.CancelledError:
            raise  # shutting down: the post stays "sending" and is resumed (same nonce) on the next start
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, RetryableError) and attempts < self.max_attempts:
                delay = self.backoff(attempts)
                if error.retry_after is not None:
                    delay = max(error.retry_after, 0.0) if error.code == "unknown_webhook" else max(delay, error.retry_after)
                doubt = (prior_doubt or started) if error.in_doubt else prior_doubt
                await self.outbox.mark_retry(post_id, at=self.clock() + delay, in_doubt_since=doubt,
                                             code=error.code, message=error.message)
                self.deliveries.inc(outcome="retried")
                log.info("relay %s: attempt %d failed (%s); retrying in %.1fs", post_id, attempts, error.code, delay)
                return delay
            message = error.message
            if isinstance(error, RetryableError):
                message = f"gave up after {attempts} attempts; last error: {error.message}"
            await self.outbox.mark_failed(post_id, error.code, message)
            self.deliveries.inc(outcome="failed")
            log.warning("relay %s: failed (%s)", post_id, error.code)
            self._settle(post_id, "failed")
            return None
        await self.outbox.mark_delivered(post_id, result.message_id, note=result.note)
        self.deliveries.inc(outcome="delivered")
        self.latency.observe(max(0.0, self.clock() - record.created_at))
        self._settle(post_id, "delivered")
        return None
