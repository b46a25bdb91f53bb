"""At DEBUG, the log shows what the bot did without a token, a key or a member's prompt in it.

Logging is configured the way ``gatecord run`` configures it (bot.app.logging_setup.configure_logging),
then real flows run against the emulators: a /chat, a mention, a relay key, a relay post through the
bot's webhook. Every line any logger wrote is captured and searched.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.logging_setup import MASK, SecretFilter, configure_logging
from sandbox.discord_emulator import permissions as P
from tests.e2e import settings_for, start_bot, wait_reply
from tests.test_chat_e2e import run_chat
from tests.test_relay_e2e import create_key, post

CHAT_PROMPT = "zebra umbrella quartz 4471"
MENTION_PROMPT = "walrus lantern meadow 9023"
RELAY_TEXT = "Order 5512 paid"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger as `gatecord run` leaves it, writing into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {
        name: logging.getLogger(name).level for name in ("discord.gateway", "gatecord.sql", "sqlalchemy.engine")
    })
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        if handler not in saved[1]:
            root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def lines(buffer: io.StringIO, logger: str) -> list[str]:
    return [line for line in buffer.getvalue().splitlines() if f" {logger}: " in line]


async def test_debug_log_of_real_flows_has_no_token_key_or_prompt(
    discord_emu: Any, gateway_emu: Any, tmp_path: Path, captured: io.StringIO
) -> None:
    emu = discord_emu
    settings = settings_for(emu, gateway_emu, tmp_path / "g.db", logging={"level": "DEBUG"})
    configure_logging(settings, stream=captured)
    running = await start_bot(settings)
    try:
        await run_chat(_Env(emu), CHAT_PROMPT)
        said = await emu.send_user_message(f"<@{emu.bot_user_id}> {MENTION_PROMPT}", mention_bot=True)
        await wait_reply(emu, said)
        await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
        env = _Env(emu, running.bot.web.base_url)
        key = await create_key(env)
        body = {"channelId": str(emu.channel_id), "content": RELAY_TEXT}  # a webhook post, under the key's name
        status, answer = await post(env, key, body, wait=True)
        assert status == 200, answer
    finally:
        await running.stop()

    log = captured.getvalue()
    hooks = emu.channel_webhooks.live(emu.channel_id)
    assert hooks and emu.messages[int(answer["message_id"])].webhook_id == hooks[0].id
    secrets = {
        "bot token": emu.token,
        "gateway key": gateway_emu.api_key,
        "relay key": key,
        **{f"interaction token {i}": rec.token for i, rec in enumerate(emu.interactions.values())},
        **{f"webhook token {hook.id}": hook.token for hook in hooks},
    }
    assert len(secrets) >= 6
    for what, secret in secrets.items():
        assert secret not in log, f"{what} in the log"
    for prompt in (CHAT_PROMPT, MENTION_PROMPT):
        assert prompt not in log, f"prompt {prompt!r} in the log"

    # the lines themselves are still there, with the token part masked
    webhook_lines = lines(captured, "discord.webhook.async_")
    assert any(f"/interactions/{rec.id}/{MASK}/callback" in line for line in webhook_lines
               for rec in emu.interactions.values()), webhook_lines[:5]
    assert any(f"/webhooks/{emu.application_id}/{MASK}" in line for line in webhook_lines), webhook_lines[:5]
    assert any(f"/webhooks/{hooks[0].id}/{MASK}" in line for line in log.splitlines())
    assert lines(captured, "discord.http")
    assert lines(captured, "gatecord.sql") == []  # statements are logged only with logging.sql_debug


async def test_sql_debug_logs_statements_without_their_parameters(
    discord_emu: Any, gateway_emu: Any, tmp_path: Path, captured: io.StringIO
) -> None:
    emu = discord_emu
    settings = settings_for(emu, gateway_emu, tmp_path / "g.db", logging={"level": "DEBUG", "sql_debug": True})
    configure_logging(settings, stream=captured)
    running = await start_bot(settings)
    try:
        await run_chat(_Env(emu), CHAT_PROMPT)
    finally:
        await running.stop()
    sql = lines(captured, "gatecord.sql")
    assert any("INSERT" in line and "parameters not shown" in line for line in sql), sql[:5]
    assert CHAT_PROMPT not in captured.getvalue()


def test_every_token_shape_is_masked_whatever_the_logger() -> None:
    """The shapes discord.py, aiohttp and our code print, checked through the filter of the root handler."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(SecretFilter(["configured-gateway-key-123"]))
    logger = logging.getLogger("tests.logging_secrets.shapes")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    relay_key = "gcr_0123456789ab_" + "s3cr3t" * 6
    bot_token = "MTAxMjM0NTY3ODkwMTIzNDU2.GAbCdE.abcdefghijklmnopqrstuvwxyz0123"
    cases = {
        "POST https://discord.com/api/v10/interactions/123/aW50ZXJhY3Rpb246abc-_x/callback": "aW50ZXJhY3Rpb246",
        "PATCH /api/v10/webhooks/456/tok_EN-abc.def/messages/@original": "tok_EN-abc.def",
        "received {'id': '9', 'token': 'whtoken-secret-xyz', 'name': 'hook'}": "whtoken-secret-xyz",
        'body {"token": "json-token-secret"}': "json-token-secret",
        "headers {'Authorization': 'Bearer sk-header-secret-99'}": "sk-header-secret-99",
        "Authorization: Bot abcdefghijklmnop.qr": "abcdefghijklmnop",
        f"rejected {relay_key}": "s3cr3t",
        f"login with {bot_token}": bot_token,
        "gateway says configured-gateway-key-123 is wrong": "configured-gateway-key-123",
    }
    try:
        for text in cases:
            logger.debug("%s", text)
        try:
            raise RuntimeError("failed for /webhooks/77/exc-token-secret")
        except RuntimeError:
            logger.exception("boom %s", relay_key)
    finally:
        logger.removeHandler(handler)
    out = buffer.getvalue()
    for secret in [*cases.values(), "exc-token-secret"]:
        assert secret not in out, (secret, out)
    assert "/interactions/123/***/callback" in out and "/webhooks/456/***/messages/@original" in out
    assert "gcr_0123456789ab_***" in out and "/webhooks/77/***" in out and "Traceback" in out


class _Env:
    """The two things tests.test_chat_e2e / test_relay_e2e helpers read from a bot_env."""

    def __init__(self, discord: Any, http: str = "") -> None:
        self.discord = discord
        self.http = http


@pytest.mark.parametrize("count", [3, 200])
def test_many_runtime_secrets_are_masked_wherever_they_stand(count: int) -> None:
    """A hosted bot learns one key per server with its own gateway: past a few, lines are scanned with an
    index instead of replacing each key in turn; both ways mask every key whole, the longest first."""
    from bot.app.logging_setup import MASK, SecretSet

    keys = [f"sk-{i:04d}-" + "x" * (i % 7) + "-tail" for i in range(count)]
    secrets = SecretSet(keys)
    inner, outer = "sk-0001-x-tail", "sk-0001-x-tail-and-more"  # one key inside another
    secrets.add(outer)
    line = f"guild 1 key={keys[-1]}&b={keys[0]} {outer}, and {inner}. {keys[count // 2]}"
    masked = secrets.mask(line)
    assert masked == f"guild 1 key={MASK}&b={MASK} {MASK}, and {MASK}. {MASK}"
    assert secrets.mask("nothing secret here, sk-99") == "nothing secret here, sk-99"
    assert secrets.mask(keys[0][:-1]) == keys[0][:-1]  # a prefix of a key is not the key
