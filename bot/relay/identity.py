"""The name and avatar a relay post appears under.

A key carries an identity chosen by the admin who made it: its name and an optional https avatar.
Every post of the key appears under it (through the channel webhook the bot owns). Only a key made
with ``custom_identity`` lets a post set its own ``username``/``avatar_url``; any other key gets a
400 naming the field, so a leaked or shared key cannot post as a member, a moderator or "Discord".

Names Discord refuses for a webhook are refused here first (at key creation and at ``/send-data``),
so they cost a clear 400 instead of a failed delivery: Discord forbids ``discord`` and ``clyde``
anywhere in the name (any case), the names ``everyone`` and ``here``, and lengths outside 1–80.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from bot.relay.keys import RelayKey
from bot.relay.validation import Issue, PayloadError, RelayMessage
from bot.rendering import limits as L

FORBIDDEN_PARTS = ("discord", "clyde")
FORBIDDEN_NAMES = ("everyone", "here")
AVATAR_URL_MAX = 2048


def name_problem(name: str) -> str | None:
    """Why Discord would refuse ``name`` as the name a webhook message appears under; None when it is fine."""
    text = name.strip()
    if not 1 <= len(text) <= L.USERNAME:
        return f"must be 1–{L.USERNAME} characters (got {len(text)})"
    lowered = text.lower()
    for part in FORBIDDEN_PARTS:
        if part in lowered:
            return f"Discord does not allow \"{part}\" in the name a message appears under"
    if lowered.lstrip("@") in FORBIDDEN_NAMES:
        return f"Discord does not allow \"{text}\" as the name a message appears under"
    return None


def avatar_problem(url: str) -> str | None:
    """Why ``url`` cannot be a key's avatar (an absolute https URL up to 2048 characters); None when fine."""
    if len(url) > AVATAR_URL_MAX:
        return f"must be at most {AVATAR_URL_MAX} characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "must be an https:// URL"
    if parts.scheme.lower() != "https" or not parts.hostname:
        return "must be an https:// URL"
    return None


def apply_identity(key: RelayKey, message: RelayMessage) -> RelayMessage:
    """``message`` with the name and avatar it will appear under; ``PayloadError`` (a 400 naming the
    field) when the post sets a name or avatar its key does not allow, or a name Discord refuses.

    A key name Discord would refuse (only possible for keys made before names were checked) is left
    out, so such a post appears under the webhook's own name rather than failing."""
    issues: list[Issue] = []
    if not key.custom_identity:
        for path, value in (("$.username", message.username), ("$.avatar_url", message.avatar_url)):
            if value is not None:
                issues.append(Issue(
                    path, "identity:fixed",
                    f"this key posts under its own name ({key.name!r}) and avatar; a post may set "
                    f"{path[2:]} only with a key created with custom_identity:true",
                ))
    elif message.username is not None and (problem := name_problem(message.username)) is not None:
        issues.append(Issue("$.username", "username:forbidden", problem))
    if issues:
        raise PayloadError(issues)
    username = message.username
    if username is None and name_problem(key.name) is None:
        username = key.name.strip()
    avatar = message.avatar_url if message.avatar_url is not None else key.avatar_url
    return dataclasses.replace(message, username=username, avatar_url=avatar)
