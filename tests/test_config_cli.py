"""Every configuration error: one line naming the key and the file, exit code 2, no traceback, no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def no_token_line(where: str) -> str:
    return (
        f"gatecord: {where}: discord.token is missing — set GATECORD_DISCORD__TOKEN in the environment "
        f"or token under [discord] in {where}; to try Gatecord without a token, "
        "`make run` or `gatecord sandbox` start the local sandbox"
    )


def test_missing_token_names_key_and_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[gateway]\napi_key = "%s"\n' % SECRET)
    proc = run_cli("run", "--config", str(cfg), cwd=tmp_path)
    assert_one_line_error(proc, "discord.token", str(cfg), "GATECORD_DISCORD__TOKEN")
    assert proc.stderr == no_token_line(str(cfg)) + "\n"  # one line, and it does not start the sandbox
    assert proc.stdout == ""
    assert SECRET not in proc.stderr + proc.stdout


def test_run_without_any_config_says_where_the_token_goes_and_how_to_try_without(tmp_path: Path) -> None:
    proc = run_cli("run", cwd=tmp_path)
    assert_one_line_error(proc, "discord.token", "config.toml")
    assert proc.stderr == no_token_line("config.toml") + "\n"
    assert list(tmp_path.iterdir()) == []  # no database, no sandbox: nothing started


def test_a_blank_token_from_the_environment_is_no_token(tmp_path: Path) -> None:
    cfg = write(tmp_path, "")
    proc = run_cli("run", "--config", str(cfg), cwd=tmp_path, env={"GATECORD_DISCORD__TOKEN": "   "})
    assert proc.returncode == 2 and proc.stderr == no_token_line(str(cfg)) + "\n"


class Chosen:
    """Stands in for the two things `run` can start, recording which one main() picked and with what."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from bot.app import cli

        self.calls: list[tuple[str, str]] = []
        monkeypatch.setattr(cli, "configure_logging", lambda settings: None)

        async def fake_run(settings: Any) -> int:
            self.calls.append(("bot", settings.discord.token.get_secret_value()))
            return 0

        async def fake_sandbox(settings: Any, args: Any) -> int:
            self.calls.append(("sandbox", settings.discord.token.get_secret_value()))
            return 0

        monkeypatch.setattr(cli, "_run", fake_run)
        monkeypatch.setattr(cli, "_sandbox", fake_sandbox)


@pytest.fixture
def chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Chosen:
    for name in [n for n in os.environ if n.startswith("GATECORD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATECORD_STORAGE__PATH", str(tmp_path / "g.db"))
    return Chosen(monkeypatch)


def test_make_run_starts_the_sandbox_without_a_token(
    chosen: Chosen, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.app.cli import main

    assert main(["run", "--sandbox-if-no-token", "--config", str(write(tmp_path, ""))]) == 0
    assert chosen.calls == [("sandbox", "")]
    assert capsys.readouterr().err == (
        "gatecord: no Discord token configured (discord.token): starting the local sandbox\n"
    )


@pytest.mark.parametrize("where", ["file", "environment"])
def test_make_run_starts_the_bot_with_a_token(
    where: str, chosen: Chosen, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same settings loading as `run`: a token in the file or in the environment means the bot."""
    from bot.app.cli import main

    if where == "file":
        cfg = write(tmp_path, '[discord]\ntoken = "file-token"\n')
        args = ["run", "--sandbox-if-no-token", "--config", str(cfg)]
    else:
        monkeypatch.setenv("GATECORD_DISCORD__TOKEN", "env-token")
        args = ["run", "--sandbox-if-no-token"]  # ./config.toml absent: environment and defaults
    assert main(args) == 0
    assert chosen.calls == [("bot", "file-token" if where == "file" else "env-token")]
    assert capsys.readouterr().err == ""


def test_plain_run_without_a_token_starts_nothing(
    chosen: Chosen, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.app.cli import main

    assert main(["run"]) == 2
    assert chosen.calls == []
    assert capsys.readouterr().err == no_token_line("config.toml") + "\n"


def test_make_run_lets_gatecord_decide_between_bot_and_sandbox() -> None:
    """`make run` is one gatecord command whose token decision is the one tested above (dry run; the
    venv stamp is taken as up to date so nothing is installed)."""
    # run from inside `make test` too: the outer make's variables would make this one print directories
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "run"], cwd=REPO, capture_output=True,
        text=True, timeout=60, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [".venv/bin/gatecord run --sandbox-if-no-token"]


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


def test_a_database_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where a folder should be")
    db = tmp_path / "file" / "g.db"
    proc = run_cli("migrate", cwd=tmp_path, env={"GATECORD_STORAGE__PATH": str(db)})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"gatecord: database {db} cannot be created (File exists)\n"


def latest_migration() -> int:
    from bot.storage.migrations import latest_version

    return latest_version()


@pytest.mark.parametrize("command", ["migrate", "check", "run"])
def test_a_database_newer_than_the_code_stops_start_up(command: str, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "g.db"
    cfg = write(tmp_path, f'[storage]\npath = "{db}"\n[gateway]\nbase_url = "http://127.0.0.1:9"\n')
    assert run_cli("migrate", "--config", str(cfg), cwd=tmp_path).returncode == 0
    future = latest_migration() + 1
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (f"{future:04d}",))
    proc = run_cli(command, "--config", str(cfg), cwd=tmp_path, env={"GATECORD_DISCORD__TOKEN": "x" * 20})
    assert proc.returncode == 2, proc.stderr  # refused to start, like a config error
    assert proc.stderr == (
        f"gatecord: database {db} is at schema version {future}, newer than this gatecord knows "
        f"(latest {latest_migration()}): run the gatecord release that created it, or point [storage] "
        "at another database\n"
    )
    assert proc.stdout == ""
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == f"{future:04d}"


# Settings from the environment, as `gatecord check` reports them: one line naming the variable, code 2.

def check_with(tmp_path: Path, env: dict[str, str], toml: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli("check", "--config", str(write(tmp_path, toml)), cwd=tmp_path, env=env)


def assert_only_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == expected + "\n"
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("GATECORD_GATEWAY__FALLBACK_MODELS", "[a",
         "gateway.fallback_models is not a valid JSON list (Expecting value at character 2); "
         "write a comma-separated list or a JSON list (got '[a')"),
        ("GATECORD_DISCORD__CDN_HOSTS", '{"host": "cdn.example.com"}',
         "discord.cdn_hosts must be a comma-separated list or a JSON list, not a JSON object "
         """(got '{"host": "cdn.example.com"}')"""),
        ("GATECORD_DISCORD__COMMAND_GUILDS", "1,x",
         "discord.command_guilds[1] input should be a valid integer, unable to parse string as an integer (got 'x')"),
        ("GATECORD_DISCORD__COMMAND_GUILDS", "[1, 2.5]",
         "discord.command_guilds[1] input should be a valid integer, got a number with a fractional part (got 2.5)"),
        ("GATECORD_GATEWAY", "{not json",
         "gateway is not a valid JSON object; set its keys one by one instead (GATECORD_GATEWAY__<KEY>)"),
    ],
)
def test_a_bad_list_from_the_environment_is_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, problem: str
) -> None:
    proc = check_with(tmp_path, {name: value})
    assert_only_line(proc, f"gatecord: environment variable {name}: {problem}")


def test_bad_fallbacks_json_never_echoes_the_keys_inside(tmp_path: Path) -> None:
    value = '[{"profile": "openai", "base_url": "https://x.example", "api_key": "%s"' % SECRET  # no closing ]
    proc = check_with(tmp_path, {"GATECORD_GATEWAY__FALLBACKS": value})
    assert_only_line(
        proc,
        "gatecord: environment variable GATECORD_GATEWAY__FALLBACKS: gateway.fallbacks is not valid JSON "
        f"(Expecting ',' delimiter at character {len(value) + 1}); write a JSON list of objects such as "
        '[{"profile": "openai", "base_url": "https://…"}]',
    )
    proc = check_with(tmp_path, {"GATECORD_GATEWAY__FALLBACKS": value.replace('"openai"', '"nope"') + "}]"})
    assert proc.returncode == 2 and "gateway.fallbacks[0].profile must be one of" in proc.stderr
    assert SECRET not in proc.stderr


@pytest.mark.parametrize(
    ("name", "value", "key", "hint"),
    [
        ("GATECORD_GATEWAY__BASE_URL", "api.example.com/v1", "gateway.base_url",
         "must be a URL starting with https:// or http://; did you mean https://api.example.com/v1?"),
        ("GATECORD_DISCORD__API_BASE_URL", "localhost:8080/api/v10", "discord.api_base_url",
         "must be a URL starting with https:// or http://; did you mean https://localhost:8080/api/v10?"),
        ("GATECORD_DISCORD__GATEWAY_URL", "gateway.discord.gg", "discord.gateway_url",
         "must be a URL starting with wss:// or ws://; did you mean wss://gateway.discord.gg?"),
        ("GATECORD_DISCORD__CDN_BASE_URL", "ftp://cdn.example.com", "discord.cdn_base_url",
         "must start with https:// or http:// (not ftp://) (got 'ftp://cdn.example.com')"),
    ],
)
def test_a_url_without_scheme_gets_a_hint(tmp_path: Path, name: str, value: str, key: str, hint: str) -> None:
    assert_only_line(check_with(tmp_path, {name: value}), f"gatecord: environment variable {name}: {key} {hint}")


def test_a_fallback_base_url_without_scheme_in_the_file_gets_a_hint(tmp_path: Path) -> None:
    toml = '[[gateway.fallbacks]]\nprofile = "aicredits"\nbase_url = "api.aicredits.in"\napi_key = "%s"\n' % SECRET
    proc = check_with(tmp_path, {}, toml)
    assert_only_line(
        proc,
        f"gatecord: {tmp_path / 'cfg.toml'}: gateway.fallbacks[0].base_url must be a URL starting with https:// "
        "or http://; did you mean https://api.aicredits.in? [env GATECORD_GATEWAY__FALLBACKS]",
    )
    assert SECRET not in proc.stderr


def test_lists_from_the_environment_accept_commas_and_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bot.app.settings import load_settings

    cfg = write(tmp_path, '[discord]\ncdn_hosts = ["from-file"]\n')
    monkeypatch.setenv("GATECORD_GATEWAY__FALLBACK_MODELS", "a, b")
    monkeypatch.setenv("GATECORD_DISCORD__CDN_HOSTS", "host")
    monkeypatch.setenv("GATECORD_DISCORD__COMMAND_GUILDS", "1,2")
    settings = load_settings(cfg)
    assert settings.gateway.fallback_models == ["a", "b"]
    assert settings.discord.cdn_hosts == ["host"]
    assert settings.discord.command_guilds == [1, 2]
    monkeypatch.setenv("GATECORD_GATEWAY__FALLBACK_MODELS", '["x,y", "z"]')  # JSON keeps a comma inside a name
    monkeypatch.setenv("GATECORD_DISCORD__COMMAND_GUILDS", "")
    monkeypatch.setenv("GATECORD_GATEWAY__FALLBACKS", '[{"profile": "openai", "base_url": "https://f.example"}]')
    settings = load_settings(cfg)
    assert settings.gateway.fallback_models == ["x,y", "z"]
    assert settings.discord.command_guilds == []
    assert [f.base_url for f in settings.gateway.fallbacks] == ["https://f.example"]
    monkeypatch.delenv("GATECORD_DISCORD__CDN_HOSTS")
    assert load_settings(cfg).discord.cdn_hosts == ["from-file"]


FALLBACK_AS_TABLE = f"""[gateway.fallbacks]
profile = "openai"
base_url = "https://api.openai.com/v1"
api_key = "{SECRET}"
"""


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        # the reported case: [gateway.fallbacks] written as a table instead of an array of tables
        (FALLBACK_AS_TABLE, {}, "gatecord: {cfg}: gateway.fallbacks input should be a valid list "
         "[env GATECORD_GATEWAY__FALLBACKS]"),
        # a whole section given as a list: pydantic's error input is the list of dicts holding the key
        (f'gateway = [{{api_key = "{SECRET}"}}]\n', {}, "gatecord: {cfg}: gateway input should be a valid "
         "dictionary or instance of GatewaySettings [env GATECORD_GATEWAY]"),
        (f'[[discord]]\ntoken = "{SECRET}"\n', {}, "gatecord: {cfg}: discord input should be a valid "
         "dictionary or instance of DiscordSettings [env GATECORD_DISCORD]"),
        # a secret deeper down, under a key of any secret name
        (f'[gateway]\nprofile = {{name = "openai", auth = {{password = "{SECRET}"}}}}\n', {},
         "gatecord: {cfg}: gateway.profile must be one of aicordcloud, digicord, aicredits, aiproxy, openai "
         "[env GATECORD_GATEWAY__PROFILE]"),
        # the same from the environment
        ("", {"GATECORD_GATEWAY": f'[{{"profile": "openai", "api_key": "{SECRET}"}}]'},
         "gatecord: environment variable GATECORD_GATEWAY: gateway input should be a valid dictionary or "
         "instance of GatewaySettings"),
    ],
    ids=["fallbacks-as-table", "gateway-as-list", "discord-as-array-of-tables", "nested-password", "env-section"],
)
def test_a_config_error_never_shows_a_secret(tmp_path: Path, toml: str, env: dict[str, str], expected: str) -> None:
    cfg = write(tmp_path, toml)
    proc = run_cli("check", "--config", str(cfg), cwd=tmp_path, env=env)
    assert_one_line_error(proc)
    assert proc.stderr == expected.format(cfg=cfg) + "\n"
    assert proc.stdout == ""
    assert SECRET not in proc.stderr and SECRET[3:20] not in proc.stderr


def test_every_secret_value_of_the_configuration_is_masked_in_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last guard: a message that quotes a secret (a validator's hint, a library's text) is masked."""
    from bot.app.settings import mask_secrets

    monkeypatch.setenv("GATECORD_DISCORD__TOKEN", "env-token-value")
    monkeypatch.setenv("GATECORD_GATEWAY__FALLBACKS", '[{"api_key": "env-fallback-key"}]')
    data = {"gateway": {"api_key": "file-gateway-key", "fallbacks": [{"api_key": "file-fallback-key"}]},
            "relay": {"signing_secret": "file-signing-secret"}}
    message = "got env-token-value, env-fallback-key, file-gateway-key, file-fallback-key, file-signing-secret"
    assert mask_secrets(message, data) == "got ***, ***, ***, ***, ***"
