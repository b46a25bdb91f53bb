"""Discord permission bits and the role/overwrite arithmetic that combines them."""

from __future__ import annotations

from typing import Iterable, Optional

CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_AUDIT_LOG = 1 << 7
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
MANAGE_ROLES = 1 << 28
MANAGE_WEBHOOKS = 1 << 29
USE_APPLICATION_COMMANDS = 1 << 31
USE_EXTERNAL_APPS = 1 << 50
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
MODERATE_MEMBERS = 1 << 40
SEND_VOICE_MESSAGES = 1 << 46
SEND_POLLS = 1 << 49

ALL = (1 << 51) - 1

EVERYONE_DEFAULT = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
    | SEND_POLLS
)
ADMIN_ROLE = MANAGE_GUILD | MANAGE_CHANNELS | MANAGE_MESSAGES | MANAGE_ROLES | MANAGE_THREADS | VIEW_AUDIT_LOG
MODERATOR_ROLE = MANAGE_MESSAGES | MANAGE_THREADS | MODERATE_MEMBERS | KICK_MEMBERS
BOT_ROLE = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
    | USE_APPLICATION_COMMANDS
    | SEND_VOICE_MESSAGES
    | SEND_POLLS
)

# What a member (or the bot) may do in a DM or group DM it is in: no moderation, no threads, no webhooks.
PRIVATE_CHANNEL = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | MENTION_EVERYONE
    | SEND_VOICE_MESSAGES
)
# The permissions an interaction response can use: an app's ``app_permissions`` where it has no bot
# (Discord: @everyone's, limited to these), and in (group) DMs (USE_EXTERNAL_EMOJIS only in the bot's DM).
INTERACTION_RESPONSE = ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE | USE_EXTERNAL_EMOJIS
DM_APP_PERMISSIONS = INTERACTION_RESPONSE
PRIVATE_CHANNEL_APP_PERMISSIONS = ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE


def base_permissions(*, is_owner: bool, everyone: int, role_perms: Iterable[int]) -> int:
    if is_owner:
        return ALL
    perms = everyone
    for p in role_perms:
        perms |= p
    return ALL if perms & ADMINISTRATOR else perms


def apply_overwrites(
    perms: int,
    *,
    everyone_overwrite: Optional[tuple[int, int]],
    role_overwrites: Iterable[tuple[int, int]],
    member_overwrite: Optional[tuple[int, int]],
) -> int:
    """Apply (allow, deny) overwrites in Discord's order: @everyone, roles (merged), member."""
    if perms & ADMINISTRATOR or perms == ALL:
        return perms
    if everyone_overwrite:
        allow, deny = everyone_overwrite
        perms = (perms & ~deny) | allow
    allow_r = deny_r = 0
    for allow, deny in role_overwrites:
        allow_r |= allow
        deny_r |= deny
    perms = (perms & ~deny_r) | allow_r
    if member_overwrite:
        allow, deny = member_overwrite
        perms = (perms & ~deny) | allow
    if not perms & VIEW_CHANNEL:
        return 0
    return perms
