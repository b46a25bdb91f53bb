"""HTTP transport: one pooled aiohttp session, per-operation timeouts, retries (see ``retry``).

``request`` and ``open_stream`` both go through ``retry.call_with_retries``; a stream is retried
only while it is being opened, never once its 2xx response is handed to the caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl

from .config import ClientOptions, GatewayConfig
from .errors import (
    GatewayError,
    GatewayTimeout,
    InvalidResponse,
    ResultDownloadFailed,
    UpstreamUnavailable,
    error_from_payload,
    error_from_response,
)
from .meta import CallMeta, apply_headers
from .profiles import Profile, get_profile
from .retry import Jitter, RetryPolicy, Sleep, call_with_retries
from .safe_urls import check_url, public_only_connector, unsafe_from

__all__ = ["Gateway", "Transport", "Reply", "ResultTooLarge", "log"]

log = logging.getLogger("gateway_client")

#: redirects a result download follows, each hop checked again
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class ResultTooLarge(InvalidResponse):
    """A result file above the download cap (``cap`` bytes)."""

    def __init__(self, message: str, *, cap: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.cap = cap


@dataclass(slots=True)
class Gateway:
    """A configured gateway: its config, profile, root URL and authentication headers."""

    config: GatewayConfig
    profile: Profile
    root: str
    auth_headers: dict[str, str] = field(repr=False)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Gateway:
        profile = get_profile(config.profile)
        root = config.base_url.strip().rstrip("/")
        base = profile.base_path.rstrip("/")
        if base and root.endswith(base):  # accept a base URL that already ends with /v1 or /api/v1
            root = root[: -len(base)]
        if profile.auth_style == "x-api-key":
            auth = {"x-api-key": config.api_key}
        else:
            auth = {"Authorization": f"Bearer {config.api_key}"}
        return cls(config=config, profile=profile, root=root, auth_headers=auth)

    @property
    def label(self) -> str:
        return self.config.label

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.config.api_key,) if self.config.api_key else ()

    def url(self, path: str) -> str:
        return self.root + (path if path.startswith("/") else self.profile.resolve(path))

    def same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.root)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    def new_meta(self, operation: str, model: str | None) -> CallMeta:
        return CallMeta(profile=self.profile.name, gateway=self.label, operation=operation, model_requested=model)


@dataclass(slots=True)
class Reply:
    """A complete (non-streamed) answer."""

    status: int
    body: bytes
    content_type: str
    meta: CallMeta
    headers: Mapping[str, str] = field(repr=False)

    def json(self) -> Any:
        """The decoded JSON body; a 2xx body that is not JSON raises InvalidResponse."""
        try:
            return json.loads(self.body)
        except ValueError:
            snippet = self.body[:80].decode("utf-8", "replace")
            raise InvalidResponse(f"the gateway sent invalid JSON: {snippet!r}", status=self.status,
                                  request_id=self.meta.request_id, profile=self.meta.profile) from None


def _transport_error(exc: BaseException, gw: Gateway, what: str, timeout: float | None) -> GatewayError:
    """Map an aiohttp/asyncio failure to the hierarchy, noting whether the request may have been sent."""
    err: GatewayError
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        err = GatewayTimeout(f"could not connect to {gw.label} in time", profile=gw.profile.name)
        err.request_sent = False
        err.connection_error = True
    elif isinstance(exc, asyncio.TimeoutError):
        limit = f" within {timeout:g}s" if timeout else ""
        err = GatewayTimeout(f"{gw.label} did not answer {what}{limit}", profile=gw.profile.name)
    elif isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.UploadAbortedError)):
        err = UpstreamUnavailable(f"cannot connect to {gw.label}: {type(exc).__name__}", profile=gw.profile.name,
                                  secrets=gw.secrets)
        err.request_sent = False
        err.connection_error = True
    else:
        err = UpstreamUnavailable(f"connection to {gw.label} failed: {type(exc).__name__}", profile=gw.profile.name,
                                  secrets=gw.secrets)
        err.connection_error = True
    return err


def url_host(url: str) -> str:
    """``host`` or ``host:port`` of a URL (never its user info or path), for messages."""
    try:
        parsed = yarl.URL(url)
    except ValueError:
        return "an unreadable address"
    host = parsed.host or "an unknown host"
    return f"{host}:{parsed.explicit_port}" if parsed.explicit_port is not None else host


def _download_reason(exc: BaseException, timeout: float | None) -> str:
    """Why a result download got no answer, in a few words."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "could not connect in time"
    if isinstance(exc, TimeoutError):
        return f"no complete answer within {timeout:g} s" if timeout else "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "could not connect"
    return "the connection failed"


class Transport:
    """Owns the aiohttp session (created in ``start``) and runs requests with the retry policy.

    ``sleep`` and ``jitter`` replace ``asyncio.sleep`` and ``random.uniform`` in the retry waits (tests).
    """

    def __init__(self, options: ClientOptions, *, sleep: Sleep | None = None, jitter: Jitter | None = None) -> None:
        self.options = options
        self.retry = RetryPolicy.from_options(options, sleep=sleep, jitter=jitter)
        self.session: aiohttp.ClientSession | None = None
        #: result downloads from anywhere but the gateway's own origin: public addresses only
        self.public_session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(limit=self.options.pool_limit, ttl_dns_cache=300)
            self.session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.options.user_agent},
                timeout=aiohttp.ClientTimeout(total=None),
            )
        if self.public_session is None or self.public_session.closed:
            self.public_session = aiohttp.ClientSession(
                connector=public_only_connector(limit=self.options.pool_limit),
                headers={"User-Agent": self.options.user_agent},
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.public_session is not None:
            await self.public_session.close()
            self.public_session = None

    def _session(self, gw: Gateway) -> aiohttp.ClientSession:
        """The gateway's session: the public-only one for a gateway that may reach public addresses only."""
        if gw.config.public_only:
            check_url(gw.config.base_url, profile=gw.profile.name)  # an IP literal never reaches the resolver
            return self._public()
        if self.session is None or self.session.closed:
            raise RuntimeError("GatewayClient is not started: call `await client.start()` or use `async with`")
        return self.session

    def _public(self) -> aiohttp.ClientSession:
        if self.public_session is None or self.public_session.closed:
            raise RuntimeError("GatewayClient is not started: call `await client.start()` or use `async with`")
        return self.public_session

    def timeout(self, total: float | None = None, *, stream: bool = False) -> aiohttp.ClientTimeout:
        o = self.options
        return aiohttp.ClientTimeout(
            total=total if total is not None else o.total_timeout,
            connect=o.connect_timeout,
            sock_connect=o.connect_timeout,
            sock_read=o.stream_idle_timeout if stream else None,
        )

    # ------------------------------------------------------------------ requests

    async def request(
        self,
        gw: Gateway,
        operation: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
        safe: bool = True,
        retries: int | None = None,
        total: float | None = None,
        model: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One call with retries; returns the 2xx reply or raises the mapped error. ``data`` may be a
        function making the body afresh for each attempt (a multipart form is sent only once)."""

        async def once(meta: CallMeta) -> Reply:
            body = data() if callable(data) else data
            return await self._once(gw, method, path, meta, json_body=json_body, data=body, params=params,
                                    auth=auth, total=total, extra_headers=extra_headers)

        return await call_with_retries(once, lambda: gw.new_meta(operation, model), self.retry, safe=safe,
                                       what=f"{gw.label} {operation}", max_retries=retries)

    async def _once(
        self,
        gw: Gateway,
        method: str,
        path: str,
        meta: CallMeta,
        *,
        json_body: Any,
        data: Any,
        params: Mapping[str, str] | None,
        auth: bool,
        total: float | None,
        extra_headers: Mapping[str, str] | None,
    ) -> Reply:
        session = self._session(gw)
        headers = dict(gw.auth_headers) if auth else {}
        if extra_headers:
            headers.update(extra_headers)
        timeout = self.timeout(total)
        started = time.perf_counter()
        try:
            async with session.request(method, gw.url(path), json=json_body, data=data, params=params,
                                       headers=headers, timeout=timeout) as resp:
                meta.status = resp.status
                apply_headers(meta, resp.headers, gw.profile.meta_headers)
                body = await resp.read()
                content_type = resp.headers.get("Content-Type", "")
                resp_headers = resp.headers
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc, gw, "", timeout.total) from None
        meta.latency_ms = (time.perf_counter() - started) * 1000.0
        log.debug("gateway %s %s %s -> %s in %.0f ms (request %s)", gw.label, method, path, meta.status,
                  meta.latency_ms, meta.request_id)
        if meta.status >= 400:
            raise self.error(gw, meta, body, resp_headers)
        return Reply(meta.status, body, content_type, meta, resp_headers)

    def error(self, gw: Gateway, meta: CallMeta, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        err = error_from_response(meta.status or 0, body, headers, request_id=meta.request_id,
                                  profile=gw.profile.name, secrets=gw.secrets)
        return err

    def payload_error(self, gw: Gateway, meta: CallMeta, payload: Any, status: int | None = None) -> GatewayError:
        return error_from_payload(payload, status=status, request_id=meta.request_id, profile=gw.profile.name,
                                  secrets=gw.secrets)

    async def open_stream(
        self,
        gw: Gateway,
        operation: str,
        path: str,
        body: Any,
        *,
        model: str | None,
    ) -> tuple[aiohttp.ClientResponse, CallMeta, float]:
        """POST and return the open 2xx response (caller releases it); errors are mapped, with retries
        only while nothing has been received."""
        session = self._session(gw)
        headers = dict(gw.auth_headers)
        headers["Accept"] = "text/event-stream"
        timeout = self.timeout(stream=True)

        async def once(meta: CallMeta) -> tuple[aiohttp.ClientResponse, CallMeta, float]:
            started = time.perf_counter()
            try:
                resp = await session.post(gw.url(path), json=body, headers=headers, timeout=timeout)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _transport_error(exc, gw, "", timeout.total) from None
            meta.status = resp.status
            apply_headers(meta, resp.headers, gw.profile.meta_headers)
            if resp.status >= 400:  # HTTP status first: an error comes back as plain JSON or HTML
                try:
                    raw = await resp.read()
                except (TimeoutError, aiohttp.ClientError):
                    raw = b""
                finally:
                    resp.release()
                raise self.error(gw, meta, raw, resp.headers)
            return resp, meta, started

        # Only the opening is retried: once the 2xx response is returned, its bytes belong to the caller.
        return await call_with_retries(once, lambda: gw.new_meta(operation, model), self.retry, safe=True,
                                       what=f"{gw.label} {operation}")

    async def download(self, gw: Gateway, url: str, *, cap: int) -> tuple[bytes, str]:
        """GET a result URL: at most ``cap`` bytes within the total timeout, redirects followed one hop at
        a time (at most ``MAX_REDIRECTS``). A URL on the gateway's own origin is the gateway itself: it goes
        through the gateway's session, with the API key. Any other must be http(s) on a public address
        (gateway_client/safe_urls.py), checked again on every hop; it never gets the API key."""
        timeout = self.timeout()
        host = url_host(url)
        try:
            async with asyncio.timeout(timeout.total):
                for _hop in range(MAX_REDIRECTS + 1):
                    host = url_host(url)
                    if gw.same_origin(url):
                        session, headers = self._session(gw), dict(gw.auth_headers)
                    else:
                        check_url(url, profile=gw.profile.name)
                        session, headers = self._public(), {}
                    try:
                        async with session.get(url, headers=headers, timeout=timeout, allow_redirects=False) as resp:
                            if resp.status not in REDIRECT_STATUSES:
                                return await self._read_result(gw, resp, cap)
                            location = resp.headers.get("Location", "")
                            if not location:
                                raise InvalidResponse("result URL redirected without a Location",
                                                      status=resp.status, profile=gw.profile.name)
                            url = str(resp.url.join(yarl.URL(location)))
                    except aiohttp.ClientConnectorError as exc:
                        unsafe = unsafe_from(exc, profile=gw.profile.name)
                        if unsafe is not None:
                            raise unsafe from None
                        raise
                raise InvalidResponse(f"result URL redirected more than {MAX_REDIRECTS} times",
                                      profile=gw.profile.name)
        except GatewayError:
            raise
        except ValueError as exc:  # an unusable Location
            raise _transport_error(exc, gw, "with the result file", timeout.total) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            # the gateway made the result: say that fetching it failed, and from where, not "gateway down"
            raise ResultDownloadFailed(f"downloading the result from {host} failed: {type(exc).__name__}",
                                       host=host, reason=_download_reason(exc, timeout.total),
                                       profile=gw.profile.name, secrets=gw.secrets) from None

    async def _read_result(self, gw: Gateway, resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, str]:
        if resp.status >= 400:
            raise ResultDownloadFailed(f"downloading the result from {url_host(str(resp.url))} answered HTTP "
                                       f"{resp.status}", host=url_host(str(resp.url)), status=resp.status,
                                       profile=gw.profile.name, secrets=gw.secrets)
        length = resp.content_length
        if length is not None and length > cap:
            raise ResultTooLarge(f"result file is {length} bytes, above the {cap}-byte cap", cap=cap,
                                 status=resp.status, profile=gw.profile.name)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise ResultTooLarge(f"result file exceeds the {cap}-byte cap", cap=cap, status=resp.status,
                                     profile=gw.profile.name)
            chunks.append(chunk)
        return b"".join(chunks), resp.headers.get("Content-Type", "")
