"""The emulated Discord world: users, guilds, roles, channels, members, and their payloads."""

from __future__ import annotations

from typing import Any, Optional, Union

from . import permissions as P
from .models import DM, GROUP_DM, Channel, Guild, Member, Overwrite, Role, User
from .snowflake import SnowflakeFactory, iso_now

UserRef = Union[str, int, User, Any]


class World:
    """Holds every entity; knows nothing about HTTP or websockets."""

    def __init__(self, ids: SnowflakeFactory) -> None:
        self.ids = ids
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}

    # -- creation --------------------------------------------------------------------------
    def add_user(self, username: str, *, bot: bool = False, global_name: Optional[str] = None) -> User:
        user = User(id=self.ids.next(), username=username, global_name=global_name or username.title(), bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, owner_id: int, *, shard: Optional[tuple[int, int]] = None) -> Guild:
        """A new guild; with ``shard=(shard_id, shard_count)`` its id lands on that shard."""
        gid = self.ids.next() if shard is None else self.ids.next_on_shard(*shard)
        guild = Guild(id=gid, name=name, owner_id=owner_id)
        guild.roles[gid] = Role(id=gid, guild_id=gid, name="@everyone", permissions=P.EVERYONE_DEFAULT, position=0)
        self.guilds[gid] = guild
        return guild

    def add_role(self, guild_id: int, name: str, permissions: int = 0, *, managed: bool = False) -> Role:
        guild = self.guilds[guild_id]
        role = Role(
            id=self.ids.next(),
            guild_id=guild_id,
            name=name,
            permissions=permissions,
            position=len(guild.roles),
            managed=managed,
        )
        guild.roles[role.id] = role
        return role

    def add_member(self, guild_id: int, user_id: int, roles: Optional[list[int]] = None) -> Member:
        guild = self.guilds[guild_id]
        member = Member(guild_id=guild_id, user_id=user_id, roles=list(roles or []), joined_at=iso_now())
        guild.members[user_id] = member
        return member

    def add_channel(
        self,
        guild_id: int,
        name: str,
        *,
        type: int = 0,
        parent_id: Optional[int] = None,
        topic: Optional[str] = None,
        owner_id: Optional[int] = None,
        channel_id: Optional[int] = None,
    ) -> Channel:
        guild = self.guilds[guild_id]
        cid = channel_id if channel_id is not None else self.ids.next()
        position = sum(1 for c in guild.channel_ids if not self.channels[c].is_thread)
        channel = Channel(
            id=cid,
            guild_id=guild_id,
            name=name,
            type=type,
            position=position,
            parent_id=parent_id,
            topic=topic,
            owner_id=owner_id,
            created_iso=iso_now(),
        )
        self.channels[cid] = channel
        guild.channel_ids.append(cid)
        return channel

    def add_private_channel(self, recipient_ids: list[int], *, group: bool = False, name: str = "") -> Channel:
        """A DM (type 1, two recipients) or a group DM (type 3, owned by the first recipient)."""
        if not group and len(recipient_ids) != 2:
            raise ValueError("a DM has exactly two recipients")
        channel = Channel(
            id=self.ids.next(),
            guild_id=None,
            name=name,
            type=GROUP_DM if group else DM,
            owner_id=recipient_ids[0] if group else None,
            created_iso=iso_now(),
            recipient_ids=list(recipient_ids),
        )
        self.channels[channel.id] = channel
        return channel

    def find_dm(self, a: int, b: int) -> Optional[Channel]:
        return next(
            (c for c in self.channels.values() if c.type == DM and set(c.recipient_ids) == {a, b}), None
        )

    def can_access(self, user_id: int, channel: Channel) -> bool:
        """Whether ``user_id`` is in the channel's guild, or among its recipients (DMs)."""
        if channel.is_private:
            return user_id in channel.recipient_ids
        guild = self.guilds.get(channel.guild_id or 0)
        return guild is not None and user_id in guild.members

    # -- lookups ---------------------------------------------------------------------------
    def user(self, ref: UserRef) -> User:
        if isinstance(ref, User):
            return ref
        if not isinstance(ref, (int, str)) and isinstance(getattr(ref, "id", None), int):
            ref = ref.id  # a discord.py User/Member/Object
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return self.users[int(ref)]
        for user in self.users.values():
            if user.username == ref:
                return user
        raise KeyError(f"unknown user {ref!r}")

    def role_by_name(self, guild_id: int, name: str) -> Role:
        for role in self.guilds[guild_id].roles.values():
            if role.name == name:
                return role
        raise KeyError(f"unknown role {name!r}")

    def everyone_role(self, guild_id: int) -> Role:
        return self.guilds[guild_id].roles[guild_id]

    def permission_channel(self, channel: Channel) -> Channel:
        """Threads take their permissions from the parent channel."""
        if channel.is_thread and channel.parent_id in self.channels:
            return self.channels[channel.parent_id]
        return channel

    # -- permissions -----------------------------------------------------------------------
    def guild_permissions(self, guild_id: int, user_id: int) -> int:
        guild = self.guilds[guild_id]
        member = guild.members.get(user_id)
        if member is None:
            return 0
        role_perms = [guild.roles[r].permissions for r in member.roles if r in guild.roles]
        return P.base_permissions(
            is_owner=guild.owner_id == user_id,
            everyone=self.everyone_role(guild_id).permissions,
            role_perms=role_perms,
        )

    def permissions_for(self, user_id: int, channel_id: int) -> int:
        channel = self.channels[channel_id]
        if channel.guild_id is None:
            return P.PRIVATE_CHANNEL if user_id in channel.recipient_ids else 0
        perms = self.guild_permissions(channel.guild_id, user_id)
        base = self.permission_channel(channel)
        member = self.guilds[channel.guild_id].members.get(user_id)
        roles = set(member.roles) if member else set()
        ev = mem = None
        role_ows = []
        for ow in base.overwrites:
            if ow.type == 0 and ow.id == channel.guild_id:
                ev = (ow.allow, ow.deny)
            elif ow.type == 0 and ow.id in roles:
                role_ows.append((ow.allow, ow.deny))
            elif ow.type == 1 and ow.id == user_id:
                mem = (ow.allow, ow.deny)
        return P.apply_overwrites(perms, everyone_overwrite=ev, role_overwrites=role_ows, member_overwrite=mem)

    def set_overwrite(self, channel_id: int, target_id: int, *, type: int, allow: int = 0, deny: int = 0) -> None:
        channel = self.channels[channel_id]
        channel.overwrites = [o for o in channel.overwrites if o.id != target_id]
        channel.overwrites.append(Overwrite(id=target_id, type=type, allow=allow, deny=deny))

    # -- payloads --------------------------------------------------------------------------
    def member_payload(self, guild_id: int, user_id: int, *, with_user: bool = True) -> dict[str, Any]:
        member = self.guilds[guild_id].members[user_id]
        data: dict[str, Any] = {
            "roles": [str(r) for r in member.roles],
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "joined_at": member.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.users[user_id].payload()
        return data

    def channel_payload(
        self, channel_id: int, *, for_user: Optional[int] = None, exclude: Optional[int] = None
    ) -> dict[str, Any]:
        """``for_user``: adds that user's ``permissions`` (guild channels); ``exclude``: a DM's
        ``recipients`` leave that user (the viewer, as Discord does for the bot) out."""
        channel = self.channels[channel_id]
        data = channel.payload()
        if channel.is_private:
            data["recipients"] = [self.users[u].payload() for u in channel.recipient_ids if u != exclude]
            return data
        if for_user is not None:
            data["permissions"] = str(self.permissions_for(for_user, channel_id))
        return data

    def guild_payload(self, guild_id: int) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        text_channels = [c for c in guild.channel_ids if not self.channels[c].is_thread]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": guild.locale,
            "system_channel_id": str(text_channels[0]) if text_channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "max_members": 500000,
            "premium_progress_bar_enabled": False,
        }

    def guild_create_payload(self, guild_id: int) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        data = self.guild_payload(guild_id)
        data.update(
            joined_at=iso_now(),
            large=False,
            unavailable=False,
            member_count=len(guild.members),
            members=[self.member_payload(guild_id, uid) for uid in guild.members],
            channels=[self.channels[c].payload() for c in guild.channel_ids if not self.channels[c].is_thread],
            threads=[self.channels[c].payload() for c in guild.channel_ids if self.channels[c].is_thread],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return data
