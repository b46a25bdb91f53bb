"""Per-server gateways in every non-media service, end to end: the real bot against the Discord emulator,
the operator's gateway emulator (OpenAI surface) and a second one (AICredits) that guild A brought
its own key for. The directory reads guild rows from a dict (the store's loader is gw-store's).

What is checked is what members see and what each gateway received: A's /chat, vision, voice and
knowledge go to A's gateway only; guild B's to the operator's; the ledger says which gateway served;
a revoked key on A's gateway gives A's members the clear message and the operator's gateway no
request (even with the operator's fallback allowed); an outage falls back only when allowed;
/credits shows A's own balance."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import bot.app.factory as factory
from bot.gateways.directory import GatewayDirectory, GuildGateway
from bot.voice import codec
from gateway_client import GatewayClient, GatewayConfig
from gateway_client.profiles import get_profile
from sandbox.gateways import GatewayEmulator
from sandbox.gateways.audio import synthesize
from tests.e2e import BotEnv, settings_for, start_bot, wait_reply, wait_shown
from tests.knowledge_samples import GUIDE_MD
from tests.test_vision_e2e import png
from tests.waiting import Changes, store_writes

pytestmark = pytest.mark.gateway_profile("openai")

HANDBOOK = ("handbook.md", GUIDE_MD.encode(), "text/markdown")
RED = ("red.png", png(64, 48), "image/png")
AICREDITS = get_profile("aicredits")
REFUSED = "This server's own AI gateway (aicredits) refused its key: "


class Rows:
    """The directory's loader: guild rows kept in a dict (what gw-store's GuildGatewayStore.load returns)."""

    def __init__(self) -> None:
        self.rows: dict[int, GuildGateway] = {}

    async def load(self, guild_id: int) -> GuildGateway | None:
        return self.rows.get(guild_id)


@dataclass
class Two:
    env: BotEnv
    own: GatewayEmulator  # guild A's own gateway
    rows: Rows
    writes: Changes  # poked after every store write

    @property
    def operator(self) -> GatewayEmulator:
        return self.env.gateway

    @property
    def a(self) -> int:
        return int(self.env.discord.guild_id)

    @property
    def b(self) -> int:
        return int(self.env.discord.guild2_id)

    def own_row(self, *, fallback: bool = False, version: float = 1.0) -> None:
        """Guild A's own gateway (as ``/gateway set`` saves it), read again at once."""
        config = GatewayConfig(profile=self.own.profile, base_url=self.own.root_url, api_key=self.own.api_key,
                               chat_model=self.own.default_chat_model, vision_model=self.own.default_vision_model)
        self.rows.rows[self.a] = GuildGateway(self.a, config, allow_operator_fallback=fallback, updated_at=version)
        self.env.bot.gateways.invalidate(self.a)


@pytest.fixture
async def two(discord_emu: Any, gateway_emu: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[Two]:
    rows = Rows()

    def directory(operator: GatewayClient, **_store_loader: Any) -> GatewayDirectory:
        return GatewayDirectory(operator, load=rows.load, public_only=False)  # the rows of this test instead of the store's

    monkeypatch.setattr(factory, "GatewayDirectory", directory)
    writes = store_writes(monkeypatch)
    own = GatewayEmulator("aicredits")
    await own.start()
    db_path = tmp_path / "gatecord.db"
    settings = settings_for(discord_emu, gateway_emu, db_path)
    env = BotEnv(discord=discord_emu, gateway=gateway_emu, settings=settings, running=await start_bot(settings),
                 db_path=db_path)
    both = Two(env, own, rows, writes)
    both.own_row()
    try:
        yield both
    finally:
        await env.running.stop()
        await own.close()


def calls(emu: GatewayEmulator, suffix: str) -> list[Any]:
    return [r for r in emu.requests if r.path.endswith(suffix)]


def asked(emu: GatewayEmulator) -> list[Any]:
    """What ``emu`` was asked, less model-list reads (the bot reads its operator's list at start-up)."""
    return [r for r in emu.requests if not (r.method == "GET" and r.path.endswith("/models"))]


def served(emu: GatewayEmulator) -> list[Any]:
    """The requests ``emu`` answered with its key accepted (2xx; a wrong key gets 401)."""
    return [r for r in emu.requests if r.status is not None and 200 <= r.status < 300]


async def ledger(two: Two, count: int) -> list[tuple[int, str, str | None, str]]:
    """The ledger's rows (guild, feature, gateway, outcome), once it has ``count`` (the last settle may
    still be on its way when the answer is shown)."""
    async def rows() -> list[tuple[int, str, str | None, str]]:
        found = await two.env.bot.store.fetchall(
            "SELECT guild_id, feature, gateway, outcome FROM usage_ledger ORDER BY id")
        return [(int(r["guild_id"]), r["feature"], r["gateway"], r["outcome"]) for r in found]

    await two.writes.wait_until(lambda: _has(rows(), count), what=f"{count} ledger rows")
    return await rows()


async def _has(rows: Any, count: int) -> bool:
    return len(await rows) >= count


async def chat(two: Two, guild_id: int, prompt: str = "hello there", user: str = "alice") -> Any:
    rec = await two.env.discord.inject_slash_command("chat", {"prompt": prompt}, user=user, guild_id=guild_id)
    return await wait_shown(rec, timeout=15)


async def test_each_guilds_chat_goes_to_its_own_gateway_with_its_key_and_the_ledger_says_which(two: Two) -> None:
    answer_a = await chat(two, two.a, "question from guild A")
    assert answer_a.content and not answer_a.content.startswith("⚠️")
    (request_a,) = calls(two.own, "/chat/completions")
    assert request_a.status == 200 and request_a.json["model"] == two.own.default_chat_model
    assert calls(two.operator, "/chat/completions") == []

    answer_b = await chat(two, two.b, "question from guild B")
    assert answer_b.content and not answer_b.content.startswith("⚠️")
    (request_b,) = calls(two.operator, "/chat/completions")
    assert request_b.status == 200 and len(calls(two.own, "/chat/completions")) == 1
    assert await ledger(two, 2) == [(two.a, "chat", "guild:aicredits", "ok"), (two.b, "chat", "openai", "ok")]


async def test_vision_voice_and_knowledge_of_guild_a_go_to_its_gateway_and_guild_bs_to_the_operators(
    two: Two,
) -> None:
    emu = two.env.discord
    # vision: a model of A's gateway that sees images, asked there with the picture
    rec = await emu.inject_slash_command("vision", {}, attachments={"image": RED}, guild_id=two.a)
    shown = await wait_shown(rec, timeout=15)
    assert shown.content and not shown.content.startswith("⚠️")
    (seen,) = calls(two.own, "/chat/completions")
    assert seen.json["model"] == two.own.default_vision_model and "image_url" in str(seen.json["messages"])

    # voice: A's member transcribes a voice message, then has text spoken
    audio = synthesize("Please write down what I am saying.", "opus")
    voice = await emu.send_user_voice_message(audio, user="bob", channel_id=emu.channel_id)
    rec = await emu.inject_context_menu("Transcribe", voice.id, user="bob")
    shown = await wait_shown(rec, timeout=20)
    assert shown.content == "🎙️ Please write down what I am saying."
    assert two.own.received_audio == [audio] and two.operator.received_audio == []
    rec = await emu.inject_slash_command("speak", {"text": "Hello from guild A."}, user="alice", guild_id=two.a)
    await rec.wait_final(lambda m: bool(m.attachments) or bool(m.content), timeout=20)
    (spoken,) = calls(two.own, "/audio/speech")
    assert spoken.json["model"] == AICREDITS.default_speech_model and spoken.json["input"] == "Hello from guild A."

    # knowledge: added and searched with A's gateway's embedding model
    rec = await emu.inject_slash_command("knowledge add", {}, user="admin", guild_id=two.a,
                                         attachments={"file": HANDBOOK})
    added = await wait_shown(rec, timeout=20)
    assert added.content.startswith("Added **Gatecord handbook**")
    rec = await emu.inject_slash_command("knowledge search", {"query": "How do I reset my password?"},
                                         user="alice", guild_id=two.a)
    found = await wait_shown(rec, timeout=20)
    assert "handbook.md" in found.content
    embedded = calls(two.own, "/embeddings")
    assert len(embedded) == 2 and {r.json["model"] for r in embedded} == {AICREDITS.default_embedding_model}
    assert all(r.status == 200 for r in served(two.own)) and len(served(two.own)) == len(two.own.requests)
    assert asked(two.operator) == []  # nothing of guild A's reached the operator's gateway

    # guild B: the operator's gateway (and its own, separate knowledge base)
    rec = await emu.inject_slash_command("knowledge search", {"query": "password"}, user="alice", guild_id=two.b)
    shown = await wait_shown(rec, timeout=20)
    assert "handbook.md" not in shown.content
    (b_embedding,) = calls(two.operator, "/embeddings")
    assert b_embedding.json["model"] == "text-embedding-3-small"

    seconds = math.ceil(codec.ogg_duration(audio))
    rows = await ledger(two, 6)
    assert [(g, f, gw) for g, f, gw, _ in rows] == [
        (two.a, "vision", "guild:aicredits"), (two.a, "transcription", "guild:aicredits"),
        (two.a, "speech", "guild:aicredits"), (two.a, "embedding", "guild:aicredits"),
        (two.a, "embedding", "guild:aicredits"), (two.b, "embedding", "openai"),
    ]
    assert await two.env.bot.quotas.counter("member", two.a, emu.users["bob"].id, "transcription_seconds") \
        == (seconds, 0)


@pytest.mark.parametrize("fallback", [False, True])
async def test_a_revoked_key_gives_guild_as_members_the_clear_message_and_never_the_operators_key(
    two: Two, fallback: bool,
) -> None:
    two.own_row(fallback=fallback, version=2.0)
    two.own.faults.revoke_key()
    emu = two.env.discord
    answer = await chat(two, two.a)
    assert answer.content.startswith("⚠️ " + REFUSED), answer.content
    assert answer.content.endswith("Nothing was charged. A server manager can set a new key with `/gateway set`, "
                                   "or go back to the bot's gateway with `/gateway remove`.")
    # a mention, a transcription and a knowledge search: the same sentence, the operator never asked
    mention = await emu.send_user_message("are you there?", user="alice", mention_bot=True)
    reply = await wait_reply(emu, mention)
    assert REFUSED in reply.content
    audio = synthesize("Transcribe me.", "opus")
    voice = await emu.send_user_voice_message(audio, user="bob", channel_id=emu.channel_id)
    rec = await emu.inject_context_menu("Transcribe", voice.id, user="bob")
    shown = await wait_shown(rec, timeout=20)
    assert REFUSED in shown.content
    rec = await emu.inject_slash_command("knowledge search", {"query": "password"}, user="alice", guild_id=two.a)
    shown = await wait_shown(rec, timeout=20)
    assert REFUSED in shown.content
    assert asked(two.operator) == []
    # every failed call's row names the gateway that refused: chat, the transcription, the search's embedding
    assert sorted((f, gw, outcome) for _, f, gw, outcome in await ledger(two, 4)) == [
        ("chat", "guild:aicredits", "error"), ("chat", "guild:aicredits", "error"),
        ("embedding", "guild:aicredits", "error"), ("transcription", "guild:aicredits", "error")]
    # guild B is not affected
    answer_b = await chat(two, two.b)
    assert not answer_b.content.startswith("⚠️")


async def test_an_outage_of_guild_as_gateway_falls_back_to_the_operators_only_when_allowed(two: Two) -> None:
    two.own.faults.fail_next(20, status=503, retry_after=None)
    answer = await chat(two, two.a)
    assert answer.content.startswith("⚠️ The AI gateway is unavailable right now"), answer.content
    assert asked(two.operator) == []
    two.own_row(fallback=True, version=2.0)
    answer = await chat(two, two.a)
    assert not answer.content.startswith("⚠️"), answer.content
    (request,) = calls(two.operator, "/chat/completions")
    assert request.status == 200
    rows = [(gw, outcome) for _, f, gw, outcome in await ledger(two, 2) if f == "chat"]
    assert rows == [("guild:aicredits", "error"), ("openai", "ok")]


async def test_credits_shows_guild_as_own_balance_and_about_says_which_gateway_serves(two: Two) -> None:
    emu = two.env.discord
    two.own.balance_inr = 1234.5
    rec = await emu.inject_slash_command("credits", {}, user="admin", guild_id=two.a)
    shown = await wait_shown(rec)
    assert shown.content == "Gateway balance: **1,234.5000** INR (this server's own AI gateway, `aicredits`)."
    assert calls(two.own, "/credits") and asked(two.operator) == []
    rec = await emu.inject_slash_command("credits", {}, user="admin", guild_id=two.b)
    shown = await wait_shown(rec)
    assert shown.content == "The AI gateway (`openai` profile) does not report a credit balance."

    rec = await emu.inject_slash_command("about", {}, user="alice", guild_id=two.a)
    about_a = await rec.wait_final(lambda m: "Gatecord" in m.content)
    assert about_a is not None
    assert f"AI gateway: this server's own, `aicredits` (chat model `{two.own.default_chat_model}`)" \
        in about_a.content
    rec = await emu.inject_slash_command("about", {}, user="alice", guild_id=two.b)
    about_b = await rec.wait_final(lambda m: "Gatecord" in m.content)
    assert about_b is not None
    assert "AI gateway: `openai`" in about_b.content


async def test_model_lists_and_config_checks_use_the_guilds_gateway(two: Two) -> None:
    emu = two.env.discord
    own_ids = {m.id for m in await (await two.env.bot.gateways.for_guild(two.a)).list_models()}
    operator_only = sorted({m.id for m in await two.env.bot.gateway.list_models()} - own_ids)[0]
    rec = await emu.inject_slash_command("config model", {"model": operator_only}, user="admin", guild_id=two.a)
    shown = await wait_shown(rec)
    assert f"`{operator_only}` is not a chat model on this gateway" in shown.content, shown.content
    rec = await emu.inject_slash_command("config model", {"model": operator_only}, user="admin", guild_id=two.b)
    shown = await wait_shown(rec)
    assert "is not a chat model" not in shown.content, shown.content
    choices = await emu.inject_autocomplete("chat", {"prompt": "x", "model": ""}, "model", user="alice",
                                            guild_id=two.a)
    assert choices and {c["value"] for c in choices} <= own_ids
    assert asked(two.operator) == []
