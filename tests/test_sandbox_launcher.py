"""`gatecord run --sandbox-if-no-token` (`make run`) with no token starts the sandbox and prints one
URL; `gatecord sandbox` uses the real gateway when the configuration has a key; the web UI's HTTP API answers as the page expects; the
sandbox stays out of `bot/`'s imports."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app.settings import Settings
from sandbox.gateways import GatewayEmulator, expected_reply
from sandbox.launcher import Sandbox, SandboxOptions

REPO = Path(__file__).resolve().parent.parent
URL_RE = re.compile(r"https?://[^\s)]+")
START_TIMEOUT = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env["PYTHONPATH"] = str(REPO)  # the checkout under test, whatever the working directory
    env.update(extra)
    return env


async def read_url_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise AssertionError("the process closed its output without printing a URL")
        if URL_RE.search(line):
            return line


async def test_run_without_a_token_brings_up_the_sandbox(tmp_path: Path) -> None:
    """What `make run` does on a fresh clone with no config.toml: the sandbox, one URL, a working page."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--sandbox-if-no-token", cwd=tmp_path, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(read_url_line(proc), START_TIMEOUT)
        urls = URL_RE.findall(line)
        assert len(urls) == 1, line
        url = urls[0]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert resp.status == 200
                page = await resp.text()
            assert "<title>Gatecord sandbox</title>" in page and "/static/app.js" in page
            async with http.get(url + "static/app.js") as resp:
                assert resp.status == 200 and "javascript" in resp.content_type
            async with http.get(url + "api/state") as resp:
                state = await resp.json()
        names = {c["path"].split()[0] for c in state["commands"]}
        assert "about" in names  # the real bot registered its commands with the emulator
        assert {"general", "random", "general-thread"} <= {c["name"] for c in state["world"]["guilds"][0]["channels"]}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "gatecord: no Discord token configured (discord.token): starting the local sandbox" in stderr
    assert URL_RE.findall(stderr) == []  # the page's URL is the one URL printed
    assert "data/sandbox.db" in line  # the console says where the sandbox keeps its database
    assert [p.name for p in tmp_path.iterdir()] == ["data"] and (tmp_path / "data" / "sandbox.db").is_file()


def test_sandbox_is_not_imported_by_the_bot_and_imports_no_bot_code() -> None:
    code = (
        "import sys\n"
        "import bot.app.cli, bot.app.factory\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'sandbox'], 'bot imports the sandbox'\n"
        "for m in list(sys.modules):\n"
        "    if m.split('.')[0] in ('bot', 'cogs', 'gateway_client'): del sys.modules[m]\n"
        "import sandbox.web_ui, sandbox.discord_emulator, sandbox.gateways\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('bot', 'cogs', 'gateway_client')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


async def test_configured_gateway_with_a_key_is_used(tmp_path: Path) -> None:
    """With a key in the configuration the sandbox talks to that gateway (here: an emulator playing it),
    and a configured Discord token does not stop the bot from connecting to the emulated Discord."""
    async with GatewayEmulator("openai") as real:
        settings = Settings(
            discord={"token": "a-real-discord-token-that-must-not-be-used"},
            gateway={"profile": "openai", "base_url": real.root_url, "api_key": real.api_key,
                     "chat_model": real.default_chat_model, "max_retries": 0},
        )
        async with Sandbox(settings, SandboxOptions(port=0, data_dir=tmp_path)) as sbx:
            assert sbx.gateway is None
            assert sbx.bot is not None and sbx.bot.is_ready()
            rec = await sbx.discord.inject_slash_command("chat", {"prompt": "ping through the real gateway"})
            await rec.wait_final(lambda r: expected_reply("ping through the real gateway") in r.content, timeout=30)
            assert any("chat/completions" in r.path for r in real.requests)
    assert (tmp_path / "sandbox.db").exists()  # data_dir keeps the database


KEY_RE = re.compile(r"gcr_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}")


async def relay(sbx: Sandbox, key: str, content: str) -> int:
    assert sbx.bot_url is not None
    body = {"channelId": str(sbx.discord.channel_id), "content": content}
    async with aiohttp.ClientSession() as http:
        async with http.post(sbx.bot_url + "/send-data", json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
            return resp.status


async def test_a_restart_keeps_the_database_and_the_world_keeps_its_ids(tmp_path: Path) -> None:
    """What the page promises: settings, budgets and relay keys survive a restart (the emulated world
    comes back with the same ids, so a kept relay key still reaches its channel); messages start empty;
    --fresh starts with an empty database."""
    options = SandboxOptions(port=0, data_dir=tmp_path, stream_tps=0)
    async with Sandbox(Settings(), options) as first:
        emu = first.discord
        world = (emu.guild_id, emu.channel_id, emu.users["admin"].id, emu.admin_role_id)
        rec = await emu.inject_slash_command("relay key create", {"name": "kept"}, user="admin")
        reply = await rec.wait_final(lambda r: KEY_RE.search(r.content or "") is not None, timeout=30)
        assert reply is not None
        found = KEY_RE.search(reply.content)
        assert found is not None
        key = found.group(0)
    assert (tmp_path / "sandbox.db").is_file()

    async with Sandbox(Settings(), options) as second:
        emu = second.discord
        assert (emu.guild_id, emu.channel_id, emu.users["admin"].id, emu.admin_role_id) == world
        assert not emu.messages  # messages are not kept
        assert await relay(second, key, "kept across a restart") in (200, 201, 202)
        await emu.wait_for_message(
            lambda m: m.channel_id == world[1] and m.content == "kept across a restart", timeout=30)

    async with Sandbox(Settings(), replace(options, fresh=True)) as third:
        assert await relay(third, key, "not after --fresh") == 401


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(Settings(), SandboxOptions(port=0, data_dir=tmp_path)) as sbx:
        yield sbx


async def post(http: aiohttp.ClientSession, url: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    async with http.post(url, json=body, **kw) as resp:
        return resp.status, await resp.json()


async def test_web_ui_api(sandbox: Sandbox) -> None:
    """The page's API: refusals are 400 with a reason; actions reach the bot; bytes and the relay are served."""
    base = sandbox.url.rstrip("/")
    emu = sandbox.discord
    async with aiohttp.ClientSession() as http:
        status, body = await post(http, base + "/api/command", {"name": "no-such-command", "user": "alice"})
        assert status == 400 and "not registered" in body["error"]
        status, body = await post(http, base + "/api/command", {"name": "chat", "options": {}, "user": "alice"})
        assert status == 400 and "prompt" in body["error"]
        status, body = await post(http, base + "/api/message", {"content": "   ", "user": "alice"})
        assert status == 400

        # A message with an image, as multipart; @Gatecord becomes a real mention.
        png = _png()
        form = aiohttp.FormData()
        form.add_field("json", '{"content": "look @Gatecord", "user": "bob", "channel_id": "%d"}' % emu.channel2_id)
        form.add_field("files", png, filename="dot.png", content_type="image/png")
        async with http.post(base + "/api/message", data=form) as resp:
            assert resp.status == 200
            message_id = int((await resp.json())["message_id"])
        msg = emu.messages[message_id]
        assert msg.channel_id == emu.channel2_id and msg.author_id == emu.users["bob"].id
        assert msg.content == f"look <@{emu.bot_user_id}>"
        att = msg.attachments[0]
        async with http.get(f"{base}/attachments/{att.id}/{att.filename}") as resp:
            assert resp.status == 200 and resp.content_type == "image/png" and await resp.read() == png
        async with http.get(f"{base}/attachments/{att.id}/other.png") as resp:
            assert resp.status == 404

        # A slash command goes to the bot as a real interaction; its answer shows in the state.
        status, body = await post(http, base + "/api/command", {"name": "about", "user": "alice", "channel_id": str(emu.channel_id)})
        assert status == 200
        rec = emu.interactions[int(body["interaction_id"])]
        answer = await rec.wait_final(timeout=20)
        assert answer is not None
        async with http.get(base + "/api/state") as resp:
            state = await resp.json()
        shown = next(m for m in state["messages"] if m["id"] == str(answer.id))
        assert shown["interaction"] == {"user": "Alice", "command": "about"}

        # The relay form is forwarded to the bot's /send-data: no key → the bot's own 401.
        status, body = await post(http, base + "/api/relay", {"key": "", "body": '{"channelId": "1", "content": "x"}'})
        assert status == 200 and body["status"] == 401 and body["body"]["error"] == "unauthorized"
        async with http.get(base + "/api/info") as resp:
            assert (await resp.json())["relay_url"] == sandbox.bot_url


async def test_live_socket_pushes_new_messages(sandbox: Sandbox) -> None:
    """The websocket starts with a snapshot, then pushes each change (no polling by the page)."""
    emu = sandbox.discord
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(sandbox.url + "api/live") as ws:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "snapshot" and first["commands"]
            msg = await emu.send_user_message("pushed to the page", user="alice")

            async def pushed() -> dict[str, Any]:
                while True:
                    event = await ws.receive_json()
                    if event["type"] == "messages":
                        for view in event["messages"]:
                            if view["id"] == str(msg.id):
                                return view

            view = await asyncio.wait_for(pushed(), 10)
            assert view["content"] == "pushed to the page" and view["author"]["name"] == "Alice"


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_sandbox_needs_only_the_runtime_dependencies() -> None:
    """`make run` installs the package without the test extra: every third-party module the sandbox
    imports must come from [project].dependencies (directly or through one of them)."""
    import ast
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r).name.lower() for r in project["dependencies"]]
    provided: set[str] = set()
    while wanted:  # the runtime dependencies and everything they require
        name = wanted.pop()
        if name in provided:
            continue
        provided.add(name)
        for req in metadata.requires(name) or []:
            parsed = Requirement(req)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                wanted.append(parsed.name.lower())
    local = {"sandbox", "bot", "cogs", "gateway_client"}
    owners = metadata.packages_distributions()
    missing = set()
    for path in (REPO / "sandbox").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in local:
                    continue
                dists = {d.lower() for d in owners.get(top, [top])}
                if not dists & provided:
                    missing.add(f"{top} ({path.relative_to(REPO)})")
    assert not missing, f"the sandbox imports modules that only the test extra installs: {sorted(missing)}"


def test_the_command_line_sets_the_pace_and_fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sandbox.launcher as launcher
    from bot.app import cli

    seen: list[SandboxOptions] = []

    async def fake_run(settings: Settings, options: SandboxOptions, **_: Any) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(launcher, "run_sandbox", fake_run)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("GATECORD_")]:
        monkeypatch.delenv(name)
    assert cli.main(["sandbox", "--stream-tps", "12.5", "--fresh"]) == 0
    assert cli.main(["run", "--sandbox-if-no-token"]) == 0
    assert [(o.stream_tps, o.fresh) for o in seen] == [(12.5, True), (launcher.DEFAULT_STREAM_TPS, False)]
    assert launcher.DEFAULT_STREAM_TPS == 40 and seen[1].data_dir == Path("data")
    assert cli.main(["sandbox", "--stream-tps", "-1"]) == 2
