"""``WebUI``: the aiohttp app serving the page, its static files, attachment bytes and the API."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from aiohttp import web

from .actions import Actions
from .live import LiveUpdates, snapshot
from .shop import ShopActions

if TYPE_CHECKING:
    from sandbox.discord_emulator import DiscordEmulator

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 30 * 1024 * 1024  # Discord's 25 MiB per request, plus form overhead


class WebUI:
    """A Discord-like page driving ``emu`` as its users would; binds 127.0.0.1 only.

    ``relay_url`` is the bot's web server base URL (or a callable returning it once known): the relay
    form is forwarded there as ``POST /send-data``. ``persistence``: one sentence on what the sandbox
    keeps across runs, shown on the page.
    """

    def __init__(
        self,
        emu: "DiscordEmulator",
        *,
        relay_url: Union[str, Callable[[], Optional[str]], None] = None,
        port: int = 0,
        persistence: Optional[str] = None,
    ) -> None:
        self.emu = emu
        self.persistence = persistence  # what is kept across runs, shown on the page
        self.host = "127.0.0.1"
        self.port = port
        self._relay_url = relay_url
        self.live = LiveUpdates(emu)
        self.actions = Actions(emu, self.live, self.relay_url)
        self._runner: Optional[web.AppRunner] = None
        self._bound: Optional[int] = None

    def relay_url(self) -> Optional[str]:
        value = self._relay_url
        return value() if callable(value) else value

    def set_relay_url(self, url: Union[str, Callable[[], Optional[str]], None]) -> None:
        self._relay_url = url

    @property
    def url(self) -> str:
        if self._bound is None:
            raise RuntimeError("the web UI is not started")
        return f"http://{self.host}:{self._bound}/"

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/live", self.live.serve)
        app.router.add_get("/api/info", self._info)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._attachment)
        app.router.add_routes(self.actions.routes())
        app.router.add_routes(ShopActions(self.emu, self.actions._wrap).routes())
        app.router.add_static("/static/", STATIC_DIR, append_version=False)
        return app

    async def start(self) -> "WebUI":
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 — the only way to learn the bound port
        assert server is not None and server.sockets
        self._bound = server.sockets[0].getsockname()[1]
        self.live.start()
        return self

    async def close(self) -> None:
        await self.live.close()
        await self.actions.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.shutdown()
            await runner.cleanup()

    async def __aenter__(self) -> "WebUI":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- handlers -------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(snapshot(self.emu))

    async def _info(self, request: web.Request) -> web.Response:
        """Where the bot's /send-data lives (the relay form shows it for curl users), what is kept."""
        return web.json_response({"relay_url": self.relay_url(), "persistence": self.persistence})

    async def _attachment(self, request: web.Request) -> web.Response:
        try:
            att_id = int(request.match_info["attachment_id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        att = self.emu.store.attachments.get(att_id)
        if att is None or att.filename != request.match_info["filename"]:
            raise web.HTTPNotFound()
        return web.Response(
            body=att.data,
            headers={"Content-Type": att.content_type, "Cache-Control": "private, max-age=3600",
                     "X-Content-Type-Options": "nosniff"},
        )
