"""The suite's own PostgreSQL server (tests/pg_server.py): real, reachable, one database per test, not root."""

from __future__ import annotations

import getpass
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.pg_server import PgServer, PgUnavailable, find_bindir


def owner(pid: int) -> str:
    return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name


async def test_the_server_answers_on_the_url_it_gives(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        assert "PostgreSQL" in await conn.fetchval("SELECT version()")
        assert await conn.fetchval("SELECT current_database()") == pg_url.rsplit("/", 1)[1]
    finally:
        await conn.close()


@pytest.fixture
def second_pg_url(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.create_database("test_second")
    yield url
    pg_server.drop_database("test_second")


async def test_each_test_database_is_separate(pg_url: str, second_pg_url: str) -> None:
    assert pg_url != second_pg_url
    first, second = await asyncpg.connect(pg_url), await asyncpg.connect(second_pg_url)
    try:
        await first.execute("CREATE TABLE only_here (id int)")
        assert await first.fetchval("SELECT to_regclass('only_here') IS NOT NULL") is True
        assert await second.fetchval("SELECT to_regclass('only_here') IS NOT NULL") is False
    finally:
        await first.close()
        await second.close()


def test_a_database_made_from_a_template_has_its_tables(pg_server: PgServer) -> None:
    pg_server.create_database("test_template")
    pg_server.execute("CREATE TABLE migrated (id int); INSERT INTO migrated VALUES (7)", "test_template")
    try:
        pg_server.create_database("test_clone", template="test_template")
        assert pg_server.execute("SELECT id FROM migrated", "test_clone").strip() == "7"
    finally:
        pg_server.drop_database("test_clone")
        pg_server.drop_database("test_template")


async def test_a_dropped_database_is_gone_even_with_a_connection_left_open(pg_server: PgServer) -> None:
    url = pg_server.create_database("test_left_open")
    conn = await asyncpg.connect(url)
    pg_server.drop_database("test_left_open")
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(url)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
        await conn.fetchval("SELECT 1")  # its session was ended by the drop
    await conn.close()


async def test_the_server_runs_as_postgres_not_root(pg_url: str, pg_server: PgServer) -> None:
    expected = "postgres" if os.geteuid() == 0 else getpass.getuser()
    conn = await asyncpg.connect(pg_url)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        backend_owner = owner(backend)  # while the connection is open: its backend process ends with it
    finally:
        await conn.close()
    assert owner(pg_server.pid) == expected
    assert backend_owner == expected
    assert owner(pg_server.pid) != "root"


def test_missing_binaries_name_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(PgUnavailable) as raised:
        find_bindir(root=tmp_path, pg_config="no-such-pg_config")
    assert "postgres" in str(raised.value) and "apt-get install -y postgresql" in str(raised.value)


def test_the_newest_installed_version_is_chosen(tmp_path: Path) -> None:
    for version, has_server in [("13", True), ("15", True), ("16", False)]:
        (tmp_path / version / "bin").mkdir(parents=True)
        if has_server:
            (tmp_path / version / "bin" / "postgres").write_text("")
    assert find_bindir(root=tmp_path, pg_config="no-such-pg_config") == tmp_path / "15" / "bin"


def test_two_servers_run_side_by_side() -> None:
    """Two test sessions at once: separate directories and ports; stopping one removes only its own."""
    with PgServer.start() as one, PgServer.start() as two:
        assert one.port != two.port and one.workdir != two.workdir
        assert one.execute("SELECT 1").strip() == two.execute("SELECT 1").strip() == "1"
    assert not one.workdir.exists() and not two.workdir.exists()
    assert one.process.returncode is not None and two.process.returncode is not None
