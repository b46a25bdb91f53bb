"""Relay API keys: ``gcr_<key_id>_<secret>``; only the sha256 of the whole key is stored.

The key id (public, 12 hex chars) finds the row; the hash is compared in constant time. Records
are cached for a few seconds; revoking through this store drops the cache entry at once (another
process, e.g. a ``gatecord web`` replica, sees the revocation within ``CACHE_TTL``). A key may
carry an expiry (``expires_at``): after it, ``authenticate`` raises ``KeyExpired``. A guild holds at
most ``max_keys`` active (unrevoked, unexpired) keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.storage.errors import IntegrityError
from bot.storage.postgres_backend import lock_key
from bot.storage.store import Store
from bot.storage.tx import SyncTx

KEY_PREFIX = "gcr_"
CACHE_TTL = 5.0
NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class RelayKey:
    key_id: str
    guild_id: int
    name: str
    channel_ids: tuple[int, ...]
    allow_mentions: bool
    created_by: int
    created_at: int
    last_used_at: int | None
    revoked_at: int | None
    avatar_url: str | None = None
    custom_identity: bool = False
    channels_from_creator: bool = False
    expires_at: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def __repr__(self) -> str:  # no hash, no secret
        return f"RelayKey(key_id={self.key_id!r}, guild_id={self.guild_id}, name={self.name!r}, active={self.active})"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: ``secret`` is the full key, shown once and never stored."""

    record: RelayKey
    secret: str

    def __repr__(self) -> str:
        return f"NewKey(record={self.record!r}, secret=<hidden>)"


class KeyNameTaken(Exception):
    """Another active key in this guild has that name."""


class KeyLimitReached(Exception):
    """The guild already holds ``limit`` active keys."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"this guild already has {limit} active relay keys")
        self.limit = limit


class KeyExpired(Exception):
    """The presented key is right but past its expiry (``expires_at``, unix time)."""

    def __init__(self, expires_at: int) -> None:
        super().__init__(f"this relay key expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires_at))}"
                         "; ask a server admin for a new one")
        self.expires_at = expires_at


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> tuple[str, str]:
    """(key_id, full key). 256 bits of randomness in the secret part."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_key_id(key: str) -> str | None:
    """The key id inside a presented key, or None when it does not look like one of ours."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    parts = key[len(KEY_PREFIX):].split("_", 1)
    if len(parts) != 2 or len(parts[0]) != 12 or not parts[1]:
        return None
    try:
        int(parts[0], 16)
    except ValueError:
        return None
    return parts[0]


def _row_to_key(row: Any) -> RelayKey:
    return RelayKey(
        key_id=row["key_id"],
        guild_id=int(row["guild_id"]),
        name=row["name"],
        channel_ids=tuple(int(c) for c in json.loads(row["channel_ids"])),
        allow_mentions=bool(row["allow_mentions"]),
        created_by=int(row["created_by"]),
        created_at=int(row["created_at"]),
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        avatar_url=row["avatar_url"],
        custom_identity=bool(row["custom_identity"]),
        channels_from_creator=bool(row["channels_from_creator"]),
        expires_at=row["expires_at"],
    )


_Cached = tuple[float, RelayKey | None, str | None]  # (read at, record, key hash)

_COLUMNS = (
    "key_id, guild_id, name, key_hash, channel_ids, allow_mentions, created_by, created_at, last_used_at, revoked_at,"
    " avatar_url, custom_identity, channels_from_creator, expires_at"
)


class KeyStore:
    def __init__(
        self, store: Store, *, cache_ttl: float = CACHE_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        """``clock``: the wall clock of creation and expiry times (tests move it)."""
        self.store = store
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._loading: dict[str, asyncio.Future[_Cached]] = {}

    async def create(
        self,
        guild_id: int,
        *,
        name: str | None = None,
        created_by: int,
        channel_ids: list[int] | tuple[int, ...] = (),
        channels_from_creator: bool = False,
        allow_mentions: bool = False,
        avatar_url: str | None = None,
        custom_identity: bool = False,
        expires_in: int | None = None,
        max_keys: int | None = None,
    ) -> NewKey:
        """Create a key for ``guild_id``; raise ``KeyNameTaken`` if an active key already has ``name``,
        ``KeyLimitReached`` if the guild already holds ``max_keys`` active, unexpired keys.
        ``channel_ids`` empty = any channel of the guild (the relay service never creates such a key now).
        ``expires_in``: seconds until the key stops working (None = never). The secret is never stored."""
        key_id, secret = generate_key()
        now = int(self.clock())
        expires_at = now + expires_in if expires_in is not None else None
        name = (name or "").strip()[:NAME_MAX] or f"key-{key_id[:6]}"
        channels = sorted(set(int(c) for c in channel_ids))
        row = (key_id, guild_id, name, hash_key(secret), json.dumps(channels), int(allow_mentions), created_by, now,
               avatar_url, int(custom_identity), int(channels_from_creator), expires_at)

        def insert(tx: SyncTx) -> None:
            if tx.dialect == "postgresql":  # processes creating keys for one guild at once count in turn
                tx.fetchval("SELECT pg_advisory_xact_lock(?)", (lock_key(f"relay-keys:{guild_id}"),))
            if tx.fetchone("SELECT 1 FROM relay_keys WHERE guild_id = ? AND name = ? AND revoked_at IS NULL",
                           (guild_id, name)) is not None:
                raise KeyNameTaken(name)
            if max_keys is not None:
                count = tx.fetchval("SELECT COUNT(*) FROM relay_keys WHERE guild_id = ? AND revoked_at IS NULL"
                                    " AND (expires_at IS NULL OR expires_at > ?)", (guild_id, now), default=0)
                if int(count) >= max_keys:
                    raise KeyLimitReached(max_keys)
            tx.execute(
                "INSERT INTO relay_keys"
                "(key_id, guild_id, name, key_hash, channel_ids, allow_mentions, created_by, created_at,"
                " avatar_url, custom_identity, channels_from_creator, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row,
            )

        try:
            await self.store.run(insert)
        except IntegrityError as exc:  # another process created a key of that name meanwhile
            raise KeyNameTaken(name) from exc
        record = RelayKey(
            key_id, guild_id, name, tuple(channels), allow_mentions, created_by, now, None, None,
            avatar_url=avatar_url, custom_identity=custom_identity, channels_from_creator=channels_from_creator,
            expires_at=expires_at,
        )
        return NewKey(record=record, secret=secret)

    async def list(self, guild_id: int, *, include_revoked: bool = False) -> list[RelayKey]:
        sql = f"SELECT {_COLUMNS} FROM relay_keys WHERE guild_id = ?"
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        rows = await self.store.fetchall(sql + " ORDER BY created_at, name", (guild_id,))
        return [_row_to_key(r) for r in rows]

    async def find(self, guild_id: int, name_or_id: str) -> RelayKey | None:
        """An active key of this guild by name or key id."""
        row = await self.store.fetchone(
            f"SELECT {_COLUMNS} FROM relay_keys WHERE guild_id = ? AND revoked_at IS NULL AND (name = ? OR key_id = ?)"
            " ORDER BY (key_id = ?) DESC LIMIT 1",
            (guild_id, name_or_id, name_or_id, name_or_id),
        )
        return _row_to_key(row) if row else None

    async def revoke(self, guild_id: int, key_id: str, *, revoked_by: int) -> bool:
        """Revoke at once (the cache entry is dropped); False when no such active key in this guild."""
        changed = await self.store.execute(
            "UPDATE relay_keys SET revoked_at = ?, revoked_by = ?"
            " WHERE key_id = ? AND guild_id = ? AND revoked_at IS NULL",
            (int(self.clock()), revoked_by, key_id, guild_id),
        )
        self._cache.pop(key_id, None)
        self._loading.pop(key_id, None)
        return changed > 0

    async def authenticate(self, presented: str) -> RelayKey | None:
        """The active key matching ``presented`` exactly, else None (unknown, malformed or revoked);
        ``KeyExpired`` when it matches but is past its expiry."""
        key_id = parse_key_id(presented)
        if key_id is None:
            return None
        cached = self._cache.get(key_id)
        if cached is None or time.monotonic() - cached[0] > self.cache_ttl:
            cached = await self._load(key_id)
        _, record, stored_hash = cached
        expected = stored_hash or "0" * 64
        if not hmac.compare_digest(hash_key(presented), expected) or record is None or not record.active:
            return None
        if record.expired(self.clock()):
            assert record.expires_at is not None
            raise KeyExpired(record.expires_at)
        return record

    async def _load(self, key_id: str) -> _Cached:
        """The key's row, read once however many requests with it arrive while it is read."""
        loading = self._loading.get(key_id)
        if loading is None:
            loading = asyncio.ensure_future(self._read(key_id))
            self._loading[key_id] = loading
            loading.add_done_callback(lambda done: self._loading.pop(key_id, None) if
                                      self._loading.get(key_id) is done else None)
        return await asyncio.shield(loading)

    async def _read(self, key_id: str) -> _Cached:
        started = time.monotonic()
        row = await self.store.fetchone(f"SELECT {_COLUMNS} FROM relay_keys WHERE key_id = ?", (key_id,))
        cached = (started, _row_to_key(row), row["key_hash"]) if row else (started, None, None)
        if self._loading.get(key_id) is asyncio.current_task():  # not revoked meanwhile (revoke forgets the read)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = cached
        return cached

    async def get(self, key_id: str) -> RelayKey | None:
        row = await self.store.fetchone(f"SELECT {_COLUMNS} FROM relay_keys WHERE key_id = ?", (key_id,))
        return _row_to_key(row) if row else None

    async def touch(self, key_ids: set[str]) -> None:
        """Record last use (batched by the caller, at most once in a while)."""
        if key_ids:
            now = int(self.clock())
            await self.store.executemany(
                "UPDATE relay_keys SET last_used_at = ? WHERE key_id = ?", [(now, k) for k in key_ids]
            )
