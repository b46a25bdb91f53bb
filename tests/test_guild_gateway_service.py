"""GuildGatewayService against real gateway emulators: the check before saving (key, shape, models,
addresses), what is saved and when, the live key check of /gateway show. The store is the real
GuildGatewayStore over a SQLite file (its keys encrypted with a real SecretBox), the /config settings the
real GuildConfig's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.settings import Settings
from bot.gateways.directory import GatewayDirectory
from bot.gateways.secrets import SecretBox
from bot.gateways.service import GatewayRefused, GatewayRequest, GuildGatewayService, _reason, check_base_url
from bot.gateways.store import GuildGatewayStore
from bot.guilds.config import GuildConfig
from bot.storage.store import Store
from gateway_client import GatewayClient, GatewayConfig
from gateway_client.errors import AuthenticationError
from sandbox.gateways import GatewayEmulator

GUILD = 4242
ADMIN = 77
KEY = "sk-" + "ab12" * 16  # an aicredits-shaped key of the guild's own


@pytest.fixture
async def own() -> AsyncIterator[GatewayEmulator]:
    """The guild's own gateway: AICredits (a balance endpoint; models listed without a key)."""
    async with GatewayEmulator("aicredits", api_key=KEY) as emu:
        yield emu


@pytest.fixture
async def other() -> AsyncIterator[GatewayEmulator]:
    """Another gateway, openai-shaped (models listed with the key)."""
    async with GatewayEmulator("openai", api_key="guild-openai-key-0001") as emu:
        yield emu


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Store]:
    """An open, migrated store on a SQLite file."""
    opened = Store(tmp_path / "gatecord.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def operator_directory(gateways: GuildGatewayStore) -> GatewayDirectory:
    """The operator's gateway (never reached here) and the guilds' own, read from ``gateways``."""
    operator = GatewayClient(GatewayConfig(profile="digicord", base_url="http://127.0.0.1:9", api_key="op-key"))
    return GatewayDirectory(operator, load=gateways.load, public_only=False)


class Env:
    def __init__(self, db: Store, service: GuildGatewayService, store: GuildGatewayStore, config: GuildConfig,
                 refreshed: list[int], masked: list[str]) -> None:
        self.db, self.service, self.store, self.config = db, service, store, config
        self.refreshed, self.masked = refreshed, masked

    async def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table``, as the database holds it."""
        return [dict(r) for r in await self.db.fetchall(f"SELECT * FROM {table}")]


@pytest.fixture
async def env(db: Store) -> AsyncIterator[Env]:
    store = GuildGatewayStore(db, SecretBox.from_setting(SecretBox.new_key()))
    directory = operator_directory(store)
    config = GuildConfig(db, Settings())  # no gateway: /config values are stored unchecked
    refreshed: list[int] = []

    async def refresh(guild_id: int) -> None:
        refreshed.append(guild_id)

    masked: list[str] = []
    service = GuildGatewayService(store, directory, config, allow_private_addresses=True, check_timeout=5,
                                  refresh=refresh, mask=masked.append)
    yield Env(db, service, store, config, refreshed, masked)
    await directory.close()


def request(emu: GatewayEmulator, **kw: Any) -> GatewayRequest:
    values: dict[str, Any] = {"profile": emu.profile, "base_url": emu.root_url, "api_key": emu.api_key}
    values.update(kw)
    return GatewayRequest(**values)


async def test_a_good_key_is_checked_then_saved_and_reported(env: Env, own: GatewayEmulator) -> None:
    report, info = await env.service.save(GUILD, request(own, chat_model=own.default_chat_model), ADMIN)
    assert report.profile == "aicredits" and report.base_url == own.root_url
    assert report.model_count > 0 and report.key_checked
    assert report.balance is not None and report.balance.endswith("INR"), "AICredits has a balance endpoint"
    assert report.chat_model == own.default_chat_model
    assert {"chat", "vision", "images", "voice", "embeddings"} <= set(report.offers)
    assert "video" not in report.offers and "music" not in report.offers
    assert KEY not in repr(report) and KEY not in repr(info)
    [row] = await env.rows("guild_gateways")
    assert (row["guild_id"], row["profile"], row["base_url"]) == (GUILD, "aicredits", own.root_url)
    assert (row["updated_by"], row["key_last4"], row["vision_model"]) == (ADMIN, KEY[-4:], report.vision_model)
    assert row["chat_model"] == own.default_chat_model and not row["allow_operator_fallback"]
    assert KEY not in str(row["api_key_encrypted"]), "the key is stored encrypted"
    loaded = await env.store.load(GUILD)
    assert loaded is not None and loaded.config.api_key == KEY, "the stored key opens to the one typed"
    assert [(a["actor_id"], a["target"]) for a in await env.rows("audit_log")] == [(ADMIN, "gateway")]
    assert await env.service.info(GUILD) == info
    assert env.refreshed == [GUILD], "the guild's commands follow its new gateway"
    served = await env.service.directory.for_guild(GUILD)
    assert served.config.base_url == own.root_url, "the directory serves the saved gateway at once"
    assert any(r.path == "/v1/credits" and r.status == 200 for r in own.requests), "the key was proven"


async def test_a_refused_key_says_the_gateways_reason_and_saves_nothing(env: Env, other: GatewayEmulator) -> None:
    with pytest.raises(GatewayRefused) as caught:
        await env.service.save(GUILD, request(other, api_key="wrong-key-123456", chat_model="gpt-4o-mini"), ADMIN)
    text = caught.value.user_message()
    assert text.startswith("The gateway refused this key: Invalid API key provided"), text
    assert "wrong-key-123456" not in text and "Nothing was saved" in text
    assert env.refreshed == []
    assert await env.rows("guild_gateways") == [] and await env.rows("audit_log") == [], "nothing was written"
    assert env.masked == ["wrong-key-123456"], "a refused key is masked in the log too"


def test_the_key_is_masked_when_a_gateway_echoes_it() -> None:
    for key in ("sk-live-0123456789abcdef", "plainkey-7Hq2mZ9xW4vB"):
        err = AuthenticationError(f"Incorrect API key provided: {key}. Or is it {key[:12]}?")
        shown = _reason(err, key)
        assert key not in shown and key[:12] not in shown and shown.startswith("Incorrect API key provided")


async def test_a_gateway_of_another_shape_is_refused_with_what_happened(env: Env, other: GatewayEmulator) -> None:
    with pytest.raises(GatewayRefused) as caught:  # an openai gateway checked as digicord (/api/v1/models)
        await env.service.check(GUILD, request(other, profile="digicord"))
    assert "did not answer as a digicord gateway" in caught.value.user_message()


async def test_an_unreachable_gateway_is_refused(env: Env) -> None:
    with pytest.raises(GatewayRefused) as caught:
        await env.service.check(GUILD, GatewayRequest("openai", "http://127.0.0.1:9", "some-key-1234"))
    text = caught.value.user_message()
    assert "http://127.0.0.1:9" in text and "Nothing was saved" in text


async def test_unknown_models_are_refused_with_the_closest_names(env: Env, other: GatewayEmulator) -> None:
    wanted = other.default_chat_model
    with pytest.raises(GatewayRefused) as caught:
        await env.service.check(GUILD, request(other, chat_model=wanted + "x"))
    assert f"`{wanted}`" in caught.value.user_message(), "the closest name is suggested"
    with pytest.raises(GatewayRefused) as caught:
        await env.service.check(GUILD, request(other, chat_model=wanted, image_model="no-such-painter"))
    assert "no image model `no-such-painter`" in caught.value.user_message()


async def test_an_openai_gateway_without_a_chat_model_is_asked_for_one(env: Env, other: GatewayEmulator) -> None:
    with pytest.raises(GatewayRefused) as caught:
        await env.service.check(GUILD, request(other))
    assert "no default chat model" in caught.value.user_message()
    report = await env.service.check(GUILD, request(other, chat_model=other.default_chat_model))
    assert {"video", "music", "voice"} <= set(report.offers) and report.balance is None


async def test_config_models_the_new_gateway_lacks_are_warned_about(env: Env, own: GatewayEmulator) -> None:
    await env.config.set_guild(GUILD, ADMIN, chat_model="google/gemini-flash-1.5")
    await env.config.set_channel(GUILD, 555, ADMIN, chat_model=own.default_chat_model)
    report = await env.service.check(GUILD, request(own))
    assert report.warnings == ("/config chat model `google/gemini-flash-1.5` (server-wide) is not offered by "
                               "this gateway",)


async def test_remove_and_fallback(env: Env, own: GatewayEmulator) -> None:
    await env.service.save(GUILD, request(own), ADMIN)
    info = await env.service.set_fallback(GUILD, True, ADMIN)
    assert info is not None and info.allow_operator_fallback
    [row] = await env.rows("guild_gateways")
    assert row["allow_operator_fallback"] and row["updated_by"] == ADMIN
    report, info = await env.service.save(GUILD, request(own), ADMIN)
    assert info.allow_operator_fallback, "setting the gateway again keeps the fallback choice"
    [row] = await env.rows("guild_gateways")
    assert row["allow_operator_fallback"]
    assert await env.service.remove(GUILD, ADMIN) is True
    assert await env.rows("guild_gateways") == [] and env.refreshed == [GUILD, GUILD, GUILD]
    assert await env.service.directory.for_guild(GUILD) is env.service.directory.operator
    assert await env.service.remove(GUILD, ADMIN) is False
    assert await env.service.set_fallback(GUILD, True, ADMIN) is None


async def test_show_checks_the_key_live(env: Env, other: GatewayEmulator) -> None:
    assert await env.service.show(GUILD) is None
    await env.service.save(GUILD, request(other, chat_model=other.default_chat_model), ADMIN)
    shown = await env.service.show(GUILD)
    assert shown is not None and shown.key_ok is True and shown.key_status == "accepted"
    other.faults.revoke_key()
    shown = await env.service.show(GUILD)
    assert shown is not None and shown.key_ok is False
    assert shown.key_status == "refused: This API key has been revoked"


async def test_without_a_secrets_key_nothing_can_be_stored(db: Store, own: GatewayEmulator) -> None:
    store = GuildGatewayStore(db, None)  # no [secrets] key
    directory = operator_directory(store)
    service = GuildGatewayService(store, directory, GuildConfig(db, Settings()), allow_private_addresses=True)
    assert not service.secrets_configured
    with pytest.raises(GatewayRefused) as caught:
        await service.save(GUILD, request(own), ADMIN)
    assert "GATECORD_SECRETS__KEY" in caught.value.user_message() and "gatecord secrets new-key" in \
        caught.value.user_message()
    assert await db.fetchall("SELECT * FROM guild_gateways") == []
    assert own.requests == [], "nothing was checked either"
    await directory.close()


async def _public(host: str, port: int) -> list[str]:
    return {"gateway.example.com": ["93.184.215.14"], "sneaky.example.com": ["93.184.215.14", "10.1.2.3"],
            "meta.example.com": ["169.254.169.254"]}[host]


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://gateway.example.com", "must start with `https://`"),
    ("https://user:pw@gateway.example.com", "no user name or password"),
    ("https://gateway.example.com/v1?key=x", "no `?query`"),
    ("http://127.0.0.1:8080", "not on the public internet"),
    ("http://[::1]/", "not on the public internet"),
    ("http://10.0.0.7", "not on the public internet"),
    ("https://sneaky.example.com", "not on the public internet (10.1.2.3)"),
    ("https://meta.example.com", "not on the public internet"),
    ("https://", "no host name"),
    ("", "Give the gateway's base URL"),
])
async def test_base_urls_that_are_refused(url: str, why: str) -> None:
    with pytest.raises(GatewayRefused) as caught:
        await check_base_url(url, allow_private=False, resolve=_public)
    assert why in caught.value.user_message()


async def test_public_urls_pass_and_private_ones_only_when_allowed() -> None:
    assert await check_base_url(" https://gateway.example.com/ ", allow_private=False,
                                resolve=_public) == "https://gateway.example.com"
    assert await check_base_url("http://127.0.0.1:8080/", allow_private=True) == "http://127.0.0.1:8080"


async def test_a_private_address_is_refused_before_any_request(env: Env, own: GatewayEmulator) -> None:
    env.service.allow_private_addresses = False
    with pytest.raises(GatewayRefused):
        await env.service.check(GUILD, request(own))
    assert own.requests == [], "nothing was sent to a non-public address"
