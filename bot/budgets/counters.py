"""The daily counters (``quota_counters``): what each member and guild used and holds, per kind.

Callers run these inside ``store.transaction()`` (the store lock is then held for them).
"""

from __future__ import annotations

from bot.storage.store import Store

#: (scope, kind) -> (used, reserved)
Counters = dict[tuple[str, str], tuple[float, float]]


async def read(store: Store, guild_id: int, user_id: int, day: str) -> Counters:
    """The member's counters and their guild's for one day."""
    rows = await store.db.execute_fetchall(
        "SELECT scope, kind, used, reserved FROM quota_counters WHERE day = ? AND guild_id = ?"
        " AND ((scope = 'member' AND user_id = ?) OR (scope = 'guild' AND user_id = 0))",
        (day, guild_id, user_id),
    )
    return {(r[0], r[1]): (float(r[2]), float(r[3])) for r in rows}


async def add(
    store: Store, guild_id: int, user_id: int, day: str, with_guild: bool,
    used: dict[str, float], reserved: dict[str, float],
) -> None:
    """Add ``used`` and ``reserved`` deltas to the member's (and, ``with_guild``, the guild's) counters."""
    kinds = set(used) | set(reserved)
    rows = []
    for scope, uid in (("member", user_id), ("guild", 0)):
        if scope == "guild" and not with_guild:
            continue
        for kind in kinds:
            du, dr = used.get(kind, 0.0), reserved.get(kind, 0.0)
            if du or dr:
                rows.append((scope, guild_id, uid, day, kind, du, dr, dr))
    if rows:
        await store.executemany(
            "INSERT INTO quota_counters(scope, guild_id, user_id, day, kind, used, reserved)"
            " VALUES (?, ?, ?, ?, ?, ?, MAX(?, 0))"
            " ON CONFLICT(scope, guild_id, user_id, day, kind) DO UPDATE SET"
            " used = used + excluded.used,"
            " reserved = MAX(0, reserved + ?)",
            rows,
        )


async def one(store: Store, scope: str, guild_id: int, user_id: int, kind: str, day: str) -> tuple[float, float]:
    """(used, reserved) of one counter."""
    row = await store.fetchone(
        "SELECT used, reserved FROM quota_counters"
        " WHERE scope = ? AND guild_id = ? AND user_id = ? AND day = ? AND kind = ?",
        (scope, guild_id, user_id if scope == "member" else 0, day, kind),
    )
    return (float(row[0]), float(row[1])) if row else (0.0, 0.0)
