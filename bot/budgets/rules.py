"""Pure budget vocabulary: features, kinds, the requester, the budget error and its wording, UTC days.

No I/O here; bot/budgets/engine.py does the storage side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.rendering.user_facing import UserFacingError

KINDS: tuple[str, ...] = (
    "chat_requests", "tokens", "vision_requests", "images", "credits", "speech_chars", "transcription_seconds",
    "video_seconds", "music_seconds", "embedding_tokens",
)
SCOPES: tuple[str, ...] = ("guild", "member")
UNLIMITED = -1

#: a budget kind as the member reads it: (singular, plural)
KIND_NOUNS: dict[str, tuple[str, str]] = {
    "chat_requests": ("chat request", "chat requests"),
    "tokens": ("token", "tokens"),
    "vision_requests": ("image question", "image questions"),
    "images": ("image", "images"),
    "credits": ("credit", "credits"),
    "speech_chars": ("speech character", "speech characters"),
    "transcription_seconds": ("transcription second", "transcription seconds"),
    "video_seconds": ("video second", "video seconds"),
    "music_seconds": ("music second", "music seconds"),
    "embedding_tokens": ("embedding token", "embedding tokens"),
}
KIND_LABELS: dict[str, str] = {
    "chat_requests": "chat",
    "tokens": "token",
    "vision_requests": "vision",
    "images": "image",
    "credits": "credit",
    "speech_chars": "speech",
    "transcription_seconds": "transcription",
    "video_seconds": "video",
    "music_seconds": "music",
    "embedding_tokens": "embedding",
}


class Feature(StrEnum):
    CHAT = "chat"
    VISION = "vision"
    IMAGE = "image"
    SPEECH = "speech"
    TRANSCRIPTION = "transcription"
    VIDEO = "video"
    MUSIC = "music"
    EMBEDDING = "embedding"  # the knowledge base: documents added and searched (charged in embedding tokens)
    #: a tool call in chat: a ledger row of its own, nothing counted (what a call spends — images, speech,
    #: embeddings, the chat rounds — is charged under that feature)
    TOOL = "tool"


#: the per-request counter each feature charges (images, speech characters, transcription, video and music
#: seconds, embedding tokens are counted by amount, not by request; image edits are ``Feature.IMAGE``)
REQUEST_KIND: dict[Feature, str | None] = {
    Feature.CHAT: "chat_requests",
    Feature.VISION: "vision_requests",
    Feature.IMAGE: None,
    Feature.SPEECH: None,
    Feature.TRANSCRIPTION: None,
    Feature.VIDEO: None,
    Feature.MUSIC: None,
    Feature.EMBEDDING: None,
    Feature.TOOL: None,
}
#: the amount a feature is charged by, checked on every reservation of that feature (even one asking 0)
FEATURE_AMOUNT_KIND: dict[Feature, str] = {
    Feature.SPEECH: "speech_chars",
    Feature.TRANSCRIPTION: "transcription_seconds",
    Feature.VIDEO: "video_seconds",
    Feature.MUSIC: "music_seconds",
    Feature.EMBEDDING: "embedding_tokens",
}
#: the kinds a reservation holds and a settle charges by amount (keyword arguments of reserve/settle)
AMOUNT_KINDS: tuple[str, ...] = (
    "images", "speech_chars", "transcription_seconds", "video_seconds", "music_seconds", "embedding_tokens",
)
#: features billed in tokens: refused when the token budget has nothing left
TOKEN_FEATURES = frozenset({Feature.CHAT, Feature.VISION})


def guild_pays(interaction: Any) -> bool:
    """Whether a server's budget pays for this interaction: it happened in a server that installed the
    app. A DM, a private channel, or a server where only the member installed it (a user install:
    ``authorizing_integration_owners`` without the guild key) is the member's own budget. An interaction
    saying nothing about its installs (older payloads) counts as the server's."""
    if interaction.guild_id is None:
        return False
    guild_install = getattr(interaction, "is_guild_integration", None)
    user_install = getattr(interaction, "is_user_integration", None)
    if guild_install is None or user_install is None or guild_install():
        return True
    return not user_install()


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, and where. ``guild_id`` None: not any server's budget (a DM, a user install): the
    member's own (``[quotas.user]``, or the owner's override for them)."""

    guild_id: int | None
    channel_id: int | None
    user_id: int
    role_ids: tuple[int, ...] = ()

    @classmethod
    def from_interaction(cls, interaction: Any) -> Requester:
        """The member, charged to the server when it installed the app (``guild_pays``), else to themselves."""
        guild_id = interaction.guild_id if guild_pays(interaction) else None
        return cls(
            guild_id=guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            role_ids=_role_ids(interaction.user, guild_id),
        )

    @classmethod
    def for_member(cls, guild_id: int, member: Any, channel_id: int | None = None) -> Requester:
        """A member other than the one asking (e.g. the member an admin looks at)."""
        return cls(guild_id, channel_id, member.id, _role_ids(member, guild_id))

    @classmethod
    def from_message(cls, message: Any) -> Requester:
        guild = getattr(message, "guild", None)
        guild_id = guild.id if guild is not None else None
        channel = getattr(message, "channel", None)
        return cls(
            guild_id=guild_id,
            channel_id=channel.id if channel is not None else None,
            user_id=message.author.id,
            role_ids=_role_ids(message.author, guild_id),
        )


def _role_ids(user: Any, guild_id: int | None) -> tuple[int, ...]:
    """The member's role ids, plus @everyone (whose id is the guild id) so it can carry an override.

    ``discord.Member.roles`` (public) lists the roles found in the guild's cache; the bot has the
    guilds intent, so every role an admin can pick for an override is there.
    """
    if guild_id is None:
        return ()
    ids = [int(r.id) for r in getattr(user, "roles", ()) or ()]
    if guild_id not in ids:
        ids.append(guild_id)
    return tuple(dict.fromkeys(ids))


def utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def next_reset(moment: datetime) -> datetime:
    """The next 00:00 UTC after ``moment``."""
    day = moment.astimezone(UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def format_amount(kind: str, value: float) -> str:
    if kind == "credits":
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
    return f"{int(math.floor(value + 1e-9)):,}"


def format_duration(seconds: float) -> str:
    """``3 h 12 min``, ``12 min``, ``under a minute``."""
    minutes = int(seconds // 60)
    if minutes <= 0:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    if hours:
        return f"{hours} h"
    return f"{minutes} min"


def limit_text(kind: str, limit: float) -> str:
    return "unlimited" if limit < 0 else format_amount(kind, limit)


class BudgetExceeded(UserFacingError):
    """A daily budget has no room for this request.

    ``used`` counts settled plus in-flight (reserved) usage; ``at`` is when the check happened, so
    ``user_message()`` can say how long until the reset. ``source`` is who set the limit ("config" |
    "server" | "role", as in bot/budgets/book.py) and ``role_id`` the role whose override it is, so
    the member reads whose budget ran out.
    """

    code = "budget_exceeded"

    def __init__(
        self,
        kind: str,
        scope: str,
        limit: float,
        used: float,
        resets_at: datetime,
        *,
        at: datetime | None = None,
        source: str = "config",
        role_id: int | None = None,
    ) -> None:
        self.kind = kind
        self.source = source
        self.role_id = role_id
        self.scope = scope
        self.limit = limit
        self.used = used
        self.resets_at = resets_at
        self.at = at or datetime.now(UTC)
        #: the SKU of Discord's premium button shown with the refusal (a tier's limit, ``[premium] upgrade_sku_id``)
        self.upgrade_sku_id: int | None = None
        super().__init__(f"{scope} {kind} budget exhausted ({format_amount(kind, used)}/{format_amount(kind, limit)})")

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.used)

    def user_message(self, now: datetime | None = None) -> str:
        """e.g. "This server's daily image budget (20) is used up; it resets in 3 h 12 min (00:00 UTC)."
        or "Your daily token budget (5,000, set for your role <@&42>) has only 12 left, …" """
        whose = "This server's" if self.scope == "guild" else "Your own" if self.source in ("user", "owner") else "Your"
        noun = KIND_NOUNS.get(self.kind, (self.kind, self.kind))[0]
        left = self.remaining
        state = (
            "is used up" if left <= 0
            else f"has only {format_amount(self.kind, left)} left, not enough for this request"
        )
        wait = format_duration((self.resets_at - (now or self.at)).total_seconds())
        return (
            f"{whose} daily {noun} budget ({format_amount(self.kind, self.limit)}{self._set_by()}) {state}; "
            f"it resets in {wait} ({self.resets_at.astimezone(UTC):%H:%M} UTC)."
        )

    def _set_by(self) -> str:
        """Who set a member's limit, when it is not the bot's default (a role mention renders as its name)."""
        if self.source == "free tier" or self.source.startswith("tier "):
            return f", {self.source}"  # the operator's tier (bot/budgets/ceiling.py)
        if self.scope != "member" or self.source in ("config", "user"):
            return ""
        if self.source == "owner":
            return ", set for you by the bot's owner"
        if self.source == "role":
            return ", set for one of your roles" if self.role_id is None else f", set for your role <@&{self.role_id}>"
        return ", set by this server for each member"
