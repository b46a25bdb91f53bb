"""Text of the /video messages: progress, the result's caption, the link when the file cannot be
attached. Pure functions, no Discord calls; the prompt is quoted escaped and every
message is sent with ``allowed_mentions`` none by the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import discord

from bot.media.render import format_seconds, progress_bar, quote_prompt
from bot.rendering import limits as discord_limits

__all__ = ["describe_video", "render_video_link", "render_video_progress",
           "render_video_result", "size_text", "timestamp"]

HEAD = "🎬"


def size_text(n: int) -> str:
    """Bytes for people: 812 KB, 9.5 MB."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    return f"{max(1, round(n / 1024))} KB"


def timestamp(unix: float, style: str = "R") -> str:
    """A Discord timestamp (``<t:…:R>`` shows "in 59 minutes" in each member's own clock)."""
    return discord.utils.format_dt(dt.datetime.fromtimestamp(unix, tz=dt.UTC), style)  # type: ignore[arg-type]


def describe_video(*, model: str, duration: float | None, size: str | None, job_id: int) -> str:
    """`model` · 8 s · 1280x720 · job #12 (what is known of it)."""
    parts = [f"`{model}`"]
    if duration:
        parts.append(format_seconds(duration))
    if size:
        parts.append(size)
    parts.append(f"job #{job_id}")
    return " · ".join(parts)


def render_video_progress(
    *, prompt: str, model: str, duration: float | None, size: str | None, job_id: int, status: str | None,
    percent: float | None, elapsed: float, queue_position: int,
) -> str:
    """Waiting in the bot's queue (position), submitting, queued at the gateway, or processing (a bar when
    the gateway gives a percentage)."""
    about = describe_video(model=model, duration=duration, size=size, job_id=job_id)
    head = f"{HEAD} **{quote_prompt(prompt)}**\n{about}\n"
    took = format_seconds(elapsed)
    if queue_position > 0:
        line = f"⏳ Waiting in the queue — position {queue_position} · {took}"
    elif status is None:
        line = f"📤 Sending to the video gateway · {took}"
    elif status == "queued":
        line = f"🕒 Queued at the video gateway · {took}"
    elif percent is not None:
        fraction = max(0.0, min(1.0, percent / 100))
        line = f"`{progress_bar(fraction)}` {round(fraction * 100)}% · {status} · {took}"
    else:
        line = f"⚙️ {status.capitalize()} · {took}"
    return _fit(head + line)


def render_video_result(
    *, prompt: str, model: str, duration: float | None, size: str | None, job_id: int, user_id: int,
    elapsed: float, notes: Sequence[str] = (),
) -> str:
    lines = [
        f"{HEAD} **{quote_prompt(prompt)}**",
        f"{describe_video(model=model, duration=duration, size=size, job_id=job_id)} · {format_seconds(elapsed)}"
        f" · for <@{user_id}>",
    ]
    lines.extend(f"-# {n}" for n in notes)
    return _fit("\n".join(lines))


def render_video_link(
    *, prompt: str, model: str, duration: float | None, size: str | None, job_id: int, user_id: int,
    elapsed: float, url: str | None, expires_at: float | None, why: str, now: float,
) -> str:
    """The result as a link (it could not be attached), with its expiry as a Discord timestamp."""
    lines = [
        f"{HEAD} **{quote_prompt(prompt)}**",
        f"{describe_video(model=model, duration=duration, size=size, job_id=job_id)} · {format_seconds(elapsed)}"
        f" · for <@{user_id}>",
        f"-# {why}",
    ]
    if url is None:
        lines.append("The gateway's link to the video is not known any more, so it cannot be shown.")
    elif expires_at is not None and expires_at <= now:
        lines.append(f"The gateway's [link to the video](<{url}>) expired {timestamp(expires_at)}.")
    elif expires_at is not None:
        lines.append(f"📥 [Download the video](<{url}>) — the link expires {timestamp(expires_at)}.")
    else:
        lines.append(f"📥 [Download the video](<{url}>) — the gateway keeps it for a limited time.")
    text = "\n".join(lines)
    if len(text) > discord_limits.MESSAGE_CONTENT:  # a very long URL: the prompt gives way, never the link
        text = "\n".join([f"{HEAD} job #{job_id} · for <@{user_id}>", *lines[2:]])
    return _fit(text)


def _fit(text: str) -> str:
    limit = discord_limits.MESSAGE_CONTENT
    return text if len(text) <= limit else text[: limit - 1] + "…"
