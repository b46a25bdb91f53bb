"""Bring your own gateway, end to end: the real bot against the Discord emulator, the operator's gateway
emulator (openai) and a SECOND gateway emulator of another profile (aicredits) that is the guild's own.
The issue's acceptance bullets:

- a guild sets its own key on the second emulator: its /chat goes there with that key, another guild's
  still to the operator's; the key appears nowhere in clear — the database (the SQLite file's bytes and
  every table's text; PostgreSQL's rows), the logs (all levels, as `gatecord run` writes them, and every
  record raised) or anything the Discord emulator recorded the bot sending;
- a bad key is refused at /gateway set with the gateway's reason (and nothing is saved);
- a key revoked later gives the guild's members a clear message and no call on the operator's key (even
  with the operator's fallback allowed);
- without an encryption key, every /gateway subcommand tells the server manager how it is enabled.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app.logging_setup import HANDLER_NAME, configure_logging
from bot.gateways.secrets import SecretBox
from bot.gateways.service import SECRETS_MISSING
from bot.storage.store import Store
from sandbox.discord_emulator import DiscordEmulator
from sandbox.gateways import GatewayEmulator
from tests.e2e import BotEnv, settings_for, start_bot, wait_shown

GUILD_KEY_PREFIX = "sk-"


def guild_key() -> str:
    """A fresh AICredits-shaped key (sk- and 64 hex characters), different in every test."""
    return GUILD_KEY_PREFIX + secrets.token_hex(32)


@pytest.fixture
def operator_logs() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, as `gatecord run` writes it (its root handler, secret filter
    and logger levels), at DEBUG; the logging set-up is put back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("discord.gateway").level)
    buf = io.StringIO()
    yield buf
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    for handler in saved[0]:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("discord.gateway").setLevel(saved[2])


@pytest.fixture
async def own_gateway() -> AsyncIterator[GatewayEmulator]:
    """The guild's own gateway: another profile than the operator's, its own key."""
    async with GatewayEmulator("aicredits", api_key=guild_key()) as emu:
        yield emu


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def byo_env(
    request: pytest.FixtureRequest, discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator, tmp_path: Path,
    operator_logs: io.StringIO, caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[BotEnv]:
    """The bot with an encryption key, private addresses allowed (the emulators are on 127.0.0.1), DEBUG
    logs; on PostgreSQL when the test asks for ``backend`` = postgresql."""
    backend = request.getfixturevalue("backend") if "backend" in request.fixturenames else "sqlite"
    storage: dict[str, Any] = {}
    if backend == "postgresql":
        storage = {"storage": {"url": request.getfixturevalue("pg_url")}}
    db_path = tmp_path / "gatecord.db"
    settings = settings_for(discord_emu, gateway_emu, db_path, secrets={"key": SecretBox.new_key()},
                            guild_gateways={"allow_private_addresses": True}, logging={"level": "DEBUG"},
                            **storage)
    configure_logging(settings, stream=operator_logs)
    caplog.set_level(logging.DEBUG)  # every record raised, before any filter (discord.gateway stays at INFO)
    running = await start_bot(settings)
    env = BotEnv(discord=discord_emu, gateway=gateway_emu, settings=settings, running=running, db_path=db_path)
    try:
        yield env
    finally:
        await env.running.stop()


async def set_gateway(env: BotEnv, own: GatewayEmulator, key: str, *, guild_id: int | None = None,
                      channel_id: int | None = None) -> Any:
    """A server manager runs /gateway set and fills the modal; the private report (a message)."""
    emu = env.discord
    rec = await emu.inject_slash_command("gateway set", user="admin", guild_id=guild_id, channel_id=channel_id)
    await rec.wait_acked(10)
    assert rec.response_type == 9 and rec.modal is not None, "/gateway set opens a modal"
    fields = json.dumps(rec.modal)
    assert key not in fields
    sub = await emu.submit_modal(rec.modal["custom_id"], {
        "gateway:profile": [own.profile], "gateway:base_url": own.root_url, "gateway:api_key": key,
        "gateway:chat_model": own.default_chat_model,
    }, user="admin", interaction=rec)
    shown = await wait_shown(sub, 30)
    assert shown.ephemeral, "the report is private"
    return shown


async def chat(env: BotEnv, prompt: str, *, guild_id: int | None = None, channel_id: int | None = None) -> Any:
    rec = await env.discord.inject_slash_command("chat", {"prompt": prompt}, user="alice", guild_id=guild_id,
                                                 channel_id=channel_id)
    return await wait_shown(rec, 30)


def chat_calls(emu: GatewayEmulator, prompt: str) -> list[Any]:
    """The chat requests ``emu`` received whose messages carry ``prompt``."""
    return [r for r in emu.requests if r.path.endswith("/chat/completions") and prompt in json.dumps(r.json)]


def _text(value: Any) -> str:
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.dumps(value, default=repr, ensure_ascii=False)


def discord_traces(emu: DiscordEmulator) -> dict[str, str]:
    """Everything the Discord emulator recorded the bot sending: REST requests (messages, edits, files,
    interaction callbacks with their modal and answers), messages and interaction responses."""
    out: dict[str, str] = {}
    for i, req in enumerate(emu.requests):
        out[f"request {i} {req.method} {req.route}"] = _text({"path": req.path, "query": req.query,
                                                              "json": req.json, "files": [repr(f) for f in req.files],
                                                              "response": req.response})
    for mid, msg in emu.messages.items():
        out[f"message {mid}"] = _text({"content": msg.content, "embeds": msg.embeds, "components": msg.components,
                                       "attachments": [repr(a.data) for a in msg.attachments],
                                       "edits": [repr(e) for e in msg.edits]})
    for iid, rec in emu.interactions.items():
        out[f"interaction {iid}"] = _text({"callbacks": rec.callbacks, "response": rec.response_data,
                                           "modal": rec.modal, "choices": rec.autocomplete_choices})
    return out


def sqlite_texts(db_path: Path) -> dict[str, str]:
    """Every table's rows, as text, and the raw bytes of the database files (with its WAL)."""
    out: dict[str, str] = {}
    for path in sorted(db_path.parent.glob(db_path.name + "*")):
        out[f"file {path.name}"] = path.read_bytes().decode("latin-1")
    con = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            out[f"table {table}"] = repr(con.execute(f'SELECT * FROM "{table}"').fetchall())
    finally:
        con.close()
    return out


async def postgres_texts(url: str) -> dict[str, str]:
    """Every table's rows of the PostgreSQL database, as text."""
    store = Store(url=url)
    await store.open()
    try:
        tables = [r[0] for r in await store.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        return {f"table {t}": repr([tuple(r) for r in await store.fetchall(f'SELECT * FROM "{t}"')]) for t in tables}
    finally:
        await store.close()


def assert_nowhere(key: str, places: dict[str, str]) -> None:
    found = [where for where, text in places.items() if key in text]
    assert not found, f"the key appears in clear in: {found[:5]}"
    assert places, "something was scanned"


async def test_a_guild_on_its_own_gateway_and_its_key_nowhere_in_clear(
    byo_env: BotEnv, own_gateway: GatewayEmulator, backend: str, operator_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env, emu, operator = byo_env, byo_env.discord, byo_env.gateway
    key = own_gateway.api_key
    assert operator.profile != own_gateway.profile and operator.api_key != key

    report = await set_gateway(env, own_gateway, key)
    assert "This server now uses its own AI gateway" in report.content
    assert "aicredits" in report.content and own_gateway.root_url in report.content
    assert "Balance" in report.content, "AICredits has a balance endpoint: the report shows it"

    answer = await chat(env, "hello from guild A")
    assert answer.content and "⚠" not in answer.content
    own_calls = chat_calls(own_gateway, "hello from guild A")
    assert own_calls and all(r.status == 200 for r in own_calls), \
        "guild A's chat went to its own gateway, which accepts only its key"
    assert not chat_calls(operator, "hello from guild A"), "nothing of guild A's went to the operator's"

    other = await chat(env, "hello from guild B", guild_id=emu.guild2_id, channel_id=emu.other_guild_channel_id)
    assert other.content and "⚠" not in other.content
    assert chat_calls(operator, "hello from guild B"), "guild B is served by the operator's gateway"
    assert not chat_calls(own_gateway, "hello from guild B")

    show = await env.discord.inject_slash_command("gateway show", user="admin")
    shown = await wait_shown(show, 30)
    assert f"…{key[-4:]}" in shown.content and "accepted" in shown.content and shown.ephemeral

    await env.running.stop()  # everything written and closed before the files are read
    if backend == "postgresql":
        assert env.settings.storage.url is not None
        places = await postgres_texts(env.settings.storage.url.get_secret_value())
        assert any("guild_gateways" in k for k in places)
    else:
        places = sqlite_texts(env.db_path)
        assert "table guild_gateways" in places and str(emu.guild_id) in places["table guild_gateways"]
    logged = operator_logs.getvalue()
    assert "DEBUG" in logged, "the operator's log was written at every level"
    places["operator log"] = logged
    places.update({f"log record {i} {r.name}": f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}"
                   for i, r in enumerate(caplog.records)})
    places.update(discord_traces(emu))
    assert_nowhere(key, places)


async def test_a_bad_key_is_refused_with_the_gateways_reason(byo_env: BotEnv, own_gateway: GatewayEmulator) -> None:
    env = byo_env
    wrong = guild_key()
    report = await set_gateway(env, own_gateway, wrong)
    assert "The gateway refused this key: Invalid API key provided" in report.content
    assert "Nothing was saved" in report.content and wrong not in report.content
    shown = await wait_shown(await env.discord.inject_slash_command("gateway show", user="admin"), 30)
    assert "uses the bot's own AI gateway" in shown.content, "nothing was saved"
    answer = await chat(env, "still on the operator")
    assert answer.content and chat_calls(env.gateway, "still on the operator")
    malformed = await set_gateway(env, own_gateway, "not-an-aicredits-key")
    assert "The gateway refused this key: Invalid API key format" in malformed.content


async def test_a_key_revoked_later_gives_a_clear_message_and_no_call_on_the_operators_key(
    byo_env: BotEnv, own_gateway: GatewayEmulator,
) -> None:
    env = byo_env
    await set_gateway(env, own_gateway, own_gateway.api_key)
    fallback = await env.discord.inject_slash_command("gateway fallback", {"allowed": True}, user="admin")
    assert "bot's own gateway answers instead" in (await wait_shown(fallback, 30)).content
    assert "⚠" not in (await chat(env, "before the revocation")).content
    own_gateway.faults.revoke_key()
    operator_requests = len(env.gateway.requests)

    answer = await chat(env, "after the revocation")
    assert "This server's own AI gateway (aicredits) refused its key" in answer.content
    assert "This API key has been revoked" in answer.content and "/gateway set" in answer.content
    assert len(env.gateway.requests) == operator_requests, "not one request on the operator's gateway"

    show = await wait_shown(await env.discord.inject_slash_command("gateway show", user="admin"), 30)
    assert "refused: This API key has been revoked" in show.content


async def test_without_an_encryption_key_every_subcommand_says_how_to_enable_it(bot_env: BotEnv) -> None:
    """No ``[secrets] key``: /gateway set opens no modal, and set, show, remove and fallback each answer
    privately how the bot's operator enables server keys; nothing is stored."""
    assert not bot_env.settings.secrets.key.get_secret_value()
    for name, options in (("gateway set", None), ("gateway show", None), ("gateway remove", None),
                          ("gateway fallback", {"allowed": True})):
        rec = await bot_env.discord.inject_slash_command(name, options, user="admin")
        shown = await wait_shown(rec, 30)
        assert rec.modal is None and shown.ephemeral, name
        assert shown.content == SECRETS_MISSING, name
        assert "GATECORD_SECRETS__KEY" in shown.content and "gatecord secrets new-key" in shown.content
    assert await bot_env.bot.guild_gateways.guild_ids() == []


async def test_the_sandbox_page_fills_the_profile_select_of_the_modal(tmp_path: Path) -> None:
    """The page's form API (what app.js posts): a select's chosen values go as a list; a value that is not
    one of its options is refused with Discord's reason; the bot gets the profile chosen."""
    import aiohttp

    from bot.app.settings import Settings
    from sandbox.launcher import Sandbox, SandboxOptions

    settings = Settings(gateway={"profile": "digicord"}, secrets={"key": SecretBox.new_key()})
    async with Sandbox(settings, SandboxOptions(port=0, data_dir=tmp_path, stream_tps=0)) as sbx, \
            aiohttp.ClientSession() as http:
        assert sbx.gateway is not None
        base = sbx.url.rstrip("/")

        async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(base + path, json=body) as resp:
                return resp.status, await resp.json()

        async def open_form() -> Any:
            status, body = await post("/api/command", {"name": "gateway set", "user": "admin"})
            assert status == 200, body
            rec = sbx.discord.interactions[int(body["interaction_id"])]
            await rec.wait_acked(20)
            assert rec.modal is not None
            select = rec.modal["components"][0]["component"]
            assert select["type"] == 3 and [o["value"] for o in select["options"] if o.get("default")] == ["digicord"]
            return rec

        rec = await open_form()
        values: dict[str, Any] = {"gateway:profile": ["no-such-profile"], "gateway:base_url": sbx.gateway.root_url,
                                  "gateway:api_key": sbx.gateway.api_key}
        status, body = await post("/api/modal", {"interaction_id": str(rec.id), "values": values, "user": "admin"})
        assert status == 400 and "not options" in body["error"]
        values["gateway:profile"] = ["digicord"]
        status, body = await post("/api/modal", {"interaction_id": str(rec.id), "values": values, "user": "admin"})
        assert status == 200, body
        report = await wait_shown(sbx.discord.interactions[int(body["interaction_id"])], 30)
        assert "This server now uses its own AI gateway" in report.content and "digicord" in report.content
