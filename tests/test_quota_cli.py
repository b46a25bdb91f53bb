"""`gatecord quota user show|set|reset`: the bot owner's overrides of a member's own budget, on the database
the bot uses; and the install links `gatecord check` prints."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.app.cli import main
from bot.app.installs import GUILD_PERMISSIONS, application_id_from_token, install_links


def config(tmp_path: Path) -> str:
    path = tmp_path / "cfg.toml"
    path.write_text(f'[storage]\npath = "{tmp_path / "g.db"}"\n[quotas.user]\nchat_requests = 20\n')
    return str(path)


def test_quota_user_set_show_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert main(["quota", "--config", cfg, "user", "show", "42"]) == 0
    out = capsys.readouterr().out
    assert "user 42, own budget today (UTC):" in out
    assert "chat requests: 0 used of 20 ([quotas.user] default)" in out

    assert main(["quota", "--config", cfg, "user", "set", "42", "chat_requests", "50"]) == 0
    out = capsys.readouterr().out
    assert "user 42: chat_requests 20 -> 50" in out and "chat requests: 0 used of 50 (owner's override)" in out
    assert main(["quota", "--config", cfg, "user", "set", "42", "tokens", "-1"]) == 0
    capsys.readouterr()

    assert main(["quota", "--config", cfg, "user", "reset", "42", "tokens"]) == 0
    out = capsys.readouterr().out
    assert "back to the [quotas.user] defaults (tokens)" in out and "of 50 (owner's override)" in out
    assert main(["quota", "--config", cfg, "user", "reset", "42"]) == 0
    assert "chat requests: 0 used of 20 ([quotas.user] default)" in capsys.readouterr().out


def test_quota_user_refuses_a_bad_kind_or_value_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert main(["quota", "--config", cfg, "user", "set", "42", "bananas", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gatecord: not changed: ") and "Unknown budget `bananas`" in err
    assert len(err.splitlines()) == 1
    assert main(["quota", "--config", cfg, "user", "set", "42", "images", "-5"]) == 1
    assert "0 or more, or -1 for unlimited" in capsys.readouterr().err


def test_install_links_cover_both_install_types() -> None:
    guild, user = install_links(1234567890123456789)
    g, u = parse_qs(urlsplit(guild).query), parse_qs(urlsplit(user).query)
    assert g == {"client_id": ["1234567890123456789"], "permissions": [str(GUILD_PERMISSIONS.value)],
                 "integration_type": ["0"], "scope": ["bot applications.commands"]}
    assert u == {"client_id": ["1234567890123456789"], "integration_type": ["1"], "scope": ["applications.commands"]}
    assert GUILD_PERMISSIONS.send_messages and GUILD_PERMISSIONS.manage_webhooks


def test_application_id_is_read_from_the_tokens_public_part_only() -> None:
    head = base64.b64encode(b"1234567890123456789").decode().rstrip("=")
    assert application_id_from_token(f"{head}.GhIjKl.secret-part") == 1234567890123456789
    assert application_id_from_token("discord-token-xyz") is None
    assert application_id_from_token("") is None
