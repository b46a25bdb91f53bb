"""Plain state objects of the emulated world (users, guilds, messages, interactions, requests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from .changes import ChangeSignal

# Message flags
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_IS_VOICE_MESSAGE = 1 << 13


@dataclass
class User:
    id: int
    username: str
    global_name: Optional[str] = None
    bot: bool = False
    avatar: Optional[str] = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": self.avatar,
            "public_flags": 0,
            "flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    mentionable: bool = False
    managed: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


THREAD_TYPES = (10, 11, 12)
#: a forum channel: no messages of its own, every post a thread opened with its first message
FORUM = 15
DM, GROUP_DM = 1, 3


@dataclass
class Channel:
    id: int
    guild_id: Optional[int]
    name: str
    type: int = 0  # 0 text, 11 public thread, 12 private thread, 4 category, 15 forum
    position: int = 0
    parent_id: Optional[int] = None
    topic: Optional[str] = None
    overwrites: list[Overwrite] = field(default_factory=list)
    owner_id: Optional[int] = None  # threads
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    created_iso: str = ""
    last_message_id: Optional[int] = None
    message_count: int = 0
    voice_messages: bool = True  # False: voice messages get 403 50173 here (and in its threads)
    recipient_ids: list[int] = field(default_factory=list)  # DMs (1) and group DMs (3): who is in it

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_forum(self) -> bool:
        return self.type == FORUM

    @property
    def is_private(self) -> bool:
        """A DM (type 1) or group DM (type 3): no guild."""
        return self.guild_id is None

    def payload(self) -> dict[str, Any]:
        if self.is_private:
            return self._private_payload()
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.is_thread:
            data.update(
                owner_id=str(self.owner_id) if self.owner_id else None,
                message_count=self.message_count,
                member_count=1,
                total_message_sent=self.message_count,
                thread_metadata={
                    "archived": self.archived,
                    "auto_archive_duration": self.auto_archive_duration,
                    "archive_timestamp": self.created_iso,
                    "locked": self.locked,
                    "create_timestamp": self.created_iso,
                    "invitable": True,
                },
            )
        else:
            data.update(
                topic=self.topic,
                nsfw=False,
                permission_overwrites=[o.payload() for o in self.overwrites],
                default_auto_archive_duration=1440,
            )
        if self.is_forum:
            data.update(available_tags=[], default_reaction_emoji=None, default_sort_order=None,
                        default_forum_layout=0, default_thread_rate_limit_per_user=0)
        return data

    def _private_payload(self) -> dict[str, Any]:
        """Without ``recipients`` (World.channel_payload adds them: it knows the users)."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "flags": 0,
        }
        if self.type == GROUP_DM:
            data.update(name=self.name or None, icon=None, owner_id=str(self.owner_id) if self.owner_id else None)
        return data


@dataclass
class Member:
    guild_id: int
    user_id: int
    roles: list[int] = field(default_factory=list)
    nick: Optional[str] = None
    joined_at: str = ""


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    premium_tier: int = 0
    channel_ids: list[int] = field(default_factory=list)
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    filesize_limit: int = 10 * 1024 * 1024


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    description: Optional[str] = None
    duration_secs: Optional[float] = None  # voice messages only
    waveform: Optional[str] = None  # voice messages only: base64 of at most 256 one-byte amplitudes

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.description is not None:
            data["description"] = self.description
        if self.duration_secs is not None:
            data["duration_secs"] = self.duration_secs
        if self.waveform is not None:
            data["waveform"] = self.waveform
        return data


@dataclass
class MessageEdit:
    """One version of a message: the state right after a create or an edit."""

    at: float  # time.monotonic()
    timestamp: str  # ISO 8601
    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachment_ids: list[int]
    flags: int


@dataclass
class MessageState:
    id: int
    channel_id: int
    guild_id: Optional[int]
    author_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    allowed_mentions: Optional[dict[str, Any]] = None
    message_reference: Optional[dict[str, Any]] = None
    nonce: Optional[Any] = None
    tts: bool = False
    mention_ids: list[int] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    webhook_id: Optional[int] = None
    webhook_username: Optional[str] = None  # per-message username of a channel-webhook post
    webhook_avatar_url: Optional[str] = None
    application_id: Optional[int] = None
    interaction_id: Optional[int] = None
    thread_id: Optional[int] = None  # thread started from this message
    poll: Optional[dict[str, Any]] = None  # the message's poll, as Discord returns it (validated on create)
    reactions: list[str] = field(default_factory=list)  # emoji the bot added
    created_at: float = 0.0  # monotonic
    timestamp: str = ""
    edited_timestamp: Optional[str] = None
    edits: list[MessageEdit] = field(default_factory=list)  # edits[0] is the creation
    deleted: bool = False
    deleted_at: Optional[float] = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    @property
    def is_voice_message(self) -> bool:
        return bool(self.flags & FLAG_IS_VOICE_MESSAGE)

    @property
    def edit_count(self) -> int:
        return len(self.edits) - 1

    @property
    def last_edit_at(self) -> float:
        return self.edits[-1].at if self.edits else self.created_at

    def snapshot(self, at: float) -> None:
        self.edits.append(
            MessageEdit(
                at=at,
                timestamp=self.edited_timestamp or self.timestamp,
                content=self.content,
                embeds=[dict(e) for e in self.embeds],
                components=list(self.components),
                attachment_ids=[a.id for a in self.attachments],
                flags=self.flags,
            )
        )

    def custom_ids(self) -> list[str]:
        """Every custom_id of the message's interactive components, depth first."""
        found: list[str] = []

        def walk(items: list[Any]) -> None:
            for item in items:
                if isinstance(item, dict):
                    if "custom_id" in item:
                        found.append(item["custom_id"])
                    for key in ("components", "accessory", "component"):
                        child = item.get(key)
                        if isinstance(child, list):
                            walk(child)
                        elif isinstance(child, dict):
                            walk([child])

        walk(self.components)
        return found

    def find_component(self, custom_id: str) -> Optional[dict[str, Any]]:
        stack: list[Any] = list(self.components)
        while stack:
            item = stack.pop()
            if not isinstance(item, dict):
                continue
            if item.get("custom_id") == custom_id:
                return item
            for key in ("components", "accessory", "component"):
                child = item.get(key)
                if isinstance(child, list):
                    stack.extend(child)
                elif isinstance(child, dict):
                    stack.append(child)
        return None


@dataclass(eq=False)
class InteractionRecord:
    """What the emulator knows about one interaction it dispatched and how the bot answered."""

    id: int
    token: str
    type: int  # 2 command, 3 component, 4 autocomplete, 5 modal submit
    user_id: int
    guild_id: Optional[int]
    channel_id: int
    payload: dict[str, Any]
    created_at: float  # monotonic, at dispatch
    name: Optional[str] = None
    custom_id: Optional[str] = None
    message_id: Optional[int] = None  # component interactions: the message carrying the component
    attachment_size_limit: int = 10 * 1024 * 1024
    first_response_at: Optional[float] = None
    response_type: Optional[int] = None
    response_data: Optional[dict[str, Any]] = None
    original: Optional[MessageState] = None
    followups: list[MessageState] = field(default_factory=list)
    autocomplete_choices: Optional[list[dict[str, Any]]] = None
    modal: Optional[dict[str, Any]] = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # every callback attempt with its status
    token_expired: bool = False
    followup_posts: int = 0  # accepted POSTs to the follow-up endpoint (user-install-only: at most 5)
    _signal: Optional["ChangeSignal"] = field(default=None, repr=False)

    @property
    def acked(self) -> bool:
        return self.first_response_at is not None

    @property
    def ack_latency(self) -> Optional[float]:
        """Seconds from dispatch to the first accepted callback (None while unanswered)."""
        if self.first_response_at is None:
            return None
        return self.first_response_at - self.created_at

    @property
    def context(self) -> Optional[int]:
        """0 guild, 1 the bot's DM, 2 another DM or a group DM (as sent to the bot)."""
        return self.payload.get("context")

    @property
    def authorizing_integration_owners(self) -> dict[str, str]:
        return dict(self.payload.get("authorizing_integration_owners") or {})

    @property
    def deferred(self) -> bool:
        return self.response_type in (5, 6)

    @property
    def ephemeral(self) -> bool:
        return self.original is not None and self.original.ephemeral

    # Mirrors of the original response, so a predicate written for a message works on the record.
    @property
    def content(self) -> str:
        return self.original.content if self.original is not None else ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.original.embeds if self.original is not None else []

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.original.components if self.original is not None else []

    @property
    def attachments(self) -> list[Attachment]:
        return self.original.attachments if self.original is not None else []

    @property
    def messages(self) -> list[MessageState]:
        """Original response (if any) followed by the followups."""
        return ([self.original] if self.original is not None else []) + list(self.followups)

    async def wait_acked(self, timeout: float = 5.0) -> "InteractionRecord":
        assert self._signal is not None
        await self._signal.wait_for(lambda: self.acked, timeout, topic=self.ack_topic)
        return self

    @property
    def ack_topic(self) -> tuple[str, int]:
        """Change-signal topic the emulator signals when this interaction is acknowledged."""
        return ("ack", self.id)

    async def wait_final(
        self,
        predicate: Optional[Callable[["InteractionRecord"], Any]] = None,
        timeout: float = 10.0,
    ) -> Optional[MessageState]:
        """Wait until `predicate(record)` is truthy and return the original response message.

        The record mirrors the original's ``content``/``embeds``/``components``/``attachments``, so
        ``rec.wait_final(lambda m: "done" in m.content)`` reads naturally.
        Default predicate: acknowledged, and the original response exists and is no longer
        "thinking" (a deferred response that has been edited), or the bot answered with a
        type that carries no message (6 deferred update with an edit, 8 autocomplete, 9 modal).
        """
        assert self._signal is not None
        check = predicate or _default_final
        await self._signal.wait_for(lambda: bool(check(self)) or None, timeout)
        return self.original


def _default_final(rec: InteractionRecord) -> bool:
    if not rec.acked:
        return False
    if rec.response_type in (8, 9, 1):
        return True
    if rec.original is None:
        return False
    if rec.response_type in (6, 7):
        return rec.original.last_edit_at >= rec.created_at or bool(rec.followups)
    return not rec.original.loading


@dataclass
class RecordedRequest:
    method: str
    path: str
    route: str  # template, e.g. /channels/{channel_id}/messages
    query: dict[str, str]
    json: Any
    files: list[dict[str, Any]]
    at: float  # monotonic, when received
    status: int = 0
    response: Any = None
    rate_limited: bool = False
    #: the client's (host, port): requests with the same peer came over one kept-alive connection
    peer: Any = None


@dataclass
class RateLimitHit:
    method: str
    path: str
    route: str
    bucket: str
    retry_after: float
    is_global: bool
    scope: str
    injected: bool
    at: float
