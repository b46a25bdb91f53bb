"""`gatecord check` against each gateway emulator prints the profile, health and models it found."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from bot.storage.migrations import latest_version
from sandbox.gateways import PROFILES, GatewayEmulator


async def run_check(cfg: Path, env_extra: dict[str, str]) -> tuple[int, str, str]:
    return await run_check_args(cfg, env_extra)


async def run_check_args(cfg: Path, env_extra: dict[str, str], *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env.update(env_extra)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "check", "--config", str(cfg), *args,
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
        assert "model calls: none (the gateway answered neither its health probe nor its model list)" in out
        assert [r.path for r in emu.requests if r.method == "POST"] == []  # no call made with a refused key


async def test_a_missing_token_is_a_note_for_run_only_not_a_problem(tmp_path: Path) -> None:
    async with GatewayEmulator("openai") as emu:
        cfg = tmp_path / "cfg.toml"
        cfg.write_text(f'[gateway]\nprofile = "openai"\nbase_url = "{emu.root_url}"\n'
                       f'chat_model = "openai/gpt-4o-mini"\n'
                       f'[storage]\npath = "{tmp_path / "g.db"}"\n')
        code, out, err = await run_check(cfg, {"GATECORD_GATEWAY__API_KEY": emu.api_key})
        assert (code, err) == (0, ""), out + err
        lines = out.splitlines()
        assert lines[0] == "discord: token not set; API https://discord.com/api/v10"
        assert lines[1] == ("  note: the token is needed for `gatecord run` only (set GATECORD_DISCORD__TOKEN); "
                            "`make run` and `gatecord sandbox` work without one")
        assert lines[-1] == "check: all good"


async def test_check_prints_both_install_links(tmp_path: Path) -> None:
    """A server's install (the bot and its permissions) and a member's own (integration_type=1), with the
    application id read from the token's public part; the token itself never printed."""
    import base64

    token = base64.b64encode(b"1234567890123456789").decode().rstrip("=") + ".GhIjKl.the-secret-part"
    async with GatewayEmulator("openai") as emu:
        cfg = tmp_path / "cfg.toml"
        cfg.write_text(f'[gateway]\nprofile = "openai"\nbase_url = "{emu.root_url}"\n'
                       f'chat_model = "openai/gpt-4o-mini"\n[storage]\npath = "{tmp_path / "g.db"}"\n')
        code, out, err = await run_check(cfg, {"GATECORD_DISCORD__TOKEN": token,
                                               "GATECORD_GATEWAY__API_KEY": emu.api_key})
        assert code == 0, out + err
        links = [line for line in out.splitlines() if "oauth2/authorize" in line]
        assert links[0].startswith("discord: add to a server (guild install): https://discord.com/oauth2/authorize?")
        assert "client_id=1234567890123456789" in links[0] and "integration_type=0" in links[0]
        assert "scope=bot+applications.commands" in links[0] and "permissions=" in links[0]
        assert links[1] == ("discord: add to your own account (user install): https://discord.com/oauth2/authorize"
                            "?client_id=1234567890123456789&integration_type=1&scope=applications.commands")
        assert "the-secret-part" not in out + err and token not in out + err


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
        cfg.write_text(f'[gateway]\nprofile = "openai"\nbase_url = "{emu.root_url}"\n'
                       f'chat_model = "openai/gpt-4o-mini"\n[storage]\npath = "{db}"\n')
        code, out, err = await run_check(cfg, {
            "GATECORD_DISCORD__TOKEN": "discord-token-xyz",
            "GATECORD_GATEWAY__API_KEY": emu.api_key,
            "GATECORD_GATEWAY__FALLBACK_MODELS": "openai/gpt-4o,meta-llama/llama-3.2-1b-instruct",
            "GATECORD_DISCORD__CDN_HOSTS": "host",
            "GATECORD_DISCORD__COMMAND_GUILDS": "[1, 2]",
        })
        assert (code, err) == (0, ""), out + err
        assert "check: all good" in out
        assert "fallback_models 'openai/gpt-4o': listed" in out
        assert "fallback_models 'meta-llama/llama-3.2-1b-instruct': listed" in out
        latest = latest_version()
        assert f"database {db}: schema version 0 of {latest}; `gatecord migrate`" in out
        assert not db.exists()  # check reads the database, never creates it


def gateway_cfg(path: Path, emu: GatewayEmulator, models: str) -> Path:
    """A configuration for ``emu`` with the ``[gateway]`` model lines ``models``; no retries (a 500 is final)."""
    cfg = path / "cfg.toml"
    cfg.write_text(f'[gateway]\nprofile = "{emu.profile}"\nbase_url = "{emu.root_url}"\nmax_retries = 0\n{models}\n'
                   f'[storage]\npath = "{path / "g.db"}"\n')
    return cfg


def env_for(emu: GatewayEmulator) -> dict[str, str]:
    return {"GATECORD_DISCORD__TOKEN": "discord-token-xyz", "GATECORD_GATEWAY__API_KEY": emu.api_key}


def posted(emu: GatewayEmulator, part: str) -> list[dict[str, object]]:
    return [r.json for r in emu.requests if r.method == "POST" and part in r.path]


async def test_a_chat_model_that_fails_every_call_fails_the_check_and_is_named(tmp_path: Path) -> None:
    async with GatewayEmulator("aiproxy") as emu:
        emu.faults.fail_next(1000, status=500, retry_after=None, path="/chat/completions")  # the model server is down
        cfg = gateway_cfg(tmp_path, emu, 'chat_model = "gpt-4o-mini"')
        code, out, err = await run_check(cfg, env_for(emu))
    assert code == 1, out + err
    assert "gateway health: ok" in out  # the model list answers: only a call shows the model is down
    line = next((li for li in out.splitlines() if "chat_model 'gpt-4o-mini'" in li and "FAILED" in li), out)
    assert "HTTP 500" in line and "UpstreamUnavailable" in line  # what the gateway said
    assert "check: 1 problem(s) found" in out and "all good" not in out
    assert "Traceback" not in err


async def test_a_misspelled_model_is_a_problem(tmp_path: Path) -> None:
    async with GatewayEmulator("aiproxy") as emu:
        cfg = gateway_cfg(tmp_path, emu, 'chat_model = "gpt-4o-mni"\nvision_model = "gpt-4o"')
        code, out, err = await run_check(cfg, env_for(emu))
        chats = posted(emu, "/chat/completions")
    assert code == 1, out + err
    assert "chat_model 'gpt-4o-mni': PROBLEM, not in the gateway's model list (did you mean 'gpt-4o-mini'?)" in out
    assert "warning" not in out and "check: 1 problem(s) found" in out
    assert [c["model"] for c in chats] == ["gpt-4o"]  # the listed one is still called, the misspelled one not


async def test_every_configured_model_is_probed_with_its_latency_and_context_window(tmp_path: Path) -> None:
    async with GatewayEmulator("aicredits") as emu:
        cfg = gateway_cfg(tmp_path, emu, 'chat_model = "meta-llama/llama-3.1-8b-instruct"\n'
                          'vision_model = "openai/gpt-4o-mini"\nimage_model = "dall-e-3"\n'
                          'transcription_model = "openai/whisper-1"')
        code, out, err = await run_check(cfg, env_for(emu))
        chats = posted(emu, "/chat/completions")
        spoken = posted(emu, "/audio/speech")
        paid_elsewhere = posted(emu, "/images") + posted(emu, "/audio/transcriptions")
    assert code == 0, out + err
    lines = out.splitlines()
    plan = next((i for i, li in enumerate(lines) if li.startswith("model calls: ")), None)
    assert plan is not None, out
    assert "meta-llama/llama-3.1-8b-instruct" in lines[plan] and "--no-calls" in lines[plan]
    probed = {li.split(":")[0].strip(): li for li in lines[plan + 1:] if li.startswith("  ")}
    assert re.search(r": answered '.+' in \d+\.\d\d s; context window 131,072 tokens$",
                     probed["chat_model 'meta-llama/llama-3.1-8b-instruct'"])
    assert re.search(r": answered '.+' in \d+\.\d\d s; context window 128,000 tokens$",
                     probed["vision_model 'openai/gpt-4o-mini'"])
    assert re.search(r": spoke [\d,]+ bytes of \w+ in \d+\.\d\d s$",
                     probed["speech_model 'openai/tts-1' (the profile's default)"])
    assert probed["image_model 'dall-e-3'"].endswith("listed (not called: every image is paid)")
    assert "listed (not called" in probed["transcription_model 'openai/whisper-1'"]
    assert [(c["model"], c["max_tokens"]) for c in chats] == [
        ("meta-llama/llama-3.1-8b-instruct", 1), ("openai/gpt-4o-mini", 1)]
    assert len(spoken) == 1 and paid_elsewhere == []
    assert "check: all good" in out


async def test_video_and_music_models_are_looked_up_never_called(tmp_path: Path) -> None:
    async with GatewayEmulator("openai") as emu:
        cfg = gateway_cfg(tmp_path, emu, 'chat_model = "openai/gpt-4o-mini"\nvideo_model = "google/veo-3"\n'
                          'music_model = "stability/stable-audio-3"')
        code, out, err = await run_check(cfg, env_for(emu))
        media_posts = posted(emu, "/videos/generations") + posted(emu, "/music/generations")
    assert code == 1, out + err
    assert "video_model 'google/veo-3': listed (not called: every video second is paid)" in out
    assert ("music_model 'stability/stable-audio-3': PROBLEM, not in the gateway's model list "
            "(did you mean 'stability/stable-audio-2'?)") in out
    assert media_posts == []


async def test_no_calls_makes_no_model_call(tmp_path: Path) -> None:
    async with GatewayEmulator("aicredits") as emu:
        cfg = gateway_cfg(tmp_path, emu, 'chat_model = "meta-llama/llama-3.1-8b-instruct"')
        code, out, err = await run_check_args(cfg, env_for(emu), "--no-calls")
        posts = [r.path for r in emu.requests if r.method == "POST"]
    assert code == 0, out + err
    assert posts == []
    assert "model calls: none (--no-calls)" in out
    assert "chat_model 'meta-llama/llama-3.1-8b-instruct': listed; context window 131,072 tokens" in out


async def test_check_says_what_servers_may_bring_or_buy(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    async with GatewayEmulator("aiproxy") as emu:
        cfg = tmp_path / "cfg.toml"
        base = f'[gateway]\nprofile = "aiproxy"\nbase_url = "{emu.root_url}"\n'
        cfg.write_text(base)
        env = {"GATECORD_GATEWAY__API_KEY": emu.api_key}
        _, out, _ = await run_check_args(cfg, env, "--no-calls")
        assert "per-server gateways: on, but no [secrets] key" in out
        assert "premium: not configured (the admins' own limits alone apply)" in out
        cfg.write_text(base + '[premium]\nupgrade_sku_id = 11\nfree = { guild_chat_requests = 5 }\n'
                       '[[premium.tiers]]\nsku_id = 11\nname = "Pro"\nlimits = { guild_chat_requests = 500 }\n'
                       '[[premium.consumables]]\nsku_id = 12\nname = "Boost"\nkind = "credits"\namount = 1000\n')
        key = Fernet.generate_key().decode()
        _, out, err = await run_check_args(cfg, {**env, "GATECORD_SECRETS__KEY": key}, "--no-calls")
        assert "per-server gateways: on; [secrets] key set (1 key(s): the first encrypts); their base URLs reach " \
               "public addresses only" in out
        assert ("premium: tiers Pro (guild, SKU 11); consumables Boost (+1000 credits, SKU 12); free tier "
                "guild_chat_requests 5; premium button SKU 11; entitlements reconciled every 24 h") in out
        assert key not in out + err
