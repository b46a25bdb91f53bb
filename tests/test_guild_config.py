"""Guild/channel configuration: resolution order (channel > parent > guild > config), validation
messages (including the model check against the gateway's model list), the audit trail, and what
another process sees (both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.guilds.config import CACHE_SECONDS, EffectiveConfig, GuildConfig, InvalidSetting
from bot.app.settings import Settings
from bot.storage.store import Store
from gateway_client.models import ModelInfo, ModelKind

GUILD, CHANNEL, THREAD, OTHER = 1, 100, 101, 200


class FakeGateway:
    """Only the model listing the validation needs (the real client is tested elsewhere)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.models = [
            ModelInfo(id="gpt-small", kind=ModelKind.CHAT),
            ModelInfo(id="gpt-eyes", kind=ModelKind.VISION),
            ModelInfo(id="flux-schnell", kind=ModelKind.IMAGE),
        ]

    async def list_models(self, kind: ModelKind | None = None) -> list[ModelInfo]:
        if self.fail:
            raise ConnectionError("down")
        return [m for m in self.models if kind is None or m.kind is kind]

    async def vision_models(self) -> list[ModelInfo]:
        return await self.list_models(ModelKind.VISION)

    async def image_models(self) -> list[ModelInfo]:
        return await self.list_models(ModelKind.IMAGE)


@pytest.fixture
async def other_store(store: Store) -> AsyncIterator[Store]:
    """The same database as ``store``, opened again: what another process sees."""
    other = Store(url=store.url) if store.url else Store(store.path)
    await other.open()
    yield other
    await other.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings() -> Settings:
    return Settings(
        gateway={"chat_model": "default-chat", "vision_model": "default-eyes", "image_model": "default-flux"},
        chat={"system_prompt": "Be brief.", "temperature": 0.5, "max_tokens": 800, "history_messages": 20},
    )


async def audit_rows(store: Store) -> list[tuple]:
    return [tuple(r) for r in await store.fetchall(
        "SELECT actor_id, target, field, old_value, new_value FROM audit_log ORDER BY id")]


async def test_defaults_come_from_config(store: Store) -> None:
    gc = GuildConfig(store, settings(), FakeGateway())
    assert await gc.effective(GUILD, CHANNEL) == EffectiveConfig(
        "default-chat", "default-eyes", "default-flux", "Be brief.", 0.5, 800, 20, True, False
    )
    assert await gc.effective(None, 5) == gc.defaults()


async def test_channel_over_parent_over_guild(store: Store) -> None:
    gc = GuildConfig(store, settings(), FakeGateway())
    await gc.set_guild(GUILD, 9, chat_model="gpt-small", system_prompt="Guild prompt", temperature=1.0)
    await gc.set_channel(GUILD, CHANNEL, 9, system_prompt="Channel prompt", max_tokens=300, answer_mentions=False)
    in_thread = await gc.effective(GUILD, THREAD, parent_channel_id=CHANNEL)
    assert (in_thread.chat_model, in_thread.system_prompt, in_thread.temperature) == ("gpt-small", "Channel prompt", 1.0)
    assert (in_thread.max_tokens, in_thread.answer_mentions) == (300, False)
    await gc.set_channel(GUILD, THREAD, 9, answer_mentions=True)
    assert (await gc.effective(GUILD, THREAD, CHANNEL)).answer_mentions is True
    other = await gc.effective(GUILD, OTHER)
    assert (other.system_prompt, other.max_tokens, other.answer_mentions) == ("Guild prompt", 800, True)
    # survives a fresh instance (nothing only in memory)
    again = GuildConfig(store, settings(), FakeGateway())
    assert await again.effective(GUILD, THREAD, CHANNEL) == await gc.effective(GUILD, THREAD, CHANNEL)


async def test_voice_replies_off_by_default_set_per_channel_and_inherited_by_threads(store: Store) -> None:
    gc = GuildConfig(store, settings(), FakeGateway())
    assert (await gc.effective(GUILD, THREAD, CHANNEL)).voice_replies is False
    assert await gc.set_channel(GUILD, CHANNEL, 9, voice_replies=True) == {"voice_replies": (None, True)}
    assert (await gc.effective(GUILD, THREAD, CHANNEL)).voice_replies is True
    assert (await gc.effective(GUILD, OTHER)).voice_replies is False
    await gc.set_guild(GUILD, 9, voice_replies=True)
    await gc.set_channel(GUILD, THREAD, 9, voice_replies=False)
    assert (await gc.effective(GUILD, THREAD, CHANNEL)).voice_replies is False
    assert (await gc.effective(GUILD, OTHER)).voice_replies is True
    assert (9, f"channel:{CHANNEL}", "voice_replies", None, "true") in await audit_rows(store)


async def test_changes_are_audited_old_to_new(store: Store) -> None:
    gc = GuildConfig(store, settings(), FakeGateway())
    assert await gc.set_guild(GUILD, 9, temperature=0.9) == {"temperature": (None, 0.9)}
    assert await gc.set_guild(GUILD, 8, temperature=1.2) == {"temperature": (0.9, 1.2)}
    await gc.set_channel(GUILD, CHANNEL, 8, chat_model="gpt-small")
    removed = await gc.reset(GUILD, 7, include_channels=True)
    assert removed == {0: {"temperature": 1.2}, CHANNEL: {"chat_model": "gpt-small"}}
    assert await audit_rows(store) == [
        (9, "guild", "temperature", None, "0.9"),
        (8, "guild", "temperature", "0.9", "1.2"),
        (8, f"channel:{CHANNEL}", "chat_model", None, '"gpt-small"'),
        (7, "guild", "temperature", "1.2", None),
        (7, f"channel:{CHANNEL}", "chat_model", '"gpt-small"', None),
    ]
    assert await gc.effective(GUILD, CHANNEL) == gc.defaults()


async def test_reset_one_channel_or_some_fields(store: Store) -> None:
    gc = GuildConfig(store, settings(), FakeGateway())
    await gc.set_guild(GUILD, 9, temperature=1.1, max_tokens=100)
    await gc.set_channel(GUILD, CHANNEL, 9, temperature=0.2)
    await gc.reset(GUILD, 9, channel_id=CHANNEL)
    assert (await gc.effective(GUILD, CHANNEL)).temperature == 1.1
    await gc.reset(GUILD, 9, fields=["max_tokens"])
    cfg = await gc.effective(GUILD, CHANNEL)
    assert (cfg.temperature, cfg.max_tokens) == (1.1, 800)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"temperature": 2.5}, "The temperature must be between 0 and 2 (got 2.5)."),
        ({"temperature": "hot"}, "The temperature must be a number (got 'hot')."),
        ({"max_tokens": 0}, "The max tokens must be a whole number from 1 to 32,768 (got 0)."),
        ({"max_tokens": 10.5}, "The max tokens must be a whole number from 1 to 32,768 (got 10.5)."),
        ({"history_messages": 500}, "The history messages must be a whole number from 1 to 100 (got 500)."),
        ({"system_prompt": "   "}, "The system prompt must not be empty (use reset to return to the default)."),
        ({"system_prompt": "x" * 4001}, "The system prompt is 4,001 characters; the most allowed is 4,000."),
        ({"chat_model": "nope"}, "`nope` is not a chat model on this gateway. Available: `gpt-eyes`, `gpt-small`."),
        ({"chat_model": "flux-schnell"}, "`flux-schnell` is not a chat model on this gateway."),
        ({"vision_model": "gpt-small"}, "`gpt-small` is not a vision (image-reading) model on this gateway. Available: `gpt-eyes`."),
        ({"image_model": "gpt-small"}, "`gpt-small` is not an image model on this gateway. Available: `flux-schnell`."),
        ({"answer_mentions": "yes"}, "Answer mentions must be true or false."),
        ({"voice_replies": 1}, "Voice replies must be true or false."),
        ({"colour": "red"}, "`colour` is not a setting"),
    ],
)
async def test_validation_messages_and_nothing_written(store: Store, values: dict, message: str) -> None:
    gc = GuildConfig(store, settings(), FakeGateway())
    with pytest.raises(InvalidSetting) as info:
        await gc.set_guild(GUILD, 9, **values)
    assert str(info.value).startswith(message)
    assert await store.fetchval("SELECT COUNT(*) FROM config_values") == 0
    assert await audit_rows(store) == []


async def test_gateway_down_refuses_model_change_with_reason(store: Store) -> None:
    gc = GuildConfig(store, settings(), FakeGateway(fail=True))
    with pytest.raises(InvalidSetting) as info:
        await gc.set_guild(GUILD, 9, chat_model="gpt-small")
    assert str(info.value).startswith("Could not check `gpt-small` with the AI gateway right now (ConnectionError)")
    assert await gc.effective(GUILD, CHANNEL) == gc.defaults()


async def test_valid_models_accepted(store: Store) -> None:
    gc = GuildConfig(store, settings(), FakeGateway())
    await gc.set_guild(GUILD, 9, chat_model="gpt-eyes", vision_model="gpt-eyes", image_model="flux-schnell")
    cfg = await gc.effective(GUILD, CHANNEL)
    assert (cfg.chat_model, cfg.vision_model, cfg.image_model) == ("gpt-eyes", "gpt-eyes", "flux-schnell")


async def test_another_process_change_is_seen_within_the_cache_time(store: Store, other_store: Store) -> None:
    clock = Clock()
    here = GuildConfig(store, settings(), FakeGateway(), clock=clock)
    there = GuildConfig(other_store, settings(), FakeGateway(), clock=clock)
    assert (await here.effective(GUILD, CHANNEL)).temperature == 0.5  # read, and kept for CACHE_SECONDS
    await there.set_channel(GUILD, CHANNEL, 9, temperature=1.5)
    assert (await there.effective(GUILD, CHANNEL)).temperature == 1.5  # its own change: at once
    clock.now += CACHE_SECONDS - 0.1
    assert (await here.effective(GUILD, CHANNEL)).temperature == 0.5
    clock.now += 0.1
    assert (await here.effective(GUILD, CHANNEL)).temperature == 1.5
    await there.reset(GUILD, 9, channel_id=CHANNEL)
    clock.now += CACHE_SECONDS
    assert (await here.effective(GUILD, CHANNEL)).temperature == 0.5


async def test_audit_records_the_value_really_replaced(store: Store, other_store: Store) -> None:
    here = GuildConfig(store, settings(), FakeGateway())
    there = GuildConfig(other_store, settings(), FakeGateway())
    await here.set_guild(GUILD, 9, temperature=0.9)
    assert (await here.effective(GUILD, CHANNEL)).temperature == 0.9  # cached here
    assert await there.set_guild(GUILD, 8, temperature=1.2) == {"temperature": (0.9, 1.2)}
    assert await here.set_guild(GUILD, 7, temperature=1.5) == {"temperature": (1.2, 1.5)}  # not the cached 0.9
    assert await there.reset(GUILD, 6) == {0: {"temperature": 1.5}}
    assert await here.set_guild(GUILD, 5, temperature=None) == {"temperature": (None, None)}  # nothing to remove
    assert [row[2:] for row in await audit_rows(store)] == [
        ("temperature", None, "0.9"), ("temperature", "0.9", "1.2"), ("temperature", "1.2", "1.5"),
        ("temperature", "1.5", None),
    ]


async def test_two_processes_setting_one_new_value_at_once_chain_in_the_audit(
    store: Store, other_store: Store
) -> None:
    here = GuildConfig(store, settings(), FakeGateway())
    there = GuildConfig(other_store, settings(), FakeGateway())
    for round_ in range(5):
        channel = CHANNEL + round_
        first, second = await asyncio.gather(
            here.set_channel(GUILD, channel, 1, max_tokens=111), there.set_channel(GUILD, channel, 2, max_tokens=222)
        )
        assert sorted([first["max_tokens"], second["max_tokens"]], key=lambda c: c[0] is not None) in (
            [(None, 111), (111, 222)], [(None, 222), (222, 111)]
        )
        rows = [r for r in await audit_rows(store) if r[1] == f"channel:{channel}"]
        assert [r[3] for r in rows] == [None, rows[0][4]]  # the second change starts from the first's value
