"""The daily counters (``quota_counters``): what each member and guild used and holds, per kind.

The functions here take a ``SyncTx`` and run inside one ``store.run()`` body. Exact under many
processes: a body that decides from counters writes (and so locks) every row it reads or will
write in its first ``add()``, one statement in key order, reading them back; a later ``add()`` in
the body only corrects rows it already holds. Every transaction thus takes its counter locks once,
in the same global order, so two of them never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

from bot.storage.store import Store
from bot.storage.tx import SyncTx

__all__ = ["Key", "Counters", "Deltas", "owners", "keys_for", "add", "read", "one", "merge"]

#: (scope, guild_id, user_id, day, kind); user_id is 0 for the guild scope
Key = tuple[str, int, int, str, str]
#: key -> (used, reserved)
Counters = dict[Key, tuple[float, float]]
#: key -> (used delta, reserved delta)
Deltas = dict[Key, tuple[float, float]]

_COLUMNS = "scope, guild_id, user_id, day, kind"
_ZERO = (0.0, 0.0)
#: rows per statement (7 parameters each stays far below both databases' parameter limits)
_CHUNK = 500


def owners(guild_id: int, user_id: int, with_guild: bool) -> tuple[tuple[str, int, int], ...]:
    """(scope, guild_id, user_id) of the counters a requester's use goes to: the guild's (if any), theirs."""
    member = ("member", guild_id, user_id)
    return (("guild", guild_id, 0), member) if with_guild else (member,)


def keys_for(guild_id: int, user_id: int, day: str, with_guild: bool, kinds: Iterable[str]) -> list[Key]:
    """The member's keys for ``kinds`` (and the guild's, ``with_guild``), in key order."""
    ordered = sorted(kinds)
    return [(scope, gid, uid, day, kind) for scope, gid, uid in owners(guild_id, user_id, with_guild)
            for kind in ordered]


def merge(into: Deltas, guild_id: int, user_id: int, day: str, with_guild: bool,
          used: Mapping[str, float], reserved: Mapping[str, float], *, sign: float = 1.0) -> None:
    """Add ``used``/``reserved`` per kind (times ``sign``) to ``into`` for the member (and the guild)."""
    scopes = owners(guild_id, user_id, with_guild)
    for kind in (used.keys() | reserved.keys()) if used else reserved:
        du, dr = sign * float(used.get(kind, 0.0)), sign * float(reserved.get(kind, 0.0))
        if du or dr:
            for scope, gid, uid in scopes:
                key = (scope, gid, uid, day, kind)
                before = into.get(key)
                into[key] = (du, dr) if before is None else (before[0] + du, before[1] + dr)


@lru_cache(maxsize=64)
def _add_sql(rows: int, returning: bool) -> str:
    return (
        f"INSERT INTO quota_counters({_COLUMNS}, used, reserved) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
        + f" ON CONFLICT ({_COLUMNS}) DO UPDATE SET used = quota_counters.used + excluded.used,"
        " reserved = CASE WHEN quota_counters.reserved + excluded.reserved > 0"
        " THEN quota_counters.reserved + excluded.reserved ELSE 0 END"
        + (f" RETURNING {_COLUMNS}, used, reserved" if returning else "")
    )


def add(tx: SyncTx, deltas: Deltas, *, returning: Iterable[Key] = ()) -> Counters:
    """Apply ``deltas`` in key order (``reserved`` never goes below 0); the new values of ``returning``.

    The rows of ``returning`` are written too (a zero delta where they have none), so every row is
    locked until the transaction ends (PostgreSQL: ``ON CONFLICT DO UPDATE`` locks the row it meets
    and works on its latest version; SQLite has one writer) and read back as it is now.
    A negative ``reserved`` delta returns a hold, whose row exists since the reservation made it
    (counters are never deleted), so only the ``DO UPDATE`` branch has to clamp.
    """
    found: Counters = dict.fromkeys(returning, _ZERO)
    rows = [(key, delta) for key, delta in deltas.items() if delta[0] or delta[1] or key in found]
    if found:
        rows += [(key, _ZERO) for key in found if key not in deltas]
    rows.sort()
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        params: list[object] = []
        for key, delta in chunk:
            params += key
            params += delta
        if not found:
            tx.execute(_add_sql(len(chunk), False), params)
            continue
        for r in tx.fetchall(_add_sql(len(chunk), True), params):
            key = (r[0], int(r[1]), int(r[2]), r[3], r[4])
            if key in found:
                found[key] = (float(r[5]), float(r[6]))
    return found


def read(tx: SyncTx, guild_id: int, user_id: int, day: str) -> dict[tuple[str, str], tuple[float, float]]:
    """The member's counters and their guild's for one day, by (scope, kind); not locked."""
    rows = tx.fetchall(
        "SELECT scope, kind, used, reserved FROM quota_counters WHERE day = ? AND guild_id = ?"
        " AND ((scope = 'member' AND user_id = ?) OR (scope = 'guild' AND user_id = 0))",
        (day, guild_id, user_id),
    )
    return {(r[0], r[1]): (float(r[2]), float(r[3])) for r in rows}


async def one(store: Store, scope: str, guild_id: int, user_id: int, kind: str, day: str) -> tuple[float, float]:
    """(used, reserved) of one counter."""
    row = await store.fetchone(
        "SELECT used, reserved FROM quota_counters"
        " WHERE scope = ? AND guild_id = ? AND user_id = ? AND day = ? AND kind = ?",
        (scope, guild_id, user_id if scope == "member" else 0, day, kind),
    )
    return (float(row[0]), float(row[1])) if row else (0.0, 0.0)
