"""Per-server gateways in the sandbox: the launcher gives the bot a ``[secrets] key`` kept beside its
database (mode 0600, made once, never printed) and runs a second gateway emulator, "your server's own
gateway", whose details the page shows; a person who types them into /gateway set's modal gets their
server's /chat answered by that emulator, not by the bot's."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet

from bot.app.settings import Settings
from sandbox.launcher import (
    Sandbox,
    SandboxOptions,
    describe,
    own_gateway_profile,
    prepare_database,
    sandbox_secrets_key,
    secrets_key_path,
)
from tests.e2e import wait_shown
from tests.test_sandbox_launcher import START_TIMEOUT, URL_RE, clean_env

Launch = tuple[str, str, dict[str, Any], dict[str, Any]]  # stdout, stderr, /api/info, /api/gateways


async def launch_and_stop(cwd: Path) -> Launch:
    """``gatecord sandbox --port 0`` in ``cwd`` as a person runs it: read what it prints and what its page
    says about gateways, then Ctrl+C; everything it wrote."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "sandbox", "--port", "0", cwd=cwd, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        async def until_url() -> str:
            while True:
                line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
                assert line, "the sandbox closed its output without printing its URL"
                printed.append(line)
                if URL_RE.search(line):
                    return URL_RE.findall(line)[0]

        url = await asyncio.wait_for(until_url(), START_TIMEOUT)
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "api/info") as resp:
                info = await resp.json()
            async with http.get(url + "api/gateways") as resp:
                gateways = await resp.json()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return "".join(printed) + out.decode(), err.decode(), info, gateways


async def test_the_key_file_is_made_once_kept_with_the_database_and_never_printed(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "sandbox-secrets.key"
    first = await launch_and_stop(tmp_path)
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    Fernet(key.encode())  # a Fernet key, as [secrets] key wants

    second = await launch_and_stop(tmp_path)
    assert key_file.read_text().strip() == key, "the kept database's key is reused, not replaced"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if "secrets" in p.name) == ["sandbox-secrets.key"]

    for out, err, info, gateways in (first, second):
        assert "Traceback" not in err
        for text in (out, err, json.dumps(info), json.dumps(gateways)):
            assert key not in text, "the encryption key is never printed nor shown"
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 2 and "/gateway set" in lines[1] and "aicredits" in lines[1], out
        assert len(URL_RE.findall(out)) == 1, "the page's URL is the one URL printed"
        assert "sandbox-secrets.key" in info["persistence"]
        assert info["own_gateway"]["profile"] == "aicredits"
    # the same gateway details on both runs, so a server's gateway kept in the database still works
    assert first[2]["own_gateway"]["api_key"] == second[2]["own_gateway"]["api_key"]


def test_fresh_replaces_the_key_and_a_configured_key_is_left_alone(tmp_path: Path) -> None:
    options = SandboxOptions(port=0, data_dir=tmp_path)
    prepare_database(options)
    first = sandbox_secrets_key(Settings(_env_file=None), options)  # type: ignore[call-arg]
    assert first is not None and sandbox_secrets_key(Settings(_env_file=None), options) == first  # type: ignore[call-arg]
    prepare_database(replace(options, fresh=True))  # the database goes, and the key that encrypted for it
    assert not secrets_key_path(options).exists()
    again = sandbox_secrets_key(Settings(_env_file=None), options)  # type: ignore[call-arg]
    assert again is not None and again != first

    elsewhere = SandboxOptions(port=0, data_dir=tmp_path / "other")
    own = Fernet.generate_key().decode()
    configured = Settings(_env_file=None, secrets={"key": own})  # type: ignore[call-arg]
    assert sandbox_secrets_key(configured, elsewhere) is None
    assert not secrets_key_path(elsewhere).exists(), "the operator's own key: no file is made"


def test_a_damaged_key_file_stops_the_start_with_its_name_only(tmp_path: Path) -> None:
    options = SandboxOptions(port=0, data_dir=tmp_path)
    secrets_key_path(options).write_text("not-a-fernet-key-but-private")
    with pytest.raises(Exception) as caught:
        sandbox_secrets_key(Settings(_env_file=None), options)  # type: ignore[call-arg]
    message = str(caught.value)
    assert str(secrets_key_path(options)) in message and "not-a-fernet-key-but-private" not in message


def test_the_servers_own_gateway_is_another_profile_than_the_bots() -> None:
    assert own_gateway_profile("digicord") == "aicredits"
    assert own_gateway_profile("openai") == "aicredits"
    assert own_gateway_profile("aicredits") == "openai"


# -- /gateway set through the page ---------------------------------------------------------------------


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(Settings(_env_file=None), SandboxOptions(port=0, data_dir=tmp_path, stream_tps=0)) as sbx:  # type: ignore[call-arg]
        yield sbx


async def call(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
        return dict(answer)


def modal_inputs(modal: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """A modal's fields as a person reads them: label text -> (component type, custom id)."""
    out: dict[str, tuple[int, str]] = {}
    for row in modal["components"]:
        if row.get("type") == 18:  # a label holding a text input or a select
            inner = row["component"]
            out[row["label"]] = (inner["type"], inner["custom_id"])
        else:
            for inner in row.get("components", []):
                out[inner.get("label", inner["custom_id"])] = (inner["type"], inner["custom_id"])
    return out


def chat_calls(requests: list[Any], prompt: str) -> list[Any]:
    return [r for r in requests if r.path.endswith("/chat/completions") and prompt in json.dumps(r.json)]


async def test_gateway_set_on_the_page_sends_the_servers_chat_to_the_second_emulator(sandbox: Sandbox) -> None:
    emu, operator, own = sandbox.discord, sandbox.gateway, sandbox.own_gateway
    assert operator is not None and own is not None
    assert (operator.profile, own.profile) == ("digicord", "aicredits")
    assert "/gateway set" in describe(sandbox).splitlines()[1]
    base = sandbox.url.rstrip("/")
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/api/info") as resp:
            offer = (await resp.json())["own_gateway"]
        assert offer == {"profile": "aicredits", "base_url": own.root_url, "api_key": own.api_key,
                         "chat_model": own.default_chat_model}
        async with http.get(offer["base_url"] + "/health") as resp:
            assert resp.status == 200, "the second emulator runs where the page says"

        # the admin runs /gateway set on the page and types the panel's details into the modal
        opened = await call(http, base + "/api/command",
                            {"name": "gateway set", "user": "admin", "channel_id": str(emu.channel_id)})
        opener = emu.interactions[int(opened["interaction_id"])]
        await opener.wait_acked(30)
        assert opener.response_type == 9 and opener.modal, "/gateway set opens its modal (the key is configured)"
        fields = modal_inputs(opener.modal)
        values: dict[str, Any] = {fields["Profile"][1]: [offer["profile"]], fields["Base URL"][1]: offer["base_url"],
                                  fields["API key"][1]: offer["api_key"]}
        submitted = await call(http, base + "/api/modal",
                               {"interaction_id": opened["interaction_id"], "values": values, "user": "admin"})
        report = await wait_shown(emu.interactions[int(submitted["interaction_id"])], 30)
        assert "This server now uses its own AI gateway" in report.content, report.content
        assert offer["api_key"] not in report.content

        # a member's /chat in that server: answered by the second emulator, with its key
        asked = await call(http, base + "/api/command", {"name": "chat", "options": {"prompt": "hello from my server"},
                                                         "user": "alice", "channel_id": str(emu.channel_id)})
        answer = await wait_shown(emu.interactions[int(asked["interaction_id"])], 30)
        assert answer.content and "⚠" not in answer.content
        mine = chat_calls(own.requests, "hello from my server")
        assert mine and all(r.status == 200 for r in mine), "the server's own gateway answered (it takes only its key)"
        assert not chat_calls(operator.requests, "hello from my server"), "nothing went to the bot's gateway"

        # a DM is no server's: the bot's gateway answers it
        dm = await call(http, base + "/api/command", {"name": "chat", "options": {"prompt": "hello from a DM"},
                                                      "user": "alice", "channel_id": str(emu.dm_channel_id("alice"))})
        await wait_shown(emu.interactions[int(dm["interaction_id"])], 30)
        assert chat_calls(operator.requests, "hello from a DM") and not chat_calls(own.requests, "hello from a DM")

        # the page's Gateways panel shows which gateway answered what
        async with http.get(base + "/api/gateways") as resp:
            shown = await resp.json()
    own_paths = [r["path"] for r in shown["own"]["recent"]]
    operator_paths = [r["path"] for r in shown["operator"]["recent"]]
    assert any(p.endswith("/chat/completions") for p in own_paths)
    assert shown["own"]["requests"] == len(own.requests) and shown["operator"]["emulated"] is True
    assert any(p.endswith("/chat/completions") for p in operator_paths)
    assert operator.api_key not in json.dumps(shown), "the bot's key is not shown"
    assert "hello from" not in json.dumps(shown), "nor the prompts"
