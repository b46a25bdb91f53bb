"""``/owner quota-user``: the bot owner's view and overrides of a member's own budget (``[quotas.user]``:
what DMs and user installs are charged to), like ``gatecord quota user`` on the command line.

Discord can't show a global command to one user only, so it is offered in the owner's DM with the bot
only (not in any server's command list), and checked at run time: anyone but the application's owner
(or a member of its team) gets a private refusal. Every reply is private.
"""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.budgets.reports import own_budget_lines
from bot.budgets.rules import limit_text
from bot.guilds.audit import InvalidSetting
from bot.rendering.replies import reply_privately
from cogs.admin import KindChoice

log = logging.getLogger(__name__)

NOT_OWNER = "Only Gatecord's owner can use `/owner`."


class Owner(commands.Cog):
    owner = app_commands.Group(
        name="owner", description="The bot owner's settings",
        allowed_contexts=app_commands.AppCommandContext(guild=False, dm_channel=True, private_channel=False),
        allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
    )

    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot

    @owner.command(name="quota-user", description="A member's own daily budget (DMs, user installs): show, set, reset")
    @app_commands.describe(
        user="The member", action="show (default), set one budget, or reset to the [quotas.user] defaults",
        kind="Which budget (for set; for reset: only this one)", limit="For set: the daily limit, -1 = unlimited",
    )
    async def quota_user(
        self, interaction: discord.Interaction, user: discord.User,
        action: Literal["show", "set", "reset"] = "show", kind: KindChoice | None = None, limit: float | None = None,
    ) -> None:
        if not await self.bot.is_owner(interaction.user):
            await reply_privately(interaction, NOT_OWNER)
            return
        q = self.bot.quotas
        actor = interaction.user.id
        try:
            if action == "set":
                if kind is None or limit is None:
                    await reply_privately(interaction,
                                          "Not changed: `set` needs a `kind` and a `limit` (-1 = unlimited).")
                    return
                old, new = await q.set_user_limit(user.id, kind, limit, actor)
                head = (f"<@{user.id}>'s own daily {kind.replace('_', ' ')} budget: "
                        f"{limit_text(kind, old)} → {limit_text(kind, new)}.")
            elif action == "reset":
                removed = await q.reset_user_limits(user.id, actor, kind)
                what = ", ".join(k.replace("_", " ") for k in sorted(removed)) or "nothing was overridden"
                head = f"<@{user.id}> is back to the [quotas.user] defaults ({what})."
            else:
                head = f"**<@{user.id}>'s own budget today** (DMs, servers where only they installed Gatecord)"
        except InvalidSetting as exc:
            await reply_privately(interaction, f"Not changed: {exc}")
            return
        lines = own_budget_lines(await q.own_limits(user.id))
        await reply_privately(interaction, "\n".join([head, *lines]))


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Owner(bot))
