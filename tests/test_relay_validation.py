"""Payload validation for /send-data: DigiCord's example, Discohook fields, and every limit with its JSON path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.relay.validation import PayloadError, validate_payload

CHANNEL = "123456789012345678"

DIGICORD_EXAMPLE: dict[str, Any] = {
    "channelId": CHANNEL,
    "content": "Hello",
    "embeds": [
        {
            "title": "Title here",
            "description": "",
            "url": "",
            "color": None,
            "image": {"url": ""},
            "author": {"name": ""},
            "footer": {"text": "", "icon_url": ""},
            "fields": [{"name": "", "value": "", "inline": True}],
        }
    ],
    "components": [],
}


def issues(body: Any) -> list[tuple[str, str]]:
    with pytest.raises(PayloadError) as info:
        validate_payload(body)
    return [(i.path, i.rule) for i in info.value.issues]


def test_digicord_example_is_accepted_with_empty_fields_dropped() -> None:
    msg = validate_payload(copy.deepcopy(DIGICORD_EXAMPLE))
    assert msg.channel_id == int(CHANNEL)
    assert msg.content == "Hello"
    assert msg.embeds == [{"title": "Title here"}]
    assert msg.components == []
    assert not msg.via_webhook
    body = msg.discord_body(allow_mentions=False)
    assert body == {"content": "Hello", "embeds": [{"title": "Title here"}], "allowed_mentions": {"parse": []}}


def test_discohook_message_fields() -> None:
    body = {
        "channel_id": int(CHANNEL),
        "content": None,
        "username": "Shop",
        "avatar_url": "https://example.com/a.png",
        "attachments": [],
        "flags": 4096,
        "embeds": [{
            "title": "Order #1", "color": 5814783, "timestamp": "2024-05-01T12:00:00.000Z",
            "author": {"name": "Shop", "icon_url": "https://example.com/i.png", "url": "https://example.com"},
            "footer": {"text": "thanks", "icon_url": "https://example.com/f.png"},
            "thumbnail": {"url": "https://example.com/t.png"},
            "fields": [{"name": "Item", "value": "Hat", "inline": True}, {"name": "Qty", "value": "2"}],
        }],
        "components": [{"type": 1, "components": [
            {"type": 2, "style": 5, "label": "Open", "url": "https://example.com/o/1", "emoji": {"name": "🛒"}}]}],
    }
    msg = validate_payload(body)
    assert msg.via_webhook and msg.username == "Shop"
    assert msg.flags == 4096
    assert msg.embeds[0]["fields"] == [{"name": "Item", "value": "Hat", "inline": True}, {"name": "Qty", "value": "2"}]
    assert msg.components[0]["components"][0] == {
        "type": 2, "style": 5, "url": "https://example.com/o/1", "label": "Open", "emoji": {"name": "🛒"}}
    assert msg.warnings == []


@pytest.mark.parametrize(
    ("patch", "path", "rule"),
    [
        ({"content": "x" * 2001}, "$.content", "max_length:2000"),
        ({"content": 5}, "$.content", "type:string"),
        ({"channelId": ""}, "$.channelId", "required"),
        ({"channelId": "general"}, "$.channelId", "type:snowflake"),
        ({"embeds": [{"title": "t"}] * 11}, "$.embeds", "max_items:10"),
        ({"embeds": [{"title": "x" * 257}]}, "$.embeds[0].title", "max_length:256"),
        ({"embeds": [{"description": "x" * 4097}]}, "$.embeds[0].description", "max_length:4096"),
        ({"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v"}] * 26}]}, "$.embeds[0].fields", "max_items:25"),
        ({"embeds": [{"title": "t", "fields": [{"name": "n" * 257, "value": "v"}]}]}, "$.embeds[0].fields[0].name", "max_length:256"),
        ({"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v" * 1025}]}]}, "$.embeds[0].fields[0].value", "max_length:1024"),
        ({"embeds": [{"title": "t", "fields": [{"name": "n", "value": ""}]}]}, "$.embeds[0].fields[0].value", "required"),
        ({"embeds": [{"title": "t", "footer": {"text": "f" * 2049}}]}, "$.embeds[0].footer.text", "max_length:2048"),
        ({"embeds": [{"title": "t", "author": {"name": "a" * 257}}]}, "$.embeds[0].author.name", "max_length:256"),
        ({"embeds": [{"title": "t", "color": 0x1000000}]}, "$.embeds[0].color", "range:0-16777215"),
        ({"embeds": [{"title": "t", "url": "not a url"}]}, "$.embeds[0].url", "url"),
        ({"embeds": [{"title": "t", "image": {"url": "ftp://x/y.png"}}]}, "$.embeds[0].image.url", "url"),
        ({"embeds": [{"title": "t", "timestamp": "yesterday"}]}, "$.embeds[0].timestamp", "format:iso8601"),
        ({"embeds": [{"color": 5}]}, "$.embeds[0]", "embed_not_empty"),
        ({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, "$.embeds", "max_total_characters:6000"),
        ({"components": [{"type": 1, "components": [{"type": 2, "style": 1, "label": "x", "custom_id": "a"}]}]},
         "$.components[0].components[0].style", "component:link_button_only"),
        ({"components": [{"type": 1, "components": [{"type": 3, "custom_id": "s", "options": []}]}]},
         "$.components[0].components[0].type", "component:link_button_only"),
        ({"components": [{"type": 2, "style": 5, "url": "https://x.y", "label": "x"}]},
         "$.components[0].type", "component:link_button_only"),
        ({"components": [{"type": 1, "components": [{"type": 2, "style": 5, "label": "x"}]}]},
         "$.components[0].components[0].url", "required"),
        ({"components": [{"type": 1, "components": [{"type": 2, "style": 5, "url": "https://x.y", "label": "l" * 81}]}]},
         "$.components[0].components[0].label", "max_length:80"),
        ({"components": [{"type": 1, "components": [{"type": 2, "style": 5, "url": "https://x.y", "label": "x"}] * 6}]},
         "$.components[0].components", "max_items:5"),
        ({"components": [{"type": 1, "components": [{"type": 2, "style": 5, "url": "https://x.y", "label": "x"}]}] * 6},
         "$.components", "max_items:5"),
        ({"allowed_mentions": {"parse": ["users"], "users": ["1"]}}, "$.allowed_mentions.users", "mutually_exclusive"),
        ({"allowed_mentions": {"parse": ["here"]}}, "$.allowed_mentions.parse[0]", "enum:users|roles|everyone"),
        ({"username": "u" * 81}, "$.username", "max_length:80"),
        ({"username": "Discord Bot"}, "$.username", "username:forbidden"),
        ({"avatar_url": "javascript:alert(1)"}, "$.avatar_url", "url"),
        ({"tts": "yes"}, "$.tts", "type:boolean"),
        ({"flags": 64}, "$.flags", "allowed_bits:4100"),
        ({"attachments": [{"id": 0}]}, "$.attachments", "unsupported"),
        ({"poll": {"question": {"text": "?"}}}, "$.poll", "unsupported"),
    ],
)
def test_each_rule_reports_its_path(patch: dict[str, Any], path: str, rule: str) -> None:
    body = {"channelId": CHANNEL, "content": "hi", **patch}
    assert (path, rule) in issues(body)


def test_empty_message_is_refused() -> None:
    assert issues({"channelId": CHANNEL, "content": "", "embeds": []}) == [("$", "message_not_empty")]


def test_body_must_be_object() -> None:
    assert issues([1, 2]) == [("$", "type:object")]


def test_all_problems_are_listed() -> None:
    found = issues({"channelId": "x", "content": "c" * 3000, "embeds": [{"title": "t" * 300}]})
    assert [p for p, _ in found] == ["$.channelId", "$.content", "$.embeds[0].title"]


def test_channel_id_and_channelId_must_agree() -> None:
    assert ("$.channel_id", "conflict") in issues({"channelId": CHANNEL, "channel_id": "42", "content": "x"})
    assert validate_payload({"channelId": CHANNEL, "channel_id": int(CHANNEL), "content": "x"}).channel_id == int(CHANNEL)


def test_unknown_fields_are_ignored_with_a_warning() -> None:
    msg = validate_payload({"channelId": CHANNEL, "content": "x", "thread_id": "1", "embeds": [{"title": "t", "video": {}}]})
    assert msg.warnings == ["$.thread_id is not a known field and was ignored",
                            "$.embeds[0].video is not a known field and was ignored"]


def test_mentions_are_off_unless_the_key_allows_them() -> None:
    msg = validate_payload({"channelId": CHANNEL, "content": "<@1> hi", "allowed_mentions": {"users": ["1"]}})
    assert msg.discord_body(allow_mentions=False)["allowed_mentions"] == {"parse": []}
    assert msg.discord_body(allow_mentions=True)["allowed_mentions"] == {"parse": [], "users": ["1"]}
    plain = validate_payload({"channelId": CHANNEL, "content": "@everyone"})
    assert plain.discord_body(allow_mentions=True)["allowed_mentions"] == {"parse": []}


def test_hex_colour_string_and_fingerprint() -> None:
    a = validate_payload({"channelId": CHANNEL, "embeds": [{"title": "t", "color": "#5865F2"}]})
    assert a.embeds[0]["color"] == 0x5865F2
    b = validate_payload({"channelId": CHANNEL, "embeds": [{"title": "t", "color": 0x5865F2, "url": ""}]})
    assert a.fingerprint() == b.fingerprint()
    c = validate_payload({"channelId": CHANNEL, "embeds": [{"title": "u"}]})
    assert c.fingerprint() != a.fingerprint()


LONE = "\ud800"  # what json.loads makes of the JSON text "\ud800": not encodable as UTF-8


@pytest.mark.parametrize("patch, path", [
    ({"content": "hi " + LONE}, "$.content"),
    ({"embeds": [{"title": LONE}]}, "$.embeds[0].title"),
    ({"embeds": [{"title": "t", "description": "a\udfffb"}]}, "$.embeds[0].description"),
    ({"embeds": [{"title": "t", "footer": {"text": LONE}}]}, "$.embeds[0].footer.text"),
    ({"embeds": [{"title": "t", "author": {"name": LONE}}]}, "$.embeds[0].author.name"),
    ({"embeds": [{"fields": [{"name": "n", "value": LONE}]}]}, "$.embeds[0].fields[0].value"),
    ({"embeds": [{"title": "t", "url": "https://example.com/" + LONE}]}, "$.embeds[0].url"),
    ({"components": [{"type": 1, "components": [
        {"type": 2, "style": 5, "url": "https://example.com", "label": LONE}]}]}, "$.components[0].components[0].label"),
    ({"components": [{"type": 1, "components": [
        {"type": 2, "style": 5, "url": "https://example.com", "emoji": {"name": LONE}}]}]},
     "$.components[0].components[0].emoji.name"),
    ({"username": "relay" + LONE}, "$.username"),
])
def test_a_lone_surrogate_is_refused_naming_its_path(patch: dict[str, Any], path: str) -> None:
    body = {"channelId": CHANNEL, "content": "ok", **patch}
    assert (path, "unicode") in issues(body)


def test_a_surrogate_pair_is_ordinary_text() -> None:
    msg = validate_payload({"channelId": CHANNEL, "content": "\U0001F600", "embeds": [{"title": "\u00e9t\u00e9"}]})
    assert msg.content == "\U0001F600"


@pytest.mark.parametrize("value", [{}, [], None, "1", 1.5, True])
def test_component_type_and_style_of_any_json_type_are_a_400_issue(value: Any) -> None:
    row = {"channelId": CHANNEL, "components": [{"type": value, "components": []}]}
    assert issues(row)[0] == ("$.components[0].type", "type:integer")
    button = {"type": value, "style": 5, "url": "https://example.com", "label": "x"}
    nested = {"channelId": CHANNEL, "components": [{"type": 1, "components": [button]}]}
    assert issues(nested)[0] == ("$.components[0].components[0].type", "type:integer")
    button = {"type": 2, "style": value, "url": "https://example.com", "label": "x"}
    nested = {"channelId": CHANNEL, "components": [{"type": 1, "components": [button]}]}
    assert issues(nested)[0] == ("$.components[0].components[0].style", "type:integer")


def test_a_snowflake_of_thousands_of_digits_is_out_of_range() -> None:
    assert issues({"channelId": "1" * 5000, "content": "x"}) == [("$.channelId", "range:snowflake")]
    assert issues({"channelId": "0" * 5000 + "7", "content": "x", "channel_id": "8"}) == [
        ("$.channel_id", "conflict")]  # leading zeros: still the id 7
