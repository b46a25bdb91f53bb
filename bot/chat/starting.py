"""How a conversation starts in a channel: a mention, a trigger word, ``listen``, and ``auto_thread``.

Channel settings (``/config channel``, inherited by threads): with ``listen`` every message is answered,
each member in their own conversation of that channel (``listen_conversation_id``); ``triggers`` are
words that count as a mention; with ``auto_thread`` a mention (with ``listen``, any message) opens a
public thread named after the prompt (``thread_name``) and the answer goes there (``ThreadAnswerTarget``).
When the thread can't be opened (a missing permission, a channel without threads) the member is told
once, on the answer's first line (``no_thread_note``), and the answer stays in the channel.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import discord

from bot.guilds.triggers import trigger_pattern
from bot.rendering.replies import NO_MENTIONS, ChannelReplyTarget, discord_files
from bot.rendering.stream import FileData
from bot.rendering.text import truncate

__all__ = [
    "THREAD_NAME_LIMIT",
    "ThreadAnswerTarget",
    "is_mentioned",
    "missing_thread_permission",
    "no_thread_note",
    "thread_name",
]

#: Discord's longest thread name
THREAD_NAME_LIMIT = 100
_MENTIONS = re.compile(r"<(?:@[!&]?|#)\d+>|<id:\w+>|</[\w -]+:\d+>")
_CUSTOM_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_EVERYONE = re.compile(r"@(everyone|here)\b")
_MASKED_LINK = re.compile(r"\[([^\]\n]+)\]\(<?\S+?>?\)")
_LINE_MARKUP = re.compile(r"^\s*(?:>>> |> |#{1,3} |-# |[-*] (?=\S))", re.MULTILINE)
_PAIRED = re.compile(r"\*\*|__|~~|\|\||`")
_EMPHASIS = re.compile(r"(?<!\w)([*_])(\S(?:[^\n]*?\S)?)\1(?!\w)")


def is_mentioned(content: str, me_id: int, triggers: tuple[str, ...]) -> bool:
    """The message mentions the bot, or holds one of the channel's trigger words (whole words, any case)."""
    if f"<@{me_id}>" in content or f"<@!{me_id}>" in content:
        return True
    pattern = trigger_pattern(triggers) if triggers else None
    return pattern is not None and pattern.search(content) is not None


def thread_name(prompt: str, fallback: str) -> str:
    """A thread name from the member's prompt: mentions, custom emoji markup and markdown removed,
    whitespace collapsed, cut (with …) to Discord's 100 characters; ``fallback`` when nothing is left."""
    text = _MENTIONS.sub(" ", prompt)
    text = _CUSTOM_EMOJI.sub(r":\1:", text)
    text = _EVERYONE.sub(r"\1", text)
    text = _MASKED_LINK.sub(r"\1", text)
    text = _LINE_MARKUP.sub("", text)
    text = _PAIRED.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = " ".join(text.split())
    return truncate(text or " ".join(fallback.split()) or "Chat", THREAD_NAME_LIMIT)


def missing_thread_permission(channel: object, me: discord.Member | None) -> str | None:
    """Why a thread can't be opened from a message in ``channel`` (checked before asking Discord), or None."""
    if not isinstance(channel, discord.TextChannel):
        return "threads can't be opened in this kind of channel"
    if me is None:
        return None  # not cached: Discord will say
    perms = channel.permissions_for(me)
    missing = [label for ok, label in ((perms.create_public_threads, "Create Public Threads"),
                                       (perms.send_messages_in_threads, "Send Messages in Threads")) if not ok]
    if missing:
        return f"I'm missing the **{'** and **'.join(missing)}** permission in this channel"
    return None


def no_thread_note(reason: str) -> str:
    """The answer's first line when ``auto_thread`` could not open a thread (shown once per member)."""
    return (f"-# ⚠️ No thread: {reason}, so I'm answering here. A server admin can fix that, or turn "
            "`auto_thread` off with `/config channel`.")


class ThreadAnswerTarget(ChannelReplyTarget):
    """The answer to a message, written in the thread opened from it (plain messages, not replies: the
    message it answers is the thread's starter, in the parent channel)."""

    def __init__(self, message: discord.Message, thread: discord.Thread) -> None:
        super().__init__(message)
        self.thread = thread

    async def put(self, index: int, content: str, *, files: Sequence[FileData] = ()) -> None:
        if index < len(self.messages):
            await super().put(index, content, files=files)
            return
        msg = await self.thread.send(content, files=discord_files(files), allowed_mentions=NO_MENTIONS)
        await self._created(msg)
