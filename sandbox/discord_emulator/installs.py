"""User installs and interaction contexts, as Discord documents them (Interaction object:
``context``, ``authorizing_integration_owners``, ``app_permissions``; application commands:
``integration_types``, ``contexts``).

Pure functions over the world; the emulator keeps which users installed the app."""

from __future__ import annotations

from typing import Any, Optional

from . import permissions as P
from .models import Channel
from .world import World

# Interaction context types and application integration types
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2
GUILD_INSTALL, USER_INSTALL = 0, 1
ALL_CONTEXTS = (GUILD, BOT_DM, PRIVATE_CHANNEL)
ALL_INTEGRATION_TYPES = (GUILD_INSTALL, USER_INSTALL)
CONTEXT_NAMES = {GUILD: "a guild", BOT_DM: "a DM with the bot", PRIVATE_CHANNEL: "a private channel"}


class CommandNotAvailable(KeyError):
    """The command cannot be run there (its ``contexts`` or ``integration_types`` exclude it, or the
    app is not installed where it would need to be), so Discord's client would not offer it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def channel_context(channel: Channel, bot_user_id: int) -> int:
    """0 in a guild channel, 1 in the bot's own DM, 2 in any other DM or group DM."""
    if not channel.is_private:
        return GUILD
    return BOT_DM if bot_user_id in channel.recipient_ids else PRIVATE_CHANNEL


def command_contexts(command: dict[str, Any]) -> tuple[int, ...]:
    """Where a command may be used: a guild command only in its guild; a global one per ``contexts``
    (unset: every context, less DMs when ``dm_permission`` is false)."""
    if command.get("guild_id") is not None:
        return (GUILD,)
    contexts = command.get("contexts")
    if contexts is not None:
        return tuple(contexts)
    if command.get("dm_permission") is False:
        return (GUILD,)
    return ALL_CONTEXTS


def command_integration_types(command: dict[str, Any]) -> tuple[int, ...]:
    if command.get("guild_id") is not None:
        return (GUILD_INSTALL,)
    return tuple(command.get("integration_types") or (GUILD_INSTALL,))


def authorizing_owners(
    world: World,
    *,
    bot_user_id: int,
    user_id: int,
    channel: Channel,
    context: int,
    integration_types: tuple[int, ...],
    user_installed: bool,
) -> dict[str, str]:
    """Discord's ``authorizing_integration_owners``: "0" (guild install) is the guild id in a guild
    the bot is in, "0" in the bot's DM; "1" (user install) is the installing user. A key is there
    only when the app is installed that way and the command supports that integration type."""
    owners: dict[str, str] = {}
    if GUILD_INSTALL in integration_types:
        if context == GUILD and channel.guild_id is not None and bot_user_id in world.guilds[channel.guild_id].members:
            owners["0"] = str(channel.guild_id)
        elif context == BOT_DM:
            owners["0"] = "0"
    if USER_INSTALL in integration_types and user_installed:
        owners["1"] = str(user_id)
    return owners


def user_install_only(owners: dict[str, Any]) -> bool:
    """Only a user install authorized it (the app is not installed where it was used): Discord then
    allows at most 5 follow-up messages."""
    return set(owners) == {"1"}


def app_permissions(world: World, channel: Channel, context: int, bot_user_id: int) -> int:
    """``app_permissions``: the bot's own in a guild it is in; where it is not, @everyone's in the channel
    limited to what an interaction response can use; fixed sets in DMs and group DMs."""
    if context == BOT_DM:
        return P.DM_APP_PERMISSIONS
    if context == PRIVATE_CHANNEL:
        return P.PRIVATE_CHANNEL_APP_PERMISSIONS
    assert channel.guild_id is not None
    if bot_user_id in world.guilds[channel.guild_id].members:
        return world.permissions_for(bot_user_id, channel.id)
    return everyone_permissions(world, channel) & P.INTERACTION_RESPONSE


def everyone_permissions(world: World, channel: Channel) -> int:
    assert channel.guild_id is not None
    perms = world.everyone_role(channel.guild_id).permissions
    base = world.permission_channel(channel)
    everyone = next(((o.allow, o.deny) for o in base.overwrites if o.type == 0 and o.id == channel.guild_id), None)
    return P.apply_overwrites(perms, everyone_overwrite=everyone, role_overwrites=[], member_overwrite=None)


def check_available(
    command: dict[str, Any], context: int, owners: dict[str, str], *, where: Optional[str] = None
) -> None:
    """Raise CommandNotAvailable when Discord's client would not offer the command there."""
    name = command.get("name")
    place = where or CONTEXT_NAMES[context]
    if context not in command_contexts(command):
        raise CommandNotAvailable(f"/{name} is not allowed in {place} (contexts {list(command_contexts(command))})")
    if not owners:
        raise CommandNotAvailable(
            f"/{name} is not installed for use in {place} (integration_types "
            f"{list(command_integration_types(command))}; user installs need emu.install_for_user)"
        )
