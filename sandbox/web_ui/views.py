"""JSON views of the emulator's state, as the page draws them: messages, the world, the commands.

Pure functions over a ``DiscordEmulator``; nothing here changes the emulator. Attachment URLs are
rewritten to the web UI's own ``/attachments/<id>/<filename>`` so the page loads every byte from
one origin; audio and video players alone stream from the emulator's CDN URL, as Discord's client does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

from sandbox.discord_emulator import installs as I
from sandbox.discord_emulator import permissions as P
from sandbox.discord_emulator.models import Attachment, Channel, MessageState

if TYPE_CHECKING:
    from sandbox.discord_emulator import DiscordEmulator

CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
THREAD_TYPES = (10, 11, 12)
FORUM = 15  # a forum: its posts are threads (``parent_id`` the forum), each opened with its first message
REFERENCE_SNIPPET = 120
IS_VOICE_MESSAGE = 1 << 13
MENTION = re.compile(r"<(@!?|@&|#)(\d+)>")


def attachment_path(attachment_id: int, filename: str) -> str:
    return f"/attachments/{attachment_id}/{quote(filename)}"


def display_name(emu: "DiscordEmulator", user_id: int) -> str:
    user = emu.world.users.get(user_id)
    if user is None:
        return "Unknown user"
    return user.global_name or user.username


def plain_mentions(emu: "DiscordEmulator", text: str) -> str:
    """``<@id>``, ``<@&id>`` and ``<#id>`` as Discord's client shows them: @name, @role, #channel."""

    def name(match: re.Match[str]) -> str:
        kind, ident = match.group(1), int(match.group(2))
        if kind == "#":
            channel = emu.world.channels.get(ident)
            return f"#{channel.name}" if channel is not None else "#unknown-channel"
        if kind == "@&":
            for guild in emu.world.guilds.values():
                if ident in guild.roles:
                    return f"@{guild.roles[ident].name}"
            return "@unknown-role"
        return f"@{display_name(emu, ident)}" if ident in emu.world.users else "@unknown-user"

    return MENTION.sub(name, text)


class UrlRewriter:
    """Maps ``attachment://name`` and the emulator CDN's attachment URLs to the UI's own URLs."""

    def __init__(self, emu: "DiscordEmulator", msg: MessageState) -> None:
        self.by_name = {a.filename: a for a in msg.attachments}
        self.cdn_prefix = emu.cdn_base_url + "/attachments/" if emu.base_url else None
        self.emu = emu

    def __call__(self, url: Any) -> Any:
        if not isinstance(url, str):
            return url
        if url.startswith("attachment://"):
            att = self.by_name.get(url[len("attachment://"):])
            return attachment_path(att.id, att.filename) if att is not None else url
        if self.cdn_prefix and url.startswith(self.cdn_prefix):
            parts = url[len(self.cdn_prefix):].split("/")
            if len(parts) >= 3 and parts[1].isdigit():
                att = self.emu.store.attachments.get(int(parts[1]))
                if att is not None:
                    return attachment_path(att.id, att.filename)
        return url


def _attachment_view(att: Attachment, *, voice: bool = False) -> dict[str, Any]:
    """An attachment as the page shows it. Audio also carries what a voice message has (duration,
    base64 waveform) and the emulator CDN's URL, which the player streams from as Discord's does; video
    carries that URL too, for the page's inline video player."""
    view: dict[str, Any] = {
        "id": str(att.id),
        "filename": att.filename,
        "content_type": att.content_type,
        "size": att.size,
        "url": attachment_path(att.id, att.filename),
        "description": att.description,
    }
    if voice or att.content_type.startswith("audio/"):
        payload = att.payload()  # duration_secs and waveform, when the emulator keeps them
        view["audio"] = {
            "src": att.url if att.url.startswith(("http://", "https://")) else view["url"],
            "duration_secs": payload.get("duration_secs"),
            "waveform": payload.get("waveform"),
        }
    elif att.content_type.startswith("video/"):
        view["video"] = {"src": att.url if att.url.startswith(("http://", "https://")) else view["url"]}
    return view


def _embed_view(embed: dict[str, Any], rewrite: UrlRewriter) -> dict[str, Any]:
    out = dict(embed)
    for key in ("image", "thumbnail", "video"):
        if isinstance(out.get(key), dict):
            out[key] = dict(out[key], url=rewrite(out[key].get("url")))
    for key in ("author", "footer"):
        if isinstance(out.get(key), dict) and out[key].get("icon_url"):
            out[key] = dict(out[key], icon_url=rewrite(out[key]["icon_url"]))
    return out


def _components_view(items: list[Any], rewrite: UrlRewriter) -> list[Any]:
    """Components as sent, with media URLs (thumbnails, galleries, files) made loadable."""
    out: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        copy = dict(item)
        media = copy.get("media")
        if isinstance(media, dict):
            copy["media"] = dict(media, url=rewrite(media.get("url")))
        if isinstance(copy.get("file"), dict):
            copy["file"] = dict(copy["file"], url=rewrite(copy["file"].get("url")))
        if isinstance(copy.get("items"), list):
            copy["items"] = [
                dict(i, media=dict(i["media"], url=rewrite(i["media"].get("url")))) if isinstance(i, dict) and isinstance(i.get("media"), dict) else i
                for i in copy["items"]
            ]
        for key in ("components",):
            if isinstance(copy.get(key), list):
                copy[key] = _components_view(copy[key], rewrite)
        for key in ("accessory", "component"):
            if isinstance(copy.get(key), dict):
                copy[key] = _components_view([copy[key]], rewrite)[0]
        out.append(copy)
    return out


def _poll_view(poll: Any) -> dict[str, Any] | None:
    """A message's poll as the page draws it: question, answers (emoji and text), expiry, multiselect."""
    if not isinstance(poll, dict):
        return None
    answers = []
    for a in poll.get("answers") or []:
        media = a.get("poll_media") or {}
        emoji = media.get("emoji") or {}
        answers.append({"id": a.get("answer_id"), "text": media.get("text") or "",
                        "emoji": emoji.get("name") if isinstance(emoji, dict) else None})
    return {"question": (poll.get("question") or {}).get("text") or "", "answers": answers,
            "expiry": poll.get("expiry"), "multiselect": bool(poll.get("allow_multiselect"))}


def message_view(emu: "DiscordEmulator", msg: MessageState) -> dict[str, Any]:
    """Everything the page shows of one message (ids as strings: JavaScript numbers are too small)."""
    rewrite = UrlRewriter(emu, msg)
    author = emu.world.users.get(msg.author_id)
    webhook_name = getattr(msg, "webhook_username", None)
    rec = emu.interactions.get(msg.interaction_id) if msg.interaction_id else None
    view: dict[str, Any] = {
        "id": str(msg.id),
        "channel_id": str(msg.channel_id),
        "guild_id": str(msg.guild_id) if msg.guild_id else None,
        "author": {
            "id": str(msg.author_id),
            "name": webhook_name or display_name(emu, msg.author_id),
            "bot": bool(author is not None and author.bot) or msg.webhook_id is not None,
            "webhook": msg.webhook_id is not None,
        },
        "content": msg.content,
        "embeds": [_embed_view(e, rewrite) for e in msg.embeds],
        "components": _components_view(msg.components, rewrite),
        "attachments": [_attachment_view(a, voice=bool(msg.flags & IS_VOICE_MESSAGE)) for a in msg.attachments],
        "flags": msg.flags,
        "voice": bool(msg.flags & IS_VOICE_MESSAGE),
        "poll": _poll_view(msg.poll),
        "ephemeral": msg.ephemeral,
        "visible_to": str(rec.user_id) if msg.ephemeral and rec is not None else None,
        "loading": msg.loading,
        "edited": msg.edited_timestamp is not None,
        "edit_count": msg.edit_count,
        "deleted": msg.deleted,
        "timestamp": msg.timestamp,
        "type": msg.type,
        "reactions": list(msg.reactions),
        "mentions": [str(u) for u in msg.mention_ids],
        "interaction": None,
        "reference": None,
        "thread": None,
    }
    if rec is not None and rec.type == 2 and rec.name:
        view["interaction"] = {"user": display_name(emu, rec.user_id), "command": rec.name}
    ref = msg.message_reference or {}
    if ref.get("message_id") is not None:
        target = emu.messages.get(int(ref["message_id"]))
        if target is not None:
            view["reference"] = {
                "message_id": str(target.id),
                "author": display_name(emu, target.author_id),
                "content": plain_mentions(emu, target.content)[:REFERENCE_SNIPPET],
                "voice": bool(target.flags & IS_VOICE_MESSAGE),
            }
    if msg.thread_id and msg.thread_id in emu.world.channels:
        view["thread"] = {"id": str(msg.thread_id), "name": emu.world.channels[msg.thread_id].name}
    return view


def _member_names(emu: "DiscordEmulator", guild_id: int) -> list[dict[str, Any]]:
    guild = emu.world.guilds[guild_id]
    out = []
    for uid, member in guild.members.items():
        user = emu.world.users[uid]
        perms = emu.world.guild_permissions(guild_id, uid)
        out.append(
            {
                "id": str(uid),
                "name": user.global_name or user.username,
                "username": user.username,
                "bot": user.bot,
                "admin": bool(perms & (P.ADMINISTRATOR | P.MANAGE_GUILD)),
                "roles": [guild.roles[r].name for r in member.roles if r in guild.roles],
            }
        )
    return out


DM_GUILD_ID = "@me"  # the page's "Direct Messages" entry, listed with the guilds


def world_view(emu: "DiscordEmulator") -> dict[str, Any]:
    """Guilds with their channels (threads point at their parent), roles and members, whether the bot
    is in each (and who installed the app to their account), then the members' DMs with the bot as one
    more entry (id "@me", ``dm``: each channel has the member it is with as ``recipient``)."""
    guilds = []
    installed = sorted(str(u) for u in emu.user_installs)
    for gid, guild in emu.world.guilds.items():
        channels = []
        for cid in guild.channel_ids:
            ch = emu.world.channels[cid]
            if ch.type not in (0, 5, FORUM) + THREAD_TYPES:
                continue
            channels.append(
                {
                    "id": str(cid),
                    "name": ch.name,
                    "type": ch.type,
                    "thread": ch.is_thread,
                    "forum": ch.type == FORUM,
                    "parent_id": str(ch.parent_id) if ch.parent_id else None,
                    "topic": ch.topic,
                    "archived": ch.archived,
                }
            )
        guilds.append(
            {
                "id": str(gid),
                "name": guild.name,
                "channels": channels,
                "roles": [{"id": str(r.id), "name": r.name} for r in guild.roles.values() if r.id != gid],
                "members": _member_names(emu, gid),
                "bot_member": emu.bot_user_id in guild.members,
            }
        )
    guilds.append(_dm_entry(emu))
    users = {str(u.id): u.global_name or u.username for u in emu.world.users.values()}
    return {
        "bot": {"id": str(emu.bot_user_id), "name": display_name(emu, emu.bot_user_id)},
        "guilds": guilds,
        "users": users,
        "user_installs": installed,
        "default_channel_id": str(emu.channel_id),
        "personas": [
            {"username": name, "id": str(emu.users[name].id), "name": display_name(emu, emu.users[name].id)}
            for name in ("admin", "alice", "bob")
            if name in emu.users
        ],
    }


def _bot_dms(emu: "DiscordEmulator") -> list[tuple[int, int]]:
    """(channel id, the member) of every DM between a member and the bot."""
    return [
        (c.id, next(u for u in c.recipient_ids if u != emu.bot_user_id))
        for c in emu.world.channels.values()
        if c.type == 1 and emu.bot_user_id in c.recipient_ids
    ]


def _dm_entry(emu: "DiscordEmulator") -> dict[str, Any]:
    bot_name = display_name(emu, emu.bot_user_id)
    channels = [
        {"id": str(cid), "name": bot_name, "type": 1, "thread": False, "parent_id": None,
         "topic": f"Your direct messages with {bot_name}", "archived": False, "recipient": str(uid)}
        for cid, uid in _bot_dms(emu)
    ]
    members = [
        {"id": str(u.id), "name": u.global_name or u.username, "username": u.username, "bot": u.bot, "admin": False,
         "roles": []}
        for u in (emu.world.users[uid] for uid in [emu.bot_user_id] + [uid for _, uid in _bot_dms(emu)])
    ]
    return {"id": DM_GUILD_ID, "name": "Direct Messages", "dm": True, "channels": channels, "roles": [],
            "members": members, "bot_member": True}


def _can_see(perms: int, default_member_permissions: Optional[str]) -> bool:
    """Discord hides a command from members lacking its default_member_permissions ("0": admins only)."""
    if default_member_permissions is None:
        return True
    if perms & P.ADMINISTRATOR:
        return True
    needed = int(default_member_permissions)
    return needed != 0 and perms & needed == needed


def _leaves(command: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """("relay key create", description, options) for every runnable path of a slash command."""
    options = command.get("options") or []
    subs = [o for o in options if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
    if not subs:
        return [(command["name"], command.get("description", ""), options)]
    out = []
    for sub in subs:
        nested = _leaves(sub)
        out.extend((f"{command['name']} {path}", desc, opts) for path, desc, opts in nested)
    return out


def _users_offered(emu: "DiscordEmulator", cmd: dict[str, Any], channel: Channel, candidates: list[int]) -> list[str]:
    """Who Discord's client offers the command to in that channel: its ``contexts`` allow the place,
    an installation authorizes it (the guild's, or the member's own user install), and, where the
    guild install is what authorizes it, the member has its default_member_permissions."""
    context = I.channel_context(channel, emu.bot_user_id)
    if context not in I.command_contexts(cmd):
        return []
    offered = []
    for uid in candidates:
        if emu.world.users[uid].bot:
            continue
        owners = I.authorizing_owners(
            emu.world, bot_user_id=emu.bot_user_id, user_id=uid, channel=channel, context=context,
            integration_types=I.command_integration_types(cmd), user_installed=uid in emu.user_installs,
        )
        if not owners:
            continue
        if context == I.GUILD and "1" not in owners and channel.guild_id is not None:
            if not _can_see(emu.world.guild_permissions(channel.guild_id, uid), cmd.get("default_member_permissions")):
                continue
        offered.append(str(uid))
    return offered


def _entries(cmd: dict[str, Any], ctype: int, scope: str, visible: list[str]) -> list[dict[str, Any]]:
    if ctype == CHAT_INPUT:
        return [
            {"type": ctype, "path": path, "description": description, "options": options, "guild_id": scope,
             "visible_to": visible}
            for path, description, options in _leaves(cmd)
        ]
    return [{"type": ctype, "path": cmd["name"], "description": "", "options": [], "guild_id": scope,
             "visible_to": visible}]


def commands_view(emu: "DiscordEmulator") -> list[dict[str, Any]]:
    """Registered commands (guild scope wins over global), flattened to runnable paths, with who is
    offered each: per guild (also guilds without the bot, through user installs), and in the members'
    DMs with the bot (guild id "@me")."""
    world = emu.world
    entries: list[dict[str, Any]] = []
    scoped: dict[tuple[str, int], dict[Optional[int], dict[str, Any]]] = {}
    for cmd in emu.commands.all_commands():
        scope = int(cmd["guild_id"]) if cmd.get("guild_id") else None
        scoped.setdefault((cmd["name"], cmd.get("type", CHAT_INPUT)), {})[scope] = cmd
    dms = _bot_dms(emu)
    for (name, ctype), by_scope in sorted(scoped.items()):
        for gid, guild in world.guilds.items():
            cmd = by_scope.get(gid) or by_scope.get(None)
            first = next((c for c in guild.channel_ids if not world.channels[c].is_thread), None)
            if cmd is None or first is None:
                continue
            visible = _users_offered(emu, cmd, world.channels[first], list(guild.members))
            entries.extend(_entries(cmd, ctype, str(gid), visible))
        global_cmd = by_scope.get(None)
        if global_cmd is not None and dms:
            visible = sorted({u for cid, uid in dms for u in _users_offered(emu, global_cmd, world.channels[cid], [uid])})
            entries.extend(_entries(global_cmd, ctype, DM_GUILD_ID, visible))
    return entries
