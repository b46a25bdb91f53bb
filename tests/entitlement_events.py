"""A bare discord.py client that queues the entitlement events it receives (emulator and shop tests)."""

from __future__ import annotations

import asyncio

import discord


class EntitlementListener(discord.Client):
    """``events`` gets ("create" | "update" | "delete", the entitlement) as discord.py dispatches them."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default())
        self.events: asyncio.Queue[tuple[str, discord.Entitlement]] = asyncio.Queue()

    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        await self.events.put(("create", entitlement))

    async def on_entitlement_update(self, entitlement: discord.Entitlement) -> None:
        await self.events.put(("update", entitlement))

    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        await self.events.put(("delete", entitlement))
