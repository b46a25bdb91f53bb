"""The page's shop: the application's SKUs with "buy" (a member's purchase in Discord's store, which
grants an entitlement and sends ENTITLEMENT_CREATE), and the active entitlements with "end" (the
subscription ends: ENTITLEMENT_UPDATE; a consumable is refunded: ENTITLEMENT_DELETE). A premium
button in a message is drawn as Discord's shop button; clicking it is the same "buy"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from aiohttp import web

from sandbox.discord_emulator.monetization import SKU_CONSUMABLE, SKU_DURABLE, SKU_GUILD_SUBSCRIPTION, SKU_SUBSCRIPTION

from .actions import BadAction, _int, read_action

if TYPE_CHECKING:
    from sandbox.discord_emulator import DiscordEmulator

KINDS = {SKU_SUBSCRIPTION: "subscription", SKU_CONSUMABLE: "consumable", SKU_DURABLE: "one-time purchase"}


def shop_view(emu: "DiscordEmulator") -> dict[str, Any]:
    """SKUs (with who buys them: the server or the member) and the active entitlements, ids as strings."""
    m = emu.monetization
    skus = [
        {
            "id": str(sku_id),
            "name": sku["name"],
            "kind": KINDS.get(sku["type"], "other"),
            "scope": "server" if sku["flags"] & SKU_GUILD_SUBSCRIPTION else "user",
        }
        for sku_id, sku in m.skus.items()
    ]
    entitlements = []
    for ent in m.all_active():
        sku = m.skus.get(int(ent["sku_id"]))
        guild = emu.world.guilds.get(int(ent["guild_id"])) if ent.get("guild_id") else None
        user = emu.world.users.get(int(ent["user_id"])) if ent.get("user_id") else None
        entitlements.append(
            {
                "id": ent["id"],
                "sku_id": ent["sku_id"],
                "sku_name": sku["name"] if sku else ent["sku_id"],
                "kind": KINDS.get(sku["type"], "other") if sku else "other",
                "guild_id": ent.get("guild_id"),
                "guild_name": guild.name if guild else None,
                "user_id": ent.get("user_id"),
                "user_name": (user.global_name or user.username) if user else None,
            }
        )
    return {"skus": skus, "entitlements": entitlements}


class ShopActions:
    """``POST /api/buy`` and ``POST /api/end-entitlement``; refusals are ``400 {"error"}``."""

    def __init__(self, emu: "DiscordEmulator", wrap: Callable[[Callable[[web.Request], Any]], Any]) -> None:
        self.emu = emu
        self.wrap = wrap

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/buy", self.wrap(self.buy)),
            web.post("/api/end-entitlement", self.wrap(self.end)),
        ]

    async def buy(self, request: web.Request) -> web.Response:
        """``{sku_id, user, channel_id}``: the member buys the SKU where they are (a server SKU for the
        channel's server)."""
        data, _ = await read_action(request)
        sku_id = _int(data.get("sku_id"), "sku_id")
        user = self.emu.world.user(str(data.get("user") or "alice"))
        guild_id = self._guild(data)
        ent = await self.emu.buy(sku_id, user=user.id, guild_id=guild_id)
        return web.json_response({"entitlement_id": ent["id"]})

    async def end(self, request: web.Request) -> web.Response:
        """``{entitlement_id}``: a subscription ends now; a consumable or one-time purchase is refunded
        (deleted), as Discord does for those."""
        data, _ = await read_action(request)
        eid = _int(data.get("entitlement_id"), "entitlement_id")
        ent = self.emu.entitlements.get(eid)
        if ent is None:
            raise BadAction(f"unknown entitlement {eid}")
        sku = self.emu.monetization.skus.get(int(ent["sku_id"]))
        refund = sku is None or sku["type"] != SKU_SUBSCRIPTION
        await self.emu.end_entitlement(eid, delete=refund)
        return web.json_response({"entitlement_id": str(eid), "deleted": refund})

    def _guild(self, data: dict[str, Any]) -> Optional[int]:
        raw = data.get("channel_id")
        if not raw:
            return self.emu.guild_id
        channel = self.emu.world.channels.get(_int(raw, "channel_id"))
        if channel is None:
            raise BadAction(f"unknown channel {raw}")
        return channel.guild_id
