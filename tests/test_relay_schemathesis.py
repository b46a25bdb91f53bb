"""A short schemathesis pass against the bot's web server (relay routes, /health, /ready, /metrics,
/openapi.json) started on 127.0.0.1: requests generated from /openapi.json, inside and outside the
document (positive and negative data), and not one may get a 5xx. JSON answers must also match the
response the document gives for their status.

The server is the one the bot runs (``WebServer`` + ``RelayService``), on its own event loop in a
thread (schemathesis calls it over HTTP, synchronously); Discord is replaced by a transport that
delivers at once and a channel scope that puts every channel in the key's guild, so generated posts
get past the 403 to the outbox. The pass runs on an SQLite outbox and on a PostgreSQL one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from bot.app.settings import Settings
from bot.app.web import WebServer
from bot.relay.api import ChannelInfo
from bot.relay.openapi import build_document, validate_response
from bot.relay.outbox import PostRecord
from bot.relay.service import RelayService
from bot.relay.transport import Delivered
from bot.storage.store import Store

GUILD = 1000
DOCUMENT = build_document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Every operation with data from the document; the relay's post also with data outside it (the other
# operations have nothing that can be made invalid but the key, which is fixed here).
RUNS = [(path, method.upper(), POSITIVE) for path, item in DOCUMENT["paths"].items() for method in item]
RUNS.append(("/send-data", "POST", NEGATIVE))
# Bounded: a few seconds in all. Data outside the document is where 5xx hide (the {} or [] component
# type of issue 15 turned up within 300 negative examples), hence more of those.
EXAMPLES = {POSITIVE: 50, NEGATIVE: 200}


class EveryChannelIsOurs:
    async def ready(self) -> bool:
        return True

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        return ChannelInfo(GUILD, None, True)


class InstantTransport:
    def __init__(self) -> None:
        self.next_id = 700_000

    async def deliver(self, record: PostRecord, *, prior_doubt: float | None) -> Delivered:
        self.next_id += 1
        return Delivered(self.next_id)


class Server:
    """The web server with the relay on an event loop of its own thread."""

    def __init__(self, tmp: Path, url: str | None = None) -> None:
        self.tmp = tmp
        self.url = url  # PostgreSQL; None: an SQLite file in tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="schemathesis-server", daemon=True)
        self.base_url = ""
        self.key = ""

    def run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=30)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.store = Store(url=self.url) if self.url else Store(self.tmp / "relay.db")
        await self.store.open()
        settings = Settings(
            storage={"path": str(self.tmp / "relay.db")}, http={"max_body_bytes": 64 * 1024},
            relay={"rate_per_minute": 1_000_000, "burst": 1_000_000, "wait_timeout": 0.5},
        )
        self.web = WebServer("127.0.0.1", 0, max_body_bytes=64 * 1024)
        self.service = RelayService(None, self.store, settings, metrics=self.web.metrics,
                                    scope=EveryChannelIsOurs(), transport=InstantTransport())
        self.service.add_routes(self.web.router)
        await self.web.start()
        await self.service.start()
        self.base_url = self.web.base_url
        self.key = (await self.service.keys.create(GUILD, name="fuzz", created_by=1, channel_ids=())).secret

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _stop(self) -> None:
        await self.service.stop(1.0)
        await self.web.close()
        await self.store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = None
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg_server")
        url = pg.create_database("schemathesis", template=request.getfixturevalue("pg_migrated_template"))
    s = Server(tmp_path_factory.mktemp("schemathesis"), url)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        if url is not None:
            pg.drop_database("schemathesis")


@pytest.mark.parametrize("path, method, mode", RUNS, ids=[f"{m} {p} {g.value}" for p, m, g in RUNS])
def test_no_generated_request_gets_a_server_error(server: Server, path: str, method: str,
                                                  mode: schemathesis.GenerationMode) -> None:
    operation = SCHEMA[path][method]
    auth = {"Authorization": f"Bearer {server.key}"}
    seen: list[int] = []

    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])  # no shrinking
    @given(case=operation.as_strategy(mode, headers=auth))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.base_url, timeout=10)
        seen.append(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}" \
                                           f" {response.text[:300]!r} for {case.body!r}"[:2000]
        if response.headers.get("Content-Type", "").startswith("application/json") and path != "/openapi.json":
            validate_response(DOCUMENT, path, method, response.status_code, response.json())

    check()
    assert seen  # the pass sent requests
