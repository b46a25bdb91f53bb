"""Wording of the admin and /mylimits replies (pure functions, no Discord calls)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.auto_answer.outcomes import AnswerStats
from bot.budgets.ceiling import is_tier_source
from bot.budgets.reports import GuildLimits, UsageLimits
from bot.budgets.rules import KIND_NOUNS, KINDS, format_amount, format_duration, limit_text
from bot.guilds.audit import AuditEntry
from bot.guilds.config import FIELD_HELP, FIELD_LABELS, FIELDS, EffectiveConfig
from bot.premium.service import TierStatus

MAX_SHOWN_PROMPT = 300


def _value(name: str, value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):  # triggers
        return ", ".join("`" + str(v).replace("`", "'") + "`" for v in value) or "none"
    if name == "system_prompt":
        text = str(value).replace("`", "'")
        short = text if len(text) <= MAX_SHOWN_PROMPT else text[: MAX_SHOWN_PROMPT - 1] + "…"
        return f"“{short}”"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "`" + str(value).replace("`", "'") + "`"


def tier_text(status: TierStatus | None, *, in_server: bool) -> str:
    """Which of the operator's tiers applies and why (empty when ``[premium]`` is not configured):
    "Tier: **Pro** — this server's subscription (SKU 1), renews <t:…:R>", "free tier: no subscription",
    "this server uses its own AI gateway: only its own limits"."""
    if status is None or not status.configured:
        return ""
    if status.own_gateway:
        return "Tier: this server uses its own AI gateway: only its own limits apply (no tier ceiling)."
    if not status.uses:
        who = "this server has" if in_server else "you have"
        text = f"Tier: free tier: {who} no subscription."
    else:
        parts = []
        for use in status.uses:
            whose = "this server's subscription" if use.whose == "server" else "your own subscription"
            ends = use.entitlement.ends_at
            when = f", renews <t:{int(ends)}:R>" if ends is not None else ""
            parts.append(f"**{use.tier.name}** — {whose} (SKU {use.tier.sku_id}){when}")
        text = "Tier: " + "; ".join(parts) + "."
        if len({use.whose for use in status.uses}) > 1:
            text += " The more generous of them applies to each budget."
    for kind, (left, granted) in sorted(status.pools.items()):
        text += (f"\nBonus from one-time purchases: {format_amount(kind, left)} {KIND_NOUNS[kind][1]} left of "
                 f"{format_amount(kind, granted)} (used once the tier's daily limit is reached).")
    return text


def mylimits_text(limits: UsageLimits, now: datetime, *, reason: str = "", tier: str = "") -> str:
    """The member's remaining budgets, tighter scope first; unlimited kinds on one line. Outside a server
    that installed Gatecord (``limits.guild_id`` None) it is their own budget, and ``reason`` says why;
    ``tier`` which of the operator's tiers applies (``tier_text``)."""
    wait = format_duration((limits.resets_at - now).total_seconds())
    own = limits.guild_id is None
    lines = [f"**Your {'own ' if own else ''}budgets today** (reset in {wait}, at 00:00 UTC)"]
    if own:
        lines.append(f"-# Your own budget applies here{f' ({reason})' if reason else ''}: no server pays for "
                     "what you ask in DMs or where only you installed Gatecord.")
    if tier:
        lines.append(tier)
    unlimited = []
    for kind in KINDS:
        scoped = [line for line in (limits.line("member", kind), limits.line("guild", kind))
                  if line is not None and not line.unlimited]
        noun = KIND_NOUNS[kind][1]
        if not scoped:
            unlimited.append(noun)
            continue
        tight = min(scoped, key=lambda line: line.remaining or 0)
        left = format_amount(kind, tight.remaining or 0)
        where = " (server-wide budget)" if tight.scope == "guild" else ""
        if tight.source == "owner":
            where = " (set for you by the bot's owner)"
        elif is_tier_source(tight.source):
            where = f" ({'server-wide budget, ' if tight.scope == 'guild' else ''}{tight.source})"
        pending = f", {format_amount(kind, tight.reserved)} in progress" if tight.reserved else ""
        lines.append(f"• {noun}: **{left}** of {limit_text(kind, tight.limit)} left{where}{pending}")
    if unlimited:
        lines.append("• unlimited: " + ", ".join(unlimited))
    return "\n".join(lines)


def _source_note(source: str) -> str:
    if source == "config":
        return " (config default)"
    if is_tier_source(source):
        return f" ({source} limit)"
    return ""


def quota_show_text(
    limits: GuildLimits, today: Mapping[str, float], role_names: Mapping[int, str], *, tier: str = ""
) -> str:
    lines = ["**Daily budgets** (UTC day; -1 = unlimited)"]
    if tier:
        lines.append(tier)
    lines += ["", "__Whole server__"]
    for kind in KINDS:
        value, source = limits.guild[kind]
        lines.append(f"• {KIND_NOUNS[kind][1]}: {format_amount(kind, today.get(kind, 0))} used of "
                     f"{limit_text(kind, value)}" + _source_note(source))
    lines += ["", "__Each member__"]
    for kind in KINDS:
        value, source = limits.member[kind]
        default = _source_note(source)
        lines.append(f"• {KIND_NOUNS[kind][1]}: {limit_text(kind, value)}{default}")
    if limits.roles:
        lines += ["", "__Role overrides__ (the most generous of a member's roles applies)"]
        for role_id, kinds in sorted(limits.roles.items()):
            name = role_names.get(role_id, f"<@&{role_id}>")
            parts = ", ".join(f"{KIND_NOUNS[k][1]} {limit_text(k, v)}" for k, v in sorted(kinds.items()))
            lines.append(f"• {name}: {parts}")
    return "\n".join(lines)


def config_show_text(
    cfg: EffectiveConfig,
    sources: Mapping[str, str],
    channel_overrides: Mapping[int, Mapping[str, Any]],
    history: Iterable[AuditEntry],
    where: str,
) -> str:
    lines = [f"**Settings in {where}**"]
    for name in FIELDS:
        source = sources.get(name, "config default")
        lines.append(f"• {FIELD_LABELS[name]}: {_value(name, getattr(cfg, name))} — {source}")
    channels = [(cid, vals) for cid, vals in sorted(channel_overrides.items()) if cid]
    if channels:
        lines += ["", "**Channel overrides**"]
        for cid, vals in channels[:15]:
            values = ", ".join(f"{FIELD_LABELS[k]} {_value(k, v)}" for k, v in sorted(vals.items()))
            lines.append(f"• <#{cid}>: {values}")
    history = list(history)
    if history:
        lines += ["", "**Recent changes**"]
        for e in history:
            lines.append(f"• <t:{int(e.ts)}:R> <@{e.actor_id}> {e.target} {e.field}: "
                         f"{_audit_value(e.old_value)} → {_audit_value(e.new_value)}")
    return "\n".join(lines)


def config_help_text() -> str:
    """``/config help``: every setting, what it does, and where it is set."""
    lines = ["**Settings** (`/config channel` sets them for one channel and its threads; `/config defaults`, "
             "`/config model` and `/config system-prompt` for the whole server; `/config reset` undoes)"]
    lines += [f"• **{FIELD_LABELS[name]}**: {FIELD_HELP[name]}" for name in FIELDS]
    return "\n".join(lines)


def _audit_value(value: Any) -> str:
    if value is None:
        return "default"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def changes_text(changes: Mapping[str, tuple[Any, Any]], where: str) -> str:
    parts = [f"• {FIELD_LABELS[n]}: {_value(n, old)} → {_value(n, new)}" for n, (old, new) in changes.items()]
    return f"Updated {where}:\n" + "\n".join(parts)


#: (kind, word) of what /usage sums up, in order: "3 chat, 1 vision, 4 images, 900 tokens, …"
USAGE_PARTS: tuple[tuple[str, str], ...] = (
    ("chat_requests", "chat"), ("vision_requests", "vision"), ("images", "images"), ("tokens", "tokens"),
    ("speech_chars", "speech characters"), ("transcription_seconds", "transcription seconds"),
    ("video_seconds", "video seconds"), ("music_seconds", "music seconds"), ("embedding_tokens", "embedding tokens"),
)


def _usage_parts(values: Mapping[str, float]) -> str:
    return ", ".join(f"{format_amount(kind, values.get(kind, 0))} {word}" for kind, word in USAGE_PARTS)


def usage_totals_text(totals: Mapping[str, float]) -> str:
    """``Totals: 3 chat, 1 vision, 4 images, 900 tokens, 120 speech characters, 30 transcription seconds,
    16 video seconds, 60 music seconds.``"""
    return f"Totals: {_usage_parts(totals)}."


def top_members_text(top: Sequence[tuple[int, Mapping[str, float]]]) -> str:
    if not top:
        return "No usage recorded in this period."
    lines = ["**Top members**"]
    for i, (user_id, v) in enumerate(top, 1):
        lines.append(f"{i}. <@{user_id}> — {_usage_parts(v)}")
    return "\n".join(lines)


def auto_answers_text(stats: AnswerStats) -> str:
    """``Auto-answers: 12 given, 5 solved, 2 not helpful — solved rate 42%.``"""
    rate = stats.solved_rate
    shown = f" — solved rate {rate:.0%}" if rate is not None else ""
    return (f"Auto-answers: {stats.answers:,} given, {stats.solved:,} solved, "
            f"{stats.not_helpful:,} not helpful{shown}.")
