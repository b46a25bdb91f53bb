"""The relay outbox: accepted posts are committed here before ``202``; the delivery workers drain it.

Acceptance uses group commit: every post accepted during one event-loop tick is inserted in one
transaction (one ``store.run``), and each caller is answered only after that commit. While a batch
is being written the next one gathers, so throughput grows with load instead of paying one commit
per post. Any process may accept (``gatecord web`` too); any ``gatecord run`` process may deliver.

Delivery from many processes: a worker *claims* the oldest pending post of a channel that is due
and not claimed (``claim``; ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL), which marks it
``sending`` with ``claimed_at``; it renews the claim while the attempt runs and clears it with the
outcome. A claim older than the claim timeout belongs to a process that stopped: the post is claimed
again and re-sent with the same nonce. A channel's next post is claimable only once the one before it
is settled, so each channel gets its posts one at a time, in acceptance order.

Retention (see ``bot.relay.retention``): delivered and failed posts are deleted after
``relay.retention_days``; an Idempotency-Key is honoured for ``relay.idempotency_hours`` only, after
which the same key makes a new post. Post ids carry their creation time, so a lookup of a deleted
post can say why it is gone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from bot.relay.keys import RelayKey
from bot.relay.validation import RelayMessage
from bot.storage.errors import IntegrityError, StorageError
from bot.storage.records import Row
from bot.storage.store import Store
from bot.storage.tx import SyncTx, for_update

log = logging.getLogger(__name__)

MAX_BATCH = 1000
STATUSES = ("queued", "sending", "delivered", "failed")
FINISHED = ("delivered", "failed")
ID_PREFIX = "rp_"
_ID_TIME_BYTES = 6  # milliseconds since the epoch, big-endian
_ID_RANDOM_BYTES = 7
_ID_CHARS = 21  # base32 of 13 bytes, padding stripped
DEFAULT_IDEMPOTENCY_WINDOW = 24 * 3600.0


def new_post_id(now: float | None = None) -> str:
    """24 characters (``rp_`` + 21 base32): fits Discord's 25-character nonce.

    The first 6 bytes are the creation time in ms, so ``post_id_time`` can tell, for an id that is no
    longer stored, whether it was old enough to have been deleted. (Ids from before this format have
    20 characters and no time.)"""
    ms = int((time.time() if now is None else now) * 1000)
    raw = ms.to_bytes(_ID_TIME_BYTES, "big") + secrets.token_bytes(_ID_RANDOM_BYTES)
    return ID_PREFIX + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def post_id_time(post_id: str) -> float | None:
    """The creation time (epoch seconds) carried by a post id; None for any other string."""
    body = post_id[len(ID_PREFIX):]
    if not post_id.startswith(ID_PREFIX) or len(body) != _ID_CHARS:
        return None
    try:
        raw = base64.b32decode(body.upper() + "===")
    except ValueError:  # binascii.Error is a ValueError
        return None
    return int.from_bytes(raw[:_ID_TIME_BYTES], "big") / 1000


@dataclass(frozen=True, slots=True)
class NewPost:
    key: RelayKey
    message: RelayMessage
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to an accepted post. ``replayed``: an earlier post with the same Idempotency-Key."""

    id: str
    channel_id: int
    replayed: bool = False
    same_body: bool = True


@dataclass(frozen=True, slots=True)
class QueuedPost:
    id: str
    channel_id: int
    next_attempt_at: float = 0.0


@dataclass(frozen=True, slots=True)
class PostRecord:
    id: str
    key_id: str
    guild_id: int
    channel_id: int
    body: dict[str, Any]
    via: str
    status: str
    attempts: int
    next_attempt_at: float
    in_doubt_since: float | None
    created_at: float
    delivered_at: float | None
    message_id: int | None
    error_code: str | None
    error_message: str | None
    note: str | None

    def public(self) -> dict[str, Any]:
        """The JSON a client sees for ``GET /send-data/{id}``."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "channel_id": str(self.channel_id),
            "attempts": self.attempts,
            "created_at": _iso(self.created_at),
            "message_id": str(self.message_id) if self.message_id is not None else None,
        }
        if self.delivered_at is not None:
            out["delivered_at"] = _iso(self.delivered_at)
        if self.status == "failed":
            out["error"] = {"code": self.error_code or "failed", "message": self.error_message or ""}
        elif self.status != "delivered" and self.error_message:
            out["last_error"] = {"code": self.error_code or "error", "message": self.error_message}
            out["next_attempt_at"] = _iso(self.next_attempt_at)
        if self.note:
            out["note"] = self.note
        return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


_RECORD_COLUMNS = (
    "id, key_id, guild_id, channel_id, body, via, status, attempts, next_attempt_at, in_doubt_since, created_at,"
    " delivered_at, message_id, error_code, error_message, note"
)
PENDING = "status IN ('queued', 'sending')"  # the partial indexes' own condition, written the same way
LAST_USED_RESOLUTION = 60  # seconds: relay_keys.last_used_at is refreshed at most this often


def _record(row: Any) -> PostRecord:
    return PostRecord(
        id=row["id"], key_id=row["key_id"], guild_id=int(row["guild_id"]), channel_id=int(row["channel_id"]),
        body=json.loads(row["body"]), via=row["via"], status=row["status"], attempts=int(row["attempts"]),
        next_attempt_at=float(row["next_attempt_at"]), in_doubt_since=row["in_doubt_since"],
        created_at=float(row["created_at"]), delivered_at=row["delivered_at"],
        message_id=int(row["message_id"]) if row["message_id"] is not None else None,
        error_code=row["error_code"], error_message=row["error_message"], note=row["note"],
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """A post this process may now send. ``record`` is the row as it was before the claim (its
    ``in_doubt_since`` says whether an earlier attempt may have reached Discord); ``attempt`` is the
    number of this attempt, which the outcome is recorded against."""

    record: PostRecord
    attempt: int
    claimed_at: float


# relay_outbox_channel_pending's condition (the same rows as PENDING, in words SQLite cannot use to
# seek the status index, so it takes this one for lookups by channel)
UNFINISHED = "status NOT IN ('delivered', 'failed')"
# The head (oldest unfinished post: ``seq``) of each channel in ``channels``, one probe of
# relay_outbox_channel_pending each (never a scan of the backlog): a claim costs the same with ten
# posts waiting or a hundred thousand.
_HEADS = (
    "{channels} SELECT (SELECT MIN(h.seq) FROM relay_outbox h WHERE h.channel_id = c.channel_id"
    f" AND h.{UNFINISHED}) AS head FROM channels c WHERE c.channel_id IS NOT NULL"
)
# Every channel with an unfinished post, one probe each (a "loose index scan": neither database does
# one by itself for SELECT DISTINCT).
_HEADS_OF_ALL = _HEADS.format(channels=(
    "WITH RECURSIVE channels(channel_id) AS ("
    f"SELECT MIN(channel_id) FROM relay_outbox WHERE {UNFINISHED}"
    f" UNION ALL SELECT (SELECT MIN(o.channel_id) FROM relay_outbox o WHERE o.{UNFINISHED}"
    " AND o.channel_id > c.channel_id) FROM channels c WHERE c.channel_id IS NOT NULL)"
))
# Of some heads (by seq: primary-key lookups; UNFINISHED, not PENDING, so that no planner walks the
# status index instead), those due and not claimed, oldest first.
_CLAIMABLE = (
    "SELECT seq, " + _RECORD_COLUMNS + " FROM relay_outbox WHERE seq IN ({marks})"
    f" AND {UNFINISHED} AND next_attempt_at <= ? AND (claimed_at IS NULL OR claimed_at <= ?) ORDER BY seq LIMIT ?"
)
_CHUNK = 500  # heads looked up per statement

_INSERT = (
    "INSERT INTO relay_outbox(id, key_id, guild_id, channel_id, body, via, idempotency_key, fingerprint, status,"
    " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)"
)
_INSERT_KEYED = _INSERT + " ON CONFLICT (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
_Result = tuple["_Item", "Accepted", "QueuedPost | None"]


class Outbox:
    def __init__(
        self,
        store: Store,
        *,
        on_commit: Callable[[list[QueuedPost]], None] | None = None,
        clock: Callable[[], float] = time.time,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
    ) -> None:
        """``clock``: wall-clock seconds (injected by tests); ``idempotency_window``: seconds an
        Idempotency-Key keeps pointing at its first post."""
        self.store = store
        self.on_commit = on_commit
        self.clock = clock
        self.idempotency_window = idempotency_window
        self._batch: list[tuple[NewPost, asyncio.Future[Accepted]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches_written = 0

    # -- group commit -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="relay-outbox-writer")

    async def close(self) -> None:
        """Write everything gathered so far (answering its callers), then stop the writer."""
        if self._task is None:
            return
        task, self._task = self._task, None  # accept() now refuses new posts
        self._closing = True
        self._wakeup.set()
        await task

    async def accept(self, post: NewPost) -> Accepted:
        """Store ``post`` durably; return once its transaction has committed."""
        if self._task is None:
            raise OutboxUnavailable("the outbox writer is not running")
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._batch.append((post, future))
        self._wakeup.set()
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while not self._closing or self._batch:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(0)  # let the handlers of this tick join the batch
            while self._batch:
                batch, self._batch = self._batch[:MAX_BATCH], self._batch[MAX_BATCH:]
                await self._write(batch)

    async def _write(self, batch: list[tuple[NewPost, asyncio.Future[Accepted]]]) -> None:
        """Commit ``batch`` in one transaction and answer each caller. A post that cannot be stored
        sinks only itself: it is refused before the transaction when its row cannot be encoded, and
        when the database refuses the batch, each post is retried in its own transaction (the one whose
        data is refused gets a 400; a database that fails for all gets them 503)."""
        now = self.clock()
        items: list[_Item] = []
        for post, future in batch:
            try:
                items.append(_Item(post, future, _row(post, now)))
            except PostNotStorable as exc:
                log.warning("relay outbox: a post of key %s cannot be stored: %s", post.key.key_id, exc)
                _answer(future, exc)
        if not items:
            return
        try:
            results = await self._commit(items, now)
        except _DATA_ERRORS as exc:
            if len(items) == 1:
                self._refuse(items, exc)
                return
            log.warning("relay outbox: a batch of %d post(s) was refused for one post's data (%s);"
                        " storing each on its own", len(items), type(exc).__name__)
            results = []
            for item in items:
                try:
                    results += await self._commit([item], now)
                except _DATA_ERRORS as one:
                    self._refuse([item], one)
                except Exception as one:
                    self._unavailable([item], one)
        except Exception as exc:
            self._unavailable(items, exc)
            return
        fresh = [queued for _, _, queued in results if queued is not None]
        for item, accepted, _ in results:
            _answer(item.future, accepted)
        if fresh and self.on_commit is not None:
            self.on_commit(fresh)

    async def _commit(self, items: list[_Item], now: float) -> list[_Result]:
        """One transaction for ``items``; the answer of each (its queue entry when new)."""
        window_start = now - self.idempotency_window

        def body(tx: SyncTx) -> list[_Result]:
            results: list[_Result] = []
            plain: list[tuple[Any, ...]] = []
            for item in items:
                post_id, channel_id = item.row[0], item.post.message.channel_id
                if item.post.idempotency_key is None:
                    plain.append(item.row)
                    results.append((item, Accepted(post_id, channel_id), QueuedPost(post_id, channel_id)))
                    continue
                if plain:  # keep insertion order = acceptance order
                    tx.executemany(_INSERT, plain)
                    plain = []
                first = _insert_keyed(tx, item.row, item.post.key.key_id, item.post.idempotency_key, window_start)
                if first is None:
                    results.append((item, Accepted(post_id, channel_id), QueuedPost(post_id, channel_id)))
                    continue
                same = first["fingerprint"] == item.post.message.fingerprint()
                results.append(
                    (item, Accepted(first["id"], int(first["channel_id"]), replayed=True, same_body=same), None)
                )
            if plain:
                tx.executemany(_INSERT, plain)
            # Only when it is stale: every batch writing the key's row would make concurrent batches of
            # one key (from several processes) wait for each other's commit on PostgreSQL.
            stamp = int(now)
            tx.executemany(
                "UPDATE relay_keys SET last_used_at = ?"
                " WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                [(stamp, k, stamp - LAST_USED_RESOLUTION) for k in sorted({i.post.key.key_id for i in items})],
            )
            return results

        results = await self.store.run(body)
        self.batches_written += 1
        return results

    def _refuse(self, items: list[_Item], exc: BaseException) -> None:
        log.warning("relay outbox: the database refused a post of key %s: %s: %s",
                    items[0].post.key.key_id, type(exc).__name__, exc)
        for item in items:
            _answer(item.future, PostNotStorable("the database refused its data"))

    def _unavailable(self, items: list[_Item], exc: BaseException) -> None:
        if isinstance(exc, StorageError):  # the database's own one-line reason; no traceback for an outage
            log.error("relay outbox: %d post(s) could not be stored: %s", len(items), exc)
        else:
            log.error("relay outbox: %d post(s) could not be stored", len(items), exc_info=exc)
        for item in items:
            _answer(item.future, OutboxUnavailable(type(exc).__name__))

    # -- retention --------------------------------------------------------------------------------
    async def prune_finished(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` delivered/failed posts created before ``before`` (one short
        transaction); return how many. Queued and sending posts are never touched."""
        return await self.store.execute(
            "DELETE FROM relay_outbox WHERE seq IN (SELECT seq FROM relay_outbox"
            " WHERE status IN ('delivered', 'failed') AND created_at < ? ORDER BY created_at LIMIT ?)",
            (before, limit),
        )

    async def expire_idempotency_keys(self, before: float, limit: int) -> int:
        """Release up to ``limit`` Idempotency-Keys of posts created before ``before``; return how many."""
        return await self.store.execute(
            "UPDATE relay_outbox SET idempotency_key = NULL, fingerprint = NULL WHERE seq IN (SELECT seq"
            " FROM relay_outbox WHERE idempotency_key IS NOT NULL AND created_at < ? ORDER BY created_at LIMIT ?)",
            (before, limit),
        )

    # -- reads ------------------------------------------------------------------------------------
    async def get(self, post_id: str) -> PostRecord | None:
        row = await self.store.fetchone(f"SELECT {_RECORD_COLUMNS} FROM relay_outbox WHERE id = ?", (post_id,))
        return _record(row) if row else None

    async def pending(self) -> list[QueuedPost]:
        """Every post not yet delivered or failed, in acceptance order."""
        rows = await self.store.fetchall(
            f"SELECT id, channel_id, next_attempt_at FROM relay_outbox WHERE {PENDING} ORDER BY seq"
        )
        return [QueuedPost(r["id"], int(r["channel_id"]), float(r["next_attempt_at"])) for r in rows]

    async def counts(self) -> dict[str, int]:
        rows = await self.store.fetchall(
            f"SELECT status, COUNT(*) AS n FROM relay_outbox WHERE {PENDING} GROUP BY status"
        )
        out = {"queued": 0, "sending": 0}
        out.update({r["status"]: int(r["n"]) for r in rows})
        return out

    async def key_counts(self, key_id: str) -> dict[str, int]:
        rows = await self.store.fetchall(
            "SELECT status, COUNT(*) AS n FROM relay_outbox WHERE key_id = ? GROUP BY status", (key_id,)
        )
        out = dict.fromkeys(STATUSES, 0)
        out.update({r["status"]: int(r["n"]) for r in rows})
        return out

    async def recorded_message_ids(self, channel_id: int, message_ids: list[int]) -> set[int]:
        if not message_ids:
            return set()
        marks = ",".join("?" * len(message_ids))
        rows = await self.store.fetchall(
            f"SELECT message_id FROM relay_outbox WHERE channel_id = ? AND message_id IN ({marks})",
            (channel_id, *message_ids),
        )
        return {int(r["message_id"]) for r in rows}

    # -- claims: which process sends what ---------------------------------------------------------
    async def claim(
        self, *, now: float, stale_before: float, limit: int, channels: Collection[int] | None = None,
    ) -> list[Claim]:
        """Claim up to ``limit`` posts to send now, oldest first: of each channel (of ``channels``, or
        of all), its oldest pending post, when it is due and not claimed (or its claim was taken before
        ``stale_before``: its process stopped). Rows another process is claiming at this moment are
        skipped, never waited for."""
        if limit <= 0 or (channels is not None and not channels):
            return []
        if channels is None:
            heads_sql, heads_params = _HEADS_OF_ALL, []
        else:
            values = ", ".join(["(CAST(? AS BIGINT))"] * len(channels))
            heads_sql = _HEADS.format(channels=f"WITH channels(channel_id) AS (VALUES {values})")
            heads_params = [int(c) for c in channels]

        def body(tx: SyncTx) -> list[Claim]:
            heads = sorted(int(r[0]) for r in tx.fetchall(heads_sql, heads_params) if r[0] is not None)
            rows: list[Row] = []
            for start in range(0, len(heads), _CHUNK):
                chunk = heads[start:start + _CHUNK]
                rows += tx.fetchall(
                    _CLAIMABLE.format(marks=",".join("?" * len(chunk))) + for_update(tx.dialect, skip_locked=True),
                    (*chunk, now, stale_before, limit - len(rows)),
                )
                if len(rows) >= limit:
                    break
            if not rows:
                return []
            tx.execute(
                "UPDATE relay_outbox SET status = 'sending', attempts = attempts + 1, claimed_at = ?,"
                f" in_doubt_since = COALESCE(in_doubt_since, ?) WHERE seq IN ({','.join('?' * len(rows))})",
                (now, now, *(int(r["seq"]) for r in rows)),
            )
            return [Claim(_record(r), int(r["attempts"]) + 1, now) for r in rows]

        return await self.store.run(body)

    async def renew(self, claims: Collection[Claim], now: float) -> None:
        """Keep the claims of attempts still running (a claim already settled is left alone)."""
        if claims:
            await self.store.executemany(
                "UPDATE relay_outbox SET claimed_at = ? WHERE id = ? AND attempts = ? AND claimed_at IS NOT NULL",
                [(now, c.record.id, c.attempt) for c in claims],
            )

    async def release(self, claims: Collection[Claim]) -> None:
        """Give up claims without an outcome (shutting down): any process may send these posts now. They
        stay ``sending`` with ``in_doubt_since``, so the next attempt knows this one may have reached Discord."""
        if claims:
            await self.store.executemany(
                "UPDATE relay_outbox SET claimed_at = NULL WHERE id = ? AND attempts = ?",
                [(c.record.id, c.attempt) for c in claims],
            )

    async def unclaim(self, claims: Collection[Claim]) -> None:
        """Hand back claims whose attempt never started (claimed as the worker stopped): the attempt is not
        counted, and a post that had none before is ``queued`` again, exactly as it was."""
        if claims:
            await self.store.executemany(
                "UPDATE relay_outbox SET claimed_at = NULL, attempts = attempts - 1, in_doubt_since = ?, status = ?"
                " WHERE id = ? AND attempts = ? AND claimed_at IS NOT NULL",
                [(c.record.in_doubt_since,
                  "queued" if c.attempt == 1 and c.record.in_doubt_since is None else "sending",
                  c.record.id, c.attempt) for c in claims],
            )

    async def release_all(self) -> int:
        """Drop every claim (SQLite at start-up: one process owns the file, so a claim left in it is a
        previous run's); return how many."""
        return await self.store.execute("UPDATE relay_outbox SET claimed_at = NULL WHERE claimed_at IS NOT NULL")

    # -- outcomes (of this process's claim) -------------------------------------------------------
    async def mark_delivered(self, post_id: str, message_id: int, *, note: str | None = None) -> None:
        await self.store.execute(
            "UPDATE relay_outbox SET status = 'delivered', message_id = ?, delivered_at = ?, in_doubt_since = NULL,"
            " claimed_at = NULL, error_code = NULL, error_message = NULL, note = COALESCE(?, note)"
            f" WHERE id = ? AND {PENDING}",
            (message_id, self.clock(), note, post_id),
        )

    async def mark_failed(self, post_id: str, code: str, message: str, *, attempt: int | None = None) -> None:
        """``attempt``: only if the post's latest attempt is still that one (no other process took it over)."""
        await self.store.execute(
            "UPDATE relay_outbox SET status = 'failed', in_doubt_since = NULL, claimed_at = NULL, error_code = ?,"
            f" error_message = ? WHERE id = ? AND {PENDING} AND attempts = COALESCE(?, attempts)",
            (code, message, post_id, attempt),
        )

    async def mark_retry(
        self, post_id: str, *, at: float, in_doubt_since: float | None, code: str, message: str,
        attempt: int | None = None,
    ) -> None:
        """Schedule another attempt. ``in_doubt_since``: when the earliest attempt that may have reached
        Discord started (None when every attempt so far is known not to have created a message)."""
        await self.store.execute(
            "UPDATE relay_outbox SET status = ?, next_attempt_at = ?, in_doubt_since = ?, claimed_at = NULL,"
            f" error_code = ?, error_message = ? WHERE id = ? AND {PENDING} AND attempts = COALESCE(?, attempts)",
            ("sending" if in_doubt_since is not None else "queued", at, in_doubt_since, code, message, post_id,
             attempt),
        )

    async def settle_doubt(self, post_id: str) -> None:
        """The previous attempts are known not to have created a message (e.g. checked against history)."""
        await self.store.execute("UPDATE relay_outbox SET in_doubt_since = NULL WHERE id = ?", (post_id,))

    async def switch_to_bot(self, post_id: str, body: dict[str, Any], note: str) -> None:
        await self.store.execute(
            "UPDATE relay_outbox SET via = 'bot', body = ?, note = ? WHERE id = ?",
            (json.dumps(body, separators=(",", ":"), ensure_ascii=False), note, post_id),
        )


def _insert_keyed(
    tx: SyncTx, row: tuple[Any, ...], key_id: str, idempotency_key: str, window_start: float
) -> Row | None:
    """Insert a post that has an Idempotency-Key. Returns None when inserted, else the earlier post
    (``id, channel_id, fingerprint``) the key still points at. A key used before ``window_start`` is
    released first (the earlier post keeps its row, without the key) and the new post inserted.
    Another process inserting or releasing the same key meanwhile is seen on the next round."""
    for _ in range(3):
        if tx.execute(_INSERT_KEYED, row) == 1:
            return None
        first = tx.fetchone(
            "SELECT id, channel_id, fingerprint, created_at FROM relay_outbox WHERE key_id = ? AND idempotency_key = ?",
            (key_id, idempotency_key),
        )
        if first is None:
            continue  # released by the retention sweep since the insert: try again
        if float(first["created_at"]) >= window_start:
            return first
        tx.execute(
            "UPDATE relay_outbox SET idempotency_key = NULL, fingerprint = NULL WHERE id = ? AND idempotency_key = ?",
            (first["id"], idempotency_key),
        )
    raise StorageError("the Idempotency-Key kept changing hands while the post was stored")


class OutboxUnavailable(Exception):
    """The outbox could not store a post (database error); the client should retry later."""


class PostNotStorable(Exception):
    """This post's own data cannot be stored (the client's fault: retrying the same body cannot help).
    ``str(exc)`` says why, for the client."""


# Errors that come from one post's data rather than from the database itself (a constraint or trigger
# refusing the row, text that cannot be encoded, a number too large for its column); any other
# StorageError (disk full, I/O error, connection lost, read-only) is the database's: 503 for all.
_DATA_ERRORS: tuple[type[BaseException], ...] = (IntegrityError, UnicodeError, OverflowError)


@dataclass(frozen=True, slots=True)
class _Item:
    post: NewPost
    future: asyncio.Future[Accepted]
    row: tuple[Any, ...]


def _row(post: NewPost, now: float) -> tuple[Any, ...]:
    """The outbox row of ``post``; ``PostNotStorable`` when its text cannot be encoded as UTF-8 (a
    lone surrogate the validator did not see): SQLite would refuse it in the middle of the batch."""
    msg = post.message
    body = json.dumps(msg.discord_body(allow_mentions=post.key.allow_mentions), separators=(",", ":"),
                      ensure_ascii=False)
    try:
        body.encode("utf-8")
        if post.idempotency_key is not None:
            post.idempotency_key.encode("utf-8")
    except UnicodeEncodeError:
        raise PostNotStorable("it contains text that is not valid Unicode (a lone UTF-16 surrogate)") from None
    return (
        new_post_id(now), post.key.key_id, post.key.guild_id, msg.channel_id, body,
        "webhook" if msg.via_webhook else "bot", post.idempotency_key,
        msg.fingerprint() if post.idempotency_key is not None else None, now, now,
    )


def _answer(future: asyncio.Future[Accepted], outcome: Accepted | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
