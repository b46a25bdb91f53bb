"""The ``tools`` setting's values, and a call's arguments checked against the function's schema."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bot.chat.tools.names import TOOL_NAMES, ToolsSettingError, enabled_names, parse_tools_setting
from bot.chat.tools.registry import BadArguments, ToolRegistry


@pytest.mark.parametrize(("given", "stored"), [
    ("", "search_knowledge"), ("default", "search_knowledge"), ("ALL", "all"), ("off", "off"), ("none", "off"),
    ("read_channel, create_poll", "create_poll,read_channel"), ("speak;speak", "speak"),
])
def test_the_setting_is_normalised(given: str, stored: str) -> None:
    assert parse_tools_setting(given) == stored


def test_an_unknown_tool_is_named_in_the_refusal() -> None:
    with pytest.raises(ToolsSettingError) as caught:
        parse_tools_setting("create_poll, web_search")
    assert "`web_search` is not a tool" in str(caught.value) and "search_knowledge" in str(caught.value)


def test_enabled_names() -> None:
    assert enabled_names("all") == TOOL_NAMES and enabled_names("off") == ()
    assert enabled_names("create_poll,speak") == ("create_poll", "speak")


class _Profile:
    def __init__(self, caps: set[str]) -> None:
        self.caps = caps

    def supports(self, capability: str) -> bool:
        return capability in self.caps


def registry(caps: set[str]) -> ToolRegistry:
    return ToolRegistry.build(gateway=SimpleNamespace(profile=_Profile(caps)))


def test_offered_needs_the_gateway_the_setting_and_the_bot() -> None:
    assert registry({"chat"}).offered("all") == []
    # no knowledge base, no image jobs, no voice in this registry: polls and the channel remain
    assert [t.name for t in registry({"tools"}).offered("all")] == ["create_poll", "read_channel"]
    assert [t.name for t in registry({"tools"}).offered("read_channel")] == ["read_channel"]
    assert registry({"tools"}).offered("off") == []


@pytest.mark.parametrize(("raw", "words"), [
    ('{"question": "Q?", "answers": ["a", "b"]', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"question": "Q?", "answers": ["a"], "hours": 1}', "answers: ['a'] is too short"),
    ('{"question": "Q?", "answers": ["a", "b"], "hours": 1, "channel_id": 5}', "Additional properties"),
    ('{"question": "Q?", "answers": ["a", "b"], "hours": "2"}', "hours: '2' is not of type 'integer'"),
])
def test_bad_arguments_are_refused_with_what_is_wrong(raw: str, words: str) -> None:
    with pytest.raises(BadArguments) as caught:
        registry({"tools"}).arguments("create_poll", raw)
    assert words in str(caught.value)


def test_good_arguments_pass() -> None:
    args: Any = registry({"tools"}).arguments("create_poll", '{"question": "Q?", "answers": ["a", "b"], "hours": 3}')
    assert args == {"question": "Q?", "answers": ["a", "b"], "hours": 3}
    assert registry({"tools"}).arguments("read_channel", {"limit": 5}) == {"limit": 5}


class _Capable:
    """Stand-ins for the services behind the tools: each answers for the gateway it is asked about."""

    available = False
    unavailable_reason = "the bot's gateway has no embeddings"
    can_speak = False

    def available_on(self, gateway: SimpleNamespace) -> bool:
        return bool(gateway.profile.supports("embeddings"))

    def unavailable_reason_on(self, gateway: SimpleNamespace) -> str:
        return "no embeddings"

    def can_speak_on(self, gateway: SimpleNamespace) -> bool:
        return bool(gateway.profile.supports("speech"))

    def supports(self, kind: str, gateway: SimpleNamespace | None = None) -> bool:
        return gateway is not None and bool(gateway.profile.supports("images"))


def test_a_guild_gateway_gets_the_tools_its_own_gateway_can_do_even_where_the_operators_cannot() -> None:
    capable = _Capable()
    tools = ToolRegistry.build(gateway=SimpleNamespace(profile=_Profile({"chat"})), knowledge=lambda: capable,
                               media_jobs=capable, voice=capable)  # type: ignore[arg-type]
    assert tools.offered("all") == []  # the operator's gateway has no tool calls
    own = SimpleNamespace(profile=_Profile({"tools", "embeddings", "images", "speech"}))
    assert [t.name for t in tools.offered("all", own)] == ["search_knowledge", "generate_image", "create_poll",
                                                           "read_channel", "speak"]
    chat_only = SimpleNamespace(profile=_Profile({"tools"}))
    assert [t.name for t in tools.offered("all", chat_only)] == ["create_poll", "read_channel"]
