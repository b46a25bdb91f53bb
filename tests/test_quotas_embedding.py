"""The embedding-token budget (the knowledge base) on both backends: the kind's vocabulary and settings, a
reservation held by the estimate and settled with what the gateway counted, refusals that name the kind,
the ledger column, and what /usage and /mylimits say."""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path

import pytest

from bot.app.settings import Settings
from bot.budgets.rules import AMOUNT_KINDS, KIND_LABELS, KIND_NOUNS, KINDS, BudgetExceeded, Feature, Requester
from bot.budgets.service import BudgetService
from bot.storage.store import Store
from cogs._admin_text import mylimits_text, usage_totals_text
from cogs.admin import KindChoice
from gateway_client.meta import CallMeta

GUILD = 2000
ALICE = Requester(GUILD, 20, 1, ())
BOB = Requester(GUILD, 20, 2, ())
ROOT = Path(__file__).resolve().parent.parent


def quotas(store: Store, **limits: float) -> BudgetService:
    return BudgetService(store, Settings(quotas=limits))


def test_the_kind_is_known_everywhere() -> None:
    assert KINDS[-1] == "embedding_tokens" and "embedding_tokens" in AMOUNT_KINDS
    assert typing.get_args(KindChoice) == KINDS  # /quota set and /quota role offer it
    assert KIND_NOUNS["embedding_tokens"] == ("embedding token", "embedding tokens")
    assert KIND_LABELS["embedding_tokens"] == "embedding" and Feature("embedding") is Feature.EMBEDDING
    example = tomllib.loads((ROOT / "config.example.toml").read_text())["quotas"]
    for scope in ("guild", "member"):
        assert getattr(Settings().quotas, f"{scope}_embedding_tokens") == -1
        assert example[f"{scope}_embedding_tokens"] == -1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_reserved_by_estimate_settled_by_usage(store: Store) -> None:
    q = quotas(store, member_embedding_tokens=1000, guild_embedding_tokens=5000)
    hold = await q.reserve(ALICE, Feature.EMBEDDING, embedding_tokens=600, model="emb-1")
    assert await q.counter("member", GUILD, 1, "embedding_tokens") == (0, 600)
    with pytest.raises(BudgetExceeded) as info:  # 600 held: 500 more do not fit
        await q.reserve(ALICE, Feature.EMBEDDING, embedding_tokens=500)
    assert (info.value.kind, info.value.scope) == ("embedding_tokens", "member")
    assert "daily embedding token budget (1,000)" in info.value.user_message()
    await hold.settle(embedding_tokens=420, meta=CallMeta(profile="openai", request_id="r-1"))
    assert await q.counter("member", GUILD, 1, "embedding_tokens") == (420, 0)
    assert await q.counter("guild", GUILD, 0, "embedding_tokens") == (420, 0)
    rows = [dict(r) for r in await store.fetchall("SELECT * FROM usage_ledger ORDER BY id")]
    assert [(r["feature"], r["embedding_tokens"], r["tokens"], r["charged"], r["model_requested"]) for r in rows] == [
        ("embedding", 420, 0, 1, "emb-1")]

    # a used-up budget refuses even a reservation that asks nothing yet
    await q.settle(await q.reserve(ALICE, Feature.EMBEDDING, embedding_tokens=580))
    with pytest.raises(BudgetExceeded) as info:
        await q.reserve(ALICE, Feature.EMBEDDING)
    assert info.value.remaining == 0
    # a failed call is released: nothing charged
    async with await q.reserve(BOB, Feature.EMBEDDING, embedding_tokens=100) as failed:
        assert failed.embedding_tokens == 100
    assert await q.counter("member", GUILD, 2, "embedding_tokens") == (0, 0)

    report = await q.usage_report(GUILD, 1)
    assert report.totals["embedding_tokens"] == 1000 and report.budget["embedding_tokens"] == 5000
    assert usage_totals_text(report.totals).endswith(", 0 music seconds, 1,000 embedding tokens.")
    limits = await q.usage_limits(BOB)
    assert "• embedding tokens: **1,000** of 1,000 left" in mylimits_text(limits, q.now()).splitlines()
