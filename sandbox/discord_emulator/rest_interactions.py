"""Interaction callback and interaction-webhook routes (original response, followups)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from . import errors as E
from . import limits as L
from .access import check_files, is_empty_message, require_dict, snowflake_param
from .bodies import FILES, JSON_BODY
from .installs import user_install_only
from .models import FLAG_EPHEMERAL, FLAG_LOADING, InteractionRecord, MessageState
from .voice import check_voice_message, refuse_edit

if TYPE_CHECKING:
    from .server import DiscordEmulator

PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
# Which callback types each interaction type accepts.
ALLOWED_CALLBACKS = {
    PING: {1},
    APPLICATION_COMMAND: {4, 5, 9, 12},
    MESSAGE_COMPONENT: {4, 5, 6, 7, 9, 12},
    AUTOCOMPLETE: {8},
    MODAL_SUBMIT: {4, 5, 6, 7},
}


def interaction_routes(emu: "DiscordEmulator") -> list[web.RouteDef]:
    r = _Interactions(emu)
    p = "/api/v10"
    hook = p + "/webhooks/{webhook_id}/{webhook_token}"
    return [
        web.post(p + "/interactions/{interaction_id}/{interaction_token}/callback", r.callback),
        web.post(hook, r.followup),
        web.get(hook + "/messages/{message_id}", r.get_message),
        web.patch(hook + "/messages/{message_id}", r.edit_message),
        web.delete(hook + "/messages/{message_id}", r.delete_message),
    ]


class _Interactions:
    def __init__(self, emu: "DiscordEmulator") -> None:
        self.emu = emu

    # -- callback --------------------------------------------------------------------------
    async def callback(self, request: web.Request) -> web.Response:
        emu = self.emu
        now = time.monotonic()
        iid = snowflake_param(request, "interaction_id", E.UNKNOWN_INTERACTION, "interaction")
        rec = emu.interactions.get(iid)
        if rec is None or rec.token != request.match_info["interaction_token"]:
            raise E.not_found(E.UNKNOWN_INTERACTION, "interaction")
        body = request[JSON_BODY]
        attempt: dict[str, Any] = {"at": now, "type": body.get("type") if isinstance(body, dict) else None}
        rec.callbacks.append(attempt)
        if rec.acked:
            attempt["status"] = 400
            raise E.APIError(400, E.INTERACTION_ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
        if now - rec.created_at > emu.interaction_ack_deadline:
            attempt["status"] = 404
            raise E.not_found(E.UNKNOWN_INTERACTION, "interaction")
        errors = emu.validator.callback(body)
        if errors:
            attempt["status"] = 400
            raise E.invalid_form(errors)
        ctype: int = body["type"]
        if ctype not in ALLOWED_CALLBACKS.get(rec.type, set()):
            attempt["status"] = 400
            raise E.invalid_form(E.field_error(["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction response type is invalid for this interaction"))
        data = body.get("data") or {}
        files = request[FILES]
        if files:
            check_files(files, rec.attachment_size_limit)
        if ctype == 4 and isinstance(data, dict):
            try:
                await check_voice_message(emu, emu.world.channels[rec.channel_id], data, files)
            except E.APIError as err:
                attempt["status"] = err.status
                raise
        if ctype == 4 and is_empty_message(data, files):
            attempt["status"] = 400
            raise E.APIError(400, E.EMPTY_MESSAGE, "Cannot send an empty message")

        created: Optional[MessageState] = None
        updated: Optional[MessageState] = None
        if ctype in (4, 5):
            extra = FLAG_LOADING if ctype == 5 else 0
            flags = int(data.get("flags") or 0)
            body_for_message = dict(data) if ctype == 4 else {"flags": flags & FLAG_EPHEMERAL}
            created = emu.store.create(
                rec.channel_id,
                emu.bot_user_id,
                body_for_message,
                files if ctype == 4 else [],
                type=self._message_type(rec),
                webhook_id=emu.application_id,
                application_id=emu.application_id,
                interaction_id=rec.id,
                extra_flags=extra,
            )
            rec.original = created
        elif ctype in (6, 7):
            target = emu.store.messages.get(rec.message_id or 0)
            if target is None or target.deleted:
                attempt["status"] = 400
                raise E.invalid_form(E.field_error(["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction has no message to update"))
            rec.original = target
            if ctype == 7:
                errs = emu.validator.message("webhook_edit", data)
                if errs:
                    attempt["status"] = 400
                    raise E.invalid_form({"data": errs})
                updated = emu.store.edit(target, data, files)
        elif ctype == 8:
            rec.autocomplete_choices = list(data.get("choices") or [])
        elif ctype == 9:
            rec.modal = data

        rec.first_response_at = now
        rec.response_type = ctype
        rec.response_data = data
        attempt["status"] = 200
        if created is not None:
            await emu.announce("MESSAGE_CREATE", created)
        if updated is not None:
            await emu.announce("MESSAGE_UPDATE", updated)
        emu.signal.changed(rec.ack_topic)

        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        message = rec.original if ctype in (4, 5, 7) else None
        interaction: dict[str, Any] = {"id": str(rec.id), "type": rec.type}
        if message is not None:
            interaction.update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
        resource: dict[str, Any] = {"type": ctype}
        if message is not None:
            resource["message"] = emu.message_payload(message)
        return emu.json({"interaction": interaction, "resource": resource})

    @staticmethod
    def _message_type(rec: InteractionRecord) -> int:
        if rec.type == APPLICATION_COMMAND:
            return 20 if (rec.payload.get("data") or {}).get("type", 1) == 1 else 23
        return 0

    # -- webhook side ----------------------------------------------------------------------
    def _is_channel_webhook(self, request: web.Request) -> bool:
        """Interaction webhooks use the application id; any other id is a channel webhook."""
        return request.match_info["webhook_id"] != str(self.emu.application_id)

    def _record(self, request: web.Request) -> InteractionRecord:
        emu = self.emu
        wid = snowflake_param(request, "webhook_id", E.UNKNOWN_WEBHOOK, "Webhook")
        token = request.match_info["webhook_token"]
        rec = emu.interactions_by_token.get(token)
        if wid != emu.application_id or rec is None:
            raise E.not_found(E.UNKNOWN_WEBHOOK, "Webhook")
        if rec.token_expired or time.monotonic() - rec.created_at > emu.interaction_token_ttl:
            rec.token_expired = True
            raise E.APIError(401, E.INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        if not rec.acked:
            raise E.not_found(E.UNKNOWN_WEBHOOK, "Webhook")
        return rec

    def _message(self, request: web.Request, rec: InteractionRecord) -> MessageState:
        raw = request.match_info["message_id"]
        if raw == "@original":
            msg = rec.original
        else:
            try:
                mid = int(raw)
            except ValueError:
                raise E.not_found(E.UNKNOWN_MESSAGE, "Message") from None
            msg = next((m for m in rec.messages if m.id == mid), None)
        if msg is None or msg.deleted:
            raise E.not_found(E.UNKNOWN_MESSAGE, "Message")
        return msg

    async def followup(self, request: web.Request) -> web.Response:
        if self._is_channel_webhook(request):
            return await self.emu.channel_webhooks.execute(request)
        emu = self.emu
        rec = self._record(request)
        if user_install_only(rec.authorizing_integration_owners) and rec.followup_posts >= L.USER_INSTALL_FOLLOWUPS_MAX:
            raise E.APIError(400, E.MAX_FOLLOWUPS_REACHED, "This interaction has hit the maximum number of follow up messages")
        body = require_dict(request[JSON_BODY])
        files = request[FILES]
        errors = emu.validator.message("webhook_execute", body)
        if errors:
            raise E.invalid_form(errors)
        if files:
            check_files(files, rec.attachment_size_limit)
        await check_voice_message(emu, emu.world.channels[rec.channel_id], body, files)
        if is_empty_message(body, files):
            raise E.APIError(400, E.EMPTY_MESSAGE, "Cannot send an empty message")
        rec.followup_posts += 1
        # A first "followup" after a deferred response edits the thinking message, as on Discord (once the
        # thinking message was deleted, a followup is a new message with its own flags).
        if rec.original is not None and rec.original.loading and not rec.original.deleted and rec.response_type == 5:
            msg = emu.store.edit(rec.original, body, files)
            await emu.announce("MESSAGE_UPDATE", msg)
        else:
            msg = emu.store.create(
                rec.channel_id,
                emu.bot_user_id,
                body,
                files,
                type=0,
                webhook_id=emu.application_id,
                application_id=emu.application_id,
                interaction_id=rec.id,
            )
            rec.followups.append(msg)
            await emu.announce("MESSAGE_CREATE", msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return emu.json(emu.message_payload(msg))
        return web.Response(status=204)

    async def get_message(self, request: web.Request) -> web.Response:
        if self._is_channel_webhook(request):
            return await self.emu.channel_webhooks.get_message(request)
        rec = self._record(request)
        return self.emu.json(self.emu.message_payload(self._message(request, rec)))

    async def edit_message(self, request: web.Request) -> web.Response:
        if self._is_channel_webhook(request):
            return await self.emu.channel_webhooks.edit_message(request)
        emu = self.emu
        rec = self._record(request)
        msg = self._message(request, rec)
        refuse_edit(msg)
        body = require_dict(request[JSON_BODY])
        errors = emu.validator.message("webhook_edit", body)
        if errors:
            raise E.invalid_form(errors)
        files = request[FILES]
        if files:
            check_files(files, rec.attachment_size_limit)
        if msg.loading:  # a deferred response may still become a voice message
            await check_voice_message(emu, emu.world.channels[rec.channel_id], body, files)
        emu.store.edit(msg, body, files)
        await emu.announce("MESSAGE_UPDATE", msg)
        return emu.json(emu.message_payload(msg))

    async def delete_message(self, request: web.Request) -> web.Response:
        if self._is_channel_webhook(request):
            return await self.emu.channel_webhooks.delete_message(request)
        emu = self.emu
        rec = self._record(request)
        msg = self._message(request, rec)
        emu.store.delete(msg)
        await emu.announce("MESSAGE_DELETE", msg)
        return web.Response(status=204)
