"""The bot's own HTTP server (aiohttp): health and readiness here; features add their routes.

Routes must be added before ``start()`` (aiohttp freezes the router then), which is why the factory
loads the cogs first and starts the server after.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


class WebServer:
    def __init__(self, host: str, port: int, *, max_body_bytes: int = 1024 * 1024) -> None:
        self.host = host
        self.port = port
        self.app = web.Application(client_max_size=max_body_bytes)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/ready", self._ready)
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
        sockets = getattr(site._server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("web server listening on http://%s:%s", self.host, self.bound_port)

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

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
