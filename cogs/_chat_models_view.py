"""/models pages: one embed per page of models, with ◀ ▶ buttons for the member who asked."""

from __future__ import annotations

import math
from collections.abc import Sequence

import discord

from bot.rendering import limits as limits
from bot.rendering.text import truncate
from gateway_client import ModelInfo, ModelKind

__all__ = ["ModelPages", "PAGE_SIZE", "model_line", "model_pages_embed"]

PAGE_SIZE = 15
_KIND_LABEL = {ModelKind.CHAT: "chat", ModelKind.VISION: "chat + images", ModelKind.IMAGE: "images",
               ModelKind.EMBEDDING: "embeddings", ModelKind.COMPLETION: "completion", ModelKind.AUDIO: "audio"}


def _price(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.3g}"


def model_line(m: ModelInfo) -> str:
    parts = [_KIND_LABEL.get(m.kind, str(m.kind))]
    if m.provider:
        parts.append(m.provider)
    if m.context_window:
        window = f"{m.context_window // 1000}k" if m.context_window >= 1000 else f"{m.context_window}"
        parts.append(f"{window} context")
    if m.input_price_per_1m is not None or m.output_price_per_1m is not None:
        parts.append(f"{_price(m.input_price_per_1m)}/{_price(m.output_price_per_1m)} per 1M tokens")
    if m.image_price is not None:
        parts.append(f"{_price(m.image_price)} per image")
    name = m.id.replace("`", "'")
    return truncate(f"`{name}` — " + " · ".join(parts), 250)


def model_pages_embed(models: Sequence[ModelInfo], page: int, *, title: str, footer: str = "") -> discord.Embed:
    pages = max(1, math.ceil(len(models) / PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    chunk = models[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    description = "\n".join(model_line(m) for m in chunk) or "No models."
    embed = discord.Embed(title=truncate(title, limits.EMBED_TITLE),
                          description=truncate(description, limits.EMBED_DESCRIPTION), colour=discord.Colour.blurple())
    text = f"Page {page + 1}/{pages} · {len(models)} models"
    if footer:
        text += " · " + footer
    embed.set_footer(text=truncate(text, limits.EMBED_FOOTER))
    return embed


class ModelPages(discord.ui.View):
    """Previous/next buttons; only the member who ran /models can turn the pages."""

    def __init__(self, models: Sequence[ModelInfo], *, owner_id: int, title: str, footer: str = "",
                 timeout: float = 600.0) -> None:
        super().__init__(timeout=timeout)
        self.models = list(models)
        self.owner_id = owner_id
        self.title = title
        self.footer = footer
        self.page = 0
        self.pages = max(1, math.ceil(len(self.models) / PAGE_SIZE))
        self._sync()

    def embed(self) -> discord.Embed:
        return model_pages_embed(self.models, self.page, title=self.title, footer=self.footer)

    def _sync(self) -> None:
        self.previous.disabled = self.page <= 0
        self.next.disabled = self.page >= self.pages - 1

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message("Run `/models` yourself to browse the list.", ephemeral=True)
            return False
        return True

    @discord.ui.button(label="◀ Previous", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button[ModelPages]) -> None:
        self.page = max(0, self.page - 1)
        self._sync()
        await interaction.response.edit_message(embed=self.embed(), view=self)

    @discord.ui.button(label="Next ▶", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button[ModelPages]) -> None:
        self.page = min(self.pages - 1, self.page + 1)
        self._sync()
        await interaction.response.edit_message(embed=self.embed(), view=self)
