"""Auto-answer in help channels: a new post gets an answer from the server's knowledge, or silence.

With the channel setting ``auto_answer`` (a forum, or a text channel; threads inherit it), each new post
— a forum post's first message, or a message in the text channel — is searched in the guild's knowledge
base (``bot.knowledge.search``, on the poster's account). Hits at ``min_score`` or above
(``[knowledge] answer_min_score``) become the model's excerpts; the answer is a chat turn of the poster's
(``ChatService.answer_unasked``: admitted, charged, streamed, recorded), in the post's thread or in a
thread opened from the message. Under it, the sources and **Solved** / **Not helpful** (bot/auto_answer/
buttons.py), whose presses are kept in ``knowledge_answers``. Nothing close enough, or anything that stops
the answer (budget, busy, no thread), means silence: the member did not ask the bot.

A post the chat answers anyway (a mention, a trigger word, a ``listen`` channel) is left to the chat.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import discord

from bot.auto_answer.buttons import OutcomeHandler, outcome_view
from bot.auto_answer.outcomes import AnswerOutcomes, AnswerRecord, Outcome
from bot.auto_answer.prompt import KnowledgeHit, grounded_prompt, sources_line
from bot.budgets.rules import Requester
from bot.chat.service import UnaskedTurn
from bot.chat.starting import is_mentioned, thread_name
from bot.rendering.replies import NO_MENTIONS
from bot.rendering.user_facing import UserFacingError
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.chat.service import ChatService
    from bot.guilds.config import GuildConfig

log = logging.getLogger(__name__)

__all__ = ["AutoAnswerService", "Decided", "Knowledge", "NotYours", "Post", "UnknownAnswer", "new_post"]

#: until ``[knowledge] answer_min_score`` is read (cosine similarity, higher is closer)
DEFAULT_MIN_SCORE = 0.5
HANDLED_KEPT = 200
ASK_LINE = "-# Did this answer the question? The poster or a moderator can mark it."
STATUS = {"solved": "✅ Marked **solved**", "not_helpful": "👎 Marked **not helpful**"}
_MENTION = re.compile(r"<@!?\d+>")


class Knowledge(Protocol):
    """What auto-answer uses of ``bot.knowledge`` (``bot.knowledge.service.KnowledgeService``)."""

    async def available_in(self, guild_id: int) -> bool: ...

    async def search(self, requester: Requester, query: str, *, limit: int | None = None,
                     min_score: float | None = None) -> Sequence[KnowledgeHit]: ...


@dataclass(frozen=True, slots=True)
class Post:
    """A new post in a help channel."""

    title: str  # a forum post's title ("" in a text channel)
    text: str
    help_channel_id: int  # the forum or text channel
    in_forum: bool

    @property
    def query(self) -> str:
        return f"{self.title}\n{self.text}".strip()


def new_post(message: discord.Message) -> Post | None:
    """``message`` as a new post: a forum post's first message (it has its thread's id), or a message of
    its own (not a reply) in a text channel; else None."""
    channel = message.channel
    text = _MENTION.sub("", message.content).strip()
    if isinstance(channel, discord.Thread):
        if message.id != channel.id or not isinstance(channel.parent, discord.ForumChannel):
            return None
        return Post(channel.name, text, channel.parent.id, in_forum=True)
    if isinstance(channel, discord.TextChannel) and message.reference is None:
        return Post("", text, channel.id, in_forum=False)
    return None


class UnknownAnswer(UserFacingError):
    code = "unknown_answer"

    def user_message(self) -> str:
        return "This answer is no longer on record, so it can't be marked."


class NotYours(UserFacingError):
    code = "not_yours"

    def user_message(self) -> str:
        return "Only the member who posted the question, or a moderator, can mark this answer."


@dataclass(frozen=True, slots=True)
class Decided:
    record: AnswerRecord
    previous: Outcome | None


def is_moderator(permissions: discord.Permissions) -> bool:
    """Who may mark any answer besides its poster: those who manage messages, threads or the server."""
    return permissions.manage_messages or permissions.manage_threads or permissions.manage_guild


def feedback_text(sources: str, status: str | None = None) -> str:
    """The message under an answer: its sources, then the question, or who marked it how."""
    return f"{sources}\n{status or ASK_LINE}"


def marked_text(content: str, outcome: Outcome, user_id: int) -> str:
    """``content`` (a feedback message) with its last line saying who marked the answer how."""
    kept = [line for line in content.splitlines() if line and not line.startswith("-# ")]
    return feedback_text("\n".join(kept), f"-# {STATUS[outcome]} by <@{user_id}>.")


class AutoAnswerService:
    """Built once by the factory (``bot.auto_answer``); ``knowledge`` is wired there too."""

    def __init__(self, store: Store, chat: ChatService, guild_config: GuildConfig, *,
                 min_score: float = DEFAULT_MIN_SCORE) -> None:
        self.chat = chat
        self.guild_config = guild_config
        self.min_score = min_score
        self.outcomes = AnswerOutcomes(store)
        #: ``bot.knowledge``; None (or not available): nothing is answered
        self.knowledge: Knowledge | None = None
        #: the cog's press handler (cogs/auto_answer.py); None: the buttons say feedback is unavailable
        self.buttons: OutcomeHandler | None = None
        #: what became of the latest posts of auto_answer channels: message id -> "answered" or why not
        #: (for the logs' reader, the sandbox and tests: silence is otherwise invisible)
        self.handled: dict[int, str] = {}

    async def on_message(self, message: discord.Message, me: discord.abc.User) -> None:
        """Answer ``message`` if it is a new post in an ``auto_answer`` channel and the knowledge base
        holds something close enough; never raises (failures are logged)."""
        post = None
        try:
            post = await self._post_to_answer(message, me)
            if post is not None:
                self._handled(message.id, await self._answer(message, post))
        except Exception:
            log.exception("auto-answer failed")
            if post is not None:
                self._handled(message.id, "failed")

    def _handled(self, message_id: int, what: str) -> None:
        self.handled[message_id] = what
        while len(self.handled) > HANDLED_KEPT:
            del self.handled[next(iter(self.handled))]

    async def _post_to_answer(self, message: discord.Message, me: discord.abc.User) -> Post | None:
        knowledge = self.knowledge
        if knowledge is None or message.guild is None:
            return None
        if message.author.bot or message.webhook_id is not None or message.type is not discord.MessageType.default:
            return None
        post = new_post(message)
        if post is None or not post.text:
            return None
        channel = message.channel
        parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
        cfg = await self.guild_config.effective(message.guild.id, channel.id, parent_id)
        if not cfg.auto_answer:
            return None
        if not await knowledge.available_in(message.guild.id):  # on the guild's gateway (its own, if any)
            return None
        if cfg.listen or (cfg.answer_mentions and is_mentioned(message.content, me.id, cfg.triggers)):
            return None  # the chat answers it
        return post

    async def _answer(self, message: discord.Message, post: Post) -> str:
        """What became of the post: "answered", or why not."""
        assert self.knowledge is not None and message.guild is not None
        requester = Requester.from_message(message)
        try:
            found = await self.knowledge.search(requester, post.query, min_score=self.min_score)
        except Exception as exc:  # over the embedding budget, the gateway down …: the member asked nothing
            log.info("auto-answer: knowledge search failed: %r", exc)
            return "search failed"
        hits = [h for h in found if h.score >= self.min_score]
        if not hits:
            log.debug("auto-answer: nothing close enough for message %s", message.id)
            return "nothing close enough"
        fallback = f"Question from {getattr(message.author, 'display_name', message.author.name)}"
        ask = UnaskedTurn(
            prompt=grounded_prompt(post.title, post.text, hits), recorded_prompt=post.query,
            thread_name=None if post.in_forum else thread_name(post.text, fallback),
            footer_extra=("from the server's knowledge",),
        )
        answered = await self.chat.answer_unasked(message, ask)
        if answered is None:
            return "not answered"  # busy, over budget, no thread: logged by the chat service
        if not answered.outcome.complete:
            return "answer failed"  # the answer shows the error instead
        answer_id = await self.outcomes.record(
            guild_id=message.guild.id, channel_id=post.help_channel_id, thread_id=answered.thread.id,
            message_id=answered.message_ids[0] if answered.message_ids else None, user_id=message.author.id,
        )
        await answered.thread.send(feedback_text(sources_line(hits)), view=outcome_view(answer_id),
                                   allowed_mentions=NO_MENTIONS)
        return "answered"

    async def decide(self, answer_id: int, outcome: Outcome, *, user_id: int,
                     permissions: discord.Permissions) -> Decided:
        """Record a press of Solved / Not helpful: by the poster or a moderator (else ``NotYours``)."""
        record = await self.outcomes.get(answer_id)
        if record is None:
            raise UnknownAnswer(f"no answer {answer_id}")
        if user_id != record.user_id and not is_moderator(permissions):
            raise NotYours(f"user {user_id} may not mark answer {answer_id}")
        decided = await self.outcomes.decide(answer_id, outcome)
        if decided is None:
            raise UnknownAnswer(f"no answer {answer_id}")
        return Decided(*decided)
