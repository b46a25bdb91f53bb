"""Shared fixtures: emulators, settings, a started bot (see tests/e2e.py) and a PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.settings import Settings
from tests.pg_server import PgServer, PgUnavailable


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gateway_profile(name): gateway emulator profile for bot_env (default openai)")
    config.addinivalue_line("markers", "bot_settings(**sections): settings overrides for bot_env")


@pytest.fixture(autouse=True)
def _no_gatecord_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests build their settings explicitly; a developer's GATECORD_* variables must not leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("GATECORD_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
async def discord_emu() -> AsyncIterator[Any]:
    from sandbox.discord_emulator import DiscordEmulator

    emu = DiscordEmulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


@pytest.fixture
async def gateway_emu(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    from sandbox.gateways import GatewayEmulator

    marker = request.node.get_closest_marker("gateway_profile")
    profile = marker.args[0] if marker else getattr(request, "param", "openai")
    emu = GatewayEmulator(profile)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


@pytest.fixture
def make_settings(discord_emu: Any, gateway_emu: Any, tmp_path: Path) -> Callable[..., Settings]:
    from tests.e2e import settings_for

    def make(**overrides: Any) -> Settings:
        return settings_for(discord_emu, gateway_emu, tmp_path / "gatecord.db", **overrides)

    return make


@pytest.fixture
async def bot_env(request: pytest.FixtureRequest, discord_emu: Any, gateway_emu: Any, tmp_path: Path) -> AsyncIterator[Any]:
    from tests.e2e import BotEnv, settings_for, start_bot

    marker = request.node.get_closest_marker("bot_settings")
    overrides = dict(marker.kwargs) if marker else {}
    db_path = tmp_path / "gatecord.db"
    settings = settings_for(discord_emu, gateway_emu, db_path, **overrides)
    running = await start_bot(settings)
    env = BotEnv(discord=discord_emu, gateway=gateway_emu, settings=settings, running=running, db_path=db_path)
    try:
        yield env
    finally:
        await env.running.stop()


@pytest.fixture
async def pg_bot_env(discord_emu: Any, gateway_emu: Any, tmp_path: Path, pg_url: str) -> AsyncIterator[Any]:
    """The bot on a real PostgreSQL database (``[storage] url``) instead of a SQLite file (and no
    ``media_dir``: /imagine's images are kept in the database)."""
    from tests.e2e import BotEnv, settings_for, start_bot

    unused = tmp_path / "gatecord.db"
    settings = settings_for(discord_emu, gateway_emu, unused, storage={"url": pg_url})
    env = BotEnv(discord=discord_emu, gateway=gateway_emu, settings=settings, running=await start_bot(settings),
                 db_path=unused)
    try:
        yield env
    finally:
        await env.running.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the session, started the first time a test asks for it."""
    try:
        server: PgServer | str = PgServer.start()
    except PgUnavailable as exc:
        server = str(exc)  # failed below, outside this except: one line, no chained traceback
    if isinstance(server, str):
        pytest.fail(server, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


_pg_databases = itertools.count(1)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database of ``pg_server``, dropped after the test."""
    name = f"test_{next(_pg_databases)}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


# -- storage on both backends -------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every storage-backed test runs on both backends: SQLite (a file) and PostgreSQL (a real server)."""
    return str(request.param)


MIGRATED_TEMPLATE = "gatecord_migrated"


@pytest.fixture(scope="session")
def pg_migrated_template(pg_server: PgServer) -> str:
    """A database migrated to the newest schema once per session; ``pg_migrated_url`` clones it (fast)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from bot.storage.store import Store

    async def migrate(url: str) -> None:
        template = Store(url=url)
        await template.open()
        await template.close()

    url = pg_server.create_database(MIGRATED_TEMPLATE)
    with ThreadPoolExecutor(1) as thread:  # its own event loop: an async test's loop may be running here
        thread.submit(asyncio.run, migrate(url)).result()
    return MIGRATED_TEMPLATE


@pytest.fixture
def pg_migrated_url(pg_server: PgServer, pg_migrated_template: str) -> Iterator[str]:
    """The URL of a fresh database already at the newest schema version, dropped after the test."""
    name = f"test_{next(_pg_databases)}"
    url = pg_server.create_database(name, template=pg_migrated_template)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture
async def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An open, migrated store on ``backend``."""
    from bot.storage.store import Store

    if backend == "sqlite":
        opened = Store(tmp_path / "gatecord.db")
    else:
        opened = Store(url=request.getfixturevalue("pg_migrated_url"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
