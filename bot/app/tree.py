"""The bot's command tree, with the one error handler every application command shares.

Whatever discord.py raises around a command (an option it could not convert, a failed check, an
exception that escaped the command) ends as one private, specific sentence for the member; only
unexpected exceptions are logged with their traceback.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.guilds.permissions import NotServerAdmin
from bot.rendering.errors import plain_text, user_error_message
from bot.rendering.replies import ERROR_PREFIX, reply_privately

log = logging.getLogger(__name__)

__all__ = ["GatecordTree", "command_error_message"]


def command_error_message(interaction: discord.Interaction, error: app_commands.AppCommandError) -> str:
    """The sentence the member sees for ``error`` (without the warning prefix)."""
    name = interaction.command.qualified_name if interaction.command else "this command"
    if isinstance(error, (NotServerAdmin, app_commands.MissingPermissions)):
        return f"You need the **Manage Server** permission to use `/{name}`."
    if isinstance(error, app_commands.NoPrivateMessage):
        return f"`/{name}` works only in a server."
    if isinstance(error, app_commands.TransformerError):
        return f"I couldn't read one of the options: {plain_text(str(error), 'invalid value')}."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    return user_error_message(original)  # logs an unexpected exception with the reference it shows


class GatecordTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        text = command_error_message(interaction, error)
        if not isinstance(error, app_commands.CheckFailure):  # a refusal is an answer; a failure is flagged
            text = ERROR_PREFIX + text
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        try:
            await reply_privately(interaction, text, cause=original)
        except discord.HTTPException:
            log.warning("could not tell the member why /%s failed",
                        interaction.command.qualified_name if interaction.command else "?")
