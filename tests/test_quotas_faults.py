"""Budgets around real gateway calls (gateway client against the gateway emulator): settle with the
call's real usage and metadata, release on a gateway error, on the bot closing mid-request, and a
crash that leaves a reservation open returns it once it expires. Both backends (conftest ``store``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.app.factory import build_gateway_client
from bot.app.settings import Settings
from bot.budgets.rules import Feature, Requester
from bot.budgets.service import BudgetService
from bot.storage.store import Store
from gateway_client import ChatMessage, ChatRequest, GatewayError
from sandbox.gateways import GatewayEmulator

ME = Requester(1, 2, 3)


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2025, 5, 5, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator("openai")
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


def make_settings(emu: GatewayEmulator, **quotas: Any) -> Settings:
    return Settings(
        gateway={"profile": emu.profile, "base_url": emu.root_url, "api_key": emu.api_key,
                 "chat_model": emu.default_chat_model, "max_retries": 0},
        quotas=quotas,
    )


def same_database(store: Store) -> Store:
    """Another Store on the database of ``store`` (a restarted process)."""
    return Store(store.path) if store.path is not None else Store(url=store.url)


async def ledger(store: Store) -> list[dict]:
    return [dict(r) for r in await store.fetchall("SELECT * FROM usage_ledger ORDER BY id")]


async def test_settle_with_real_usage_release_on_gateway_error(gateway: GatewayEmulator, store: Store) -> None:
    settings = make_settings(gateway, member_tokens=5000, member_chat_requests=10)
    client = build_gateway_client(settings)
    await client.start()
    q = BudgetService(store, settings, now=Clock())
    try:
        req = ChatRequest(messages=[ChatMessage("user", "hello")])
        async with q.charge(ME, Feature.CHAT, tokens=200, model=gateway.default_chat_model) as r:
            req.max_tokens = r.granted_tokens
            result = await client.chat(req)
            await q.settle(r, usage_tokens=result.usage.total_tokens or 0, meta=result.meta)
        assert result.usage.total_tokens
        assert await q.counter("member", 1, 3, "tokens") == (result.usage.total_tokens, 0)

        gateway.faults.fail_next(1, status=503, retry_after=None)
        with pytest.raises(GatewayError) as info:
            async with q.charge(ME, Feature.CHAT, tokens=200, model=gateway.default_chat_model) as r:
                await client.chat(ChatRequest(messages=[ChatMessage("user", "again")], max_tokens=r.granted_tokens))
        assert await q.counter("member", 1, 3, "chat_requests") == (1, 0)  # the failed call is not charged
        assert await q.counter("member", 1, 3, "tokens") == (result.usage.total_tokens, 0)

        ok, failed = await ledger(store)
        assert (ok["outcome"], ok["charged"], ok["tokens"]) == ("ok", 1, result.usage.total_tokens)
        assert ok["request_id"] == result.meta.request_id and ok["request_id"]
        assert ok["model_used"] == result.meta.model_used and ok["model_requested"] == gateway.default_chat_model
        assert ok["credits"] == result.meta.credits_used and ok["latency_ms"] == result.meta.latency_ms
        assert (failed["outcome"], failed["charged"], failed["tokens"]) == ("error", 0, 0)
        assert failed["error_code"] == (info.value.code or type(info.value).__name__)
    finally:
        await client.close()


async def test_bot_closing_mid_request_releases(gateway: GatewayEmulator, store: Store) -> None:
    settings = make_settings(gateway, guild_chat_requests=1)
    client = build_gateway_client(settings)
    await client.start()
    q = BudgetService(store, settings, now=Clock())
    reserved = asyncio.Event()
    gateway.faults.slow_next(1, delay=2)

    async def ask() -> None:
        async with q.charge(ME, Feature.CHAT, tokens=100) as r:
            reserved.set()
            result = await client.chat(ChatRequest(messages=[ChatMessage("user", "slow")], max_tokens=r.granted_tokens))
            await q.settle(r, usage_tokens=result.usage.total_tokens or 0, meta=result.meta)

    task = asyncio.create_task(ask())
    await reserved.wait()
    assert await q.counter("guild", 1, 0, "chat_requests") == (0, 1)
    task.cancel()  # what bot.close() does to in-flight work
    await client.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await q.counter("guild", 1, 0, "chat_requests") == (0, 0)
    [row] = await ledger(store)
    assert (row["outcome"], row["charged"]) == ("cancelled", 0)
    await q.reserve(ME, Feature.CHAT)  # the budget is available again


async def test_crash_with_open_reservation_is_returned_after_ttl(gateway: GatewayEmulator, store: Store) -> None:
    settings = make_settings(gateway, guild_images=4, reservation_ttl_seconds=120)
    clock = Clock()
    crashing = same_database(store)
    await crashing.open()
    q = BudgetService(crashing, settings, now=clock)
    r = await q.reserve(ME, Feature.IMAGE, images=4)
    await crashing.close()  # the process dies: the release below cannot reach the database
    await q.engine.release_quietly(r, "error", None, "crash")
    assert not r.closed

    q = BudgetService(store, settings, now=clock)  # the restarted process
    assert (await q.usage_limits(ME)).remaining("images") == 0
    clock.t += timedelta(seconds=121)
    assert await q.sweep_expired() == 1
    assert (await q.usage_limits(ME)).remaining("images") == 4
    [row] = await ledger(store)
    assert (row["outcome"], row["charged"], row["reservation_id"]) == ("expired", 0, r.id)
