"""The bot's own HTTP server (aiohttp): ``/health``, ``/ready`` and ``/metrics`` here; features add
their routes.

Routes must be added before ``start()`` (aiohttp freezes the router then), which is why the factory
builds every service that serves HTTP in ``GatecordBot.__init__`` and starts the server after.
Every request is counted by route, method and status (``gatecord_http_requests_total``) and timed.
Slow or idle clients are bounded by ``bot.app.web_guard`` (head and body read timeouts, a connection
cap, keep-alive limits), which is why the listening socket is made here with ``loop.create_server``
around aiohttp's own protocol factory rather than with ``web.TCPSite``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram

from bot.app.metrics import Metrics
from bot.app.settings import HttpSettings
from bot.app.web_guard import ConnectionGuard, open_file_limit

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    def __init__(
        self, host: str, port: int, *, max_body_bytes: int = 1024 * 1024, metrics: Metrics | None = None,
        limits: HttpSettings | None = None, open_files: Callable[[], int | None] = open_file_limit,
    ) -> None:
        """``metrics``: the bot's registry (a new one when omitted); ``/metrics`` serves it.

        ``limits``: timeouts and caps against slow clients (``[http]``; the defaults when omitted).
        ``open_files``: the process's open-file limit, read at start; the connection cap must fit it.
        """
        self.host = host
        self.port = port
        self.metrics = metrics if metrics is not None else Metrics()
        self.requests = Counter(
            "gatecord_http_requests_total", "HTTP requests answered, by route, method and status",
            ("route", "method", "status"), registry=self.metrics.registry,
        )
        self.latency = Histogram(
            "gatecord_http_request_duration_seconds", "Time to answer an HTTP request", ("route", "method"),
            buckets=LATENCY_BUCKETS, registry=self.metrics.registry,
        )
        self.limits = limits if limits is not None else HttpSettings()
        self.guard = ConnectionGuard(self.limits, self.metrics)
        # the guard inside the counter: a body timeout is counted as the 408 the client gets
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._count, self.guard.middleware])
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/ready", self._ready)
        self.app.router.add_get("/metrics", self._metrics)
        self._readiness: dict[str, ReadinessCheck] = {}
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._open_files = open_files
        self.bound_port: int | None = None

    @property
    def router(self) -> web.UrlDispatcher:
        return self.app.router

    @property
    def base_url(self) -> str:
        if self.bound_port is None:
            raise RuntimeError("the web server is not started")
        return f"http://{self.host}:{self.bound_port}"

    @property
    def public_url(self) -> str | None:
        """Where outside systems reach this server: ``[http] public_url``, else the listening address when it
        is a specific one; None when unknown (a wildcard address says nothing of how the machine is reached)."""
        if self.limits.public_url:
            return self.limits.public_url.rstrip("/")
        if self.bound_port is None or self.host in ("", "0.0.0.0", "::"):
            return None
        return self.base_url

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """``GET /ready`` answers 200 only when every registered check passes."""
        self._readiness[name] = check

    async def start(self) -> None:
        self.guard.apply_open_file_limit(self._open_files())
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, keepalive_timeout=self.limits.keepalive_timeout
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set by setup()
        loop = asyncio.get_running_loop()
        factory = self.guard.protocol_factory(server)
        self._listener = await loop.create_server(factory, self.host, self.port, backlog=128)
        sockets = self._listener.sockets  # port 0 → the one chosen
        self.bound_port = int(sockets[0].getsockname()[1]) if sockets else self.port
        log.info("web server listening on http://%s:%s", self.host, self.bound_port)

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.close()  # stop accepting; the runner then closes the open connections
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = _route_label(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.requests.labels(route=route, method=request.method, status=str(status)).inc()
            self.latency.labels(route=route, method=request.method).observe(time.perf_counter() - started)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _ready(self, request: web.Request) -> web.Response:
        checks: dict[str, Any] = {}
        ready = True
        for name, check in self._readiness.items():
            try:
                ok, detail = await check()
            except Exception as exc:  # a failing check is "not ready", never a 500
                ok, detail = False, f"check failed: {type(exc).__name__}"
            checks[name] = {"ok": ok, "detail": detail}
            ready = ready and ok
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=await self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _route_label(request: web.Request) -> str:
    """The route's pattern (``/send-data/{id}``), never the raw path: bounded label values."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical
