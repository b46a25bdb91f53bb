"""The budget service around the engine: the one flow (``async with`` a reservation, ``hold.settle``/
``hold.release``), the expiry sweep it runs in the background, the price load, and the balance."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.app.settings import Settings
from bot.budgets.rules import BudgetExceeded, Feature, Requester
from bot.budgets.service import SWEEP_LOCK, BudgetService
from bot.storage.store import Store
from gateway_client.errors import Unsupported
from gateway_client.models import ModelInfo, ModelKind

GUILD = 1000
ALICE = Requester(GUILD, 10, 1, ())


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


class Steps:
    """An injectable sleep the test releases one step at a time."""

    def __init__(self) -> None:
        self.asleep: asyncio.Queue[float] = asyncio.Queue()
        self.wake: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        await self.asleep.put(seconds)
        await self.wake.get()


async def ledger(store: Store) -> list[tuple[str, str | None, int, int]]:
    rows = await store.fetchall("SELECT outcome, error_code, charged, images FROM usage_ledger ORDER BY id")
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_one_flow_settles_with_what_was_delivered_or_releases(store: Store) -> None:
    q = BudgetService(store, Settings(quotas={"member_images": 4}), now=Clock(),
                      error_code=lambda exc: "classified")
    # settle inside the block with the number of images actually delivered
    hold = await q.reserve(ALICE, Feature.IMAGE, images=4)
    async with hold:
        assert await q.counter("member", GUILD, 1, "images") == (0, 4)
        await hold.settle(images=3)
    assert await q.counter("member", GUILD, 1, "images") == (3, 0)
    # a failure inside the block: released, with the service's error code
    with pytest.raises(RuntimeError):
        async with q.charge(ALICE, Feature.IMAGE, images=1):
            raise RuntimeError("the gateway broke")
    # an explicit release with its own code, then the block ends quietly
    async with q.charge(ALICE, Feature.IMAGE, images=1) as hold:
        await hold.release(outcome="refused", error_code="content_policy")
    # the block ends without settling: released as not_settled
    async with q.charge(ALICE, Feature.IMAGE, images=1):
        pass
    # cancelled while waiting for the gateway: released as cancelled whatever the classifier says
    entered = asyncio.Event()

    async def waits() -> None:
        async with q.charge(ALICE, Feature.IMAGE, images=1):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(waits())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await q.counter("member", GUILD, 1, "images") == (3, 0)
    assert await ledger(store) == [
        ("ok", None, 1, 3), ("error", "classified", 0, 0), ("refused", "content_policy", 0, 0),
        ("not_settled", None, 0, 0), ("cancelled", "cancelled", 0, 0),
    ]
    with pytest.raises(BudgetExceeded):
        await q.reserve(ALICE, Feature.IMAGE, images=2)


async def test_service_sweeps_expired_reservations_until_closed(store: Store) -> None:
    clock, steps = Clock(), Steps()
    q = BudgetService(store, Settings(quotas={"member_images": 4, "reservation_ttl_seconds": 60}), now=clock,
                      sleep=steps.sleep)
    await q.reserve(ALICE, Feature.IMAGE, images=4)  # never settled: the call's task died
    await q.start()
    assert q.sweeper.running
    assert await steps.asleep.get() == 30  # half the TTL (under the 60 s default)
    assert await q.counter("member", GUILD, 1, "images") == (0, 4)  # the first sweep found nothing expired

    clock.t += timedelta(seconds=61)
    steps.wake.put_nowait(None)
    await steps.asleep.get()  # one more sweep has run
    assert await q.counter("member", GUILD, 1, "images") == (0, 0)
    assert await ledger(store) == [("expired", None, 0, 0)]

    await q.close()
    assert not q.sweeper.running


async def test_sweep_pass_is_skipped_while_another_process_holds_the_sweep_lock(pg_url: str) -> None:
    store, other_process = Store(url=pg_url), Store(url=pg_url)
    await store.open()
    await other_process.open()
    clock, steps = Clock(), Steps()
    q = BudgetService(store, Settings(quotas={"member_images": 4, "reservation_ttl_seconds": 60}), now=clock,
                      sleep=steps.sleep)
    try:
        await q.reserve(ALICE, Feature.IMAGE, images=4)
        clock.t += timedelta(seconds=61)  # expired
        async with other_process.lock(SWEEP_LOCK) as held:
            assert held
            await q.start()
            await steps.asleep.get()  # the first pass ran while the other process held the lock: skipped
            assert await q.counter("member", GUILD, 1, "images") == (0, 4)
        steps.wake.put_nowait(None)
        await steps.asleep.get()  # the next pass holds the lock and returns the hold
        assert await q.counter("member", GUILD, 1, "images") == (0, 0)
        assert await ledger(store) == [("expired", None, 0, 0)]
    finally:
        await q.close()
        await store.close()
        await other_process.close()


class FakeGateway:
    def __init__(self, models: list[ModelInfo] | None) -> None:
        self.models = models
        self.listed = asyncio.Event()

    async def list_models(self) -> list[ModelInfo]:
        self.listed.set()
        if self.models is None:
            raise ConnectionError("gateway down")
        return self.models

    async def credits(self) -> object:
        raise Unsupported("no balance here")


async def test_prices_are_loaded_at_start_and_a_missing_list_is_not_an_error(store: Store) -> None:
    priced = ModelInfo(id="flux", kind=ModelKind.IMAGE, image_price=0.25)
    gateway = FakeGateway([priced, ModelInfo(id="free", kind=ModelKind.CHAT)])
    q = BudgetService(store, Settings(), now=Clock(), gateway=gateway, sleep=Steps().sleep)  # type: ignore[arg-type]
    await q.start()
    await gateway.listed.wait()
    await q.close()  # waits for the load to finish or be cancelled
    assert q.prices == {"flux": (None, None, 0.25)}
    hold = await q.reserve(ALICE, Feature.IMAGE, images=2, model="flux")
    await hold.settle()
    assert await q.counter("member", GUILD, 1, "credits") == (0.5, 0)

    down = FakeGateway(None)
    q2 = BudgetService(store, Settings(), now=Clock(), gateway=down, sleep=Steps().sleep)  # type: ignore[arg-type]
    await q2.start()
    await down.listed.wait()
    await q2.close()
    assert q2.prices == {}
    with pytest.raises(Unsupported):
        await q2.balance()
    with pytest.raises(Unsupported):
        await BudgetService(store, Settings()).balance()
