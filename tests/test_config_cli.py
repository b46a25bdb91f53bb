"""Every configuration error: one line naming the key and the file, exit code 2, no traceback, no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECRET = "sk-" + "ab" * 32


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=60
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    for needle in needles:
        assert needle in first, first
    return first


def test_missing_token_names_key_and_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[gateway]\napi_key = "%s"\n' % SECRET)
    # Without a token `run` starts the sandbox; GATECORD_NO_SANDBOX=1 keeps the plain error.
    proc = run_cli("run", "--config", str(cfg), cwd=tmp_path, env={"GATECORD_NO_SANDBOX": "1"})
    line = assert_one_line_error(proc, "discord.token", str(cfg), "GATECORD_DISCORD__TOKEN")
    assert "missing" in line
    assert SECRET not in proc.stderr + proc.stdout


def test_run_without_any_config_explains_what_to_set(tmp_path: Path) -> None:
    proc = run_cli("run", cwd=tmp_path, env={"GATECORD_NO_SANDBOX": "1"})
    assert_one_line_error(proc, "discord.token", "config.toml")
    assert "Message Content intent" in proc.stderr  # the short paragraph of what to set


def test_malformed_toml(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[discord\ntoken = 'x'\n")
    proc = run_cli("check", "--config", str(cfg), cwd=tmp_path)
    assert_one_line_error(proc, str(cfg), "not valid TOML", "line 1")


def test_unknown_profile(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[discord]\ntoken = "t0ken-value"\n[gateway]\nprofile = "nope"\n')
    proc = run_cli("run", "--config", str(cfg), cwd=tmp_path)
    assert_one_line_error(proc, "gateway.profile", str(cfg), "aicordcloud", "digicord", "'nope'")
    assert "t0ken-value" not in proc.stderr


def test_wrong_type(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[http]\nport = "eighty"\n')
    proc = run_cli("migrate", "--config", str(cfg), cwd=tmp_path)
    assert_one_line_error(proc, "http.port", str(cfg), "integer", "GATECORD_HTTP__PORT")


def test_unknown_key(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[storage]\npth = 'x.db'\n")
    proc = run_cli("migrate", "--config", str(cfg), cwd=tmp_path)
    assert_one_line_error(proc, "storage.pth", "not a known setting")


def test_wrong_type_from_environment_never_echoes_secret(tmp_path: Path) -> None:
    cfg = write(tmp_path, "")
    proc = run_cli(
        "run", "--config", str(cfg), cwd=tmp_path,
        env={"GATECORD_DISCORD__TOKEN": "tok-secret-123", "GATECORD_GATEWAY__MAX_RETRIES": "many"},
    )
    assert_one_line_error(proc, "gateway.max_retries", "GATECORD_GATEWAY__MAX_RETRIES")
    assert "tok-secret-123" not in proc.stderr


def test_explicit_config_file_must_exist(tmp_path: Path) -> None:
    proc = run_cli("migrate", "--config", str(tmp_path / "absent.toml"), cwd=tmp_path)
    assert_one_line_error(proc, "absent.toml", "not found")


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.app.settings import load_settings

    cfg = write(tmp_path, '[gateway]\nprofile = "digicord"\nchat_model = "from-file"\n')
    monkeypatch.setenv("GATECORD_GATEWAY__CHAT_MODEL", "from-env")
    settings = load_settings(cfg)
    assert settings.gateway.profile == "digicord"
    assert settings.gateway.chat_model == "from-env"
    assert SECRET not in repr(load_settings(write(tmp_path, f'[gateway]\napi_key = "{SECRET}"\n')))


def test_migrate_prints_schema_version(tmp_path: Path) -> None:
    cfg = write(tmp_path, f'[storage]\npath = "{tmp_path / "db" / "g.db"}"\n')
    proc = run_cli("migrate", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "schema version" in proc.stdout
    version = int(proc.stdout.strip().rsplit(" ", 1)[-1])
    assert version >= 1
    assert (tmp_path / "db" / "g.db").stat().st_mode & 0o777 == 0o600
