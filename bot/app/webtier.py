"""``gatecord web``: the web tier alone — ``/send-data`` (POST, and GET ``/send-data/{id}``),
``/openapi.json``, ``/health``, ``/ready``, ``/metrics`` — with no Discord gateway connection.

Run as many replicas as wanted behind a load balancer: each accepts relay posts into the outbox in
PostgreSQL (the relay in "accept only" mode, ``RelayService(deliver=False)``), checks channels in the
shared channel directory that the ``gatecord run`` processes fill, and answers status and ``?wait=true``
from the database; the run processes deliver. SQLite is one process's database: there the web tier is
refused, and ``gatecord run`` serves ``/send-data`` itself.

The web tier never migrates: it refuses to start on a database older (or newer) than the code, and
``gatecord migrate`` (or a ``gatecord run`` process, which migrates at start under an advisory lock)
brings it up to date. Replicas of a new release that start before the migration exit with code 2 and
are started again by their supervisor, instead of changing the schema under running processes.

SIGTERM/SIGINT drains as ``gatecord run`` does: new posts get 503 ``restarting`` (and ``/ready`` 503,
so the load balancer stops sending), requests in progress get up to ``shutdown.drain_seconds`` to
finish (posts being stored are committed), then the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bot.app.draining import drain_tasks
from bot.app.factory import VERSION
from bot.app.readiness import database_check
from bot.app.settings import ConfigError, Settings
from bot.app.web import Handler, WebServer
from bot.relay.service import RelayService
from bot.storage.errors import DatabaseTooOld
from bot.storage.migrations import latest_version
from bot.storage.postgres_backend import safe_url
from bot.storage.store import Store

log = logging.getLogger(__name__)

__all__ = ["NEEDS_POSTGRESQL", "WebTier", "require_postgresql"]

NEEDS_POSTGRESQL = (
    "`gatecord web` needs PostgreSQL, shared with the `gatecord run` processes that deliver: set [storage] url "
    "(GATECORD_STORAGE__URL) to a postgresql:// URL. With SQLite (storage.path) there is one process, and "
    "`gatecord run` serves /send-data itself"
)


def require_postgresql(settings: Settings) -> None:
    """Raise ``ConfigError`` (one line for the operator) unless the storage is PostgreSQL."""
    if settings.storage.url is None:
        raise ConfigError(NEEDS_POSTGRESQL)


class WebTier:
    """The web server, the relay accepting posts, and the database; nothing connects until ``start()``."""

    def __init__(self, settings: Settings) -> None:
        require_postgresql(settings)
        self.settings = settings
        self.store = Store.from_settings(settings.storage)
        self.web = WebServer(settings.http.host, settings.http.port, max_body_bytes=settings.http.max_body_bytes,
                             limits=settings.http)
        # no Discord client: channels come from the shared directory, delivery from the run processes
        self.relay = RelayService(None, self.store, settings, deliver=False, metrics=self.web.metrics,
                                  version=VERSION)
        self.relay.add_routes(self.web.router)
        self.web.add_readiness_check("database", lambda: database_check(self.store))
        self.web.add_readiness_check("accepting", self._accepting_ready)
        self._requests: set[asyncio.Task[object]] = set()
        self.web.app.middlewares.append(self._in_progress)  # before start: aiohttp freezes the app then
        self._drain: asyncio.Future[str] | None = None

    async def start(self) -> None:
        """Open the database (refused when its schema is not the code's), then accept and listen."""
        version = await self.store.open(migrate=False)  # raises DatabaseTooNew for a newer one
        latest = latest_version()
        if version < latest:
            await self.store.close()
            raise DatabaseTooOld(version, latest, safe_url(self.store.url or ""))
        await self.relay.start()
        await self.web.start()
        log.info("web tier ready: relay posts accepted into %s (delivered by the `gatecord run` processes)",
                 self.store.describe())

    @web.middleware
    async def _in_progress(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Each request runs in a task of its own (aiohttp's): the drain waits for these."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - aiohttp always runs handlers in a task
            return await handler(request)
        self._requests.add(task)
        try:
            return await handler(request)
        finally:
            self._requests.discard(task)

    async def drain(self, seconds: float | None = None) -> str:
        """Refuse new posts (503 restarting) at once, let the requests in progress finish for up to
        ``seconds`` (default ``shutdown.drain_seconds``), then cut off the rest; returns (and logs) one
        line. Runs once: later calls wait for the first."""
        if self._drain is None:
            seconds = self.settings.shutdown.drain_seconds if seconds is None else seconds
            self.relay.api.stop_accepting()
            log.info("draining: new relay posts are refused; requests in progress get up to %g s", seconds)
            self._drain = asyncio.ensure_future(self._drain_requests(seconds))
        return await asyncio.shield(self._drain)

    async def _drain_requests(self, seconds: float) -> str:
        loop = asyncio.get_running_loop()
        began = loop.time()
        drained = await drain_tasks(lambda: set(self._requests), seconds)
        summary = (f"drained in {loop.time() - began:.1f} s: {drained.finished} request(s) finished, "
                   f"{drained.cancelled} cut off")
        log.info(summary)
        return summary

    async def close(self) -> None:
        """Drain (when nobody did), then stop the relay (posts being stored are committed), the web
        server and the database."""
        try:
            if self.store.is_open or self._drain is not None:
                await self.drain()
        except Exception:
            log.exception("draining before closing failed")
        try:
            await self.relay.stop()
        except Exception:
            log.exception("relay: stopping failed")
        finally:
            await self.web.close()
            await self.store.close()

    async def _accepting_ready(self) -> tuple[bool, str]:
        if self._drain is None:
            return True, "accepting relay posts (delivered by the `gatecord run` processes)"
        return False, "draining before it stops: new posts are refused"
