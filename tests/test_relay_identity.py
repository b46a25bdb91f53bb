"""The identity rules and the expiry parser on their own (the e2e tests show them to clients and admins)."""

from __future__ import annotations

import pytest

from bot.relay.identity import apply_identity, name_problem
from bot.relay.keyrules import BadExpiry, parse_expiry
from bot.relay.keys import RelayKey
from bot.relay.validation import validate_payload


def key(name: str, *, custom: bool = False, avatar: str | None = None) -> RelayKey:
    return RelayKey("a" * 12, 1, name, (5,), False, 1, 0, None, None, avatar_url=avatar, custom_identity=custom)


def test_a_legacy_key_whose_name_discord_refuses_posts_under_the_webhook_name_instead_of_failing() -> None:
    message = apply_identity(key("discord-ci"), validate_payload({"channelId": "5", "content": "hi"}))
    assert message.username is None and message.via_webhook is False


def test_a_custom_identity_key_fills_in_only_what_the_post_leaves_out() -> None:
    body = {"channelId": "5", "content": "hi", "username": "Ann"}
    message = apply_identity(key("bridge", custom=True, avatar="https://a.example/x.png"), validate_payload(body))
    assert (message.username, message.avatar_url) == ("Ann", "https://a.example/x.png")


@pytest.mark.parametrize("name", ["Shop", "There", "Where's the build", "@ops"])
def test_names_that_merely_contain_here_are_fine(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("7D", 7 * 86400), (" 30d ", 30 * 86400), ("2w", 14 * 86400)])
def test_expiry_forms(text: str, seconds: int) -> None:
    assert parse_expiry(text) == seconds


def test_expiry_junk() -> None:
    with pytest.raises(BadExpiry, match="e.g. 1h, 7d or 30d"):
        parse_expiry("next week")
