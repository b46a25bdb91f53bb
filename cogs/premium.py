"""Discord's entitlement events → ``bot.premium`` (tiers change at once; consumables granted once)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.app.factory import GatecordBot

log = logging.getLogger(__name__)


class Premium(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot

    async def _handle(self, entitlement: discord.Entitlement, deleted: bool = False) -> None:
        try:
            if deleted:
                await self.bot.premium.handle_delete(entitlement)
            else:
                await self.bot.premium.handle(entitlement)
        except Exception:  # the reconciliation repairs what an event could not store
            log.exception("entitlement %s could not be handled", entitlement.id)

    @commands.Cog.listener()
    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        await self._handle(entitlement)

    @commands.Cog.listener()
    async def on_entitlement_update(self, entitlement: discord.Entitlement) -> None:
        await self._handle(entitlement)

    @commands.Cog.listener()
    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        await self._handle(entitlement, deleted=True)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Premium(bot))
