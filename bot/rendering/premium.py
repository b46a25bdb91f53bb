"""Discord's premium button on a refusal: the one place that decides whether a member sees it.

A ``BudgetExceeded`` refused by the operator's tier (not the server's own limit) carries
``upgrade_sku_id`` when ``[premium] upgrade_sku_id`` is set (bot/budgets/engine.py); the member then sees
the SKU's premium button (``discord.ui.Button(sku_id=…)``: style premium, no label, custom id or url).
"""

from __future__ import annotations

import discord

__all__ = ["premium_view", "upgrade_sku"]


def upgrade_sku(cause: BaseException | None) -> int | None:
    """The SKU a member refused by ``cause`` could buy to lift the limit, if any."""
    sku = getattr(cause, "upgrade_sku_id", None)
    return int(sku) if isinstance(sku, int) and sku > 0 else None


def premium_view(cause: BaseException | None) -> discord.ui.View | None:
    """A view holding the premium button for ``cause``'s SKU; None when there is nothing to buy."""
    sku = upgrade_sku(cause)
    if sku is None:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.premium, sku_id=sku))
    return view
