"""A guild's own gateway in the database (bot/gateways/store.py) on SQLite and PostgreSQL: the key only as a
Fernet token, audited without it, rotated with two keys; and the GatewayDirectory reading it (TTL,
invalidate, a changed row's new client, a row the configured key cannot open)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app.logging_setup import MASK, SecretFilter
from bot.gateways.directory import GatewayDirectory, is_guild_client
from bot.gateways.errors import GuildGatewayUnavailable, SecretsNotConfigured
from bot.gateways.secrets import SecretBox
from bot.gateways.store import GuildGatewayStore
from bot.guilds import audit
from bot.guilds.audit import InvalidSetting
from bot.storage.store import Store
from gateway_client import AuthenticationError, ClientOptions, GatewayClient, GatewayConfig
from sandbox.gateways import GatewayEmulator

GUILD = 111
OTHER = 222
ADMIN = 9001
KEY = "sk-guild-own-key-5f2c9a71d0e4b8a3"  # what the server manager typed


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def box(*keys: str) -> SecretBox:
    made = SecretBox.from_setting(",".join(keys))
    assert made is not None
    return made


async def every_text(store: Store) -> str:
    """Every value of every table the key could land in, as text."""
    parts: list[str] = []
    for table in ("guild_gateways", "audit_log"):
        for row in await store.fetchall(f"SELECT * FROM {table}"):
            parts += [str(v) for v in dict(row).values()]
    return "\n".join(parts)


def sqlite_bytes(store: Store) -> bytes:
    """The database file and its companions (-wal, -shm), byte for byte."""
    assert store.path is not None
    files = list(store.path.parent.glob(store.path.name + "*"))
    assert store.path in files
    return b"".join(p.read_bytes() for p in files)


async def test_put_stores_only_a_token_and_load_gives_the_key_back(store: Store, backend: str) -> None:
    clock = Clock()
    gateways = GuildGatewayStore(store, box(SecretBox.new_key()), clock=clock)
    info = await gateways.put(GUILD, profile="openai", base_url="https://gw.example/v1", api_key=KEY,
                              chat_model="gpt-x", actor_id=ADMIN)
    assert (info.profile, info.base_url, info.chat_model, info.key_last4) == ("openai", "https://gw.example/v1",
                                                                              "gpt-x", "b8a3")
    assert (info.updated_by, info.updated_at, info.allow_operator_fallback) == (ADMIN, 1_000.0, False)
    assert await gateways.info(GUILD) == info
    assert await gateways.info(OTHER) is None and await gateways.load(OTHER) is None

    stored = await every_text(store)
    assert KEY not in stored and KEY[:16] not in stored  # neither the key nor a good part of it
    if backend == "sqlite":
        await store.close()  # everything written to the file (no WAL left to read)
        raw = sqlite_bytes(store)
        assert b"guild_gateways" in raw and b"https://gw.example/v1" in raw  # the row is in what is scanned
        assert KEY.encode() not in raw
        await store.open()

    row = await gateways.load(GUILD)
    assert row is not None
    assert (row.guild_id, row.config.api_key, row.config.profile, row.config.label) == (GUILD, KEY, "openai",
                                                                                       "guild:openai")
    assert (row.config.chat_model, row.updated_at, row.allow_operator_fallback) == ("gpt-x", 1_000.0, False)
    assert KEY not in repr(row)


async def test_every_change_is_audited_without_the_key(store: Store) -> None:
    clock = Clock()
    gateways = GuildGatewayStore(store, box(SecretBox.new_key()), clock=clock)
    await gateways.put(GUILD, profile="openai", base_url="https://a.example", api_key=KEY, actor_id=ADMIN)
    clock.now += 10
    changed = await gateways.put(GUILD, profile="digicord", base_url="https://b.example", api_key=KEY + "-new",
                                 image_model="flux", actor_id=ADMIN + 1)
    assert (changed.profile, changed.updated_at, changed.updated_by, changed.key_last4) == ("digicord", 1_010.0,
                                                                                            ADMIN + 1, "-new")
    assert await gateways.set_fallback(GUILD, True, ADMIN) is not None
    assert await gateways.set_fallback(OTHER, True, ADMIN) is None  # no gateway of its own: nothing to allow
    assert await gateways.remove(GUILD, ADMIN) is True
    assert await gateways.remove(GUILD, ADMIN) is False
    assert await gateways.guild_ids() == []

    entries = list(reversed(await audit.recent(store, GUILD, 10)))
    assert [(e.target, e.field) for e in entries] == [("gateway", "gateway"), ("gateway", "gateway"),
                                                      ("gateway", "allow_operator_fallback"), ("gateway", "gateway")]
    created, replaced, fallback, removed = entries
    assert created.old_value is None and created.new_value["profile"] == "openai"
    assert replaced.old_value["base_url"] == "https://a.example" and replaced.new_value["key_last4"] == "-new"
    assert replaced.new_value["key_changed"] is True and replaced.actor_id == ADMIN + 1
    assert (fallback.old_value, fallback.new_value) == (False, True)
    assert removed.new_value is None and removed.old_value["profile"] == "digicord"
    assert KEY not in await every_text(store)


async def test_a_replaced_row_gets_a_newer_updated_at_even_within_the_clocks_resolution(store: Store) -> None:
    gateways = GuildGatewayStore(store, box(SecretBox.new_key()), clock=Clock())
    first = await gateways.put(GUILD, profile="openai", base_url="https://a.example", api_key=KEY, actor_id=ADMIN)
    second = await gateways.put(GUILD, profile="openai", base_url="https://a.example", api_key=KEY + "2",
                                actor_id=ADMIN)
    assert second.updated_at > first.updated_at


async def test_put_refuses_without_an_encryption_key_or_with_an_empty_api_key(store: Store) -> None:
    with pytest.raises(SecretsNotConfigured, match="gatecord secrets new-key"):
        await GuildGatewayStore(store, None).put(GUILD, profile="openai", base_url="https://a.example",
                                                 api_key=KEY, actor_id=ADMIN)
    gateways = GuildGatewayStore(store, box(SecretBox.new_key()))
    with pytest.raises(InvalidSetting, match="API key"):
        await gateways.put(GUILD, profile="openai", base_url="https://a.example", api_key="  ", actor_id=ADMIN)
    with pytest.raises(InvalidSetting, match="Unknown gateway profile 'bogus'"):
        await gateways.put(GUILD, profile="bogus", base_url="https://a.example", api_key=KEY, actor_id=ADMIN)
    assert await gateways.guild_ids() == []


async def test_rotate_with_two_keys_then_the_old_key_can_go(store: Store) -> None:
    old_key, new_key = SecretBox.new_key(), SecretBox.new_key()
    before = GuildGatewayStore(store, box(old_key))
    await before.put(GUILD, profile="openai", base_url="https://a.example", api_key=KEY, actor_id=ADMIN)
    await before.put(OTHER, profile="aiproxy", base_url="https://b.example", api_key=KEY + "-b", actor_id=ADMIN)
    untouched = (await before.info(GUILD), await before.info(OTHER))

    both = GuildGatewayStore(store, box(new_key, old_key))
    report = await both.rotate()
    assert (report.rows, report.rotated, report.unreadable) == (2, 2, [])
    again = await both.rotate()
    assert (again.rows, again.rotated, again.unreadable) == (2, 0, [])  # already with the first key
    assert (await both.info(GUILD), await both.info(OTHER)) == untouched  # same gateway: same updated_at

    only_new = GuildGatewayStore(store, box(new_key))
    loaded = await only_new.load(GUILD)
    assert loaded is not None and loaded.config.api_key == KEY
    with pytest.raises(GuildGatewayUnavailable):
        await GuildGatewayStore(store, box(old_key)).load(GUILD)


async def test_rotate_names_the_rows_no_key_opens_and_leaves_them(store: Store) -> None:
    lost, kept = SecretBox.new_key(), SecretBox.new_key()
    await GuildGatewayStore(store, box(lost)).put(GUILD, profile="openai", base_url="https://a.example",
                                                  api_key=KEY, actor_id=ADMIN)
    await GuildGatewayStore(store, box(kept)).put(OTHER, profile="openai", base_url="https://b.example",
                                                  api_key=KEY, actor_id=ADMIN)
    token = await store.fetchval("SELECT api_key_encrypted FROM guild_gateways WHERE guild_id = ?", (GUILD,))
    report = await GuildGatewayStore(store, box(SecretBox.new_key(), kept)).rotate()
    assert (report.rows, report.rotated, report.unreadable) == (2, 1, [GUILD])
    assert await store.fetchval("SELECT api_key_encrypted FROM guild_gateways WHERE guild_id = ?",
                                (GUILD,)) == token
    with pytest.raises(SecretsNotConfigured):
        await GuildGatewayStore(store, None).rotate()


async def test_a_row_the_configured_key_cannot_open_is_unavailable_with_the_members_message(store: Store) -> None:
    await GuildGatewayStore(store, box(SecretBox.new_key())).put(GUILD, profile="digicord", base_url="https://a.ex",
                                                                 api_key=KEY, actor_id=ADMIN)
    for reader in (GuildGatewayStore(store, box(SecretBox.new_key())), GuildGatewayStore(store, None)):
        with pytest.raises(GuildGatewayUnavailable) as caught:
            await reader.load(GUILD)
        err = caught.value
        assert isinstance(err, AuthenticationError)  # never falls back to the operator's key
        assert (err.guild_id, err.profile, err.request_sent) == (GUILD, "digicord", False)
        assert "`/gateway set`" in str(err) and "encryption key" in str(err) and KEY not in str(err)
        info = await reader.info(GUILD)  # what /gateway show reads still works
        assert info is not None and info.key_last4 == "b8a3"


async def test_a_loaded_or_saved_key_is_masked_in_every_log_line(store: Store) -> None:
    key = "sk-never-logged-" + SecretBox.new_key()[:12]
    gateways = GuildGatewayStore(store, box(SecretBox.new_key()))
    earlier = SecretFilter()  # made before the key was known: learns it too
    await gateways.put(GUILD, profile="openai", base_url="https://a.example", api_key=key, actor_id=ADMIN)
    later = SecretFilter()
    for secret_filter in (earlier, later):
        record = logging.LogRecord("gatecord.test", logging.INFO, __file__, 1, "calling with %s", (key,), None)
        secret_filter.filter(record)
        assert record.getMessage() == f"calling with {MASK}"


# -- the directory with the store as its loader ------------------------------------------------------

@pytest.fixture
async def emulators() -> AsyncIterator[tuple[GatewayEmulator, GatewayEmulator]]:
    operator, own = GatewayEmulator("openai"), GatewayEmulator("digicord", api_key="sk-guild-first-key-0001")
    await operator.start()
    await own.start()
    try:
        yield operator, own
    finally:
        await own.close()
        await operator.close()


@pytest.fixture
async def operator_client(emulators: tuple[GatewayEmulator, GatewayEmulator]) -> AsyncIterator[GatewayClient]:
    operator = emulators[0]
    client = GatewayClient(GatewayConfig(profile="openai", base_url=operator.root_url, api_key=operator.api_key),
                           options=ClientOptions(max_retries=0))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def own_requests(emu: GatewayEmulator) -> list[Any]:
    return [r for r in emu.requests if r.path.endswith("/models")]


async def test_directory_serves_the_stored_gateway_and_sees_changes_after_its_ttl_or_invalidate(
    store: Store, emulators: tuple[GatewayEmulator, GatewayEmulator], operator_client: GatewayClient
) -> None:
    operator_emu, own_emu = emulators
    gateways = GuildGatewayStore(store, box(SecretBox.new_key()), clock=Clock())
    ticks = Clock(0.0)
    directory = GatewayDirectory(operator_client, load=gateways.load, ttl=5.0, monotonic=ticks)
    try:
        assert await directory.for_guild(GUILD) is operator_client  # no row yet
        await gateways.put(GUILD, profile="digicord", base_url=own_emu.root_url, api_key=own_emu.api_key,
                           actor_id=ADMIN)
        assert await directory.for_guild(GUILD) is operator_client  # within the TTL: the cached answer
        directory.invalidate(GUILD)  # this process changed it
        first = await directory.for_guild(GUILD)
        assert first is not operator_client and is_guild_client(first) and directory.has_own(GUILD)
        assert first.config.base_url == own_emu.root_url and first.config.label == "guild:digicord"
        await _fresh_models(first)  # the guild's emulator accepts the stored key
        assert own_requests(own_emu) and {r.status for r in own_requests(own_emu)} == {200}
        assert not own_requests(operator_emu)
        assert await directory.for_guild(OTHER) is operator_client

        # the manager sets a new key (another process): seen once the TTL has passed, as a new client
        own_emu.api_key = "sk-guild-second-key-0002"
        clock_row = await gateways.put(GUILD, profile="digicord", base_url=own_emu.root_url,
                                       api_key=own_emu.api_key, actor_id=ADMIN)
        assert clock_row.key_last4 == "0002"
        ticks.now = 4.9
        assert await directory.for_guild(GUILD) is first  # still cached
        with pytest.raises(AuthenticationError):  # the old client's key is refused now
            await _fresh_models(first)
        ticks.now = 5.1
        second = await directory.for_guild(GUILD)
        assert second is not first and second.config.api_key == "sk-guild-second-key-0002"
        await _fresh_models(second)  # the emulator now accepts only the new key, and gets it
        assert own_requests(own_emu)[-1].status == 200
        assert await directory.for_guild(GUILD) is second  # unchanged row within the TTL: the same client

        # removed: back to the operator's
        await gateways.remove(GUILD, ADMIN)
        directory.invalidate(GUILD)
        assert await directory.for_guild(GUILD) is operator_client and not directory.has_own(GUILD)
    finally:
        await directory.close()


async def test_directory_with_an_unreadable_row_raises_and_never_serves_the_operators_client(
    store: Store, emulators: tuple[GatewayEmulator, GatewayEmulator], operator_client: GatewayClient
) -> None:
    operator_emu, own_emu = emulators
    await GuildGatewayStore(store, box(SecretBox.new_key())).put(
        GUILD, profile="digicord", base_url=own_emu.root_url, api_key=own_emu.api_key, actor_id=ADMIN)
    after_key_change = GuildGatewayStore(store, box(SecretBox.new_key()))
    directory = GatewayDirectory(operator_client, load=after_key_change.load, monotonic=Clock(0.0))
    try:
        with pytest.raises(GuildGatewayUnavailable):
            await directory.for_guild(GUILD)
        assert await directory.for_guild(OTHER) is operator_client
        assert not operator_emu.requests and not own_emu.requests
    finally:
        await directory.close()


async def _fresh_models(client: GatewayClient) -> None:
    """A model list read from the gateway, not the client's cache."""
    client.invalidate_models_cache()
    await client.list_models()


# -- the factory's wiring -----------------------------------------------------------------------------

@pytest.mark.parametrize("enabled", [True, False])
async def test_the_bot_serves_a_stored_gateway_only_when_guild_gateways_are_enabled(
    tmp_path: Any, enabled: bool
) -> None:
    from bot.app.factory import create_bot
    from bot.app.settings import Settings

    settings = Settings(storage={"path": str(tmp_path / "g.db")}, secrets={"key": SecretBox.new_key()},
                        guild_gateways={"enabled": enabled})
    bot = create_bot(settings)
    await bot.store.open()
    try:
        assert bot.guild_gateways.configured
        await bot.guild_gateways.put(GUILD, profile="digicord", base_url="https://own.example", api_key=KEY,
                                     actor_id=ADMIN)
        served = await bot.gateways.for_guild(GUILD)
        assert (served is not bot.gateway) is enabled
        if enabled:
            assert served.config.label == "guild:digicord" and served.config.api_key == KEY
        assert await bot.gateways.for_guild(OTHER) is bot.gateway
    finally:
        await bot.gateways.close()
        await bot.gateway.close()
        await bot.store.close()  # (never started: nothing else to close)
