"""Trigger words: words (or short phrases) that count as a mention of the bot in a channel.

An admin gives them as one comma-separated text (``/config channel triggers:"gatecord, hey bot"``);
they are kept lower-case, without duplicates. A trigger matches as a whole word, in any case:
``bot`` matches "Bot, help" but not "robot" or "bots".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from bot.guilds.audit import InvalidSetting

__all__ = ["MAX_TRIGGERS", "MAX_TRIGGER_LENGTH", "MIN_TRIGGER_LENGTH", "parse_triggers", "trigger_pattern"]

MAX_TRIGGERS = 10
MAX_TRIGGER_LENGTH = 32
MIN_TRIGGER_LENGTH = 2
#: letters/digits, with spaces, - or ' inside (it starts and ends with a letter or digit, so whole-word
#: matching means something)
_SHAPE = re.compile(r"\w(?:[\w' -]*\w)?")
_RESET_HINT = "`/config reset` with setting `triggers` removes them"


def parse_triggers(value: Any, *, field: str = "triggers") -> list[str]:
    """``"Gatecord, hey  bot"`` (or a list of words) → ``["gatecord", "hey bot"]``; raises
    ``InvalidSetting`` with the sentence to show the admin."""
    if isinstance(value, str):
        items: Iterable[Any] = re.split(r"[,\n]", value)
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise InvalidSetting(field, "Triggers must be words separated by commas, e.g. `gatecord, hey bot`.")
    words: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidSetting(field, "Triggers must be words separated by commas, e.g. `gatecord, hey bot`.")
        word = " ".join(item.split()).lower()
        if not word or word in words:
            continue
        if len(word) > MAX_TRIGGER_LENGTH:
            raise InvalidSetting(
                field, f"The trigger `{_shown(word)}` is {len(word)} characters long; at most {MAX_TRIGGER_LENGTH}."
            )
        if len(word) < MIN_TRIGGER_LENGTH:
            raise InvalidSetting(
                field, f"The trigger `{_shown(word)}` is too short: a trigger needs at least "
                f"{MIN_TRIGGER_LENGTH} characters."
            )
        if not _SHAPE.fullmatch(word):
            raise InvalidSetting(
                field, f"`{_shown(word)}` can't be a trigger: use letters and digits (spaces, - and ' only between "
                "them), and separate triggers with commas."
            )
        words.append(word)
    if not words:
        raise InvalidSetting(field, f"Give at least one trigger word (separated by commas); {_RESET_HINT}.")
    if len(words) > MAX_TRIGGERS:
        raise InvalidSetting(field, f"That is {len(words)} triggers; at most {MAX_TRIGGERS} are allowed.")
    return words


@functools.lru_cache(maxsize=256)
def trigger_pattern(triggers: tuple[str, ...]) -> re.Pattern[str] | None:
    """A pattern finding any of ``triggers`` as a whole word (case-insensitive); None for no triggers."""
    alternatives = [r"\s+".join(re.escape(part) for part in word.split()) for word in triggers if word.strip()]
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _shown(word: str) -> str:
    return word.replace("`", "'")[:40]
