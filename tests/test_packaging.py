"""A non-editable install (what `pip install .`, a wheel or a container image gives) migrates to the
latest schema, and an installation without its migrations refuses to start with one line.

The package is built from a copy of the checkout (so the build leaves nothing in the tree) and
installed with pip into a ``--target`` folder, offline: no dependencies, no build isolation (the
build backend comes from the test extra). Commands then run from outside the checkout with that
folder first on ``PYTHONPATH``; the venv provides only the third-party dependencies.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REVISIONS = sorted(p.name for p in (REPO / "bot" / "storage" / "alembic" / "versions").glob("[0-9]*.py"))
LEGACY_SQL = sorted(p.name for p in (REPO / "bot" / "storage" / "legacy_sql").glob("*.sql"))
LATEST = max(int(name[:4]) for name in REVISIONS)
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "bot", "cogs", "gateway_client", "sandbox")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed as a wheel would be; returns the folder that holds ``bot/`` and ``bin/``."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, source / name)
    target = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def gatecord(target: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, with the installed package ahead of everything else."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    base["PYTHONPATH"] = str(target)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, str(target / "bin" / "gatecord"), *args],
        cwd=cwd, env=base, capture_output=True, text=True, timeout=120,
    )


def test_the_install_is_the_package_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import bot.storage.migrations as m; print(m.__file__)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(installed)
    storage = installed / "bot" / "storage"
    assert sorted(p.name for p in (storage / "alembic" / "versions").glob("[0-9]*.py")) == REVISIONS
    assert (storage / "alembic" / "env.py").is_file()
    assert sorted(p.name for p in (storage / "legacy_sql").glob("*.sql")) == LEGACY_SQL


def test_gatecord_migrate_from_a_non_editable_install_reaches_the_latest_schema(
    installed: Path, tmp_path: Path
) -> None:
    db = tmp_path / "data" / "gatecord.db"
    proc = gatecord(installed, "migrate", cwd=tmp_path, env={"GATECORD_STORAGE__PATH": str(db)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"database {db}: schema version {LATEST}\n"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == f"{LATEST:04d}"
    again = gatecord(installed, "migrate", cwd=tmp_path, env={"GATECORD_STORAGE__PATH": str(db)})
    assert (again.returncode, again.stdout) == (0, proc.stdout)


@pytest.mark.parametrize("command", ["migrate", "check", "run", "sandbox"])
def test_an_install_without_migrations_refuses_to_start(
    command: str, installed: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    broken = tmp_path_factory.mktemp("broken") / "site"
    shutil.copytree(installed, broken)
    shutil.rmtree(broken / "bot" / "storage" / "alembic" / "versions")
    db = tmp_path / "gatecord.db"
    env = {"GATECORD_STORAGE__PATH": str(db), "GATECORD_DISCORD__TOKEN": "x" * 20}
    args = [command, "--port", "0"] if command == "sandbox" else [command]
    proc = gatecord(broken, *args, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # refused to start, like a newer database
    where = broken / "bot" / "storage" / "alembic" / "versions"
    assert proc.stderr == (
        f"gatecord: this installation of gatecord has no database migrations ({where} holds none); "
        "reinstall it (the wheel must include bot/storage/alembic/versions/*.py)\n"
    )
    assert proc.stdout == ""
    assert not db.exists()  # refused before the database was created


def test_gatecord_backup_from_a_non_editable_install(installed: Path, tmp_path: Path) -> None:
    db = tmp_path / "gatecord.db"
    env = {"GATECORD_STORAGE__PATH": str(db)}
    assert gatecord(installed, "migrate", cwd=tmp_path, env=env).returncode == 0
    proc = gatecord(installed, "backup", str(tmp_path / "copy.db"), cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"backup of {db} written to {tmp_path / 'copy.db'}: schema version {LATEST}\n"
