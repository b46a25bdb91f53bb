"""`gatecord migrate`, `check`, `run` and `backup` with `[storage] url` (a real PostgreSQL): what the operator
reads and the exit code; never the database password."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app.logging_setup import MASK, configure_logging
from bot.app.settings import Settings
from bot.storage.migrations import latest_version
from tests.pg_server import PgServer, free_port

LATEST = latest_version()
PASSWORD = "s3cret-Pw"  # the test server trusts any password: it is there to be hidden


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def shown(url: str) -> str:
    """The URL as gatecord prints it."""
    return url.replace("postgresql://postgres@", "postgresql://postgres:***@", 1)


def gatecord(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env.update({
        "GATECORD_STORAGE__URL": url,
        "GATECORD_STORAGE__PATH": str(cwd / "unused.db"),  # must not be touched: the URL wins
        "GATECORD_DISCORD__TOKEN": "x" * 20,
        "GATECORD_DISCORD__API_BASE_URL": "http://127.0.0.1:9/api/v10",
        "GATECORD_GATEWAY__BASE_URL": "http://127.0.0.1:9",
    })
    proc = subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert PASSWORD not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (cwd / "unused.db").exists()
    return proc


def database_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("database "))


def test_migrate_then_check_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    url = with_password(pg_url)
    check = gatecord("check", url=url, cwd=tmp_path)
    assert check.returncode == 1  # the gateway is unreachable; the database is fine
    assert database_line(check.stdout) == (
        f"database {shown(pg_url)}: reachable, schema version 0 of {LATEST}; `gatecord migrate` (or starting the "
        "bot) brings it up to date"
    )
    migrate = gatecord("migrate", url=url, cwd=tmp_path)
    assert (migrate.returncode, migrate.stdout, migrate.stderr) == (
        0, f"database {shown(pg_url)}: schema version {LATEST}\n", "")
    again = gatecord("migrate", url=url, cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, migrate.stdout)
    check = gatecord("check", url=url, cwd=tmp_path)
    assert database_line(check.stdout) == f"database {shown(pg_url)}: reachable, schema version {LATEST} of {LATEST}"


def unreachable_url() -> str:
    return f"postgresql://gatecord:{PASSWORD}@127.0.0.1:{free_port()}/gatecord_prod"


@pytest.mark.parametrize("command", ["migrate", "run"])
def test_an_unreachable_postgresql_stops_start_up_with_one_line(command: str, tmp_path: Path) -> None:
    url = unreachable_url()
    proc = gatecord(command, url=url, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    where = url.replace(PASSWORD, "***")
    assert proc.stderr.startswith(f"gatecord: database {where} cannot be reached (")
    assert proc.stderr.count("\n") == 1


def test_check_reports_an_unreachable_postgresql_as_failed(tmp_path: Path) -> None:
    url = unreachable_url()
    proc = gatecord("check", url=url, cwd=tmp_path)
    assert proc.returncode == 1
    line = database_line(proc.stdout)
    assert line.startswith(f"database {url.replace(PASSWORD, '***')}: FAILED, cannot be reached (")
    assert "check: 3 problem(s) found" in proc.stdout  # the database, the gateway's health and its models


@pytest.mark.parametrize("command", ["migrate", "check", "run"])
def test_a_postgresql_newer_than_the_code_stops_start_up(
    command: str, pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    url = with_password(pg_url)
    assert gatecord("migrate", url=url, cwd=tmp_path).returncode == 0
    future = LATEST + 1
    pg_server.execute(f"UPDATE alembic_version SET version_num = '{future:04d}'", pg_url.rsplit("/", 1)[1])
    proc = gatecord(command, url=url, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"gatecord: database {shown(pg_url)} is at schema version {future}, newer than this gatecord knows "
        f"(latest {LATEST}): run the gatecord release that created it, or point [storage] at another database\n"
    )
    version = pg_server.execute("SELECT version_num FROM alembic_version", pg_url.rsplit("/", 1)[1])
    assert version.strip() == f"{future:04d}"  # nothing was migrated


def test_backup_of_postgresql_points_to_pg_dump(pg_url: str, tmp_path: Path) -> None:
    proc = gatecord("backup", str(tmp_path / "copy.db"), url=with_password(pg_url), cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        f"gatecord: database {shown(pg_url)} is PostgreSQL: back it up with pg_dump (pg_dump --format=custom "
        f"--file {tmp_path / 'copy.db'} DATABASE_URL); `gatecord backup` copies SQLite files\n"
    )
    assert not (tmp_path / "copy.db").exists()


def test_the_database_password_is_masked_in_the_log() -> None:
    """Whatever logs the URL (a driver's error, a library's debug line), the password is not in the log."""
    password = "p@ss/w0rd:long"
    settings = Settings(storage={"url": "postgresql://gatecord:p%40ss%2Fw0rd%3Along@db.internal:5432/gatecord"})
    captured = io.StringIO()
    configure_logging(settings, stream=captured)
    try:
        logging.getLogger("asyncpg").error("connect to %s failed for password %s / %s", "db.internal",
                                           "p%40ss%2Fw0rd%3Along", password)
    finally:
        configure_logging(Settings())
    assert "p%40ss" not in captured.getvalue() and password not in captured.getvalue()
    assert captured.getvalue().count(MASK) == 2
