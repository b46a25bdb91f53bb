"""`gatecord secrets new-key` and `gatecord rotate-secrets` (on SQLite and PostgreSQL), SecretBox, and the
`[secrets] key` setting: what the operator reads, the exit codes, and never a key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.app.cli import main
from bot.app.settings import ConfigError, Settings, load_settings
from bot.gateways.errors import SecretUnreadable
from bot.gateways.secrets import InvalidSecretsKey, SecretBox
from bot.gateways.store import GuildGatewayStore
from bot.storage.store import Store

API_KEY = "sk-guild-typed-key-7c1e0b9d44aa"


def box(*keys: str) -> SecretBox:
    made = SecretBox.from_setting(",".join(keys))
    assert made is not None
    return made


# -- SecretBox ----------------------------------------------------------------------------------------

def test_secret_box_round_trip_and_rotation() -> None:
    old, new = SecretBox.new_key(), SecretBox.new_key()
    assert old != new and len(old) == 44
    token = box(old).encrypt(API_KEY)
    assert API_KEY not in token and box(old).decrypt(token) == API_KEY
    both = box(new, old)
    assert both.decrypt(token) == API_KEY and not both.is_current(token)
    rotated = both.rotate(token)
    assert both.is_current(rotated) and box(new).decrypt(rotated) == API_KEY
    with pytest.raises(SecretUnreadable):
        box(old).decrypt(rotated)
    with pytest.raises(SecretUnreadable):
        box(new).rotate(token)
    with pytest.raises(SecretUnreadable):
        box(new).decrypt("not a token at all ✗")


def test_secret_box_from_the_setting() -> None:
    assert SecretBox.from_setting("") is None and SecretBox.from_setting("   ") is None
    keys = [SecretBox.new_key() for _ in range(3)]
    assert box(f" {keys[0]} , {keys[1]},{keys[2]} ").key_count == 3
    for bad, says in ((("nope",), "is not a valid Fernet key"), ((keys[0], "short"), "entry 2 is not"),
                      ((keys[0], ""), "empty entry"), ((keys[0][:-2] + "é=",), "is not a valid Fernet key")):
        with pytest.raises(InvalidSecretsKey, match=says) as caught:
            SecretBox.from_setting(",".join(bad))
        assert all(part not in str(caught.value) for part in bad if part)


# -- the setting --------------------------------------------------------------------------------------

def test_a_malformed_key_in_the_file_is_a_settings_error_without_the_value(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[secrets]\nkey = "my-own-password-123"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg)
    assert str(caught.value) == (
        f"{cfg}: secrets.key is not a valid Fernet key: a Fernet key is 44 characters of URL-safe base64 (make one "
        "with `gatecord secrets new-key`); several keys are separated by commas, the first one encrypts "
        "[env GATECORD_SECRETS__KEY]"
    )
    good = SecretBox.new_key()
    assert Settings(secrets={"key": good}).secrets.key.get_secret_value() == good
    assert Settings().guild_gateways.model_dump() == {"enabled": True, "allow_private_addresses": False,
                                                      "check_timeout": 15.0}


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=base, capture_output=True, text=True,
                          timeout=60)


def test_a_malformed_environment_key_stops_the_start_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    good = SecretBox.new_key()
    value = f"{good},{good[:20]}"
    proc = run_cli("run", cwd=tmp_path, env={"GATECORD_SECRETS__KEY": value, "GATECORD_DISCORD__TOKEN": "x" * 30})
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr == (
        "gatecord: environment variable GATECORD_SECRETS__KEY: secrets.key entry 2 is not a valid Fernet key: a "
        "Fernet key is 44 characters of URL-safe base64 (make one with `gatecord secrets new-key`); several keys "
        "are separated by commas, the first one encrypts\n"
    )
    assert good not in proc.stderr and good[:20] not in proc.stderr


# -- the commands -------------------------------------------------------------------------------------

def test_new_key_prints_a_usable_key_and_needs_no_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATECORD_SECRETS__KEY", "broken")  # the key being replaced may be the broken one
    monkeypatch.chdir(tmp_path)
    assert main(["secrets", "new-key"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert len(out.splitlines()) == 1 and Fernet(key.encode())  # a valid key, alone on stdout
    assert "GATECORD_SECRETS__KEY" in err and "gatecord rotate-secrets" in err and key not in err
    assert main(["secrets", "new-key"]) == 0 and capsys.readouterr().out.strip() != key
    assert not list(tmp_path.iterdir())  # nothing written


def storage_env(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    if backend == "sqlite":
        return {"GATECORD_STORAGE__PATH": str(tmp_path / "g.db")}
    return {"GATECORD_STORAGE__URL": request.getfixturevalue("pg_migrated_url")}


def store_for(env: dict[str, str]) -> Store:
    if "GATECORD_STORAGE__URL" in env:
        return Store(url=env["GATECORD_STORAGE__URL"])
    return Store(Path(env["GATECORD_STORAGE__PATH"]))


async def seed(env: dict[str, str], key: str, guilds: list[int]) -> None:
    store = store_for(env)
    await store.open()
    try:
        gateways = GuildGatewayStore(store, box(key))
        for guild in guilds:
            await gateways.put(guild, profile="openai", base_url="https://gw.example", api_key=API_KEY, actor_id=1)
    finally:
        await store.close()


async def readable_with(env: dict[str, str], key: str, guild: int) -> bool:
    store = store_for(env)
    await store.open()
    try:
        loaded = await GuildGatewayStore(store, box(key)).load(guild)
        return loaded is not None and loaded.config.api_key == API_KEY
    except Exception:
        return False
    finally:
        await store.close()


def test_rotate_secrets(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = storage_env(backend, tmp_path, request)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    old, new, lost = SecretBox.new_key(), SecretBox.new_key(), SecretBox.new_key()
    asyncio.run(seed(env, old, [11, 12]))

    # no key configured: nothing can be rotated
    assert main(["rotate-secrets"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "no encryption key is configured" in err and "gatecord secrets new-key" in err

    # the new key first, the old one after it: every stored key moves to the new one
    monkeypatch.setenv("GATECORD_SECRETS__KEY", f"{new},{old}")
    assert main(["rotate-secrets"]) == 0
    out, err = capsys.readouterr()
    assert "2 stored gateway key(s): 2 re-encrypted with the first [secrets] key, 0 already were" in out
    assert "the others can be removed" in out
    assert asyncio.run(readable_with(env, new, 11)) and asyncio.run(readable_with(env, new, 12))
    assert not asyncio.run(readable_with(env, old, 11))
    assert main(["rotate-secrets"]) == 0
    assert "2 stored gateway key(s): 0 re-encrypted with the first [secrets] key, 2 already were" in (
        capsys.readouterr().out)

    # a key encrypted with a key nobody configured: named by its server, exit 1, the rest still rotated
    asyncio.run(seed(env, lost, [13]))
    assert main(["rotate-secrets"]) == 1
    out, err = capsys.readouterr()
    assert "3 stored gateway key(s): 0 re-encrypted with the first [secrets] key, 2 already were" in out
    assert "1 stored key(s) cannot be decrypted" in err and "(servers 13)" in err and "/gateway set" in err
    for secret in (old, new, lost, API_KEY):
        assert secret not in out + err


def test_the_configured_encryption_keys_are_masked_in_the_log() -> None:
    import io
    import logging

    from bot.app.logging_setup import MASK, configure_logging

    first, second = SecretBox.new_key(), SecretBox.new_key()
    captured = io.StringIO()
    configure_logging(Settings(secrets={"key": f"{first},{second}"}), stream=captured)
    logging.getLogger("gatecord.test").warning("keys %s and %s", first, second)
    assert captured.getvalue().rstrip().endswith(f"keys {MASK} and {MASK}")
