"""Lookups with Discord's error answers (unknown channel/message, missing access/permissions)
and the file-size checks shared by every route that accepts uploads."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors as E
from . import limits as L
from . import permissions as P
from .messages import UploadedFile
from .models import Channel, MessageState

if TYPE_CHECKING:
    from .server import DiscordEmulator


def snowflake_param(request: web.Request, name: str, code: int, what: str) -> int:
    try:
        return int(request.match_info[name])
    except (KeyError, ValueError):
        raise E.not_found(code, what) from None


def channel_for_bot(emu: "DiscordEmulator", request: web.Request, needs: int = 0) -> Channel:
    """The channel of the route, checked for the bot: 404 10003, 403 50001, 403 50013."""
    cid = snowflake_param(request, "channel_id", E.UNKNOWN_CHANNEL, "Channel")
    channel = emu.world.channels.get(cid)
    if channel is None:
        raise E.not_found(E.UNKNOWN_CHANNEL, "Channel")
    require(emu, channel, needs)
    return channel


def require(emu: "DiscordEmulator", channel: Channel, needs: int = 0) -> None:
    if not emu.world.can_access(emu.bot_user_id, channel):
        raise E.APIError(403, E.MISSING_ACCESS, "Missing Access")
    perms = emu.world.permissions_for(emu.bot_user_id, channel.id)
    if not perms & P.VIEW_CHANNEL:
        raise E.APIError(403, E.MISSING_ACCESS, "Missing Access")
    if needs and perms & needs != needs:
        raise E.APIError(403, E.MISSING_PERMISSIONS, "Missing Permissions")


def refuse_in_dm(channel: Channel) -> None:
    """Threads and webhooks do not exist in DMs: 400 50003, as Discord answers."""
    if channel.is_private:
        raise E.APIError(400, E.CANNOT_EXECUTE_ON_DM, "Cannot execute action on a DM channel")


_GUARDED_PATH = re.compile(r"^/(?:channels|guilds|applications/\d+/guilds)/(\d+)(?:/|$)")


def inaccessible_target(emu: "DiscordEmulator", path: str) -> bool:
    """Whether ``path`` (below /api/v10) is about a guild the bot is not in, or a channel it cannot
    reach (in such a guild, or a DM/group DM it is not part of): every route, known or not, then
    answers 403 50001 Missing Access, as Discord does."""
    match = _GUARDED_PATH.match(path)
    if match is None:
        return False
    target = int(match.group(1))
    if path.startswith("/channels/"):
        channel = emu.world.channels.get(target)
        return channel is not None and not emu.world.can_access(emu.bot_user_id, channel)
    guild = emu.world.guilds.get(target)
    return guild is not None and emu.bot_user_id not in guild.members


def send_permission(channel: Channel) -> int:
    return P.SEND_MESSAGES_IN_THREADS if channel.is_thread else P.SEND_MESSAGES


def message_in_channel(emu: "DiscordEmulator", request: web.Request, channel: Channel) -> MessageState:
    mid = snowflake_param(request, "message_id", E.UNKNOWN_MESSAGE, "Message")
    msg = emu.store.messages.get(mid)
    if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
        raise E.not_found(E.UNKNOWN_MESSAGE, "Message")
    return msg


def check_files(files: list[UploadedFile], per_file_limit: int) -> None:
    """413 40005 when one file exceeds the limit or the request exceeds 25 MiB (as Discord)."""
    if len(files) > L.FILES_PER_MESSAGE_MAX:
        raise E.invalid_form(E.field_error(["files"], "BASE_TYPE_MAX_LENGTH", f"Must be {L.FILES_PER_MESSAGE_MAX} or fewer in length."))
    total = 0
    for f in files:
        total += len(f.data)
        if len(f.data) > per_file_limit:
            raise E.APIError(413, E.REQUEST_TOO_LARGE, "Request entity too large")
    if total > L.REQUEST_SIZE_MAX:
        raise E.APIError(413, E.REQUEST_TOO_LARGE, "Request entity too large")


def require_dict(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise E.invalid_form(E.field_error([], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"))
    return body


def is_empty_message(body: dict[str, Any], files: list[UploadedFile]) -> bool:
    return not (
        body.get("content")
        or body.get("embeds")
        or body.get("components")
        or body.get("sticker_ids")
        or body.get("poll")
        or files
    )
