"""GatewayDirectory: which client serves a guild (the operator's, or the guild's own), against two real
gateway emulators on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.gateways.directory import GatewayDirectory, GuildGateway, is_guild_client
from gateway_client import ChatRequest, ClientOptions, GatewayClient, GatewayConfig, UpstreamUnavailable
from gateway_client.errors import AuthenticationError
from sandbox.gateways import GatewayEmulator
from tests.fake_clock import FakeClock

GUILD_A, GUILD_B = 111, 222


@pytest.fixture
async def emus() -> AsyncIterator[tuple[GatewayEmulator, GatewayEmulator]]:
    operator, own = GatewayEmulator("openai"), GatewayEmulator("aicredits")
    await operator.start()
    await own.start()
    try:
        yield operator, own
    finally:
        await operator.close()
        await own.close()


def _config(emu: GatewayEmulator, **extra: Any) -> GatewayConfig:
    return GatewayConfig(profile=emu.profile, base_url=emu.root_url, api_key=emu.api_key, **extra)


def _chat(text: str = "hello") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model=None)


class Rows:
    """A dict-backed loader that counts its reads."""

    def __init__(self) -> None:
        self.rows: dict[int, GuildGateway] = {}
        self.reads = 0

    async def load(self, guild_id: int) -> GuildGateway | None:
        self.reads += 1
        return self.rows.get(guild_id)


async def test_each_guild_is_served_by_its_own_gateway_and_others_by_the_operators(emus: Any) -> None:
    operator_emu, own_emu = emus
    rows = Rows()
    rows.rows[GUILD_A] = GuildGateway(GUILD_A, _config(own_emu), updated_at=1.0)
    async with GatewayClient(_config(operator_emu)) as operator:
        directory = GatewayDirectory(operator, load=rows.load)
        try:
            a = await directory.for_guild(GUILD_A)
            assert is_guild_client(a) and a.config.label == "guild:aicredits"
            assert await directory.for_guild(GUILD_B) is operator
            assert await directory.for_guild(0) is operator and await directory.for_guild(None) is operator
            result = await a.chat(_chat())
            assert result.meta.gateway == "guild:aicredits"
            assert [r.path for r in own_emu.requests if "chat" in r.path] and not operator_emu.requests
            assert directory.has_own(GUILD_A) and not directory.has_own(GUILD_B)
        finally:
            await directory.close()


async def test_rows_are_reused_for_the_ttl_then_read_again_and_a_changed_row_gives_a_new_client(emus: Any) -> None:
    operator_emu, own_emu = emus
    rows, clock = Rows(), FakeClock(start=100.0)
    rows.rows[GUILD_A] = GuildGateway(GUILD_A, _config(own_emu), updated_at=1.0)
    async with GatewayClient(_config(operator_emu)) as operator:
        directory = GatewayDirectory(operator, load=rows.load, ttl=5.0, monotonic=clock.now)
        try:
            first = await directory.for_guild(GUILD_A)
            assert await directory.for_guild(GUILD_A) is first and rows.reads == 1
            clock.advance(6)
            assert await directory.for_guild(GUILD_A) is first and rows.reads == 2  # same row: same client
            rows.rows[GUILD_A] = GuildGateway(GUILD_A, _config(own_emu, chat_model="other"), updated_at=2.0)
            directory.invalidate(GUILD_A)  # this process changed it: read at once
            second = await directory.for_guild(GUILD_A)
            assert second is not first and second.config.chat_model == "other"
            del rows.rows[GUILD_A]
            clock.advance(6)  # another process removed it: seen after the ttl
            assert await directory.for_guild(GUILD_A) is operator
        finally:
            await directory.close()


async def test_a_revoked_guild_key_never_falls_back_to_the_operator_even_when_fallback_is_allowed(emus: Any) -> None:
    operator_emu, own_emu = emus
    rows = Rows()
    rows.rows[GUILD_A] = GuildGateway(GUILD_A, _config(own_emu), allow_operator_fallback=True, updated_at=1.0)
    async with GatewayClient(_config(operator_emu)) as operator:
        directory = GatewayDirectory(operator, load=rows.load)
        try:
            client = await directory.for_guild(GUILD_A)
            own_emu.faults.revoke_key()
            with pytest.raises(AuthenticationError):
                await client.chat(_chat())
            assert operator_emu.requests == []
        finally:
            await directory.close()


async def test_an_outage_falls_back_to_the_operator_only_when_the_admin_allowed_it(emus: Any) -> None:
    operator_emu, own_emu = emus
    rows = Rows()
    rows.rows[GUILD_A] = GuildGateway(GUILD_A, _config(own_emu), allow_operator_fallback=False, updated_at=1.0)
    # no retries (the guild's client takes the operator's options): one 503 is an outage at once
    async with GatewayClient(_config(operator_emu, chat_model=operator_emu.default_chat_model),
                             options=ClientOptions(max_retries=0)) as operator:
        directory = GatewayDirectory(operator, load=rows.load)
        try:
            own_emu.faults.fail_next(10, status=503, retry_after=None)
            with pytest.raises(UpstreamUnavailable):
                await (await directory.for_guild(GUILD_A)).chat(_chat())
            assert operator_emu.requests == []
            rows.rows[GUILD_A] = GuildGateway(GUILD_A, _config(own_emu), allow_operator_fallback=True, updated_at=2.0)
            directory.invalidate(GUILD_A)
            result = await (await directory.for_guild(GUILD_A)).chat(_chat())
            assert result.meta.gateway == "openai" and result.meta.gateway_fallback_from == "guild:aicredits"
        finally:
            own_emu.faults.reset()
            await directory.close()
