"""Message store: create/edit/delete with attachments, mentions, nonce de-duplication, history,
and the message payloads discord.py parses."""

from __future__ import annotations

import datetime
import mimetypes
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import limits as L
from .models import FLAG_EPHEMERAL, FLAG_IS_VOICE_MESSAGE, FLAG_LOADING, Attachment, MessageState
from .snowflake import SnowflakeFactory, iso_from_snowflake, iso_now
from .world import World

USER_MENTION_RE = re.compile(r"<@!?(\d+)>")
ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")
# Flags a sender may set on a message (SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, IS_VOICE_MESSAGE, COMPONENTS_V2)
SETTABLE_FLAGS = (1 << 2) | FLAG_EPHEMERAL | (1 << 12) | (1 << 13) | (1 << 15)


@dataclass
class UploadedFile:
    index: int
    filename: str
    data: bytes
    content_type: str


def guess_content_type(filename: str, declared: Optional[str] = None) -> str:
    if declared and declared != "application/octet-stream":
        return declared
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or declared or "application/octet-stream"


def poll_object(request: dict[str, Any]) -> dict[str, Any]:
    """The poll Discord stores from a (schema-valid) ``PollCreateRequest``: answers numbered from 1, an
    expiry ``duration`` hours (default 24) from now, no votes yet."""
    hours = request.get("duration") or 24
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=int(hours))
    answers = []
    for n, answer in enumerate(request.get("answers") or [], 1):
        media = {k: v for k, v in (answer.get("poll_media") or {}).items() if v is not None}
        answers.append({"answer_id": n, "poll_media": media})
    return {
        "question": {"text": (request.get("question") or {}).get("text") or ""},
        "answers": answers,
        "expiry": expiry.isoformat(),
        "allow_multiselect": bool(request.get("allow_multiselect")),
        "layout_type": request.get("layout_type") or 1,
        "results": {"is_finalized": False, "answer_counts": []},
    }


class MessageStore:
    """Every message of the emulated world, keyed by id, plus per-channel order."""

    def __init__(self, world: World, ids: SnowflakeFactory, attachment_url: Callable[[int, int, str], str]) -> None:
        self.world = world
        self.ids = ids
        self.attachment_url = attachment_url
        self.messages: dict[int, MessageState] = {}
        self.attachments: dict[int, Attachment] = {}
        self._by_channel: dict[int, list[int]] = {}
        self._nonces: dict[tuple[int, int, str], tuple[int, float]] = {}
        self.nonce_window = L.NONCE_WINDOW_S

    # -- attachments -----------------------------------------------------------------------
    def make_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: Optional[str] = None,
        description: Optional[str] = None,
        *,
        duration_secs: Optional[float] = None,
        waveform: Optional[str] = None,
    ) -> Attachment:
        att_id = self.ids.next()
        att = Attachment(
            id=att_id,
            filename=filename,
            data=data,
            content_type=guess_content_type(filename, content_type),
            url=self.attachment_url(channel_id, att_id, filename),
            description=description,
            duration_secs=duration_secs,
            waveform=waveform,
        )
        self.attachments[att_id] = att
        return att

    def _attachments_for(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: list[UploadedFile],
        existing: list[Attachment],
        editing: bool,
        voice: bool = False,
    ) -> list[Attachment]:
        """The message's attachments; a voice message's keep ``duration_secs`` and ``waveform``."""
        by_index = {f.index: f for f in files}
        used: set[int] = set()
        result: list[Attachment] = []
        if "attachments" in body and body["attachments"] is not None:
            for entry in body["attachments"]:
                try:
                    ref = int(entry.get("id"))
                except (TypeError, ValueError):
                    continue
                kept = next((a for a in existing if a.id == ref), None)
                if kept is not None:
                    result.append(kept)
                elif ref in by_index:
                    f = by_index[ref]
                    used.add(ref)
                    name = entry.get("filename") or f.filename
                    duration = entry.get("duration_secs") if voice else None
                    result.append(
                        self.make_attachment(
                            channel_id,
                            name,
                            f.data,
                            f.content_type,
                            entry.get("description"),
                            duration_secs=float(duration) if duration is not None else None,
                            waveform=entry.get("waveform") if voice else None,
                        )
                    )
        elif editing:
            result.extend(existing)
        for f in files:
            if f.index not in used:
                result.append(self.make_attachment(channel_id, f.filename, f.data, f.content_type))
        return result

    # -- mentions --------------------------------------------------------------------------
    def _mentions(
        self, content: str, allowed: Optional[dict[str, Any]], guild_id: Optional[int], replied_author: Optional[int]
    ) -> tuple[list[int], list[int], bool]:
        users = [int(u) for u in USER_MENTION_RE.findall(content) if int(u) in self.world.users]
        roles = [int(r) for r in ROLE_MENTION_RE.findall(content)]
        if guild_id is not None:
            roles = [r for r in roles if r in self.world.guilds[guild_id].roles]
        everyone = "@everyone" in content or "@here" in content
        if allowed is not None:
            parse = allowed.get("parse") or []
            allow_users = {int(u) for u in allowed.get("users") or []}
            allow_roles = {int(r) for r in allowed.get("roles") or []}
            users = [u for u in users if "users" in parse or u in allow_users]
            roles = [r for r in roles if "roles" in parse or r in allow_roles]
            everyone = everyone and "everyone" in parse
            reply_ping = bool(allowed.get("replied_user", False))
        else:
            reply_ping = True
        if replied_author is not None and reply_ping and replied_author not in users:
            users.append(replied_author)
        return list(dict.fromkeys(users)), list(dict.fromkeys(roles)), everyone

    # -- create / edit / delete ------------------------------------------------------------
    def find_nonce(self, channel_id: int, author_id: int, nonce: Any) -> Optional[MessageState]:
        key = (channel_id, author_id, str(nonce))
        hit = self._nonces.get(key)
        if hit is None or time.monotonic() - hit[1] > self.nonce_window:
            return None
        msg = self.messages.get(hit[0])
        return msg if msg is not None and not msg.deleted else None

    def create(
        self,
        channel_id: int,
        author_id: int,
        body: dict[str, Any],
        files: Optional[list[UploadedFile]] = None,
        *,
        type: int = 0,
        webhook_id: Optional[int] = None,
        application_id: Optional[int] = None,
        interaction_id: Optional[int] = None,
        extra_flags: int = 0,
        message_id: Optional[int] = None,
    ) -> MessageState:
        channel = self.world.channels[channel_id]
        mid = message_id if message_id is not None else self.ids.next()
        ref = body.get("message_reference") or None
        replied_author = None
        if ref and ref.get("message_id") is not None:
            ref = {k: v for k, v in ref.items() if v is not None}
            ref.setdefault("channel_id", channel_id)
            ref.setdefault("type", 0)
            target = self.messages.get(int(ref["message_id"]))
            if target is not None:
                replied_author = target.author_id
                if type == 0 and ref.get("type", 0) == 0:
                    type = 19
        content = body.get("content") or ""
        allowed = body.get("allowed_mentions")
        users, roles, everyone = self._mentions(content, allowed, channel.guild_id, replied_author)
        flags = (int(body.get("flags") or 0) & SETTABLE_FLAGS) | extra_flags
        msg = MessageState(
            id=mid,
            channel_id=channel_id,
            guild_id=channel.guild_id,
            author_id=author_id,
            content=content,
            embeds=[self._normalise_embed(e) for e in body.get("embeds") or []],
            components=list(body.get("components") or []),
            flags=flags,
            type=type,
            allowed_mentions=allowed,
            message_reference=ref,
            nonce=body.get("nonce"),
            tts=bool(body.get("tts")),
            mention_ids=users,
            mention_role_ids=roles,
            mention_everyone=everyone,
            webhook_id=webhook_id,
            webhook_username=body.get("username") if webhook_id is not None else None,
            webhook_avatar_url=body.get("avatar_url") if webhook_id is not None else None,
            application_id=application_id,
            interaction_id=interaction_id,
            created_at=time.monotonic(),
            timestamp=iso_from_snowflake(mid),
        )
        msg.attachments = self._attachments_for(channel_id, body, files or [], [], editing=False, voice=msg.is_voice_message)
        if body.get("poll"):
            msg.poll = poll_object(body["poll"])
        msg.snapshot(msg.created_at)
        self.messages[mid] = msg
        self._by_channel.setdefault(channel_id, []).append(mid)
        if not msg.ephemeral:
            channel.last_message_id = mid
            channel.message_count += 1
        if msg.nonce is not None:
            self._nonces[(channel_id, author_id, str(msg.nonce))] = (mid, msg.created_at)
        return msg

    @staticmethod
    def _normalise_embed(embed: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in embed.items() if v is not None}
        data.setdefault("type", "rich")
        return data

    def edit(self, msg: MessageState, body: dict[str, Any], files: Optional[list[UploadedFile]] = None, *, clear_loading: bool = True) -> MessageState:
        if "content" in body:
            msg.content = body["content"] or ""
        if "embeds" in body:
            msg.embeds = [self._normalise_embed(e) for e in body["embeds"] or []]
        if "components" in body:
            msg.components = list(body["components"] or [])
        if "allowed_mentions" in body:
            msg.allowed_mentions = body["allowed_mentions"]
        if "flags" in body and body["flags"] is not None:
            keep = msg.flags & (FLAG_EPHEMERAL | FLAG_LOADING | FLAG_IS_VOICE_MESSAGE)
            # Only a deferred ("thinking") response may become a voice message, by its first followup.
            settable = SETTABLE_FLAGS if msg.loading else SETTABLE_FLAGS & ~FLAG_IS_VOICE_MESSAGE
            msg.flags = (int(body["flags"]) & settable & ~FLAG_EPHEMERAL) | keep
        if clear_loading:
            msg.flags &= ~FLAG_LOADING
        if files or "attachments" in body:
            msg.attachments = self._attachments_for(
                msg.channel_id, body, files or [], msg.attachments, editing=True, voice=msg.is_voice_message
            )
        replied = None
        if msg.message_reference and msg.message_reference.get("message_id"):
            target = self.messages.get(int(msg.message_reference["message_id"]))
            replied = target.author_id if target else None
        users, roles, everyone = self._mentions(msg.content, msg.allowed_mentions, msg.guild_id, replied)
        msg.mention_ids, msg.mention_role_ids, msg.mention_everyone = users, roles, everyone
        msg.edited_timestamp = iso_now()
        msg.snapshot(time.monotonic())
        return msg

    def delete(self, msg: MessageState) -> None:
        msg.deleted = True
        msg.deleted_at = time.monotonic()

    # -- queries ---------------------------------------------------------------------------
    def channel_messages(self, channel_id: int, *, include_deleted: bool = False, include_ephemeral: bool = True) -> list[MessageState]:
        out = []
        for mid in self._by_channel.get(channel_id, []):
            msg = self.messages[mid]
            if (msg.deleted and not include_deleted) or (msg.ephemeral and not include_ephemeral):
                continue
            out.append(msg)
        return out

    def history(
        self,
        channel_id: int,
        *,
        limit: int = 50,
        before: Optional[int] = None,
        after: Optional[int] = None,
        around: Optional[int] = None,
    ) -> list[MessageState]:
        """Discord's GET /channels/{id}/messages: newest first in every mode."""
        visible = sorted(self.channel_messages(channel_id, include_ephemeral=False), key=lambda m: m.id)
        limit = max(1, min(limit, L.HISTORY_LIMIT_MAX))
        if around is not None:
            older = [m for m in visible if m.id <= around][-((limit + 1) // 2):]
            newer = [m for m in visible if m.id > around][: limit // 2]
            chosen = older + newer
        elif after is not None:
            chosen = [m for m in visible if m.id > after][:limit]
        else:
            if before is not None:
                visible = [m for m in visible if m.id < before]
            chosen = visible[-limit:]
        return sorted(chosen, key=lambda m: m.id, reverse=True)

    # -- payloads --------------------------------------------------------------------------
    def payload(self, msg: MessageState, *, with_referenced: bool = True, interaction: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        world = self.world
        author = world.users[msg.author_id].payload()
        if msg.webhook_username:
            author["username"] = msg.webhook_username
        data: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": author,
            "content": msg.content,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "tts": msg.tts,
            "mention_everyone": msg.mention_everyone,
            "mentions": [world.users[u].payload() for u in msg.mention_ids if u in world.users],
            "mention_roles": [str(r) for r in msg.mention_role_ids],
            "attachments": [a.payload() for a in msg.attachments],
            "embeds": [dict(e) for e in msg.embeds],
            "pinned": False,
            "type": msg.type,
            "flags": msg.flags,
            "components": list(msg.components),
        }
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
            if msg.webhook_id is None and msg.author_id in world.guilds[msg.guild_id].members:
                data["member"] = world.member_payload(msg.guild_id, msg.author_id, with_user=False)
        if msg.nonce is not None:
            data["nonce"] = msg.nonce
        if msg.webhook_id is not None:
            data["webhook_id"] = str(msg.webhook_id)
        if msg.application_id is not None:
            data["application_id"] = str(msg.application_id)
        if interaction is not None:
            data["interaction_metadata"] = interaction
        channel = world.channels.get(msg.channel_id)
        if channel is not None and channel.is_thread:
            data["position"] = max(0, channel.message_count - 1)
        if msg.poll is not None:
            data["poll"] = msg.poll
        if msg.thread_id is not None and msg.thread_id in world.channels:
            data["thread"] = world.channels[msg.thread_id].payload()
        if msg.message_reference:
            ref = {k: (str(v) if k in ("message_id", "channel_id", "guild_id") else v) for k, v in msg.message_reference.items()}
            ref.pop("fail_if_not_exists", None)
            data["message_reference"] = ref
            if with_referenced and msg.type == 19:
                target = self.messages.get(int(msg.message_reference["message_id"]))
                data["referenced_message"] = (
                    None if target is None or target.deleted else self.payload(target, with_referenced=False)
                )
        return data
