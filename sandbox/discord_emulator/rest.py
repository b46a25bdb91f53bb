"""REST routes the bot uses outside interactions: login, gateway discovery, application commands,
channels, messages (JSON and multipart), history, threads, typing, guilds."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from . import errors as E
from . import limits as L
from . import permissions as P
from .access import (
    channel_for_bot,
    check_files,
    is_empty_message,
    message_in_channel,
    refuse_in_dm,
    require,
    require_dict,
    send_permission,
    snowflake_param,
)
from .bodies import FILES, JSON_BODY
from .models import Channel
from .snowflake import iso_now
from .voice import check_voice_message, refuse_edit

if TYPE_CHECKING:
    from .server import DiscordEmulator

THREAD_NAME_MAX = 100


def rest_routes(emu: "DiscordEmulator") -> list[web.RouteDef]:
    r = _Rest(emu)
    p = "/api/v10"
    return [
        web.get(p + "/users/@me", r.me),
        web.get(p + "/users/{user_id}", r.get_user),
        web.post(p + "/users/@me/channels", r.open_dm),
        web.get(p + "/oauth2/applications/@me", r.application),
        web.get(p + "/applications/@me", r.application),
        web.get(p + "/gateway", r.gateway),
        web.get(p + "/gateway/bot", r.gateway_bot),
        web.get(p + "/applications/{application_id}/commands", r.list_commands),
        web.put(p + "/applications/{application_id}/commands", r.put_commands),
        web.post(p + "/applications/{application_id}/commands", r.post_command),
        web.delete(p + "/applications/{application_id}/commands/{command_id}", r.delete_command),
        web.get(p + "/applications/{application_id}/guilds/{guild_id}/commands", r.list_commands),
        web.put(p + "/applications/{application_id}/guilds/{guild_id}/commands", r.put_commands),
        web.post(p + "/applications/{application_id}/guilds/{guild_id}/commands", r.post_command),
        web.delete(p + "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", r.delete_command),
        web.get(p + "/channels/{channel_id}", r.get_channel),
        web.get(p + "/channels/{channel_id}/messages", r.history),
        web.post(p + "/channels/{channel_id}/messages", r.create_message),
        web.get(p + "/channels/{channel_id}/messages/{message_id}", r.get_message),
        web.patch(p + "/channels/{channel_id}/messages/{message_id}", r.edit_message),
        web.delete(p + "/channels/{channel_id}/messages/{message_id}", r.delete_message),
        web.put(p + "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", r.add_reaction),
        web.delete(p + "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", r.remove_reaction),
        web.post(p + "/channels/{channel_id}/typing", r.typing),
        web.post(p + "/channels/{channel_id}/messages/{message_id}/threads", r.thread_from_message),
        web.post(p + "/channels/{channel_id}/threads", r.thread_without_message),
        web.put(p + "/channels/{channel_id}/thread-members/@me", r.join_thread),
        web.get(p + "/guilds/{guild_id}", r.get_guild),
        web.get(p + "/guilds/{guild_id}/roles", r.get_roles),
        web.get(p + "/guilds/{guild_id}/channels", r.get_guild_channels),
        web.get(p + "/guilds/{guild_id}/members", r.list_members),
        web.get(p + "/guilds/{guild_id}/members/{user_id}", r.get_member),
    ]


class _Rest:
    def __init__(self, emu: "DiscordEmulator") -> None:
        self.emu = emu

    # -- identity --------------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        user = self.emu.world.users[self.emu.bot_user_id]
        return self.emu.json(dict(user.payload(), verified=True, mfa_enabled=False, email=None, locale="en-US"))

    async def get_user(self, request: web.Request) -> web.Response:
        uid = snowflake_param(request, "user_id", E.UNKNOWN_USER, "User")
        user = self.emu.world.users.get(uid)
        if user is None:
            raise E.not_found(E.UNKNOWN_USER, "User")
        return self.emu.json(user.payload())

    async def open_dm(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels {recipient_id}: the bot's DM with that user (created on first use)."""
        emu = self.emu
        body = require_dict(request[JSON_BODY])
        raw = body.get("recipient_id")
        if raw is None:
            raise E.invalid_form(E.field_error(["recipient_id"], "BASE_TYPE_REQUIRED", "This field is required"))
        try:
            uid = int(raw)
        except (TypeError, ValueError):
            raise E.invalid_form(E.field_error(["recipient_id"], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')) from None
        user = emu.world.users.get(uid)
        if user is None or uid == emu.bot_user_id:
            raise E.not_found(E.UNKNOWN_USER, "User")
        cid = emu.dm_channel_id(uid)
        return emu.json(emu.world.channel_payload(cid, exclude=emu.bot_user_id))

    async def application(self, request: web.Request) -> web.Response:
        emu = self.emu
        return emu.json(
            {
                "id": str(emu.application_id),
                "name": "Gatecord",
                "icon": None,
                "description": "Gatecord emulated application",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "bot": emu.world.users[emu.bot_user_id].payload(),
                "owner": emu.users["admin"].payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": emu.application_flags,
                "summary": "",
                "tags": [],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "approximate_guild_count": len(emu.world.guilds),
                "integration_types_config": {
                    "0": {"oauth2_install_params": {"scopes": ["applications.commands", "bot"], "permissions": str(P.BOT_ROLE)}},
                    "1": {"oauth2_install_params": {"scopes": ["applications.commands"], "permissions": "0"}},
                },
            }
        )

    async def gateway(self, request: web.Request) -> web.Response:
        return self.emu.json({"url": self.emu.gateway_url})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        emu = self.emu
        total = emu.session_start_total
        return emu.json(
            {
                "url": emu.gateway_url,
                "shards": emu.recommended_shards,
                "session_start_limit": {
                    "total": total,
                    "remaining": max(0, total - len(emu.gateway.identifies)),
                    "reset_after": L.SESSION_START_RESET_AFTER_MS,
                    "max_concurrency": emu.max_concurrency,
                },
            }
        )

    # -- application commands --------------------------------------------------------------
    def _command_scope(self, request: web.Request) -> Optional[int]:
        app_id = snowflake_param(request, "application_id", E.UNKNOWN_APPLICATION, "Application")
        if app_id != self.emu.application_id:
            raise E.APIError(403, E.MISSING_ACCESS, "Missing Access")
        if "guild_id" not in request.match_info:
            return None
        gid = snowflake_param(request, "guild_id", E.UNKNOWN_GUILD, "Guild")
        guild = self.emu.world.guilds.get(gid)
        if guild is None or self.emu.bot_user_id not in guild.members:
            raise E.APIError(403, E.MISSING_ACCESS, "Missing Access")
        return gid

    async def list_commands(self, request: web.Request) -> web.Response:
        return self.emu.json(self.emu.commands.list(self._command_scope(request)))

    async def put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        result = self.emu.commands.bulk_overwrite(scope, request[JSON_BODY] if request[JSON_BODY] is not None else [])
        return self.emu.json(result)

    async def post_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        return self.emu.json(self.emu.commands.upsert(scope, require_dict(request[JSON_BODY])), status=201)

    async def delete_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        cid = snowflake_param(request, "command_id", E.UNKNOWN_COMMAND, "application command")
        if not self.emu.commands.delete(scope, cid):
            raise E.not_found(E.UNKNOWN_COMMAND, "application command")
        return web.Response(status=204)

    # -- channels & messages ---------------------------------------------------------------
    async def get_channel(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request)
        return self.emu.json(self.emu.world.channel_payload(channel.id, exclude=self.emu.bot_user_id))

    async def history(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request, P.READ_MESSAGE_HISTORY)
        q = request.query

        def num(name: str) -> Optional[int]:
            value = q.get(name)
            if value is None:
                return None
            try:
                return int(value)
            except ValueError:
                raise E.invalid_form(E.field_error([name], "NUMBER_TYPE_COERCE", f"Value \"{value}\" is not snowflake.")) from None

        limit = num("limit")
        msgs = self.emu.store.history(
            channel.id, limit=50 if limit is None else limit, before=num("before"), after=num("after"), around=num("around")
        )
        return self.emu.json([self.emu.message_payload(m) for m in msgs])

    async def get_message(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request, P.READ_MESSAGE_HISTORY)
        msg = message_in_channel(self.emu, request, channel)
        return self.emu.json(self.emu.message_payload(msg))

    async def create_message(self, request: web.Request) -> web.Response:
        emu = self.emu
        channel = channel_for_bot(emu, request)
        require(emu, channel, send_permission(channel))
        if channel.is_forum:  # a forum's messages live in its posts (threads)
            raise E.APIError(400, E.CANNOT_SEND_NON_TEXT, "Cannot send messages in a non-text channel")
        body = require_dict(request[JSON_BODY])
        files = request[FILES]
        errors = emu.validator.message("message_create", body)
        if errors:
            raise E.invalid_form(errors)
        if files:
            require(emu, channel, P.ATTACH_FILES)
            check_files(files, emu.world.guilds[channel.guild_id].filesize_limit if channel.guild_id else emu.default_attachment_size_limit)
        if body.get("poll"):
            require(emu, channel, P.SEND_POLLS)
        await check_voice_message(emu, channel, body, files)
        if is_empty_message(body, files):
            raise E.APIError(400, E.EMPTY_MESSAGE, "Cannot send an empty message")
        ref = body.get("message_reference")
        if ref and ref.get("message_id") is not None:
            target = emu.store.messages.get(int(ref["message_id"]))
            if target is None or target.deleted or target.ephemeral:
                if ref.get("fail_if_not_exists", True):
                    raise E.invalid_form(
                        E.field_error(["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
                    )
                body = dict(body, message_reference=None)
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            existing = emu.store.find_nonce(channel.id, emu.bot_user_id, nonce)
            if existing is not None:
                return emu.json(emu.message_payload(existing))
        msg = emu.store.create(channel.id, emu.bot_user_id, body, files)
        await emu.announce("MESSAGE_CREATE", msg)
        return emu.json(emu.message_payload(msg))

    async def edit_message(self, request: web.Request) -> web.Response:
        emu = self.emu
        channel = channel_for_bot(emu, request)
        msg = message_in_channel(emu, request, channel)
        if msg.author_id != emu.bot_user_id:
            raise E.APIError(403, E.CANNOT_EDIT_OTHER_USER_MESSAGE, "Cannot edit a message authored by another user")
        refuse_edit(msg)
        body = require_dict(request[JSON_BODY])
        errors = emu.validator.message("message_edit", body)
        if errors:
            raise E.invalid_form(errors)
        files = request[FILES]
        if files:
            require(emu, channel, P.ATTACH_FILES)
            check_files(files, emu.world.guilds[channel.guild_id].filesize_limit if channel.guild_id else emu.default_attachment_size_limit)
        emu.store.edit(msg, body, files)
        await emu.announce("MESSAGE_UPDATE", msg)
        return emu.json(emu.message_payload(msg))

    async def delete_message(self, request: web.Request) -> web.Response:
        emu = self.emu
        channel = channel_for_bot(emu, request)
        msg = message_in_channel(emu, request, channel)
        if msg.author_id != emu.bot_user_id:
            refuse_in_dm(channel)
            require(emu, channel, P.MANAGE_MESSAGES)
        emu.store.delete(msg)
        await emu.announce("MESSAGE_DELETE", msg)
        return web.Response(status=204)

    async def add_reaction(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request, P.READ_MESSAGE_HISTORY | P.ADD_REACTIONS)
        msg = message_in_channel(self.emu, request, channel)
        emoji = request.match_info["emoji"]
        if emoji not in msg.reactions:
            msg.reactions.append(emoji)
        return web.Response(status=204)

    async def remove_reaction(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request, P.READ_MESSAGE_HISTORY)
        msg = message_in_channel(self.emu, request, channel)
        emoji = request.match_info["emoji"]
        if emoji in msg.reactions:
            msg.reactions.remove(emoji)
        return web.Response(status=204)

    async def typing(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request)
        require(self.emu, channel, send_permission(channel))
        self.emu.typing.append((channel.id, time.monotonic()))
        return web.Response(status=204)

    # -- threads ---------------------------------------------------------------------------
    def _thread_name(self, body: dict[str, Any]) -> str:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= THREAD_NAME_MAX:
            raise E.invalid_form(E.field_error(["name"], "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {THREAD_NAME_MAX} in length."))
        return name

    async def _create_thread(self, parent_id: int, name: str, type: int, body: dict[str, Any], thread_id: Optional[int] = None) -> web.Response:
        return self.emu.json(await self._open_thread(parent_id, name, type, body, thread_id), status=201)

    async def _open_thread(self, parent_id: int, name: str, type: int, body: dict[str, Any], thread_id: Optional[int] = None) -> dict[str, Any]:
        """A new thread owned by the bot (THREAD_CREATE dispatched); its payload as the REST answer has it."""
        emu = self.emu
        parent = emu.world.channels[parent_id]
        assert parent.guild_id is not None
        thread = emu.world.add_channel(parent.guild_id, name, type=type, parent_id=parent_id, owner_id=emu.bot_user_id, channel_id=thread_id)
        thread.auto_archive_duration = int(body.get("auto_archive_duration") or 1440)
        data = thread.payload()
        data["member"] = {"id": str(thread.id), "user_id": str(emu.bot_user_id), "join_timestamp": iso_now(), "flags": 0}
        await emu.gateway.dispatch("THREAD_CREATE", dict(data, newly_created=True))
        return data

    async def thread_from_message(self, request: web.Request) -> web.Response:
        emu = self.emu
        channel = channel_for_bot(emu, request)
        refuse_in_dm(channel)
        require(emu, channel, P.CREATE_PUBLIC_THREADS | P.READ_MESSAGE_HISTORY)
        if channel.is_thread or channel.is_forum:
            raise E.APIError(400, 50024, "Cannot execute action on this channel type")
        msg = message_in_channel(emu, request, channel)
        if msg.thread_id is not None:
            raise E.APIError(400, E.THREAD_ALREADY_CREATED, "A thread has already been created for this message")
        body = require_dict(request[JSON_BODY])
        name = self._thread_name(body)
        msg.thread_id = msg.id
        response = await self._create_thread(channel.id, name, 11, body, thread_id=msg.id)
        await emu.announce("MESSAGE_UPDATE", msg)
        return response

    async def thread_without_message(self, request: web.Request) -> web.Response:
        emu = self.emu
        channel = channel_for_bot(emu, request)
        refuse_in_dm(channel)
        if channel.is_thread:
            raise E.APIError(400, 50024, "Cannot execute action on this channel type")
        body = require_dict(request[JSON_BODY])
        if channel.is_forum:
            return await self._forum_post(channel, body)
        ttype = int(body.get("type") or 12)
        if ttype not in (11, 12):
            raise E.invalid_form(E.field_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of {11, 12}."))
        require(emu, channel, P.CREATE_PUBLIC_THREADS if ttype == 11 else P.CREATE_PRIVATE_THREADS)
        return await self._create_thread(channel.id, self._thread_name(body), ttype, body)

    async def _forum_post(self, forum: Channel, body: dict[str, Any]) -> web.Response:
        """The bot opens a forum post: a public thread with its first message (``message``, required), the
        message taking the thread's id, as on Discord (JSON bodies only; no files)."""
        emu = self.emu
        require(emu, forum, P.SEND_MESSAGES)
        name = self._thread_name(body)
        first = body.get("message")
        if not isinstance(first, dict):
            raise E.invalid_form(E.field_error(["message"], "BASE_TYPE_REQUIRED", "This field is required"))
        errors = emu.validator.message("message_create", first)
        if errors:
            raise E.invalid_form(errors)
        if is_empty_message(first, []):
            raise E.APIError(400, E.EMPTY_MESSAGE, "Cannot send an empty message")
        thread_id = emu.store.ids.next()
        data = await self._open_thread(forum.id, name, 11, body, thread_id=thread_id)
        msg = emu.store.create(thread_id, emu.bot_user_id, first, [], message_id=thread_id)
        forum.last_message_id = thread_id
        await emu.announce("MESSAGE_CREATE", msg)
        data["message"] = emu.message_payload(msg)
        return emu.json(data, status=201)

    async def join_thread(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request)
        if not channel.is_thread:
            raise E.APIError(400, 50024, "Cannot execute action on this channel type")
        return web.Response(status=204)

    # -- guilds ----------------------------------------------------------------------------
    def _guild(self, request: web.Request) -> int:
        gid = snowflake_param(request, "guild_id", E.UNKNOWN_GUILD, "Guild")
        guild = self.emu.world.guilds.get(gid)
        if guild is None:
            raise E.not_found(E.UNKNOWN_GUILD, "Guild")
        if self.emu.bot_user_id not in guild.members:
            raise E.APIError(403, E.MISSING_ACCESS, "Missing Access")
        return gid

    async def get_guild(self, request: web.Request) -> web.Response:
        gid = self._guild(request)
        data = self.emu.world.guild_payload(gid)
        if request.query.get("with_counts") in ("true", "1", "True"):
            count = len(self.emu.world.guilds[gid].members)
            data.update(approximate_member_count=count, approximate_presence_count=count)
        return self.emu.json(data)

    async def get_roles(self, request: web.Request) -> web.Response:
        gid = self._guild(request)
        return self.emu.json([r.payload() for r in self.emu.world.guilds[gid].roles.values()])

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        gid = self._guild(request)
        world = self.emu.world
        return self.emu.json([world.channel_payload(c) for c in world.guilds[gid].channel_ids if not world.channels[c].is_thread])

    async def list_members(self, request: web.Request) -> web.Response:
        gid = self._guild(request)
        world = self.emu.world
        return self.emu.json([world.member_payload(gid, uid) for uid in world.guilds[gid].members])

    async def get_member(self, request: web.Request) -> web.Response:
        gid = self._guild(request)
        uid = snowflake_param(request, "user_id", E.UNKNOWN_MEMBER, "Member")
        if uid not in self.emu.world.guilds[gid].members:
            raise E.not_found(E.UNKNOWN_MEMBER, "Member")
        return self.emu.json(self.emu.world.member_payload(gid, uid))
