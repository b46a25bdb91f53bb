"""Test-side actions of users: slash commands, autocomplete, context menus, buttons, selects,
modals and plain messages, each dispatched to the bot through the gateway."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Union

from . import installs as I
from .commands import resolve_path
from .messages import UploadedFile
from .models import FLAG_IS_VOICE_MESSAGE, InteractionRecord, MessageState, User
from .voice import voice_metadata

if TYPE_CHECKING:
    from .changes import ChangeSignal
    from .commands import CommandRegistry
    from .gateway_ws import Gateway
    from .messages import MessageStore
    from .monetization import Monetization
    from .world import World

UserRef = Union[str, int, User]
FileSpec = tuple[str, bytes, str]  # (filename, bytes, content_type)
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5


class InjectionMixin:
    """Mixed into DiscordEmulator; relies on its world, store, commands and gateway."""

    world: "World"
    store: "MessageStore"
    commands: "CommandRegistry"
    gateway: "Gateway"
    signal: "ChangeSignal"
    interactions: dict[int, InteractionRecord]
    application_id: int
    bot_user_id: int
    guild_id: int
    channel_id: int
    default_attachment_size_limit: int
    user_installs: set[int]
    monetization: "Monetization"

    if TYPE_CHECKING:

        async def wait_for_session(self, timeout: float = 10.0) -> None: ...

        def message_payload(self, msg: MessageState, *, with_referenced: bool = True) -> dict[str, Any]: ...

        async def announce(self, event: str, msg: MessageState) -> None: ...

    # -- placement -------------------------------------------------------------------------
    def _place(self, guild_id: Optional[int], channel_id: Optional[int]) -> tuple[int, Optional[int]]:
        """(channel_id, guild_id): default channel of the guild (guild 1 → #general)."""
        if channel_id is not None:
            return channel_id, self.world.channels[channel_id].guild_id
        gid = guild_id or self.guild_id
        if gid == self.guild_id:
            return self.channel_id, gid
        first = next(c for c in self.world.guilds[gid].channel_ids if not self.world.channels[c].is_thread)
        return first, gid

    def _require_member(self, user: User, guild_id: Optional[int]) -> None:
        if guild_id is not None and user.id not in self.world.guilds[guild_id].members:
            raise ValueError(f"{user.username} is not a member of guild {guild_id}")

    def _require_access(self, user: User, channel_id: int) -> None:
        """The user is a member of the channel's guild, or a recipient of the DM / group DM."""
        channel = self.world.channels[channel_id]
        if channel.is_private:
            if user.id not in channel.recipient_ids:
                raise ValueError(f"{user.username} is not in the private channel {channel_id}")
            return
        self._require_member(user, channel.guild_id)

    def _authorization(
        self, itype: int, data: dict[str, Any], user: User, channel_id: int, guild_id: Optional[int],
        inherit: Optional[InteractionRecord],
    ) -> tuple[int, dict[str, str], int]:
        """(context, authorizing_integration_owners, app_permissions) of an interaction; a command the
        user could not run there raises CommandNotAvailable. Components and modals keep the owners of
        the interaction that made their message (or opened the modal), as on Discord."""
        world = self.world
        channel = world.channels[channel_id]
        context = I.channel_context(channel, self.bot_user_id)
        perms = I.app_permissions(world, channel, context, self.bot_user_id)
        installed = user.id in self.user_installs
        if itype in (APPLICATION_COMMAND, AUTOCOMPLETE):
            command, _scope = self.commands.find(data["name"], int(data.get("type", 1)), guild_id)
            owners = I.authorizing_owners(
                world, bot_user_id=self.bot_user_id, user_id=user.id, channel=channel, context=context,
                integration_types=I.command_integration_types(command), user_installed=installed,
            )
            I.check_available(command, context, owners)
            return context, owners, perms
        if inherit is not None:
            return context, dict(inherit.payload.get("authorizing_integration_owners") or {}), perms
        owners = I.authorizing_owners(
            world, bot_user_id=self.bot_user_id, user_id=user.id, channel=channel, context=context,
            integration_types=I.ALL_INTEGRATION_TYPES, user_installed=installed,
        )
        return context, owners, perms

    # -- the interaction envelope ----------------------------------------------------------
    async def _dispatch_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        *,
        user: UserRef,
        channel_id: int,
        guild_id: Optional[int],
        locale: str = "en-US",
        message: Optional[MessageState] = None,
        attachment_size_limit: Optional[int] = None,
        name: Optional[str] = None,
        custom_id: Optional[str] = None,
        connect_timeout: float = 10.0,
        inherit: Optional[InteractionRecord] = None,
    ) -> InteractionRecord:
        await self.wait_for_session(connect_timeout)
        world = self.world
        u = world.user(user)
        self._require_access(u, channel_id)
        if inherit is None and message is not None and message.interaction_id is not None:
            inherit = self.interactions.get(message.interaction_id)
        context, owners, app_perms = self._authorization(itype, data, u, channel_id, guild_id, inherit)
        iid = self.store.ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        size_limit = attachment_size_limit or self.default_attachment_size_limit
        entitlements = self.monetization.for_interaction(u.id, guild_id)  # the user's and the guild's active ones
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(channel_id),
            "channel": world.channel_payload(channel_id, for_user=u.id, exclude=self.bot_user_id),
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": entitlements,
            "entitlement_sku_ids": [e["sku_id"] for e in entitlements],
            "attachment_size_limit": size_limit,
            "app_permissions": str(app_perms),
            "context": context,
            "authorizing_integration_owners": owners,
        }
        if guild_id is not None:
            guild = world.guilds[guild_id]
            member = world.member_payload(guild_id, u.id)
            member["permissions"] = str(world.permissions_for(u.id, channel_id))
            payload.update(
                guild_id=str(guild_id),
                guild_locale=guild.locale,
                member=member,
                guild={"id": str(guild_id), "locale": guild.locale, "features": []},
            )
        else:
            payload["user"] = u.payload()
        if message is not None:
            payload["message"] = self.message_payload(message)
        rec = InteractionRecord(
            id=iid,
            token=token,
            type=itype,
            user_id=u.id,
            guild_id=guild_id,
            channel_id=channel_id,
            payload=payload,
            created_at=time.monotonic(),
            name=name,
            custom_id=custom_id,
            message_id=message.id if message is not None else None,
            attachment_size_limit=size_limit,
            _signal=self.signal,
        )
        self.interactions[iid] = rec
        self.interactions_by_token[token] = rec
        rec.created_at = time.monotonic()
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return rec

    # -- options ---------------------------------------------------------------------------
    def _option_value(
        self, schema: dict[str, Any], value: Any, *, guild_id: Optional[int], channel_id: int, resolved: dict[str, dict[str, Any]]
    ) -> Any:
        otype = schema["type"]
        name = schema["name"]
        world = self.world
        if otype == 3:
            return str(value)
        if otype == 4:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise TypeError(f"option {name!r} expects an integer, got {value!r}")
            return int(value)
        if otype == 5:
            return bool(value)
        if otype == 10:
            return float(value)
        if otype in (6, 9):
            try:
                user = world.user(value)
            except KeyError:
                if otype == 6:
                    raise
            else:
                resolved.setdefault("users", {})[str(user.id)] = user.payload()
                if guild_id is not None and user.id in world.guilds[guild_id].members:
                    member = world.member_payload(guild_id, user.id, with_user=False)
                    member["permissions"] = str(world.permissions_for(user.id, channel_id))
                    resolved.setdefault("members", {})[str(user.id)] = member
                return str(user.id)
        if otype in (8, 9):
            assert guild_id is not None, "role options need a guild"
            roles = world.guilds[guild_id].roles
            role = roles.get(int(value)) if str(value).isdigit() else next((r for r in roles.values() if r.name == value), None)
            if role is None:
                raise KeyError(f"unknown role {value!r}")
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            return str(role.id)
        if otype == 7:
            if str(value).isdigit():
                cid = int(value)
            else:
                cid = next(c for c in world.guilds[guild_id or self.guild_id].channel_ids if world.channels[c].name == value)
            ch = world.channel_payload(cid, for_user=self.bot_user_id)
            resolved.setdefault("channels", {})[str(cid)] = ch
            return str(cid)
        if otype == 11:
            if not (isinstance(value, tuple) and len(value) == 3):
                raise TypeError(f"attachment option {name!r} expects (filename, bytes, content_type)")
            filename, blob, content_type = value
            att = self.store.make_attachment(channel_id, filename, bytes(blob), content_type)
            resolved.setdefault("attachments", {})[str(att.id)] = att.payload()
            return str(att.id)
        raise TypeError(f"unsupported option type {otype} for {name!r}")

    def _command_data(
        self,
        name: str,
        options: Optional[Mapping[str, Any]],
        *,
        guild_id: Optional[int],
        channel_id: int,
        attachments: Optional[Mapping[str, FileSpec]] = None,
        focused: Optional[str] = None,
    ) -> dict[str, Any]:
        tokens = name.split()
        command, scope = self.commands.find(tokens[0], 1, guild_id)
        path, leaf = resolve_path(command, tokens[1:])
        values = dict(options or {})
        values.update(attachments or {})
        resolved: dict[str, dict[str, Any]] = {}
        by_name = {o["name"]: o for o in leaf}
        built: list[dict[str, Any]] = []
        for oname, value in values.items():
            schema = by_name.get(oname)
            if schema is None:
                raise KeyError(f"/{name} has no option {oname!r} (has {sorted(by_name)})")
            if oname == focused:
                built.append({"name": oname, "type": schema["type"], "value": str(value), "focused": True})
                continue
            converted = self._option_value(schema, value, guild_id=guild_id, channel_id=channel_id, resolved=resolved)
            choices = schema.get("choices")
            if choices and converted not in [c["value"] for c in choices]:
                raise ValueError(f"{converted!r} is not a choice of option {oname!r}")
            built.append({"name": oname, "type": schema["type"], "value": converted})
        if focused is None:
            missing = [o["name"] for o in leaf if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"/{name} is missing required options {missing}")
        elif focused not in values:
            schema = by_name[focused]
            built.append({"name": focused, "type": schema["type"], "value": "", "focused": True})
        for sub_name, sub_type in reversed(path):
            built = [{"name": sub_name, "type": sub_type, "options": built}]
        data: dict[str, Any] = {"id": command["id"], "name": tokens[0], "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if scope is not None:
            data["guild_id"] = str(scope)
        return data

    # -- public injection API --------------------------------------------------------------
    async def inject_slash_command(
        self,
        name: str,
        options: Optional[Mapping[str, Any]] = None,
        *,
        user: UserRef = "alice",
        guild_id: Optional[int] = None,
        channel_id: Optional[int] = None,
        attachments: Optional[Mapping[str, FileSpec]] = None,
        locale: str = "en-US",
        attachment_size_limit: Optional[int] = None,
    ) -> InteractionRecord:
        """A user runs ``/name`` ("relay key create" for sub-commands); option types come from the
        registered schema. Sent even when the user lacks default_member_permissions."""
        cid, gid = self._place(guild_id, channel_id)
        data = self._command_data(name, options, guild_id=gid, channel_id=cid, attachments=attachments)
        return await self._dispatch_interaction(
            APPLICATION_COMMAND, data, user=user, channel_id=cid, guild_id=gid, locale=locale,
            attachment_size_limit=attachment_size_limit, name=name,
        )

    async def inject_autocomplete(
        self,
        name: str,
        options: Optional[Mapping[str, Any]],
        focused: str,
        *,
        user: UserRef = "alice",
        guild_id: Optional[int] = None,
        channel_id: Optional[int] = None,
        locale: str = "en-US",
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Type-4 interaction with ``focused`` marked; returns the choices the bot answered."""
        cid, gid = self._place(guild_id, channel_id)
        data = self._command_data(name, options, guild_id=gid, channel_id=cid, focused=focused)
        rec = await self._dispatch_interaction(AUTOCOMPLETE, data, user=user, channel_id=cid, guild_id=gid, locale=locale, name=name)
        await rec.wait_acked(timeout)
        return list(rec.autocomplete_choices or [])

    async def inject_context_menu(
        self,
        name: str,
        target_message_id: Optional[int] = None,
        *,
        target_user: Optional[UserRef] = None,
        user: UserRef = "alice",
        locale: str = "en-US",
        channel_id: Optional[int] = None,
    ) -> InteractionRecord:
        """Message command (target_message_id) or user command (target_user, run in ``channel_id``:
        default guild 1's #general)."""
        resolved: dict[str, dict[str, Any]] = {}
        if target_message_id is not None:
            msg = self.store.messages[target_message_id]
            cid, gid = msg.channel_id, msg.guild_id
            command, scope = self.commands.find(name, 3, gid)
            resolved["messages"] = {str(msg.id): self.message_payload(msg)}
            target = str(msg.id)
            ctype = 3
        elif target_user is not None:
            cid, gid = self._place(None, channel_id)
            command, scope = self.commands.find(name, 2, gid)
            target = self._option_value({"type": 6, "name": "target"}, target_user, guild_id=gid, channel_id=cid, resolved=resolved)
            ctype = 2
        else:
            raise ValueError("give target_message_id or target_user")
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": ctype, "target_id": target, "resolved": resolved}
        if scope is not None:
            data["guild_id"] = str(scope)
        return await self._dispatch_interaction(APPLICATION_COMMAND, data, user=user, channel_id=cid, guild_id=gid, locale=locale, name=name)

    async def press_button(self, message_id: int, custom_id: str, *, user: UserRef = "alice", locale: str = "en-US") -> InteractionRecord:
        """Click a button of a live message (it must exist there and not be disabled)."""
        msg = self._component_message(message_id)
        comp = msg.find_component(custom_id)
        if comp is None or comp.get("type") != 2:
            raise ValueError(f"message {message_id} has no button {custom_id!r} (has {msg.custom_ids()})")
        if comp.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": 2}
        if comp.get("id") is not None:
            data["id"] = comp["id"]
        return await self._dispatch_interaction(
            MESSAGE_COMPONENT, data, user=user, channel_id=msg.channel_id, guild_id=msg.guild_id, locale=locale,
            message=msg, custom_id=custom_id,
        )

    async def select_menu(
        self, message_id: int, custom_id: str, values: list[str], *, user: UserRef = "alice", locale: str = "en-US"
    ) -> InteractionRecord:
        """Choose ``values`` in a select menu of a live message."""
        msg = self._component_message(message_id)
        comp = msg.find_component(custom_id)
        if comp is None or comp.get("type") not in (3, 5, 6, 7, 8):
            raise ValueError(f"message {message_id} has no select menu {custom_id!r}")
        if comp.get("type") == 3:
            allowed = {o.get("value") for o in comp.get("options") or []}
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"{unknown} are not options of {custom_id!r}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"], "values": [str(v) for v in values]}
        return await self._dispatch_interaction(
            MESSAGE_COMPONENT, data, user=user, channel_id=msg.channel_id, guild_id=msg.guild_id, locale=locale,
            message=msg, custom_id=custom_id,
        )

    def _component_message(self, message_id: int) -> MessageState:
        msg = self.store.messages.get(message_id)
        if msg is None or msg.deleted:
            raise KeyError(f"no live message {message_id}")
        return msg

    async def submit_modal(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: UserRef = "alice",
        interaction: Optional[InteractionRecord] = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Submit the modal the bot opened (type-9 callback) with text-input ``values`` by custom_id."""
        opener = interaction or next(
            (r for r in reversed(list(self.interactions.values())) if r.modal and r.modal.get("custom_id") == custom_id), None
        )
        if opener is None or not opener.modal:
            raise KeyError(f"the bot never opened a modal {custom_id!r}")
        remaining = dict(values)
        components = [self._modal_component(c, remaining) for c in opener.modal.get("components") or []]
        if remaining:
            raise ValueError(f"modal {custom_id!r} has no inputs {sorted(remaining)}")
        data = {"custom_id": custom_id, "components": [c for c in components if c is not None]}
        message = self.store.messages.get(opener.message_id) if opener.message_id else None
        return await self._dispatch_interaction(
            MODAL_SUBMIT, data, user=user, channel_id=opener.channel_id, guild_id=opener.guild_id, locale=locale,
            message=message, custom_id=custom_id, inherit=opener,
        )

    def _modal_component(self, comp: dict[str, Any], remaining: dict[str, str]) -> Optional[dict[str, Any]]:
        ctype = comp.get("type")
        if ctype == 1:
            children = [self._modal_component(c, remaining) for c in comp.get("components") or []]
            return {"type": 1, "components": [c for c in children if c is not None]}
        if ctype == 18:
            inner = self._modal_component(comp.get("component") or {}, remaining)
            return {"type": 18, "component": inner} if inner is not None else None
        if ctype == 4:
            cid = comp["custom_id"]
            value = remaining.pop(cid, comp.get("value") or "")
            if comp.get("required", True) and not value:
                raise ValueError(f"text input {cid!r} is required")
            if comp.get("max_length") is not None and len(value) > comp["max_length"]:
                raise ValueError(f"text input {cid!r} allows {comp['max_length']} characters")
            if value and comp.get("min_length") is not None and len(value) < comp["min_length"]:
                raise ValueError(f"text input {cid!r} needs {comp['min_length']} characters")
            return {"type": 4, "custom_id": cid, "value": value}
        return None

    async def send_user_message(
        self,
        content: str,
        *,
        user: UserRef = "alice",
        channel_id: Optional[int] = None,
        reply_to: Optional[int] = None,
        attachments: Optional[Union[Iterable[FileSpec], Mapping[str, FileSpec]]] = None,
        mention_bot: bool = False,
        embeds: Optional[list[dict[str, Any]]] = None,
    ) -> MessageState:
        """A user posts a message (MESSAGE_CREATE to the bot), optionally replying or mentioning it."""
        await self.wait_for_session()
        cid = channel_id or self.channel_id
        if self.world.channels[cid].is_forum:
            raise ValueError("a forum holds posts, not messages: use create_forum_post")
        u = self.world.user(user)
        self._require_access(u, cid)
        if mention_bot and f"<@{self.bot_user_id}>" not in content:
            content = f"<@{self.bot_user_id}> {content}"
        body: dict[str, Any] = {"content": content, "nonce": str(self.store.ids.next()), "embeds": embeds or []}
        if reply_to is not None:
            body["message_reference"] = self._reply_reference(reply_to)
        specs = list(attachments.values()) if isinstance(attachments, Mapping) else list(attachments or [])
        files = [UploadedFile(index=i, filename=f, data=bytes(b), content_type=ct) for i, (f, b, ct) in enumerate(specs)]
        msg = self.store.create(cid, u.id, body, files)
        await self.announce("MESSAGE_CREATE", msg)
        return msg

    async def create_forum_post(
        self,
        channel_id: int,
        title: str,
        content: str,
        *,
        user: UserRef = "alice",
        attachments: Optional[Iterable[FileSpec]] = None,
    ) -> MessageState:
        """A member opens a post in forum ``channel_id``, as Discord does it: a public thread named
        ``title`` (THREAD_CREATE, ``newly_created``) whose first message, with the thread's own id,
        holds ``content`` (MESSAGE_CREATE). Returns that message; ``msg.channel_id`` is the post's
        thread. Raises ValueError for a channel that is not a forum, or a title Discord refuses."""
        await self.wait_for_session()
        forum = self.world.channels[channel_id]
        if not forum.is_forum:
            raise ValueError(f"channel {channel_id} is not a forum (type {forum.type})")
        assert forum.guild_id is not None
        if not 1 <= len(title) <= 100:
            raise ValueError("a post's title has 1 to 100 characters")
        u = self.world.user(user)
        self._require_member(u, forum.guild_id)
        thread = self.world.add_channel(forum.guild_id, title, type=11, parent_id=forum.id, owner_id=u.id,
                                        channel_id=self.store.ids.next())
        data = thread.payload()
        data.update(newly_created=True, applied_tags=[],
                    member={"id": str(thread.id), "user_id": str(u.id), "join_timestamp": thread.created_iso,
                            "flags": 0})
        await self.gateway.dispatch("THREAD_CREATE", data)
        files = [UploadedFile(index=i, filename=f, data=bytes(b), content_type=ct)
                 for i, (f, b, ct) in enumerate(attachments or [])]
        body: dict[str, Any] = {"content": content, "nonce": str(self.store.ids.next()), "embeds": []}
        msg = self.store.create(thread.id, u.id, body, files, message_id=thread.id)  # a post's first message
        forum.last_message_id = thread.id  # a forum's "last message" is its newest post
        await self.announce("MESSAGE_CREATE", msg)
        return msg

    def forum_posts(self, channel_id: int) -> list[int]:
        """The thread ids of forum ``channel_id``'s posts, oldest first."""
        return [c.id for c in self.world.channels.values() if c.is_thread and c.parent_id == channel_id]

    def _reply_reference(self, reply_to: int) -> dict[str, Any]:
        target = self.store.messages[reply_to]
        return {"message_id": reply_to, "channel_id": target.channel_id, "guild_id": target.guild_id, "type": 0}

    async def send_user_voice_message(
        self,
        audio: bytes,
        *,
        user: UserRef = "alice",
        channel_id: Optional[int] = None,
        reply_to: Optional[int] = None,
        content_type: str = "audio/ogg",
        filename: str = "voice-message.ogg",
    ) -> MessageState:
        """A member's voice message (flags 8192, one attachment whose ``duration_secs`` and ``waveform``
        are computed from ``audio`` with PyAV, as the member's client would), dispatched as
        MESSAGE_CREATE; the file is served by the emulator's CDN with ``content_type``. The audio is
        not checked to be Ogg/Opus (a member's client always sends that; give it Ogg/Opus).
        Raises ValueError when ``audio`` is not decodable."""
        meta = await asyncio.to_thread(voice_metadata, audio)
        await self.wait_for_session()
        cid = channel_id or self.channel_id
        u = self.world.user(user)
        self._require_access(u, cid)
        body: dict[str, Any] = {
            "content": "",
            "nonce": str(self.store.ids.next()),
            "flags": FLAG_IS_VOICE_MESSAGE,
            "attachments": [{"id": 0, "filename": filename, "duration_secs": meta.duration_secs, "waveform": meta.waveform}],
        }
        if reply_to is not None:
            body["message_reference"] = self._reply_reference(reply_to)
        upload = UploadedFile(index=0, filename=filename, data=bytes(audio), content_type=content_type)
        msg = self.store.create(cid, u.id, body, [upload])
        await self.announce("MESSAGE_CREATE", msg)
        return msg

    async def edit_user_message(self, message_id: int, content: str) -> MessageState:
        msg = self.store.messages[message_id]
        self.store.edit(msg, {"content": content})
        await self.announce("MESSAGE_UPDATE", msg)
        return msg

    async def delete_user_message(self, message_id: int) -> None:
        msg = self.store.messages[message_id]
        self.store.delete(msg)
        await self.announce("MESSAGE_DELETE", msg)
