"""`gatecord check` against each gateway emulator prints the profile, health and models it found."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.storage.migrations import latest_version
from sandbox.gateways import PROFILES, GatewayEmulator


async def run_check(cfg: Path, env_extra: dict[str, str]) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env.update(env_extra)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "check", "--config", str(cfg),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("profile", PROFILES)
async def test_check_reports_profile_health_and_models(profile: str, tmp_path: Path) -> None:
    async with GatewayEmulator(profile) as emu:
        cfg = tmp_path / "cfg.toml"
        cfg.write_text(
            f'[gateway]\nprofile = "{profile}"\nbase_url = "{emu.root_url}"\nchat_model = "{emu.default_chat_model}"\n'
        )
        code, out, err = await run_check(
            cfg, {"GATECORD_DISCORD__TOKEN": "discord-token-xyz", "GATECORD_GATEWAY__API_KEY": emu.api_key}
        )
        assert code == 0, out + err
        assert f"profile {profile} at {emu.root_url}" in out
        assert "gateway health: ok" in out
        assert emu.default_chat_model in out  # the model list reached the screen
        count = int(out.split("gateway models: ")[1].split(" found")[0])
        assert count >= 3
        assert "check: all good" in out
        assert emu.api_key not in out + err and "discord-token-xyz" not in out + err


async def test_check_reports_a_rejected_key_and_a_missing_token(tmp_path: Path) -> None:
    async with GatewayEmulator("aiproxy") as emu:
        cfg = tmp_path / "cfg.toml"
        cfg.write_text(f'[gateway]\nprofile = "aiproxy"\nbase_url = "{emu.root_url}"\n')
        code, out, err = await run_check(cfg, {"GATECORD_GATEWAY__API_KEY": "wrong-key-123456"})
        assert code == 1
        assert "discord: token not set;" in out
        assert "gateway models: FAILED" in out
        assert "wrong-key-123456" not in out + err


async def test_a_missing_token_is_a_note_for_run_only_not_a_problem(tmp_path: Path) -> None:
    async with GatewayEmulator("openai") as emu:
        cfg = tmp_path / "cfg.toml"
        cfg.write_text(f'[gateway]\nprofile = "openai"\nbase_url = "{emu.root_url}"\n'
                       f'[storage]\npath = "{tmp_path / "g.db"}"\n')
        code, out, err = await run_check(cfg, {"GATECORD_GATEWAY__API_KEY": emu.api_key})
        assert (code, err) == (0, ""), out + err
        lines = out.splitlines()
        assert lines[0] == "discord: token not set; API https://discord.com/api/v10"
        assert lines[1] == ("  note: the token is needed for `gatecord run` only (set GATECORD_DISCORD__TOKEN); "
                            "`make run` and `gatecord sandbox` work without one")
        assert lines[-1] == "check: all good"


async def test_check_reports_an_unreachable_gateway(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[gateway]\nprofile = "openai"\nbase_url = "http://127.0.0.1:9"\nconnect_timeout = 2\nmax_retries = 0\n')
    code, out, err = await run_check(cfg, {"GATECORD_DISCORD__TOKEN": "x" * 10})
    assert code == 1
    assert "gateway health: FAILED" in out
    assert "Traceback" not in err


async def test_list_settings_from_the_environment_as_commas_or_json_pass_the_check(tmp_path: Path) -> None:
    async with GatewayEmulator("openai") as emu:
        db = tmp_path / "g.db"
        cfg = tmp_path / "cfg.toml"
        cfg.write_text(f'[gateway]\nprofile = "openai"\nbase_url = "{emu.root_url}"\n[storage]\npath = "{db}"\n')
        code, out, err = await run_check(cfg, {
            "GATECORD_DISCORD__TOKEN": "discord-token-xyz",
            "GATECORD_GATEWAY__API_KEY": emu.api_key,
            "GATECORD_GATEWAY__FALLBACK_MODELS": "a,b",
            "GATECORD_DISCORD__CDN_HOSTS": "host",
            "GATECORD_DISCORD__COMMAND_GUILDS": "[1, 2]",
        })
        assert (code, err) == (0, ""), out + err
        assert "check: all good" in out
        latest = latest_version()
        assert f"database {db}: schema version 0 of {latest}; `gatecord migrate`" in out
        assert not db.exists()  # check reads the database, never creates it
