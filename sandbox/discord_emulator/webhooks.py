"""Channel webhooks: list/create with Manage Webhooks, execute (``?wait``, ``thread_id``), and
edit/delete of their messages. Interaction webhooks (id = application id) live in rest_interactions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from . import errors as E
from . import permissions as P
from .access import channel_for_bot, check_files, is_empty_message, refuse_in_dm, require, require_dict, snowflake_param
from .bodies import FILES, JSON_BODY
from .models import MessageState
from .voice import check_voice_message, refuse_edit

if TYPE_CHECKING:
    from .server import DiscordEmulator

WEBHOOK_NAME_MAX = 80
WEBHOOKS_PER_CHANNEL_MAX = 15
MAX_WEBHOOKS_REACHED = 30007


@dataclass
class Webhook:
    id: int
    token: str
    channel_id: int
    guild_id: Optional[int]
    name: str
    creator_id: int
    application_id: Optional[int]
    deleted: bool = False

    def payload(self, creator: dict[str, Any], *, with_token: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": 1,
            "guild_id": str(self.guild_id) if self.guild_id else None,
            "channel_id": str(self.channel_id),
            "name": self.name,
            "avatar": None,
            "application_id": str(self.application_id) if self.application_id else None,
            "user": creator,
        }
        if with_token:
            data["token"] = self.token
        return data


class ChannelWebhooks:
    def __init__(self, emu: "DiscordEmulator") -> None:
        self.emu = emu
        self.hooks: dict[int, Webhook] = {}

    def routes(self) -> list[web.RouteDef]:
        p = "/api/v10"
        return [
            web.get(p + "/channels/{channel_id}/webhooks", self.list_for_channel),
            web.post(p + "/channels/{channel_id}/webhooks", self.create),
            web.get(p + "/webhooks/{webhook_id}", self.get),
            web.delete(p + "/webhooks/{webhook_id}", self.delete_route),
        ]

    def live(self, channel_id: Optional[int] = None) -> list[Webhook]:
        return [h for h in self.hooks.values() if not h.deleted and (channel_id is None or h.channel_id == channel_id)]

    def _payload(self, hook: Webhook) -> dict[str, Any]:
        return hook.payload(self.emu.world.users[hook.creator_id].payload())

    async def list_for_channel(self, request: web.Request) -> web.Response:
        channel = channel_for_bot(self.emu, request)
        refuse_in_dm(channel)
        require(self.emu, channel, P.MANAGE_WEBHOOKS)
        return self.emu.json([self._payload(h) for h in self.live(channel.id)])

    async def create(self, request: web.Request) -> web.Response:
        emu = self.emu
        channel = channel_for_bot(emu, request)
        refuse_in_dm(channel)
        require(emu, channel, P.MANAGE_WEBHOOKS)
        if channel.is_thread:
            raise E.APIError(400, 50024, "Cannot execute action on this channel type")
        body = require_dict(request[JSON_BODY])
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= WEBHOOK_NAME_MAX:
            raise E.invalid_form(E.field_error(["name"], "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {WEBHOOK_NAME_MAX} in length."))
        if "clyde" in name.lower() or "discord" in name.lower():
            raise E.invalid_form(E.field_error(["name"], "WEBHOOK_INVALID_USERNAME", f'Username cannot contain "{name}"'))
        if len(self.live(channel.id)) >= WEBHOOKS_PER_CHANNEL_MAX:
            raise E.APIError(400, MAX_WEBHOOKS_REACHED, "Maximum number of webhooks reached (15)")
        return emu.json(self._payload(self.add(channel.id, name)))

    def add(self, channel_id: int, name: str, creator_id: Optional[int] = None) -> Webhook:
        """Create a webhook directly (tests may also call this)."""
        emu = self.emu
        user = emu.world.add_user(name)
        user.bot = True
        hook = Webhook(
            id=user.id,
            token=secrets.token_urlsafe(48),
            channel_id=channel_id,
            guild_id=emu.world.channels[channel_id].guild_id,
            name=name,
            creator_id=creator_id or emu.bot_user_id,
            application_id=emu.application_id if (creator_id or emu.bot_user_id) == emu.bot_user_id else None,
        )
        self.hooks[hook.id] = hook
        return hook

    def remove(self, webhook_id: int) -> None:
        """Someone deleted the webhook in Discord's UI: its executions now get 404 10015."""
        self.hooks[webhook_id].deleted = True

    def _hook(self, request: web.Request, *, token: Optional[str] = None) -> Webhook:
        wid = snowflake_param(request, "webhook_id", E.UNKNOWN_WEBHOOK, "Webhook")
        hook = self.hooks.get(wid)
        if hook is None or hook.deleted:
            raise E.not_found(E.UNKNOWN_WEBHOOK, "Webhook")
        if token is not None and not secrets.compare_digest(token.encode(), hook.token.encode()):
            raise E.APIError(401, E.INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        return hook

    async def get(self, request: web.Request) -> web.Response:
        hook = self._hook(request)
        return self.emu.json(self._payload(hook))

    async def delete_route(self, request: web.Request) -> web.Response:
        hook = self._hook(request)
        channel = self.emu.world.channels[hook.channel_id]
        require(self.emu, channel, P.MANAGE_WEBHOOKS)
        hook.deleted = True
        return web.Response(status=204)

    # -- token routes (dispatched here by rest_interactions for non-application webhook ids) --
    def _target_channel(self, request: web.Request, hook: Webhook) -> int:
        raw = request.query.get("thread_id")
        if raw is None:
            return hook.channel_id
        try:
            thread = self.emu.world.channels.get(int(raw))
        except ValueError:
            thread = None
        if thread is None or not thread.is_thread or thread.parent_id != hook.channel_id:
            raise E.not_found(E.UNKNOWN_CHANNEL, "Channel")
        return thread.id

    async def execute(self, request: web.Request) -> web.Response:
        emu = self.emu
        hook = self._hook(request, token=request.match_info["webhook_token"])
        channel_id = self._target_channel(request, hook)
        body = require_dict(request[JSON_BODY])
        files = request[FILES]
        errors = emu.validator.message("webhook_execute", body)
        if errors:
            raise E.invalid_form(errors)
        if files:
            guild = emu.world.guilds.get(hook.guild_id or 0)
            check_files(files, guild.filesize_limit if guild else emu.default_attachment_size_limit)
        await check_voice_message(emu, emu.world.channels[channel_id], body, files, bot_permissions=False)
        if is_empty_message(body, files):
            raise E.APIError(400, E.EMPTY_MESSAGE, "Cannot send an empty message")
        body = dict(body, flags=int(body.get("flags") or 0) & ~(1 << 6))  # webhooks cannot post ephemeral messages
        msg = emu.store.create(channel_id, hook.id, body, files, webhook_id=hook.id, application_id=hook.application_id)
        await emu.announce("MESSAGE_CREATE", msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return emu.json(emu.message_payload(msg))
        return web.Response(status=204)

    def _message(self, request: web.Request, hook: Webhook) -> MessageState:
        mid = snowflake_param(request, "message_id", E.UNKNOWN_MESSAGE, "Message")
        msg = self.emu.store.messages.get(mid)
        if msg is None or msg.deleted or msg.webhook_id != hook.id:
            raise E.not_found(E.UNKNOWN_MESSAGE, "Message")
        return msg

    async def get_message(self, request: web.Request) -> web.Response:
        hook = self._hook(request, token=request.match_info["webhook_token"])
        return self.emu.json(self.emu.message_payload(self._message(request, hook)))

    async def edit_message(self, request: web.Request) -> web.Response:
        emu = self.emu
        hook = self._hook(request, token=request.match_info["webhook_token"])
        msg = self._message(request, hook)
        refuse_edit(msg)
        body = require_dict(request[JSON_BODY])
        errors = emu.validator.message("webhook_edit", body)
        if errors:
            raise E.invalid_form(errors)
        emu.store.edit(msg, body, request[FILES])
        await emu.announce("MESSAGE_UPDATE", msg)
        return emu.json(emu.message_payload(msg))

    async def delete_message(self, request: web.Request) -> web.Response:
        emu = self.emu
        hook = self._hook(request, token=request.match_info["webhook_token"])
        msg = self._message(request, hook)
        emu.store.delete(msg)
        await emu.announce("MESSAGE_DELETE", msg)
        return web.Response(status=204)
