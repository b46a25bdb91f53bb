"""The chat use case: one turn of a conversation, from a slash command or a message, top to bottom.

A turn: admission (conversation lock, then a global slot; "busy" at once past a bounded queue) →
the channel's settings (a thread inherits its parent's) → a voice message or audio file transcribed
(bot/chat/listening.py; the transcript is the prompt) → history (the bot's thread, a DM, a guest's
/chat, or the reply chain; a per-guild message cap and a token budget keeping whole turns, then the model's context
window: bot/chat/context.py) → text attachments → images, handed to the vision service → the answer
(bot/chat/answer.py: budget, stream, footer, errors; one shorter retry) → the exchange recorded, so
the next reply continues from it → slot and lock freed → the final edit awaited (it may wait on a
Discord rate limit; nobody else waits with it) → with ``voice_replies``, a spoken turn's answer also
sent as a voice message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord

from bot.app.draining import Drained, drain_tasks
from bot.app.installs import is_dm, is_guest
from bot.budgets.rules import BudgetExceeded, Requester
from bot.budgets.service import BudgetService
from bot.chat.admission import Admission, Busy, Ticket
from bot.chat.answer import AnswerOutcome, AnswerRunner, AnswerSpec
from bot.chat.attachments import is_text_attachment, read_text_attachments
from bot.chat.context import ContextWindows, fit_to_window, merge_user_runs
from bot.chat.conversation import (
    ConversationStore,
    HistoryTurn,
    dm_conversation_id,
    estimate_tokens,
    fit_history,
    follows_latest,
    guest_conversation_id,
    listen_conversation_id,
    new_conversation_id,
    render_system_prompt,
    thread_conversation_id,
)
from bot.chat.listening import (
    Heard,
    SayLine,
    Voice,
    audio_inputs,
    audio_of,
    hear,
    prompt_with_transcript,
    speak_back,
)
from bot.chat.starting import (
    ThreadAnswerTarget,
    is_mentioned,
    missing_thread_permission,
    no_thread_note,
    thread_name,
)
from bot.chat.tools.base import ToolContext
from bot.chat.tools.loop import ToolSession
from bot.chat.tools.registry import ToolRegistry
from bot.gateways.defaults import default_model
from bot.gateways.directory import GatewayDirectory
from bot.guilds.config import EffectiveConfig, GuildConfig
from bot.rendering.errors import user_error_message
from bot.rendering.replies import (
    ERROR_PREFIX,
    NO_MENTIONS,
    ChannelReplyTarget,
    InteractionTarget,
    reply_quietly,
)
from bot.rendering.stream import EMPTY_ANSWER_PLACEHOLDER
from bot.rendering.text import truncate
from bot.storage.store import Store
from bot.voice.intake import AudioInput
from bot.voice.sender import ChannelVoiceTarget, InteractionVoiceTarget
from gateway_client import ChatMessage, GatewayClient, GatewayError, ModelKind

if TYPE_CHECKING:
    import aiohttp

    from bot.app.settings import Settings
    from bot.vision.service import VisionService

log = logging.getLogger(__name__)

__all__ = ["ChatService", "SlashPrompt", "UnaskedAnswer", "UnaskedTurn", "strip_decorations"]

THREAD_NAME_MAX = 90
THREAD_INTRO = "💬 Let's continue here — I answer every message in this thread, with the conversation so far."
EMPTY_MENTION = "Ask me something: mention me with a question, or reply to one of my answers."
_DECORATION = re.compile(
    r"^(-# .*|⚠️ \*\*Incomplete answer\*\*.*|🎙️ .*|" + re.escape(EMPTY_ANSWER_PLACEHOLDER) + ")$", re.MULTILINE)


def strip_decorations(content: str) -> str:
    """A bot message's answer text without footer, writing marker, incomplete notice, heard-audio lines or
    the empty-answer placeholder."""
    return _DECORATION.sub("", content).strip()


@dataclass
class Turn:
    """Where a new turn goes: its conversation, the turn it follows, and the history before it."""

    key: str
    parent_turn: int | None = None
    history: list[HistoryTurn] = field(default_factory=list)
    #: the member asked the bot (a mention, a trigger word, a reply), not just wrote in a ``listen`` channel
    asked: bool = True
    #: ``auto_thread``: answer in a thread opened from the message
    open_thread: bool = False


@dataclass(frozen=True)
class _Where:
    """Where a turn was asked, and by whom (kept with the recorded exchange)."""

    guild_id: int | None
    channel_id: int | None
    user_id: int


@dataclass(frozen=True)
class SlashPrompt:
    """The options of one ``/chat``."""

    prompt: str
    model: str | None = None
    private: bool = False
    thread: bool = False
    file: discord.Attachment | None = None


@dataclass(frozen=True)
class UnaskedTurn:
    """A turn nobody asked the bot for (``auto_answer`` in a help channel), on the poster's account."""

    #: what the model is asked (the post, with what the answer should rest on)
    prompt: str
    #: the member's turn as the conversation keeps it (the post itself)
    recorded_prompt: str
    #: open a thread from the message, named so, and answer there (a text channel); None: answer in the
    #: message's own channel (a forum post's thread)
    thread_name: str | None = None
    footer_extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnaskedAnswer:
    """An unasked turn that was answered: where, in which messages, and how it ended."""

    outcome: AnswerOutcome
    thread: discord.Thread
    message_ids: tuple[int, ...]


class ChatService:
    """Chat turns for one bot; built once by the factory (``bot.chat``)."""

    def __init__(
        self, settings: Settings, store: Store, gateway: GatewayClient, quotas: BudgetService,
        guild_config: GuildConfig, *, cdn_http: Callable[[], aiohttp.ClientSession],
        gateways: GatewayDirectory | None = None,
    ) -> None:
        self.settings = settings.chat
        self._all_settings = settings
        self.cdn_hosts = settings.discord.cdn_hosts
        #: the operator's gateway; each turn is answered by its guild's (``gateways.for_guild``)
        self.gateway = gateway
        self.gateways = gateways if gateways is not None else GatewayDirectory(gateway)
        self.guild_config = guild_config
        self.conversations = ConversationStore(store)
        #: one gate for every chat-like gateway call (chat, mentions, vision)
        self.admission = Admission(self.settings.max_concurrency, self.settings.max_queue)
        #: the models' context windows, which each turn is fitted into (bot/chat/context.py)
        self.context = ContextWindows(self.settings.context_windows, default_model=lambda: gateway.config.chat_model)
        #: a guild gateway's windows (its own model list, read at its first turn)
        self._guild_contexts: weakref.WeakKeyDictionary[GatewayClient, ContextWindows] = weakref.WeakKeyDictionary()
        self.runner = AnswerRunner(gateway, quotas, self.settings, gateways=self.gateways)
        self.runner.context_for = self.context_for
        self.vision: VisionService | None = None  # wired by the factory
        #: the voice service (``bot.voice``), wired by the factory; None: audio is not listened to
        self.voice: Voice | None = None
        #: the functions the model may call (bot/chat/tools/), wired by the factory; None: no tools
        self.tools: ToolRegistry | None = None
        self.bot_threads: set[int] = set()
        self._cdn_http = cdn_http
        self._store = store
        self._in_flight: set[asyncio.Task[Any]] = set()
        #: (channel, member) already told that auto_thread could not open a thread there (told once)
        self._told_no_thread: set[tuple[int, int]] = set()

    async def start(self) -> None:
        rows = await self._store.fetchall("SELECT thread_id FROM chat_threads")
        self.bot_threads = {int(r[0]) for r in rows}
        self.context.start(self.gateway.list_models)

    async def close(self) -> None:
        await self.context.close()
        for context in list(self._guild_contexts.values()):
            await context.close()

    def context_for(self, gateway: GatewayClient) -> ContextWindows:
        """The context windows of ``gateway``'s models: the operator's read at start-up; a guild's own
        gateway's read (in the background) the first time it answers."""
        if gateway is self.gateway:
            return self.context
        context = self._guild_contexts.get(gateway)
        if context is None:
            chat_model = default_model(gateway, "chat", self._all_settings)
            context = ContextWindows(self.settings.context_windows, default_model=lambda: chat_model or None)
            self._guild_contexts[gateway] = context
            context.start(gateway.list_models)
        return context

    async def _serving(self, target: InteractionTarget | ChannelReplyTarget | None,
                       requester: Requester) -> GatewayClient | None:
        """The gateway serving the requester's guild; None when it can't be used (the guild's key can no
        longer be read …): the member was told why through ``target`` (or it is logged, unasked)."""
        try:
            return await self.gateways.for_guild(requester.guild_id)
        except GatewayError as exc:
            log.info("guild %s: its gateway can't be used: %r", requester.guild_id, exc)
            if target is not None:
                await self.runner.show_refusal(target, exc)
            return None

    def stop_accepting(self) -> None:
        """The drain begins: new turns (slash, mention, reply, thread, vision) are refused with
        "restarting"; turns already admitted go on."""
        self.admission.close()

    async def drain(self, timeout: float) -> Drained:
        """Let answers in progress finish (for up to ``timeout`` s, their final edit included), then
        cancel what is left: the budget flow releases their holds."""
        return await drain_tasks(self._answering, timeout)

    def _answering(self) -> set[asyncio.Task[Any]]:
        # tracked turns, and turns admitted a moment ago that have not reached ``tracked()`` yet
        return set(self._in_flight) | self.admission.holders()

    @contextlib.asynccontextmanager
    async def tracked(self) -> AsyncIterator[None]:
        """Mark the current task as an answer in progress (drained on close)."""
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._in_flight.discard(task)

    # ------------------------------------------------------------------------------------------
    # /chat
    # ------------------------------------------------------------------------------------------

    def admit_slash(self, interaction: discord.Interaction) -> tuple[str, Ticket]:
        """The conversation a ``/chat`` here goes to, and its admission ticket; raises ``Busy``."""
        key = self._conversation_key(interaction)
        return key, self.admission.admit(key)

    def _conversation_key(self, interaction: discord.Interaction) -> str:
        """A thread the bot started is one shared conversation, and so is a DM with the bot; where the bot
        sees only the interactions (a guest: no replies, no threads) each /chat of the member continues
        their last one; anywhere else /chat starts a new one."""
        channel_id = interaction.channel_id
        if channel_id is not None and channel_id in self.bot_threads:
            return thread_conversation_id(channel_id)
        if is_guest(interaction):
            return guest_conversation_id(channel_id, interaction.user.id)
        if channel_id is not None and is_dm(interaction):
            return dm_conversation_id(channel_id)
        return new_conversation_id()

    async def slash_turn(self, interaction: discord.Interaction, key: str, ticket: Ticket, ask: SlashPrompt) -> None:
        """Answer a deferred ``/chat``; ``ticket`` is given back whatever happens."""
        try:
            async with self.tracked():
                await self._slash_turn(interaction, key, ticket, ask)
        finally:
            ticket.cancel()  # a no-op once the turn used it

    async def _slash_turn(self, interaction: discord.Interaction, key: str, ticket: Ticket, ask: SlashPrompt) -> None:
        channel = interaction.channel
        notes: list[str] = []
        prompt_text = ask.prompt
        audio = audio_of(ask.file) if ask.file is not None and self.voice is not None else None
        if ask.file is not None and audio is None:
            if is_text_attachment(ask.file.filename, ask.file.content_type):
                extra, more_notes = await self._read_attachments([ask.file])
                prompt_text += extra
                notes += more_notes
            else:
                notes.append(f"ignored {truncate(ask.file.filename, 40)} (not a text file)")
        guest = is_guest(interaction)  # answered through the interaction only, never a channel API
        target = InteractionTarget(interaction, ephemeral=ask.private, guest=guest)
        turn = Turn(key=key)
        where = _Where(interaction.guild_id, interaction.channel_id, interaction.user.id)
        requester = Requester.from_interaction(interaction)
        async with ticket:  # the conversation lock covers history → transcript → answer → record
            gateway = await self._serving(target, requester)
            if gateway is None:
                return
            # a server that did not install Gatecord has no say over it: the bot's defaults apply
            cfg = await self._config(None if guest else interaction.guild_id, channel, gateway)
            heard = None
            if audio is not None:
                heard = await self._hear(target, requester, audio, written=prompt_text, gateway=gateway)
                if heard is None:  # refused; the member was told why
                    return
                prompt_text = prompt_with_transcript(prompt_text, heard.transcript)
            if follows_latest(key):  # a bot thread, a DM, a guest's /chat
                await self._load_thread_history(turn, cfg.history_messages)
            spec = self._spec(
                cfg, turn, prompt_text, model=ask.model, requester=requester,
                user=interaction.user, guild=interaction.guild, channel=channel, notes=notes,
                header=heard.header if heard else "", gateway=gateway,
            )
            spec.tools = self._tool_session(cfg, gateway, ToolContext(
                requester=requester, channel=channel, member=interaction.user, guild=interaction.guild,
                answer_message_ids=lambda: target.message_ids,
                voice_target=None if ask.private else InteractionVoiceTarget(interaction.application_id,
                                                                             interaction.token)))

            async def answered(outcome: AnswerOutcome) -> None:
                if not ask.thread:  # a new thread's turn is recorded there once it exists
                    await self._record(turn, outcome, prompt_text, target=target, prompt_message_ids=(), where=where)

            outcome = await self.runner.answer(target, spec, on_answered=answered)
        await outcome.wait_shown()
        if ask.thread:  # a complete answer opens the thread; the exchange is kept either way
            thread_id = await self._start_thread(interaction, target, ask.prompt, ask.private) \
                if outcome.complete else None
            record_turn = Turn(key=thread_conversation_id(thread_id)) if thread_id is not None else turn
            await self._record(record_turn, outcome, prompt_text, target=target, prompt_message_ids=(), where=where)
        if heard is not None and cfg.voice_replies and outcome.complete and not ask.private:
            # a voice message can't be private: a private answer is never spoken
            async def say(line: str) -> None:
                await interaction.followup.send(line, ephemeral=True, allowed_mentions=NO_MENTIONS)

            await self._speak_back(requester, outcome, target, say,
                                   InteractionVoiceTarget(interaction.application_id, interaction.token), gateway)

    async def _start_thread(
        self, interaction: discord.Interaction, target: InteractionTarget, prompt: str, private: bool
    ) -> int | None:
        channel = interaction.channel
        reason = None
        if private:
            reason = "private answers can't start a thread"
        elif target.guest:
            reason = ("Gatecord isn't a member here, so it can't open threads; your next /chat here "
                      "continues this conversation")
        elif not isinstance(channel, discord.TextChannel):
            reason = "threads can only be started in a server text channel"
        if reason is None and target.messages:
            assert isinstance(channel, discord.TextChannel)
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

    async def on_message(self, message: discord.Message, me: discord.ClientUser) -> None:
        """Answer ``message`` if it is for the bot (a mention, a reply to an answer, the bot's thread)."""
        if message.author.bot or message.webhook_id is not None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        turn = await self._message_trigger(message, me)
        if turn is None:
            return
        try:
            ticket = self.admission.admit(turn.key)
        except Busy as exc:
            await reply_quietly(message, exc.user_message())
            return
        try:
            async with self.tracked():
                await self._message_turn(message, me, turn, ticket)
        except Exception as exc:
            log.exception("answering a message failed")
            await reply_quietly(message, ERROR_PREFIX + user_error_message(exc))
        finally:
            ticket.cancel()

    async def _message_trigger(self, message: discord.Message, me: discord.ClientUser) -> Turn | None:
        """The turn to answer, or None when the message is not for the bot."""
        channel = message.channel
        if isinstance(channel, discord.Thread) and await self._is_bot_thread(channel, me):
            return Turn(key=thread_conversation_id(channel.id))  # history read once admitted (in order)
        if message.guild is None and isinstance(channel, discord.DMChannel):
            # a DM with the bot is one conversation, as in a thread: every message (a reply too) goes on
            return Turn(key=dm_conversation_id(channel.id))
        cfg = await self._config(message.guild.id, channel) if message.guild is not None else None
        ref = message.reference
        if ref is not None and ref.message_id is not None and ref.channel_id in (None, channel.id):
            answered = await self.conversations.turn_for_message(ref.message_id)
            if answered is not None and answered.role == "assistant":
                # Your own conversation continues; someone else's answer seeds a new one of yours
                # (in a listen channel: your own conversation there goes on).
                key = answered.conversation_id
                if not key.startswith("thread:") and answered.user_id != message.author.id:
                    if cfg is not None and cfg.listen:
                        return self._listen_turn(message, cfg, me)
                    key = new_conversation_id()
                return Turn(key=key, parent_turn=answered.id)  # the chain is read once admitted
            resolved = ref.resolved
            if cfg is not None and cfg.listen:
                return self._listen_turn(message, cfg, me)
            if isinstance(resolved, discord.Message) and resolved.author.id == me.id:
                turn = Turn(key=new_conversation_id())
                seed = strip_decorations(resolved.content)
                if seed and not resolved.content.startswith(ERROR_PREFIX):
                    turn.history = [HistoryTurn.of("assistant", seed)]
                return turn
        if cfg is None:  # not a server's channel, nor a DM (a group DM the bot is in)
            return Turn(key=new_conversation_id())
        if cfg.listen:
            return self._listen_turn(message, cfg, me)
        if cfg.answer_mentions and is_mentioned(message.content, me.id, cfg.triggers):
            return Turn(key=new_conversation_id(), open_thread=self._wants_thread(channel, cfg))
        return None

    def _listen_turn(self, message: discord.Message, cfg: EffectiveConfig, me: discord.ClientUser) -> Turn:
        """``listen``: the member's own conversation in this channel (or a new thread, with ``auto_thread``)."""
        return Turn(key=listen_conversation_id(message.channel.id, message.author.id),
                    asked=is_mentioned(message.content, me.id, cfg.triggers),
                    open_thread=self._wants_thread(message.channel, cfg))

    @staticmethod
    def _wants_thread(channel: Any, cfg: EffectiveConfig) -> bool:
        return cfg.auto_thread and not isinstance(channel, discord.Thread)  # a thread can't hold another

    async def _is_bot_thread(self, thread: discord.Thread, me: discord.ClientUser) -> bool:
        """A thread /chat started: known here, or (owned by the bot) registered by another process."""
        if thread.id in self.bot_threads:
            return True
        if thread.owner_id != me.id or not await self.conversations.is_bot_thread(thread.id):
            return False
        self.bot_threads.add(thread.id)
        return True

    async def _message_turn(self, message: discord.Message, me: discord.ClientUser, turn: Turn, ticket: Ticket) -> None:
        channel = message.channel
        prompt = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        extra, notes = await self._read_attachments(message.attachments)
        seeing = self.vision is not None and self.vision.wants(message)
        audio = audio_inputs(message) if self.voice is not None else []
        if not prompt and not extra and not seeing and not audio:
            if turn.asked:  # a listen channel's message with nothing to answer is left alone
                await reply_quietly(message, EMPTY_MENTION)
            return
        if audio:  # the transcript is the prompt (after what was written, if anything)
            prompt_text = prompt + extra
            if len(audio) > 1:
                notes.append(f"only the first of {len(audio)} audio files was heard")
        else:
            prompt_text = (prompt or ("Describe this image." if seeing else "(see the attached file)")) + extra
        target: ChannelReplyTarget = ChannelReplyTarget(message)
        note = ""
        if turn.open_thread:  # auto_thread: the conversation goes on in a thread opened from the message
            thread, note = await self._open_thread(message, prompt)
            if thread is not None:
                turn = Turn(key=thread_conversation_id(thread.id))
                ticket.rekey(turn.key)  # a follow-up in the new thread waits for this answer
                target, channel = ThreadAnswerTarget(message, thread), thread
        where = _Where(message.guild.id if message.guild else None, channel.id, message.author.id)
        requester = Requester.from_message(message)
        async with ticket:  # the conversation lock covers history → transcript → answer → record
            gateway = await self._serving(target, requester)
            if gateway is None:
                return
            cfg = await self._config(message.guild.id if message.guild else None, channel, gateway)
            heard = None
            if audio:
                heard = await self._hear(target, requester, audio[0], written=prompt_text, gateway=gateway)
                if heard is None:  # refused; the member was told why
                    return
                prompt_text = prompt_with_transcript(prompt_text, heard.transcript)
            if turn.key.startswith("thread:") or (follows_latest(turn.key) and turn.parent_turn is None):
                await self._load_thread_history(turn, cfg.history_messages)
            elif turn.parent_turn is not None:
                chain = await self.conversations.chain(turn.parent_turn, conversation_id=turn.key,
                                                       limit=cfg.history_messages)
                turn.history = [t.as_history() for t in chain]
            header = "\n".join(line for line in (note, heard.header if heard else "") if line)
            spec: AnswerSpec | None = self._spec(cfg, turn, prompt_text, model=None, requester=requester,
                                                 user=message.author, guild=message.guild, channel=channel,
                                                 notes=notes, header=header, gateway=gateway)
            in_place = channel.id == message.channel.id  # else in the thread opened from it
            if spec is not None:
                spec.tools = self._tool_session(cfg, gateway, ToolContext(
                    requester=requester, channel=channel, member=message.author, guild=message.guild,
                    answer_message_ids=lambda: target.message_ids,
                    voice_target=ChannelVoiceTarget(channel.id, reply_to=message.id if in_place else None),
                    prompt_message_id=message.id if in_place else None))
            if seeing and self.vision is not None and spec is not None:
                spec = await self.vision.with_images(message, spec, target)
            if spec is None:  # the images were refused; the member was told why
                return

            async def answered(outcome: AnswerOutcome) -> None:
                await self._record(turn, outcome, prompt_text, target=target, prompt_message_ids=(message.id,),
                                   where=where)

            outcome = await self.runner.answer(target, spec, on_answered=answered)
        await outcome.wait_shown()
        if heard is not None and cfg.voice_replies and outcome.complete:
            async def say(line: str) -> None:
                await reply_quietly(message, line)

            await self._speak_back(requester, outcome, target, say,
                                   ChannelVoiceTarget(channel.id, reply_to=message.id if in_place else None), gateway)

    async def _open_thread(self, message: discord.Message, prompt: str) -> tuple[discord.Thread | None, str]:
        """``auto_thread``: a public thread opened from ``message``, named after ``prompt``, registered as the
        bot's (everyone's messages there continue its conversation). When it can't be opened, (None, the
        answer's first line saying why), that line only the first time for this member in this channel."""
        me = message.guild.me if message.guild is not None else None
        reason = missing_thread_permission(message.channel, me)
        if reason is None:
            fallback = f"Chat with {getattr(message.author, 'display_name', message.author.name)}"
            try:
                thread = await message.create_thread(name=thread_name(prompt, fallback), auto_archive_duration=1440)
            except discord.Forbidden as exc:  # permissions changed since the cache saw them, or an overwrite
                log.info("auto_thread: not allowed to open a thread: %r", exc)
                reason = "I'm not allowed to open threads in this channel (Create Public Threads)"
            except discord.HTTPException as exc:
                log.info("auto_thread: could not open a thread: %r", exc)
                reason = "Discord did not open it: " + user_error_message(exc).rstrip(".")
            else:
                await self.conversations.register_thread(
                    thread.id, guild_id=message.guild.id if message.guild else None,
                    parent_channel_id=message.channel.id, owner_id=message.author.id)
                self.bot_threads.add(thread.id)
                return thread, ""
        told = (message.channel.id, message.author.id)
        if told in self._told_no_thread:
            return None, ""
        self._told_no_thread.add(told)
        return None, no_thread_note(reason)

    # ------------------------------------------------------------------------------------------
    # unasked turns (auto_answer)
    # ------------------------------------------------------------------------------------------

    async def answer_unasked(self, message: discord.Message, ask: UnaskedTurn) -> UnaskedAnswer | None:
        """Answer ``message`` though its author did not ask the bot (``auto_answer``): admitted, charged to
        them, streamed and recorded like any turn of theirs (a reply to the answer continues it). None when
        nothing was shown: busy or restarting, over budget, no thread opened. The member asked nothing, so
        those are logged, not told. The budget is held before a thread is opened for the answer."""
        key = thread_conversation_id(message.id)  # a forum post's thread, or one opened from it, has its id
        try:
            ticket = self.admission.admit(key)
        except Busy as exc:
            log.info("auto-answer skipped: %s", exc)
            return None
        try:
            async with self.tracked():
                return await self._unasked_turn(message, ask, key, ticket)
        finally:
            ticket.cancel()

    async def _unasked_turn(
        self, message: discord.Message, ask: UnaskedTurn, key: str, ticket: Ticket
    ) -> UnaskedAnswer | None:
        requester = Requester.from_message(message)
        async with ticket:
            gateway = await self._serving(None, requester)  # nobody asked: a guild gateway's failure is logged
            if gateway is None:
                return None
            cfg = await self._config(message.guild.id if message.guild else None, message.channel, gateway)
            spec = self._spec(cfg, Turn(key=key), ask.prompt, model=None, requester=requester, user=message.author,
                              guild=message.guild, channel=message.channel, notes=[], gateway=gateway)
            spec.footer_extra += ask.footer_extra
            try:
                spec.hold = await self.runner.hold(spec)
            except BudgetExceeded as exc:
                log.info("auto-answer skipped: the poster's budget is spent (%s)", exc)
                return None
            placed = await self._unasked_place(message, ask)
            if placed is None:
                await spec.hold.release(outcome="no_thread")
                return None
            thread, target = placed
            where = _Where(message.guild.id if message.guild else None, thread.id, message.author.id)

            async def answered(outcome: AnswerOutcome) -> None:
                await self._record(Turn(key=key), outcome, ask.recorded_prompt, target=target,
                                   prompt_message_ids=(message.id,), where=where)

            outcome = await self.runner.answer(target, spec, on_answered=answered)
        await outcome.wait_shown()
        return UnaskedAnswer(outcome, thread, tuple(target.message_ids))

    async def _unasked_place(
        self, message: discord.Message, ask: UnaskedTurn
    ) -> tuple[discord.Thread, ChannelReplyTarget] | None:
        """The thread the answer goes to and its target: the message's own thread, or one opened from it."""
        if ask.thread_name is None:
            if not isinstance(message.channel, discord.Thread):
                return None
            return message.channel, ChannelReplyTarget(message)
        me = message.guild.me if message.guild is not None else None
        reason = missing_thread_permission(message.channel, me)
        if reason is not None:
            log.info("auto-answer: no thread in %s: %s", message.channel.id, reason)
            return None
        try:
            thread = await message.create_thread(name=ask.thread_name, auto_archive_duration=1440)
        except discord.HTTPException as exc:
            log.info("auto-answer: could not open a thread: %r", exc)
            return None
        return thread, ThreadAnswerTarget(message, thread)

    # ------------------------------------------------------------------------------------------
    # listening and speaking (bot/chat/listening.py)
    # ------------------------------------------------------------------------------------------

    async def _hear(
        self, target: InteractionTarget | ChannelReplyTarget, requester: Requester, audio: AudioInput, *, written: str,
        gateway: GatewayClient | None = None,
    ) -> Heard | None:
        """The transcript of ``audio``, or None when it was refused (no transcription on the gateway, too
        long, too large, unreadable, over budget …): the member sees why where the answer would be."""
        assert self.voice is not None
        try:
            return await hear(self.voice, requester, audio, written=written, gateway=gateway)
        except Exception as exc:
            log.info("audio not transcribed: %r", exc)
            await self.runner.show_refusal(target, exc, gateway=gateway)
            return None

    async def _speak_back(
        self, requester: Requester, outcome: AnswerOutcome, target: InteractionTarget | ChannelReplyTarget,
        say: SayLine, voice_target: ChannelVoiceTarget | InteractionVoiceTarget, gateway: GatewayClient | None = None,
    ) -> None:
        """``voice_replies``: the finished answer, spoken, as a voice message after the text; a reply to
        it continues the conversation like a reply to the text."""
        if self.voice is None:
            return
        message_id = await speak_back(self.voice, requester, outcome.text, voice_target, say, gateway)
        if message_id is not None and target.on_created is not None:
            await target.on_created(message_id)  # linked to the recorded answer

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------

    def _tool_session(
        self, cfg: EffectiveConfig, gateway: GatewayClient | None, ctx: ToolContext
    ) -> ToolSession | None:
        """The tools this turn offers (the channel's ``tools`` setting, what the turn's gateway and the bot can
        do); None when there are none."""
        if self.tools is None:
            return None
        offered = self.tools.offered(cfg.tools, gateway)
        return ToolSession(self.tools, offered, ctx) if offered else None

    async def _config(
        self, guild_id: int | None, channel: Any, gateway: GatewayClient | None = None
    ) -> EffectiveConfig:
        """The channel's settings; ``gateway``: the one serving the turn (its default models apply)."""
        parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
        return await self.guild_config.effective(guild_id, getattr(channel, "id", None), parent_id, gateway=gateway)

    async def _load_thread_history(self, turn: Turn, limit: int) -> None:
        records = await self.conversations.thread_history(turn.key, limit=limit)
        turn.history = [r.as_history() for r in records]
        turn.parent_turn = records[-1].id if records else await self.conversations.last_turn_id(turn.key)

    async def _read_attachments(self, attachments: Any) -> tuple[str, list[str]]:
        if not attachments:
            return "", []
        result = await read_text_attachments(
            self._cdn_http(), attachments, hosts=self.cdn_hosts, max_bytes=self.settings.attachment_max_bytes,
        )
        return result.text, result.notes

    def _spec(
        self, cfg: EffectiveConfig, turn: Turn, prompt: str, *, model: str | None, requester: Requester, user: Any,
        guild: discord.Guild | None, channel: Any, notes: list[str], header: str = "",
        gateway: GatewayClient | None = None,
    ) -> AnswerSpec:
        system = render_system_prompt(
            cfg.system_prompt, now=datetime.now(UTC), server=guild.name if guild else None,
            channel=getattr(channel, "name", None), user=getattr(user, "display_name", None),
        )
        history = [t for t in turn.history if t.content]  # an empty answer keeps its prompt, never a placeholder
        fitted = fit_history(history, max_messages=cfg.history_messages, max_tokens=self.settings.history_tokens)
        model = model or cfg.chat_model or None
        fixed = estimate_tokens(prompt) + (estimate_tokens(system) if system.strip() else 0)
        context = self.context_for(gateway) if gateway is not None else self.context
        fit = fit_to_window(fitted, fixed_tokens=fixed, max_tokens=cfg.max_tokens, window=context.window(model))
        messages = [ChatMessage.system(system)] if system.strip() else []
        messages += [ChatMessage(t.role, t.content) for t in fit.history]
        messages.append(ChatMessage.user(prompt))
        footer = [truncate(n, 60) for n in notes[:2]] + ([fit.note] if fit.note else [])
        return AnswerSpec(
            messages=merge_user_runs(messages), requester=requester, model=model,
            temperature=cfg.temperature, max_tokens=fit.max_tokens, model_kinds=(ModelKind.CHAT, ModelKind.VISION),
            footer_extra=tuple(footer), header=header, gateway=gateway,
        )

    async def _record(
        self, turn: Turn, outcome: AnswerOutcome, prompt: str, *, target: InteractionTarget | ChannelReplyTarget,
        where: _Where, prompt_message_ids: tuple[int, ...],
    ) -> None:
        """Keep the exchange so replies (and the thread) continue from it. Answer messages that Discord
        creates later (a create still waiting on a rate limit, the final edit's overflow) are linked to
        it as soon as they exist. An empty answer is kept too (as no text): a reply to it goes on from the
        member's prompt. Failures here are logged."""
        if not outcome.text.strip() and not outcome.complete:
            return  # nothing was answered (an error): a failed turn is not part of the conversation
        meta = outcome.result.meta if outcome.result is not None else None
        known = target.message_ids
        try:
            _, answer_turn = await self.conversations.record_exchange(
                conversation_id=turn.key, parent_id=turn.parent_turn, guild_id=where.guild_id,
                channel_id=where.channel_id, user_id=where.user_id, prompt=prompt, answer=outcome.text,
                model=meta.model_used if meta else None,
                complete=outcome.complete, prompt_message_ids=prompt_message_ids, answer_message_ids=known,
            )
        except Exception:
            log.exception("could not record the conversation turn")
            return

        async def link(*message_ids: int) -> None:
            try:
                await self.conversations.link_messages(answer_turn, message_ids)
            except Exception:
                log.exception("could not link the answer's messages")

        target.on_created = link
        created_meanwhile = [m for m in target.message_ids if m not in known]
        if created_meanwhile:
            await link(*created_meanwhile)
