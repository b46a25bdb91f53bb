"""Restart-proof media-job buttons: the ``custom_id`` carries the action, the job id and the image index.

``ImagineButton`` is a discord.py ``DynamicItem`` registered with ``bot.add_dynamic_items``; any
message carrying one of these ids works after a restart because everything else (parameters, seed,
stored files) is looked up in the database by job id. The ids keep their ``img:`` prefix for every
kind (old buttons keep working). A press goes to the handler the media buttons cog attached to the
media-job service (``bot.media_jobs.buttons``), which routes it by the job's kind; bot/ never
imports the cog.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

from bot.rendering import limits as discord_limits
from bot.rendering.replies import NO_MENTIONS

ACTIONS = ("u", "v", "reroll", "delete", "retry", "cancel")
TEMPLATE = r"img:(?P<action>u|v|reroll|delete|retry|cancel):(?P<job>[0-9]{1,19})(?::(?P<index>[1-9]))?"


class ButtonHandler(Protocol):
    async def handle_button(self, interaction: discord.Interaction, action: str, job_id: int,
                            index: int | None) -> None: ...


def custom_id(action: str, job_id: int, index: int | None = None) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    cid = f"img:{action}:{job_id}" + (f":{index}" if index is not None else "")
    assert len(cid) <= discord_limits.CUSTOM_ID
    return cid


class ImagineButton(discord.ui.DynamicItem[discord.ui.Button], template=TEMPLATE):
    def __init__(self, action: str, job_id: int, index: int | None = None, *, label: str | None = None,
                 style: discord.ButtonStyle = discord.ButtonStyle.secondary, row: int | None = None,
                 emoji: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=custom_id(action, job_id, index), emoji=emoji),
            row=row,
        )
        self.action = action
        self.job_id = job_id
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ImagineButton:
        index = match["index"]
        return cls(match["action"], int(match["job"]), int(index) if index else None)

    async def callback(self, interaction: discord.Interaction) -> None:
        service = getattr(interaction.client, "media_jobs", None)
        handler: ButtonHandler | None = getattr(service, "buttons", None)
        if handler is None:
            await interaction.response.send_message(
                "Media generation is not available right now.", ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return
        await handler.handle_button(interaction, self.action, self.job_id, self.index)


def result_view(job_id: int, count: int) -> discord.ui.View:
    """U1–Un, V1–Vn, re-roll and delete (three rows; ≤ 5 buttons a row)."""
    view = discord.ui.View(timeout=None)
    for i in range(1, count + 1):
        view.add_item(ImagineButton("u", job_id, i, label=f"U{i}", row=0))
    for i in range(1, count + 1):
        view.add_item(ImagineButton("v", job_id, i, label=f"V{i}", row=1))
    view.add_item(ImagineButton("reroll", job_id, label="Re-roll", emoji="🔄", style=discord.ButtonStyle.primary,
                                row=2))
    view.add_item(ImagineButton("delete", job_id, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger,
                                row=2))
    return view


def retry_view(job_id: int, *, with_delete: bool = True) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ImagineButton("retry", job_id, label="Retry", emoji="🔁", style=discord.ButtonStyle.primary, row=0))
    if with_delete:
        view.add_item(ImagineButton("delete", job_id, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger,
                                    row=0))
    return view


def reroll_button(job_id: int, *, row: int = 0) -> ImagineButton:
    return ImagineButton("reroll", job_id, label="Re-roll", emoji="🔄", style=discord.ButtonStyle.primary, row=row)


def delete_button(job_id: int, *, row: int = 0) -> ImagineButton:
    return ImagineButton("delete", job_id, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, row=row)


def cancel_view(job_id: int) -> discord.ui.View:
    """While a long job runs: Cancel (the requester or an admin)."""
    view = discord.ui.View(timeout=None)
    view.add_item(ImagineButton("cancel", job_id, label="Cancel", emoji="✖️", style=discord.ButtonStyle.danger, row=0))
    return view


def reroll_view(job_id: int) -> discord.ui.View:
    """Under a result that has no U/V (music, video): Re-roll and Delete."""
    view = discord.ui.View(timeout=None)
    view.add_item(reroll_button(job_id))
    view.add_item(delete_button(job_id))
    return view
