"""Sends one relay post to Discord through discord.py's HTTP client, and sorts failures.

* Exactly once: a bot post carries ``nonce`` = the outbox id with ``enforce_nonce``, so re-sending
  an attempt whose outcome is unknown (timeout, 5xx, crash) returns the message already created.
  Webhook execution has no nonce: before re-sending such a post the channel's recent history is
  searched for a message from our webhook that no delivered post has claimed.
* Failures (``classify``): missing access / unknown channel / other 4xx are permanent; 429, 5xx and
  network errors are retryable. discord.py itself waits out per-route buckets and 429s
  (``retry_after``) and retries 5xx before an error reaches here.

The relay sends the validated JSON as it came (raw components, ``enforce_nonce``), which discord.py's
``send()`` helpers do not take, so requests go through the public ``discord.http.Route`` +
``client.http.request``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import discord
from discord.http import Route

from bot.relay.outbox import Outbox, PostRecord
from bot.relay.ratelimit import Pacer
from bot.storage.store import Store

log = logging.getLogger(__name__)

WEBHOOK_NAME = "Gatecord relay"
RECONCILE_MARGIN = 120.0  # seconds of history before the first in-doubt attempt to search
NO_WEBHOOK_RECHECK = 300.0  # seconds before asking again for a webhook in a channel where that was refused
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

    def __init__(
        self, client: discord.Client, store: Store, outbox: Outbox, pacer: Pacer, *, request_timeout: float
    ) -> None:
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
            # A bot message cannot carry another name or avatar: the post appears as the bot itself (never
            # as anyone else), and its status says why the key's (or the post's) name was not used.
            body = {k: v for k, v in record.body.items() if k not in ("username", "avatar_url")}
            note = ("posted as the bot: it lacks Manage Webhooks here, so the name and avatar"
                    f" ({record.body.get('username') or 'the webhook default'}) were not applied")
            await self.outbox.switch_to_bot(record.id, body, note)
            return await self._send_bot(record.id, record.channel_id, body, note=note)
        return await self._send_bot(record.id, record.channel_id, record.body)

    # -- bot path ---------------------------------------------------------------------------------
    async def _send_bot(
        self, post_id: str, channel_id: int, body: dict[str, Any], *, note: str | None = None
    ) -> Delivered:
        payload = {k: v for k, v in body.items() if k not in ("username", "avatar_url")}
        payload["nonce"] = post_id
        payload["enforce_nonce"] = True
        try:
            data = await self._call(
                Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id), json=payload
            )
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
            row = await self.store.fetchone(
                "SELECT webhook_id, token FROM relay_webhooks WHERE channel_id = ?", (parent_id,)
            )
            if row is not None:
                return int(row["webhook_id"]), row["token"], thread_id
            if self._no_webhook_until.get(parent_id, 0.0) > time.monotonic() or self._lacks_manage_webhooks(parent_id):
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
            await self.store.execute(  # another process may have stored one meanwhile: the last one wins
                "INSERT INTO relay_webhooks(channel_id, webhook_id, token, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (channel_id) DO UPDATE SET webhook_id = excluded.webhook_id, token = excluded.token",
                (parent_id, int(webhook["id"]), webhook["token"], int(time.time())),
            )
            return int(webhook["id"]), webhook["token"], thread_id

    def _lacks_manage_webhooks(self, channel_id: int) -> bool:
        """discord.py's cache says the bot may not manage this channel's webhooks: don't ask Discord (a
        refused request counts against the bot's invalid-request limit). False when the cache cannot say."""
        channel = self.client.get_channel(channel_id)
        guild = getattr(channel, "guild", None)
        if channel is None or guild is None or guild.me is None or isinstance(channel, discord.abc.PrivateChannel):
            return False
        return not channel.permissions_for(guild.me).manage_webhooks

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

    async def _send_webhook(
        self, record: PostRecord, target: tuple[int, str, int | None], *, prior_doubt: float | None
    ) -> Delivered:
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
        after = discord.utils.time_snowflake(dt.datetime.fromtimestamp(since - RECONCILE_MARGIN, dt.UTC))
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
    return all(
        (a.get("title"), a.get("description")) == (b.get("title"), b.get("description"))
        for a, b in zip(sent, got, strict=True)
    )
