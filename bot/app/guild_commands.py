"""``GuildCommands`` (``bot.guild_commands``): the commands a guild gets from its own gateway.

Every cog is loaded whatever the operator's gateway offers. A cog whose commands depend on a
capability (video, music, images, voice, embeddings) hands them over in its ``setup`` with
``offer(key, commands_for, every=...)``: ``commands_for(client)`` says which of them a gateway client
offers. The global tree keeps what the operator's gateway offers (the rest is taken out of it); a guild
whose own gateway offers more gets those as guild commands (``tree.add_command(cmd, guild=…)`` and
``tree.sync(guild=…)``, discord.py's public API). A guild command is never added under the name and
type of a global one (Discord would show both).

``refresh(guild_id)`` (after ``/gateway set`` and ``/gateway remove``) recomputes a guild's set and
syncs it only when it changed; ``refresh_all()`` at start-up does it for every guild with its own
gateway (``guild_ids``: a callable, so that the store that knows them can come later).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.app.sharding import held_shards

if TYPE_CHECKING:
    from bot.gateways.directory import GatewayDirectory
    from gateway_client import GatewayClient

__all__ = ["AppCommand", "GuildCommands", "GuildIds"]

log = logging.getLogger(__name__)

AppCommand = app_commands.Command[Any, ..., Any] | app_commands.Group | app_commands.ContextMenu
#: the guilds with their own gateway (a list, or an awaitable of one)
GuildIds = Callable[[], Iterable[int] | Awaitable[Iterable[int]]]
#: (name, type, which object): a different object under the same name is a different payload
Signature = frozenset[tuple[str, int, int]]


@dataclass(frozen=True)
class _Offering:
    key: str
    commands_for: Callable[[GatewayClient], Sequence[AppCommand]]
    every: tuple[AppCommand, ...]


def command_type(command: AppCommand) -> discord.AppCommandType:
    return command.type if isinstance(command, app_commands.ContextMenu) else discord.AppCommandType.chat_input


class GuildCommands:
    def __init__(self, bot: Any, *, guild_ids: GuildIds | None = None) -> None:
        #: a discord.py ``Client`` with ``tree`` and ``gateways`` (``GatewayDirectory``)
        self.bot = bot
        self._guild_ids = guild_ids
        self._offerings: dict[str, _Offering] = {}
        #: guild -> the commands this process added to its scope
        self._added: dict[int, list[AppCommand]] = {}
        #: guild -> what was last synced to Discord (absent: never synced by this process)
        self._synced: dict[int, Signature] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    @property
    def tree(self) -> app_commands.CommandTree[Any]:
        return self.bot.tree

    @property
    def gateways(self) -> GatewayDirectory:
        return self.bot.gateways

    # -- registration (cog setup) ----------------------------------------------------------------------

    def offer(self, key: str, commands_for: Callable[[GatewayClient], Sequence[AppCommand]], *,
              every: Sequence[AppCommand]) -> list[AppCommand]:
        """Register ``every`` command of a capability (``key``, e.g. "video"): those ``commands_for`` the
        operator's gateway go in the global tree, the others out of it (a cog's own commands were
        added by ``add_cog``/``cog_load``). Returns the global ones."""
        globally = list(commands_for(self.gateways.operator))
        for command in every:
            if not _contains(globally, command) and self._global(command) is command:
                self.tree.remove_command(command.name, type=command_type(command))
        for command in globally:
            self.tree.add_command(command, override=True)
        self._offerings[key] = _Offering(key, commands_for, tuple(every))
        return globally

    def withdraw(self, key: str) -> None:
        """Forget an offering (its cog unloads); guild scopes drop its commands at their next refresh."""
        self._offerings.pop(key, None)

    # -- per guild -------------------------------------------------------------------------------------

    def wanted(self, client: GatewayClient) -> list[AppCommand]:
        """The guild commands a guild served by ``client`` gets: what it offers and the global tree
        does not already have under that name and type."""
        out: list[AppCommand] = []
        for offering in self._offerings.values():
            for command in offering.commands_for(client):
                if self._global(command) is None and not _contains(out, command):
                    out.append(command)
        return out

    def commands_of(self, guild_id: int) -> list[AppCommand]:
        """The guild commands this process gave ``guild_id``."""
        return list(self._added.get(guild_id, []))

    async def refresh(self, guild_id: int) -> bool:
        """Give ``guild_id`` the guild commands its gateway offers now (none when it has no gateway of its
        own); sync it with Discord when that changed. True when it was synced."""
        lock = self._locks.setdefault(guild_id, asyncio.Lock())
        async with lock:
            client = await self.gateways.for_guild(guild_id)
            wanted = self.wanted(client) if client is not self.gateways.operator else []
            guild = discord.Object(id=guild_id)
            for command in self._added.get(guild_id, []):
                if not _contains(wanted, command):
                    self.tree.remove_command(command.name, guild=guild, type=command_type(command))
            for command in wanted:
                self.tree.add_command(command, guild=guild, override=True)
            if wanted:
                self._added[guild_id] = wanted
            else:
                self._added.pop(guild_id, None)
            signature = _signature(wanted)
            last = self._synced.get(guild_id)
            if last == signature or (last is None and not wanted):
                return False  # unchanged (a guild never given any has nothing to take back)
            await self.tree.sync(guild=guild)
            self._synced[guild_id] = signature
            log.info("guild %s: its own gateway's commands synced (%s)", guild_id,
                     ", ".join(sorted(c.name for c in wanted)) or "none")
            return True

    async def refresh_all(self, guild_ids: Iterable[int] | None = None) -> int:
        """``refresh`` every guild of ``guild_ids`` (default: the guilds with their own gateway); a guild
        whose sync fails is logged and skipped. Returns how many were synced."""
        if guild_ids is None:
            guild_ids = await self.held_guilds()
        synced = 0
        for guild_id in guild_ids:
            try:
                synced += await self.refresh(guild_id)
            except discord.HTTPException as exc:
                log.warning("guild %s: its own gateway's commands could not be synced: %s", guild_id, exc)
            except Exception as exc:  # its gateway row could not be read: it keeps what it had
                log.warning("guild %s: its own gateway's commands were not refreshed: %r", guild_id, exc)
        return synced

    async def held_guilds(self) -> list[int]:
        """The guilds with their own gateway whose events come to this process: all of them while the
        shard count is left to Discord (one process), else those on the shards it holds (``[discord]
        shard_ids``), so that many processes do not each sync every such server's commands."""
        if self._guild_ids is None:
            return []
        found = self._guild_ids()
        if inspect.isawaitable(found):
            found = await found
        count = getattr(self.bot, "shard_count", None)
        held = held_shards(getattr(self.bot, "shard_ids", None), count)
        if held is None or not count:
            return list(found)
        return [g for g in found if (g >> 22) % count in held]

    def _global(self, command: AppCommand) -> AppCommand | None:
        """The global command with ``command``'s name and type, if any."""
        found = self.tree.get_command(command.name, type=command_type(command))
        return found


def _contains(commands: Sequence[AppCommand], command: AppCommand) -> bool:
    return any(c is command for c in commands)


def _signature(commands: Sequence[AppCommand]) -> Signature:
    return frozenset((c.name, command_type(c).value, id(c)) for c in commands)
