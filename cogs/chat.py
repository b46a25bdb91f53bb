"""Chat: ``/chat`` and ``/models``, and conversations by mention, by reply, and in threads the bot started.

Every turn: acknowledge at once (defer, or an immediate "busy") → settings for the channel (a thread
inherits its parent's) → history (thread, or reply chain; per-guild message cap and a token budget
keeping whole turns) → text attachments → the shared answer pipeline (bot/chat/answer.py: admission,
budget, streaming, footer, errors) → the exchange recorded so the next reply continues from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.admission import Busy, Ticket
from bot.chat.conversation import (
    ConversationStore,
    HistoryTurn,
    fit_history,
    new_conversation_id,
    render_system_prompt,
    thread_conversation_id,
)
from bot.early_ack import ALREADY_ACKNOWLEDGED, EarlyDefer, option_value
from bot.app.factory import GatecordBot
from bot.budgets.quotas import Requester
from bot.rendering.stream import truncate
from bot.rendering.errors import describe_error, plain_text, user_error_message
from bot.chat.answer import (
    ERROR_PREFIX,
    NO_MENTIONS,
    AnswerOutcome,
    AnswerRunner,
    AnswerSpec,
    ChannelReplyTarget,
    InteractionTarget,
    shared_admission,
)
from bot.chat.attachments import is_text_attachment, read_text_attachments
from cogs._chat_models_view import ModelPages
from cogs._model_choices import CHAT_KINDS, IMAGE_KINDS, VISION_KINDS, autocomplete_for, models_of_kind
from gateway_client import ChatMessage, ModelKind

log = logging.getLogger(__name__)

THREAD_NAME_MAX = 90
EARLY_TICKET_TTL = 60.0  # s: a ticket taken at early acknowledgement whose command never ran is given back
DRAIN_SECONDS = 10.0  # on shutdown, answers in progress get this long to finish
THREAD_INTRO = "💬 Let's continue here — I answer every message in this thread, with the conversation so far."
_DECORATION = re.compile(r"^(-# .*|⚠️ \*\*Incomplete answer\*\*.*)$", re.MULTILINE)


def strip_decorations(content: str) -> str:
    """A bot message's answer text without footer, writing marker or incomplete notice lines."""
    return _DECORATION.sub("", content).strip()


@dataclass
class Turn:
    """Where a new turn goes: its conversation, the turn it follows, and the history before it."""

    key: str
    parent_turn: int | None = None
    history: list[HistoryTurn] = field(default_factory=list)


class Chat(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.chat_settings = bot.settings.chat
        self.admission = shared_admission(bot)
        self.runner = AnswerRunner(bot)
        self.conversations = ConversationStore(bot.store)
        self.bot_threads: set[int] = set()
        self._in_flight: set[asyncio.Task[Any]] = set()
        # Admission tickets taken when /chat was acknowledged straight from the gateway event
        # (bot/early_ack.py), by interaction id, with when they were taken.
        self._early_tickets: dict[int, tuple[str, Ticket, float]] = {}

    @contextlib.asynccontextmanager
    async def _tracked(self) -> AsyncIterator[None]:
        """Mark the current task as an answer in progress (drained on unload)."""
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def cog_load(self) -> None:
        rows = await self.bot.store.fetchall("SELECT thread_id FROM chat_threads")
        self.bot_threads = {int(r[0]) for r in rows}
        self.bot.early_acks.register("chat", self._early_defer)

    def _conversation_key(self, channel_id: int | None) -> str:
        """A thread the bot started is one shared conversation; anywhere else /chat starts a new one."""
        if channel_id is not None and channel_id in self.bot_threads:
            return thread_conversation_id(channel_id)
        return new_conversation_id()

    def _early_defer(self, data: dict[str, Any]) -> EarlyDefer | None:
        """Policy for early acknowledgement: take the admission ticket now; when the line is full,
        decline so the command tells the member at once that the bot is busy."""
        now = time.monotonic()
        while self._early_tickets:  # oldest first
            oldest, (_, stale, taken) = next(iter(self._early_tickets.items()))
            if now - taken <= EARLY_TICKET_TTL:
                break
            stale.cancel()  # its command never ran (e.g. the bot was closing)
            del self._early_tickets[oldest]
        key = self._conversation_key(int(data["channel_id"]) if data.get("channel_id") else None)
        try:
            ticket = self.admission.admit(key)
        except Busy:
            return None
        iid = int(data["id"])
        self._early_tickets[iid] = (key, ticket, now)

        def undo() -> None:
            entry = self._early_tickets.pop(iid, None)
            if entry is not None:
                entry[1].cancel()

        return EarlyDefer(ephemeral=bool(option_value(data, "private")), on_failed=undo)

    async def cog_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """Errors discord.py raised around a command: options it could not convert, failed checks,
        or an exception that escaped a command. The member always gets a sentence."""
        early = self._early_tickets.pop(interaction.id, None)
        if early is not None:
            early[1].cancel()
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.TransformerError):
            text = f"I couldn't read the option `{error.transformer.display_name}`: {plain_text(str(error), 'invalid value')}."
        elif isinstance(error, app_commands.CheckFailure):
            text = "You can't use this command here."
        else:
            log.error("/%s failed", interaction.command.qualified_name if interaction.command else "?", exc_info=original)
            text = user_error_message(original)
        text = ERROR_PREFIX + text
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            elif isinstance(error, app_commands.CommandInvokeError):
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:  # acknowledged early, then refused before the command ran: the "thinking…" reply says why
                await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.warning("could not tell the member why the command failed")

    async def cog_unload(self) -> None:
        self.bot.early_acks.unregister("chat")
        for _, ticket, _ in self._early_tickets.values():
            ticket.cancel()
        self._early_tickets.clear()
        pending = {t for t in self._in_flight if not t.done() and t is not asyncio.current_task()}
        if pending:
            log.info("waiting for %d answer(s) in progress", len(pending))
            _, still = await asyncio.wait(pending, timeout=DRAIN_SECONDS)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=2.0)

    # ------------------------------------------------------------------------------------------
    # /chat
    # ------------------------------------------------------------------------------------------

    @app_commands.command(name="chat", description="Ask the AI something; the answer streams in")
    @app_commands.describe(
        prompt="What you want to ask or say",
        model="Model to use (default: this channel's chat model)",
        private="Only you see the answer",
        thread="Continue the conversation in a new thread",
        file="A text or code file to include (.txt, .md, .py …)",
    )
    @app_commands.autocomplete(model=autocomplete_for(CHAT_KINDS))
    async def chat(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        model: app_commands.Range[str, 1, 100] | None = None,
        private: bool = False,
        thread: bool = False,
        file: discord.Attachment | None = None,
    ) -> None:
        early = self._early_tickets.pop(interaction.id, None)
        if early is not None and interaction.response.is_done():
            key, ticket, _ = early  # acknowledged straight from the gateway event
        else:
            if early is not None:
                early[1].cancel()
            key = self._conversation_key(interaction.channel_id)
            try:
                ticket = self.admission.admit(key)
            except Busy as exc:
                await interaction.response.send_message(exc.user_message(), ephemeral=True,
                                                        allowed_mentions=NO_MENTIONS)
                return
            try:
                await interaction.response.defer(ephemeral=private, thinking=True)
            except discord.HTTPException as exc:
                if exc.code != ALREADY_ACKNOWLEDGED:
                    ticket.cancel()
                    raise
                # The early deferral reached Discord but its answer was lost on the way back: the
                # interaction is deferred all the same, so the turn goes on.
                interaction.response._response_type = discord.InteractionResponseType.deferred_channel_message
            except BaseException:
                ticket.cancel()
                raise
        try:
            async with self._tracked():
                await self._slash_turn(interaction, ticket, key, prompt, model, private, thread, file)
        except Exception as exc:
            ticket.cancel()
            log.exception("/chat failed")
            try:
                await interaction.edit_original_response(content=ERROR_PREFIX + user_error_message(exc),
                                                         allowed_mentions=NO_MENTIONS)
            except Exception:
                log.warning("could not tell the member about the failure")

    async def _slash_turn(
        self, interaction: discord.Interaction, ticket: Ticket, key: str, prompt: str, model: str | None,
        private: bool, thread: bool, file: discord.Attachment | None,
    ) -> None:
        channel = interaction.channel
        notes: list[str] = []
        prompt_text = prompt
        if file is not None:
            if is_text_attachment(file.filename, file.content_type):
                extra, more_notes = await self._read_attachments([file])
                prompt_text += extra
                notes += more_notes
            else:
                notes.append(f"ignored {truncate(file.filename, 40)} (not a text file)")
        async with ticket:  # the conversation lock covers history → answer → record
            cfg = await self._config(interaction.guild_id, channel)
            turn = Turn(key=key)
            if key.startswith("thread:"):
                await self._load_thread_history(turn, cfg.history_messages)
            spec = self._spec(cfg, turn, prompt_text, model=model, requester=Requester.from_interaction(interaction),
                              user=interaction.user, guild=interaction.guild, channel=channel, notes=notes)
            target = InteractionTarget(interaction, ephemeral=private)

            async def shown(outcome: AnswerOutcome) -> None:
                record_turn = turn
                if thread and outcome.complete:
                    thread_id = await self._start_thread(interaction, target, prompt, private)
                    if thread_id is not None:
                        record_turn = Turn(key=thread_conversation_id(thread_id))
                await self._record(record_turn, outcome, prompt_text, guild_id=interaction.guild_id,
                                   channel_id=interaction.channel_id, user_id=interaction.user.id,
                                   prompt_message_ids=(), answer_message_ids=target.message_ids)

            await self.runner.run_admitted(target, spec, on_shown=shown)

    async def _start_thread(
        self, interaction: discord.Interaction, target: InteractionTarget, prompt: str, private: bool
    ) -> int | None:
        channel = interaction.channel
        reason = None
        if private:
            reason = "private answers can't start a thread"
        elif not isinstance(channel, discord.TextChannel):
            reason = "threads can only be started in a server text channel"
        if reason is None and target.messages:
            try:
                name = truncate(" ".join(prompt.split()), THREAD_NAME_MAX) or "Chat"
                thread = await target.messages[0].create_thread(name=name, auto_archive_duration=1440)
                await self.conversations.register_thread(thread.id, guild_id=interaction.guild_id,
                                                         parent_channel_id=channel.id, owner_id=interaction.user.id)
                self.bot_threads.add(thread.id)
                await thread.send(THREAD_INTRO, allowed_mentions=NO_MENTIONS)
                return thread.id
            except discord.HTTPException as exc:
                log.info("could not start a thread: %r", exc)
                reason = user_error_message(exc)
        if reason:
            try:
                await interaction.followup.send(f"{ERROR_PREFIX}No thread: {reason}", ephemeral=True,
                                                allowed_mentions=NO_MENTIONS)
            except discord.HTTPException:
                log.warning("could not say why no thread was started")
        return None

    # ------------------------------------------------------------------------------------------
    # mentions, replies, threads
    # ------------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        turn = await self._message_trigger(message)
        if turn is None:
            return
        try:
            ticket = self.admission.admit(turn.key)
        except Busy as exc:
            await self._reply_quietly(message, exc.user_message())
            return
        try:
            async with self._tracked():
                await self._message_turn(message, turn, ticket)
        except Exception as exc:
            ticket.cancel()
            log.exception("answering a message failed")
            await self._reply_quietly(message, ERROR_PREFIX + user_error_message(exc))

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[Any], error: commands.CommandError) -> None:
        # The bot's prefix is its mention, so every "@bot question" is also an unknown text command.
        if not isinstance(error, commands.CommandNotFound):
            log.error("text command error: %r", error)

    def _mentions_me(self, message: discord.Message) -> bool:
        me = self.bot.user
        assert me is not None
        return f"<@{me.id}>" in message.content or f"<@!{me.id}>" in message.content

    async def _message_trigger(self, message: discord.Message) -> Turn | None:
        """The turn to answer, or None when the message is not for the bot."""
        me = self.bot.user
        assert me is not None
        channel = message.channel
        if isinstance(channel, discord.Thread) and channel.id in self.bot_threads:
            return Turn(key=thread_conversation_id(channel.id))  # history read once admitted (in order)
        ref = message.reference
        if ref is not None and ref.message_id is not None and ref.channel_id in (None, channel.id):
            answered = await self.conversations.turn_for_message(ref.message_id)
            if answered is not None and answered.role == "assistant":
                # Your own conversation continues; someone else's answer seeds a new one of yours.
                key = answered.conversation_id
                if not key.startswith("thread:") and answered.user_id != message.author.id:
                    key = new_conversation_id()
                return Turn(key=key, parent_turn=answered.id)  # the chain is read once admitted
            resolved = ref.resolved
            if isinstance(resolved, discord.Message) and resolved.author.id == me.id:
                turn = Turn(key=new_conversation_id())
                seed = strip_decorations(resolved.content)
                if seed and not resolved.content.startswith(ERROR_PREFIX):
                    turn.history = [HistoryTurn.of("assistant", seed)]
                return turn
        if message.guild is None:
            return Turn(key=new_conversation_id())
        if self._mentions_me(message):
            parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
            cfg = await self.bot.guild_config.effective(message.guild.id, channel.id, parent_id)
            if cfg.answer_mentions:
                return Turn(key=new_conversation_id())
        return None

    async def _message_turn(self, message: discord.Message, turn: Turn, ticket: Ticket) -> None:
        me = self.bot.user
        assert me is not None
        channel = message.channel
        prompt = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        extra, notes = await self._read_attachments(message.attachments)
        vision: Any = self.bot.get_cog("Vision")  # pictures (and image links) are the vision cog's
        seeing = vision is not None and vision.wants(message)
        if not prompt and not extra and not seeing:
            ticket.cancel()
            await self._reply_quietly(message, "Ask me something: mention me with a question, or reply to one of my answers.")
            return
        prompt_text = (prompt or ("Describe this image." if seeing else "(see the attached file)")) + extra
        async with ticket:  # the conversation lock covers history → answer → record
            cfg = await self._config(message.guild.id if message.guild else None, channel)
            if turn.key.startswith("thread:"):
                await self._load_thread_history(turn, cfg.history_messages)
            elif turn.parent_turn is not None:
                chain = await self.conversations.chain(turn.parent_turn, conversation_id=turn.key,
                                                       limit=cfg.history_messages)
                turn.history = [t.as_history() for t in chain]
            spec = self._spec(cfg, turn, prompt_text, model=None, requester=Requester.from_message(message),
                              user=message.author, guild=message.guild, channel=channel, notes=notes)
            target = ChannelReplyTarget(message)
            if seeing:
                spec = await vision.with_images(message, spec, target)
                if spec is None:  # the images were refused; the vision cog told the member why
                    return

            async def shown(outcome: AnswerOutcome) -> None:
                await self._record(turn, outcome, prompt_text,
                                   guild_id=message.guild.id if message.guild else None, channel_id=channel.id,
                                   user_id=message.author.id, prompt_message_ids=(message.id,),
                                   answer_message_ids=target.message_ids)

            await self.runner.run_admitted(target, spec, on_shown=shown)

    # ------------------------------------------------------------------------------------------
    # /models
    # ------------------------------------------------------------------------------------------

    @app_commands.command(name="models", description="List the AI gateway's models")
    @app_commands.describe(kind="Which models to list (default: chat)")
    @app_commands.choices(kind=[
        app_commands.Choice(name="chat", value="chat"),
        app_commands.Choice(name="vision (chat with images)", value="vision"),
        app_commands.Choice(name="image generation", value="image"),
        app_commands.Choice(name="all", value="all"),
    ])
    async def models(self, interaction: discord.Interaction, kind: str = "chat") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            if kind == "all":
                found = list(await self.bot.gateway.list_models())
            else:
                kinds = {"chat": CHAT_KINDS, "vision": VISION_KINDS, "image": IMAGE_KINDS}.get(kind, CHAT_KINDS)
                found = await models_of_kind(self.bot.gateway, kinds)
        except Exception as exc:
            await interaction.edit_original_response(content=ERROR_PREFIX + await describe_error(exc),
                                                     allowed_mentions=NO_MENTIONS)
            return
        found.sort(key=lambda m: m.id.lower())
        label = {"chat": "Chat", "vision": "Vision", "image": "Image", "all": "All"}.get(kind, "Chat")
        view = ModelPages(found, owner_id=interaction.user.id,
                          title=f"{label} models on {self.bot.settings.gateway.profile}")
        kwargs: dict[str, Any] = {"embed": view.embed(), "allowed_mentions": NO_MENTIONS}
        if view.pages > 1:
            kwargs["view"] = view
        await interaction.edit_original_response(**kwargs)

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------

    async def _config(self, guild_id: int | None, channel: Any) -> Any:
        parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
        return await self.bot.guild_config.effective(guild_id, getattr(channel, "id", None), parent_id)

    async def _load_thread_history(self, turn: Turn, limit: int) -> None:
        records = await self.conversations.thread_history(turn.key, limit=limit)
        turn.history = [r.as_history() for r in records]
        turn.parent_turn = records[-1].id if records else await self.conversations.last_turn_id(turn.key)

    async def _read_attachments(self, attachments: Any) -> tuple[str, list[str]]:
        if not attachments:
            return "", []
        result = await read_text_attachments(
            self.bot.cdn_http, attachments, hosts=self.bot.settings.discord.cdn_hosts,
            max_bytes=self.chat_settings.attachment_max_bytes,
        )
        return result.text, result.notes

    def _spec(
        self, cfg: Any, turn: Turn, prompt: str, *, model: str | None, requester: Requester, user: Any,
        guild: discord.Guild | None, channel: Any, notes: list[str],
    ) -> AnswerSpec:
        system = render_system_prompt(
            cfg.system_prompt, now=datetime.now(UTC), server=guild.name if guild else None,
            channel=getattr(channel, "name", None), user=getattr(user, "display_name", None),
        )
        history = [t for t in turn.history if t.content]
        fitted = fit_history(history, max_messages=cfg.history_messages,
                             max_tokens=self.chat_settings.history_tokens)
        messages = [ChatMessage.system(system)] if system.strip() else []
        messages += [ChatMessage(t.role, t.content) for t in fitted]
        messages.append(ChatMessage.user(prompt))
        return AnswerSpec(
            messages=messages, requester=requester, model=model or cfg.chat_model or None,
            temperature=cfg.temperature, max_tokens=cfg.max_tokens, model_kinds=(ModelKind.CHAT, ModelKind.VISION),
            footer_extra=tuple(truncate(n, 60) for n in notes[:2]),
        )

    async def _record(
        self, turn: Turn, outcome: AnswerOutcome, prompt: str, *, guild_id: int | None, channel_id: int | None,
        user_id: int, prompt_message_ids: tuple[int, ...], answer_message_ids: list[int],
    ) -> None:
        """Keep the exchange so replies (and the thread) continue from it; failures here are logged."""
        if not outcome.text.strip():
            return
        meta = outcome.result.meta if outcome.result is not None else None
        try:
            await self.conversations.record_exchange(
                conversation_id=turn.key, parent_id=turn.parent_turn, guild_id=guild_id, channel_id=channel_id,
                user_id=user_id, prompt=prompt, answer=outcome.text, model=meta.model_used if meta else None,
                complete=outcome.complete, prompt_message_ids=prompt_message_ids,
                answer_message_ids=answer_message_ids,
            )
        except Exception:
            log.exception("could not record the conversation turn")

    async def _reply_quietly(self, message: discord.Message, text: str) -> None:
        try:
            await message.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
        except discord.HTTPException as exc:
            log.warning("could not reply: %r", exc)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Chat(bot))
