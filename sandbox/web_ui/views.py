"""JSON views of the emulator's state, as the page draws them: messages, the world, the commands.

Pure functions over a ``DiscordEmulator``; nothing here changes the emulator. Attachment URLs are
rewritten to the web UI's own ``/attachments/<id>/<filename>`` so the page loads every byte from
one origin; audio and video players alone stream from the emulator's CDN URL, as Discord's client does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

from sandbox.discord_emulator import permissions as P
from sandbox.discord_emulator.models import Attachment, MessageState

if TYPE_CHECKING:
    from sandbox.discord_emulator import DiscordEmulator

CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
THREAD_TYPES = (10, 11, 12)
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


def world_view(emu: "DiscordEmulator") -> dict[str, Any]:
    """Guilds with their channels (threads point at their parent), roles and members."""
    guilds = []
    for gid, guild in emu.world.guilds.items():
        channels = []
        for cid in guild.channel_ids:
            ch = emu.world.channels[cid]
            if ch.type not in (0, 5) + THREAD_TYPES:
                continue
            channels.append(
                {
                    "id": str(cid),
                    "name": ch.name,
                    "type": ch.type,
                    "thread": ch.is_thread,
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
            }
        )
    users = {str(u.id): u.global_name or u.username for u in emu.world.users.values()}
    return {
        "bot": {"id": str(emu.bot_user_id), "name": display_name(emu, emu.bot_user_id)},
        "guilds": guilds,
        "users": users,
        "default_channel_id": str(emu.channel_id),
        "personas": [
            {"username": name, "id": str(emu.users[name].id), "name": display_name(emu, emu.users[name].id)}
            for name in ("admin", "alice", "bob")
            if name in emu.users
        ],
    }


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


def commands_view(emu: "DiscordEmulator") -> list[dict[str, Any]]:
    """Registered commands (guild scope wins over global), flattened to runnable paths, with who sees each."""
    guild_ids = list(emu.world.guilds)
    entries: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, Optional[int]], bool] = {}
    scoped: dict[tuple[str, int], dict[Optional[int], dict[str, Any]]] = {}
    for cmd in emu.commands.all_commands():
        scope = int(cmd["guild_id"]) if cmd.get("guild_id") else None
        scoped.setdefault((cmd["name"], cmd.get("type", CHAT_INPUT)), {})[scope] = cmd
    for (name, ctype), by_scope in sorted(scoped.items()):
        for gid in guild_ids:
            cmd = by_scope.get(gid) or by_scope.get(None)
            if cmd is None or seen.get((name, ctype, gid)):
                continue
            seen[(name, ctype, gid)] = True
            visible = [
                str(uid)
                for uid in emu.world.guilds[gid].members
                if not emu.world.users[uid].bot
                and _can_see(emu.world.guild_permissions(gid, uid), cmd.get("default_member_permissions"))
            ]
            if ctype == CHAT_INPUT:
                for path, description, options in _leaves(cmd):
                    entries.append(
                        {"type": ctype, "path": path, "description": description, "options": options,
                         "guild_id": str(gid), "visible_to": visible}
                    )
            else:
                entries.append({"type": ctype, "path": name, "description": "", "options": [],
                                "guild_id": str(gid), "visible_to": visible})
    return entries
