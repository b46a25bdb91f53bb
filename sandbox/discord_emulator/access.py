"""Lookups with Discord's error answers (unknown channel/message, missing access/permissions)
and the file-size checks shared by every route that accepts uploads."""

from __future__ import annotations

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
    if channel.guild_id is not None and emu.bot_user_id not in emu.world.guilds[channel.guild_id].members:
        raise E.APIError(403, E.MISSING_ACCESS, "Missing Access")
    perms = emu.world.permissions_for(emu.bot_user_id, channel.id)
    if not perms & P.VIEW_CHANNEL:
        raise E.APIError(403, E.MISSING_ACCESS, "Missing Access")
    if needs and perms & needs != needs:
        raise E.APIError(403, E.MISSING_PERMISSIONS, "Missing Permissions")


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
