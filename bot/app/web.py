"""The bot's own HTTP server (aiohttp): ``/health``, ``/ready`` and ``/metrics`` here; features add
their routes.

Routes must be added before ``start()`` (aiohttp freezes the router then), which is why the factory
builds every service that serves HTTP in ``GatecordBot.__init__`` and starts the server after.
Every request is counted by route, method and status (``gatecord_http_requests_total``) and timed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram

from bot.app.metrics import Metrics

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    def __init__(
        self, host: str, port: int, *, max_body_bytes: int = 1024 * 1024, metrics: Metrics | None = None
    ) -> None:
        """``metrics``: the bot's registry (a new one when omitted); ``/metrics`` serves it."""
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
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._count])
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/ready", self._ready)
        self.app.router.add_get("/metrics", self._metrics)
        self._readiness: dict[str, ReadinessCheck] = {}
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    @property
    def router(self) -> web.UrlDispatcher:
        return self.app.router

    @property
    def base_url(self) -> str:
        if self.bound_port is None:
            raise RuntimeError("the web server is not started")
        return f"http://{self.host}:{self.bound_port}"

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """``GET /ready`` answers 200 only when every registered check passes."""
        self._readiness[name] = check

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses  # (host, port, …) of every listening socket; port 0 → the one chosen
        self.bound_port = int(addresses[0][1]) if addresses else self.port
        log.info("web server listening on http://%s:%s", self.host, self.bound_port)

    async def close(self) -> None:
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
