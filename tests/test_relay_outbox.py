"""The outbox as the delivery queue of many processes, on SQLite and PostgreSQL: claims (one channel's
posts one at a time, in order), claims that go stale when their process stops, renewal, outcomes that
belong to the claim that made them. Times are passed in, so nothing here waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.relay.keys import KeyStore, RelayKey
from bot.relay.outbox import NewPost, Outbox
from bot.relay.validation import validate_payload
from bot.storage.store import Store

GUILD, CHAN, CHAN2 = 1000, 1001, 1002
T0 = 1_800_000_000.0
TIMEOUT = 30.0


@dataclass
class Box:
    outbox: Outbox
    key: RelayKey
    store: Store

    async def post(self, channel: int, content: str) -> str:
        message = validate_payload({"channelId": str(channel), "content": content})
        return (await self.outbox.accept(NewPost(self.key, message))).id

    async def claim(self, now: float, limit: int = 10, channels: set[int] | None = None) -> list[str]:
        claims = await self.outbox.claim(now=now, stale_before=now - TIMEOUT, limit=limit, channels=channels)
        return [c.record.id for c in claims]

    async def row(self, post_id: str) -> dict[str, object]:
        row = await self.store.fetchone(
            "SELECT status, attempts, claimed_at, in_doubt_since FROM relay_outbox WHERE id = ?", (post_id,))
        assert row is not None
        return dict(zip(row.keys(), row, strict=True))


@pytest.fixture
async def box(store: Store) -> AsyncIterator[Box]:
    outbox = Outbox(store, clock=lambda: T0)
    outbox.start()
    key = (await KeyStore(store, clock=lambda: T0).create(GUILD, name="k", created_by=1)).record
    try:
        yield Box(outbox, key, store)
    finally:
        await outbox.close()


async def test_a_channel_gets_one_post_at_a_time_in_order(box: Box) -> None:
    a1, a2, b1 = await box.post(CHAN, "a1"), await box.post(CHAN, "a2"), await box.post(CHAN2, "b1")
    assert await box.claim(T0) == [a1, b1]  # the head of each channel, oldest first
    assert await box.claim(T0) == []  # a2 waits for a1, which is being sent
    await box.outbox.mark_delivered(a1, 555)
    assert await box.claim(T0, channels={CHAN}) == [a2]
    assert await box.row(a2) == {"status": "sending", "attempts": 1, "claimed_at": T0, "in_doubt_since": T0}


async def test_a_retry_holds_its_channel_until_it_is_due(box: Box) -> None:
    a1, a2 = await box.post(CHAN, "a1"), await box.post(CHAN, "a2")
    [claim] = await box.outbox.claim(now=T0, stale_before=T0 - TIMEOUT, limit=5)
    await box.outbox.mark_retry(a1, at=T0 + 10, in_doubt_since=None, code="rate_limited", message="429",
                                attempt=claim.attempt)
    assert await box.row(a1) == {"status": "queued", "attempts": 1, "claimed_at": None, "in_doubt_since": None}
    assert await box.claim(T0 + 5) == []  # neither the retry before its time, nor the post after it
    assert await box.claim(T0 + 10) == [a1]
    assert a2 not in await box.claim(T0 + 10)


async def test_a_claim_whose_process_stopped_is_taken_over_with_the_same_nonce(box: Box) -> None:
    post = await box.post(CHAN, "x")
    [first] = await box.outbox.claim(now=T0, stale_before=T0 - TIMEOUT, limit=1)
    assert first.attempt == 1 and first.record.in_doubt_since is None
    # the claiming process is killed mid-send: nobody records an outcome, nobody renews
    assert await box.claim(T0 + TIMEOUT - 1) == []
    [again] = await box.outbox.claim(now=T0 + TIMEOUT, stale_before=T0, limit=1)
    assert again.record.id == post  # the id is the Discord nonce: a re-send returns the first message
    assert again.attempt == 2 and again.record.in_doubt_since == T0  # the transport knows it may be there
    # the first claimant's late outcome is not recorded over the new attempt's
    await box.outbox.mark_retry(post, at=T0, in_doubt_since=T0, code="timeout", message="late", attempt=1)
    assert (await box.row(post))["claimed_at"] == T0 + TIMEOUT
    await box.outbox.mark_delivered(post, 777)
    assert (await box.row(post))["status"] == "delivered"
    await box.outbox.mark_failed(post, "late", "a stale claimant's failure", attempt=1)
    assert (await box.row(post))["status"] == "delivered"  # a settled post is never reopened


async def test_a_renewed_claim_is_not_taken_over(box: Box) -> None:
    await box.post(CHAN, "slow")
    claims = await box.outbox.claim(now=T0, stale_before=T0 - TIMEOUT, limit=1)
    await box.outbox.renew(claims, T0 + 20)
    assert await box.claim(T0 + TIMEOUT + 5) == []
    assert len(await box.claim(T0 + 20 + TIMEOUT)) == 1


async def test_released_claims_are_sent_again_at_once_knowing_they_may_have_reached_discord(box: Box) -> None:
    post = await box.post(CHAN, "x")
    claims = await box.outbox.claim(now=T0, stale_before=T0 - TIMEOUT, limit=1)
    await box.outbox.release(claims)  # a process stopping mid-send hands its posts back
    [again] = await box.outbox.claim(now=T0 + 1, stale_before=T0 + 1 - TIMEOUT, limit=1)
    assert again.record.id == post and again.record.in_doubt_since == T0 and again.attempt == 2


async def test_claims_handed_back_before_any_attempt_leave_the_posts_as_they_were(box: Box) -> None:
    post = await box.post(CHAN, "x")
    claims = await box.outbox.claim(now=T0, stale_before=T0 - TIMEOUT, limit=1)
    await box.outbox.unclaim(claims)  # the worker stopped before sending: nothing may have reached Discord
    row = await box.outbox.store.fetchone("SELECT status, attempts, in_doubt_since, claimed_at FROM relay_outbox")
    assert dict(row) == {"status": "queued", "attempts": 0, "in_doubt_since": None, "claimed_at": None}
    [again] = await box.outbox.claim(now=T0 + 1, stale_before=T0 + 1 - TIMEOUT, limit=1)
    assert again.record.id == post and again.record.in_doubt_since is None and again.attempt == 1


async def test_claims_are_bounded_and_oldest_first(box: Box) -> None:
    ids = [await box.post(1_000_000 + i, f"p{i}") for i in range(7)]
    assert await box.claim(T0, limit=3) == ids[:3]
    assert await box.claim(T0, limit=3) == ids[3:6]
    assert await box.claim(T0, limit=3, channels={1_000_006, 1_000_000}) == ids[6:]
