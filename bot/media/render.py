"""Text of the media-job messages: progress, result, failure, cancellation. Pure functions, no Discord calls.

The prompt is member text: it is markdown-escaped and trimmed, and every message that carries it is
sent with ``allowed_mentions`` none by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import discord

from bot.rendering import limits as discord_limits

BAR_WIDTH = 12
PROMPT_SHOWN = 600  # characters of the prompt quoted in a message (well under the 2000 limit)


def quote_prompt(prompt: str, limit: int = PROMPT_SHOWN) -> str:
    """The prompt for display: one line, markdown escaped, trimmed with an ellipsis."""
    text = " ".join(prompt.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return discord.utils.escape_markdown(text)


def progress_fraction(elapsed: float, expected: float) -> float:
    """An estimate that moves steadily and never claims completion before the result (max 0.95)."""
    if elapsed <= 0:
        return 0.0
    expected = max(expected, 0.5)
    return min(0.95, 1 - math.exp(-elapsed / expected))


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs:02d} s"


def render_progress(
    *, prompt: str, model: str, count: int, elapsed: float, expected: float, queue_position: int,
    job_id: int, icon: str = "🎨", what: str = "image",
) -> str:
    """The progress message: waiting in line (with position) or generating (bar + elapsed)."""
    head = f"{icon} **{quote_prompt(prompt)}**\n{_plural(count, what)} · `{model}` · job #{job_id}\n"
    if queue_position > 0:
        line = f"⏳ Waiting in the queue — position {queue_position} · {format_seconds(elapsed)}"
    else:
        fraction = progress_fraction(elapsed, expected)
        line = f"`{progress_bar(fraction)}` {round(fraction * 100)}% · generating · {format_seconds(elapsed)}"
    return _fit(head + line)


def render_result(
    *, prompt: str, model: str, seeds: Sequence[int | None], user_id: int, job_id: int, elapsed: float,
    notes: Sequence[str] = (),
) -> str:
    known = [s for s in seeds if s is not None]
    if not known:
        seed_text = "seed n/a"
    elif len(set(known)) == 1:
        seed_text = f"seed {known[0]}"
    else:
        seed_text = "seeds " + ", ".join(str(s) for s in known)
    lines = [
        f"🖼️ **{quote_prompt(prompt)}**",
        f"{seed_text} · `{model}` · job #{job_id} · {format_seconds(elapsed)} · for <@{user_id}>",
    ]
    lines.extend(f"-# {n}" for n in notes)
    return _fit("\n".join(lines))


def render_failure(*, prompt: str, job_id: int, reason: str, refunded: bool = True) -> str:
    tail = " Nothing was charged." if refunded else ""
    return _fit(f"⚠️ **{quote_prompt(prompt)}**\nJob #{job_id} failed: {reason}{tail}")


def render_cancelled(*, prompt: str, job_id: int, by: int, charged: str) -> str:
    """``charged``: what the gateway billed before it stopped, worded (empty: nothing)."""
    tail = f"Charged: {charged}." if charged else "Nothing was charged."
    return _fit(f"🛑 **{quote_prompt(prompt)}**\nJob #{job_id} was cancelled by <@{by}>. {tail}")


def render_waiting(*, queue_position: int, elapsed: float) -> str:
    return f"⏳ Waiting in the queue — position {queue_position} · {format_seconds(elapsed)}"


def render_music_progress(
    *, prompt: str, model: str, seconds: int | None, elapsed: float, queue_position: int, job_id: int,
) -> str:
    length = f"{seconds} s of music" if seconds else "music"
    head = f"🎵 **{quote_prompt(prompt)}**\n{length} · `{model}` · job #{job_id}\n"
    if queue_position > 0:
        line = render_waiting(queue_position=queue_position, elapsed=elapsed)
    else:
        line = f"🎼 composing · {format_seconds(elapsed)}"
    return _fit(head + line)


def render_music_result(
    *, prompt: str, model: str, seconds: float | None, user_id: int, job_id: int, elapsed: float,
    notes: Sequence[str] = (),
) -> str:
    length = f"{format_seconds(math.ceil(seconds))} · " if seconds else ""
    lines = [
        f"🎵 **{quote_prompt(prompt)}**",
        f"{length}`{model}` · job #{job_id} · made in {format_seconds(elapsed)} · for <@{user_id}>",
    ]
    lines.extend(f"-# {n}" for n in notes)
    return _fit("\n".join(lines))


def render_unknown(*, prompt: str, job_id: int) -> str:
    return _fit(
        f"❔ **{quote_prompt(prompt)}**\nJob #{job_id}: status unknown — the bot restarted while the gateway was "
        "working on it, so it was not resubmitted. Press Retry to run it again (charged as a new generation)."
    )


def render_single(*, prompt: str, index: int, count: int, seed: int | None, job_id: int,
                  notes: Sequence[str] = ()) -> str:
    seed_text = f" · seed {seed}" if seed is not None else ""
    lines = [f"🔍 Image {index} of {count} from job #{job_id}{seed_text}", f"**{quote_prompt(prompt, 300)}**"]
    lines.extend(f"-# {n}" for n in notes)
    return _fit("\n".join(lines))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _fit(text: str) -> str:
    limit = discord_limits.MESSAGE_CONTENT
    return text if len(text) <= limit else text[: limit - 1] + "…"
