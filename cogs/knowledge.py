"""The server knowledge base: ``/knowledge add|list|remove|search`` and the message command "Add to knowledge".

A Discord adapter only: options in → ``bot.knowledge`` (bot/knowledge/service.py owns the work) →
Discord out. Registered only when the gateway offers embeddings (``bot.knowledge.available``).
Adding, listing and removing need Manage Server (checked at run time too: a client can send the
interaction anyway); searching is for every member, unless the channel's ``knowledge_search`` setting
(/config channel, inherited by threads) turns it off. Every reply is private.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.budgets.rules import Requester
from bot.guilds.permissions import ADMIN_PERMISSIONS, require_server_admin
from bot.knowledge.extract import SUPPORTED_SUFFIXES
from bot.knowledge.service import AddResult
from bot.knowledge.store import Document, Hit
from bot.rendering import limits
from bot.rendering.errors import user_error_message
from bot.rendering.replies import ERROR_PREFIX, reply_privately
from bot.rendering.text import truncate
from bot.rendering.user_facing import UserFacingError
from cogs._model_choices import last_gateway_for

log = logging.getLogger(__name__)

ADD_TO_KNOWLEDGE = "Add to knowledge"
MESSAGE_LINK = re.compile(
    r"https?://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/(\d+|@me)/(\d+)/(\d+)", re.IGNORECASE)
MAX_CHOICES = 25
TITLE_CHARS = 100
LIST_LIMIT = 50


@dataclass(frozen=True, slots=True)
class MessageLink:
    guild_id: int | None
    channel_id: int
    message_id: int


def parse_message_link(text: str) -> MessageLink | None:
    """The ids of a Discord message link (``https://discord.com/channels/<guild>/<channel>/<message>``)."""
    match = MESSAGE_LINK.search(text.strip())
    if match is None:
        return None
    guild = match.group(1)
    return MessageLink(None if guild == "@me" else int(guild), int(match.group(2)), int(match.group(3)))


def message_document_text(message: discord.Message) -> str:
    """A message's text as a document: its content, then each embed's title, description and fields."""
    pieces = [message.content] if message.content.strip() else []
    for embed in message.embeds:
        if embed.title:
            pieces.append(f"# {embed.title}")
        if embed.description:
            pieces.append(embed.description)
        for fld in embed.fields:
            name, value = fld.name or "", fld.value or ""
            pieces.append(f"{name}\n{value}" if name and value else name + value)
    return "\n\n".join(p for p in pieces if p.strip())


def message_title(message: discord.Message, text: str) -> str:
    """The first line of the message's text (or who wrote it)."""
    first = next((line.strip(" #*_>`") for line in text.splitlines() if line.strip(" #*_>`")), "")
    if first:
        return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "…"
    return f"Message by {message.author.display_name}"


def source_text(source: str) -> str:
    """A source as the member reads it: a message link as is (Discord shows it), a file name in code."""
    return source if source.startswith(("https://", "http://")) else f"`{source}`"


def added_text(result: AddResult) -> str:
    doc = result.document
    name = f"**{discord.utils.escape_markdown(doc.title)}** ({source_text(doc.source)})"
    if result.unchanged:
        return f"{name} is already in the knowledge base and has not changed: nothing was embedded."
    verb = "Updated" if result.replaced else "Added"
    return (f"{verb} {name}: {doc.chunk_count:,} chunk{'s' if doc.chunk_count != 1 else ''}, "
            f"{doc.tokens:,} embedding tokens.")


def list_text(documents: list[Document]) -> str:
    if not documents:
        return "The knowledge base of this server is empty. Add documents with `/knowledge add`."
    lines = [f"**Knowledge base of this server** ({len(documents)} document{'s' if len(documents) != 1 else ''})"]
    for doc in documents[:LIST_LIMIT]:
        lines.append(f"• **{discord.utils.escape_markdown(doc.title)}** — {source_text(doc.source)} · "
                     f"{doc.chunk_count:,} chunks · added by <@{doc.added_by}> <t:{int(doc.added_at)}:R>")
    if len(documents) > LIST_LIMIT:
        lines.append(f"… and {len(documents) - LIST_LIMIT} more.")
    return truncate("\n".join(lines), limits.MESSAGE_CONTENT)


def search_text(query: str, hits: list[Hit]) -> str:
    shown = truncate(query, 100)
    if not hits:
        return f"Nothing in this server's knowledge base matches “{shown}”."
    head = f"🔎 {len(hits)} result{'s' if len(hits) != 1 else ''} for “{shown}”:"
    room = (limits.MESSAGE_CONTENT - len(head) - 40) // len(hits)
    parts = [head]
    for number, hit in enumerate(hits, start=1):
        where = discord.utils.escape_markdown(_place(hit))
        line = f"**{number}. {where}** — {source_text(hit.source)} (score {hit.score:.2f})"
        excerpt = " ".join(hit.text.split())
        budget = max(40, room - len(line) - 4)
        parts.append(f"{line}\n> {truncate(excerpt, budget)}")
    return truncate("\n".join(parts), limits.MESSAGE_CONTENT)


def _place(hit: Hit) -> str:
    """Where a hit is: the document's title and the chunk's heading path (which often begins with the title)."""
    if not hit.heading:
        return hit.title
    return hit.heading if hit.heading.startswith(hit.title) else f"{hit.title} › {hit.heading}"


def supported_attachment(attachment: discord.Attachment) -> bool:
    name = attachment.filename.lower()
    return any(name.endswith(suffix) for suffix in SUPPORTED_SUFFIXES)


class Knowledge(commands.Cog):
    knowledge = app_commands.Group(
        name="knowledge", description="This server's knowledge base: documents the bot searches", guild_only=True,
    )

    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.add_menu = app_commands.ContextMenu(name=ADD_TO_KNOWLEDGE, callback=self.add_message_menu)
        self.add_menu.default_permissions = ADMIN_PERMISSIONS
        self.add_menu.guild_only = True
        self.add_menu.add_check(require_server_admin)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.add_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.add_menu.name, type=self.add_menu.type)

    # -- add ------------------------------------------------------------------------------------------

    @knowledge.command(name="add", description="Add a file (txt, md, html, pdf) or a message to the knowledge base")
    @app_commands.describe(file="A .txt, .md, .html or .pdf file", link="A link to a message of this server")
    @app_commands.check(require_server_admin)
    async def add(self, interaction: discord.Interaction, file: discord.Attachment | None = None,
                  link: str | None = None) -> None:
        if (file is None) == (link is None):
            await reply_privately(interaction, "Give either a file or a message link (one of the two).")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            result: AddResult | None
            async with self.bot.chat.tracked():  # a restart lets it finish (bot.drain)
                if file is not None:
                    result = await self._add_attachment(interaction, file)
                else:
                    assert link is not None
                    message = await self._linked_message(interaction, link)
                    if message is None:
                        return
                    result = await self._add_message_text(interaction, message)
        except Exception as exc:
            await _tell(interaction, exc, self.bot.knowledge)
            return
        await reply_privately(interaction, added_text(result) if result else "That message has no text to add.")

    async def add_message_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message command: the message's text, and each document file attached to it."""
        files = [a for a in message.attachments if supported_attachment(a)]
        if not message_document_text(message) and not files:
            await reply_privately(interaction, "That message has no text or document file (.txt, .md, .html, "
                                               ".pdf) to add to the knowledge base.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        lines: list[str] = []
        try:
            async with self.bot.chat.tracked():
                result = await self._add_message_text(interaction, message)
                if result is not None:
                    lines.append(added_text(result))
                for attachment in files:
                    try:
                        lines.append(added_text(await self._add_attachment(interaction, attachment)))
                    except Exception as exc:  # one bad file does not stop the others
                        lines.append(ERROR_PREFIX + _sentence(interaction, exc, self.bot.knowledge))
        except Exception as exc:
            await _tell(interaction, exc, self.bot.knowledge)
            return
        await reply_privately(interaction, "\n".join(lines))

    async def _add_attachment(self, interaction: discord.Interaction, attachment: discord.Attachment) -> AddResult:
        service = self.bot.knowledge
        data = await service.download(attachment.url, attachment.filename, content_type=attachment.content_type,
                                      size=attachment.size)
        return await service.add_file(Requester.from_interaction(interaction), filename=attachment.filename,
                                      data=data, content_type=attachment.content_type)

    async def _add_message_text(self, interaction: discord.Interaction, message: discord.Message) -> AddResult | None:
        text = message_document_text(message)
        if not text:
            return None
        return await self.bot.knowledge.add_text(Requester.from_interaction(interaction), source=message.jump_url,
                                                 title=message_title(message, text), text=text)

    async def _linked_message(self, interaction: discord.Interaction, link: str) -> discord.Message | None:
        """The message a link points to, in this server and in a channel the member can read (else a
        private refusal and None)."""
        parsed = parse_message_link(link)
        if parsed is None:
            await reply_privately(interaction, "That is not a message link: copy one with **Copy Message Link**.")
            return None
        if parsed.guild_id != interaction.guild_id or interaction.guild is None:
            await reply_privately(interaction, "That message is in another server: only this server's messages "
                                               "can be added to its knowledge base.")
            return None
        channel = interaction.guild.get_channel_or_thread(parsed.channel_id)
        member = interaction.user
        if not isinstance(channel, discord.TextChannel | discord.Thread | discord.VoiceChannel) or not isinstance(
                member, discord.Member):
            await reply_privately(interaction, "I can't find the channel of that message.")
            return None
        allowed = channel.permissions_for(member)
        if not (allowed.read_messages and allowed.read_message_history):
            await reply_privately(interaction, "You can't read the channel of that message, so you can't add it.")
            return None
        try:
            return await channel.fetch_message(parsed.message_id)
        except discord.NotFound:
            await reply_privately(interaction, "That message no longer exists.")
        except discord.Forbidden:
            await reply_privately(interaction, "I'm not allowed to read the channel of that message.")
        return None

    # -- list, remove ---------------------------------------------------------------------------------

    @knowledge.command(name="list", description="The documents in this server's knowledge base")
    @app_commands.check(require_server_admin)
    async def list_documents(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await reply_privately(interaction, list_text(await self.bot.knowledge.list(interaction.guild_id)))

    @knowledge.command(name="remove", description="Remove a document (and all its chunks) from the knowledge base")
    @app_commands.describe(document="The document to remove")
    @app_commands.check(require_server_admin)
    async def remove(self, interaction: discord.Interaction, document: str) -> None:
        assert interaction.guild_id is not None
        service = self.bot.knowledge
        target = await self._document(interaction.guild_id, document)
        removed = await service.remove(interaction.guild_id, target.id) if target is not None else None
        if removed is None:
            await reply_privately(interaction, "There is no such document in this server's knowledge base "
                                               "(pick one from the list).")
            return
        await reply_privately(interaction, f"Removed **{discord.utils.escape_markdown(removed.title)}** "
                                           f"({source_text(removed.source)}) and its {removed.chunk_count:,} chunks.")

    @remove.autocomplete("document")
    async def _document_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        wanted = current.lower().strip()
        documents = await self.bot.knowledge.list(interaction.guild_id)
        found = [d for d in documents if wanted in d.title.lower() or wanted in d.source.lower()]
        return [app_commands.Choice(name=_choice_name(d), value=str(d.id)) for d in found[:MAX_CHOICES]]

    async def _document(self, guild_id: int, given: str) -> Document | None:
        """The document an option names: its id (an autocomplete choice), else its exact source or title."""
        documents = await self.bot.knowledge.list(guild_id)
        given = given.strip()
        if given.isdigit():
            by_id = next((d for d in documents if d.id == int(given)), None)
            if by_id is not None:
                return by_id
        return next((d for d in documents if given in (d.source, d.title)), None)

    # -- search ---------------------------------------------------------------------------------------

    @knowledge.command(name="search", description="Search this server's knowledge base")
    @app_commands.describe(query="What you are looking for")
    async def search(self, interaction: discord.Interaction, query: app_commands.Range[str, 1, 500]) -> None:
        assert interaction.guild_id is not None
        parent_id = getattr(interaction.channel, "parent_id", None)
        config = await self.bot.guild_config.effective(interaction.guild_id, interaction.channel_id, parent_id)
        if not config.knowledge_search:
            await reply_privately(interaction, "Searching the knowledge base is turned off in this channel.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            hits = await self.bot.knowledge.search(Requester.from_interaction(interaction), query)
        except Exception as exc:
            await _tell(interaction, exc, self.bot.knowledge)
            return
        await reply_privately(interaction, search_text(query, hits))


def _choice_name(doc: Document) -> str:
    added = datetime.fromtimestamp(doc.added_at, UTC).strftime("%Y-%m-%d")
    name = f"{doc.title} — {doc.source} ({added})"
    return name if len(name) <= 100 else name[:99] + "…"


def _sentence(interaction: discord.Interaction, exc: Exception, knowledge: Any) -> str:
    """``exc`` for the member, worded for the gateway that embedded (the server's own, if it has one)."""
    gateway = last_gateway_for(interaction)
    return user_error_message(exc, model=knowledge.embedding_model_on(gateway), gateway=gateway)


async def _tell(interaction: discord.Interaction, exc: Exception, knowledge: Any) -> None:
    """The refusal or failure as one sentence, privately (an unexpected failure is logged too)."""
    if not isinstance(exc, UserFacingError):
        log.warning("knowledge command failed: %r", exc, exc_info=exc)
    try:
        await reply_privately(interaction, ERROR_PREFIX + _sentence(interaction, exc, knowledge))
    except discord.HTTPException as failed:
        log.warning("could not tell the member why the knowledge command failed: %r", failed)


async def setup(bot: GatecordBot) -> None:
    # Always loaded; /knowledge and Add to knowledge are global where the operator's gateway embeds, and
    # guild commands of each server whose own gateway does (bot.guild_commands).
    from bot.app.guild_commands import AppCommand
    from gateway_client import GatewayClient

    cog = Knowledge(bot)
    await bot.add_cog(cog)
    commands_: list[AppCommand] = [cog.knowledge, cog.add_menu]

    def offered(gateway: GatewayClient) -> list[AppCommand]:
        if gateway is bot.gateways.operator:
            return commands_ if bot.knowledge.available else []
        return commands_ if gateway.profile.supports("embeddings") and gateway.profile.default_embedding_model else []

    bot.guild_commands.offer("embeddings", offered, every=commands_)

