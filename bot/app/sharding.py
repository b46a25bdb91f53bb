"""Which Discord shards this process holds, and the seam for coordinating IDENTIFY across processes.

Discord sends a guild's events to shard ``(guild_id >> 22) % shard_count``; a ``gatecord run``
process connects the shards of ``[discord] shard_ids`` (all of them when unset) out of
``shard_count`` (Discord's recommended count when unset).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Protocol


class IdentifyGate(Protocol):
    """Decides when a shard may IDENTIFY (Discord allows one per ``max_concurrency`` bucket every 5 s,
    counted over every process of the bot). ``wait_turn`` returns when ``shard_id`` may go."""

    async def wait_turn(self, shard_id: int) -> None: ...


def held_shards(shard_ids: Sequence[int] | None, shard_count: int | None) -> list[int] | None:
    """The shards this process connects; ``None`` while the count is not known yet (asked of Discord)."""
    if shard_ids:
        return sorted(shard_ids)
    return None if shard_count is None else list(range(shard_count))


def _named(ids: Sequence[int]) -> str:
    return f"shard {ids[0]}" if len(ids) == 1 else "shards " + ",".join(str(i) for i in ids)


def describe_shards(
    held: Sequence[int], shard_count: int, connected: Collection[int], *,
    rate_limited: Collection[int] = (), latency: float | None = None,
) -> tuple[bool, str]:
    """``(all held shards connected, "shards 0,1 of 2 connected")``; the ones down are named apart:
    ``"shard 0 of 2 connected; shard 1 of 2 not connected"``. A shard at the gateway's send rate limit
    (120 a minute) is named too, but still counts as connected: that passes within the minute.
    ``latency`` (seconds, the connected shards' average) is shown when it is a number."""
    up = [i for i in held if i in connected]
    down = [i for i in held if i not in connected]
    limited = [i for i in up if i in rate_limited]
    parts = []
    if up:
        shown = f", latency {latency * 1000:.0f} ms" if latency is not None and math.isfinite(latency) else ""
        parts.append(f"{_named(up)} of {shard_count} connected{shown}")
    if down:
        parts.append(f"{_named(down)} of {shard_count} not connected")
    if limited:
        parts.append(f"{_named(limited)} at the gateway's send rate limit")
    return not down, "; ".join(parts)
