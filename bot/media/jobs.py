"""The /imagine job store: rows in the database, image bytes in the database or a shared directory.

A job is written before the paid gateway call and moves ``pending → running → generated → done``
(or ``failed``; ``unknown`` when its process stopped while the paid call was in flight; ``deleted``).
Nothing here knows Discord.

Where the bytes go (``media_location``): ``[storage] media_dir`` when set (files every process can read);
otherwise in the database (``imagine_images.data``) with PostgreSQL, or files in ``images/`` next to the
SQLite file (one process owns that file, so its directory is as shared as the database). Files are named
by job id and index and written atomically in a worker thread; the rows point at them. Either way the
U-buttons work after a restart and on any process.

Many processes: each job names the process working on it (``owner``) and a lease that process renews
while it lives (``renew_leases``) and gives up when it stops (``release_leases``). ``recover_interrupted``
settles only jobs whose lease ran out, so a process starting never marks as unknown a job that another
live process is running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.rendering.user_facing import UserFacingError
from bot.storage.paths import images_dir_for
from bot.storage.postgres_backend import lock_key
from bot.storage.store import Store
from bot.storage.tx import SyncTx, for_update

if TYPE_CHECKING:
    from bot.app.settings import StorageSettings

__all__ = [
    "ACTIVE_STATUSES",
    "ConcurrencyLimitReached",
    "ImageJob",
    "ImageToStore",
    "JobParams",
    "JobStore",
    "StoredImage",
    "images_dir_for",
    "media_location",
]

#: Statuses that hold one of the member's concurrent-job slots.
ACTIVE_STATUSES = ("pending", "running")
#: Statuses of a job its process still works on (what a lease covers, and what recovery settles).
_HELD = "('pending', 'running', 'generated')"
#: How long a process's claim on its jobs holds without being renewed (renewed every third of it).
LEASE_SECONDS = 30.0
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class ConcurrencyLimitReached(UserFacingError):
    """The member already has ``limit`` jobs waiting or running."""

    code = "too_many_jobs"

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"{active} image jobs already running (limit {limit})")
        self.active = active
        self.limit = limit

    def user_message(self) -> str:
        plural = "s" if self.active != 1 else ""
        return (f"You already have {self.active} image job{plural} in progress — the limit is {self.limit} at a "
                "time. Try again when one has finished.")


@dataclass(frozen=True, slots=True)
class JobParams:
    """What is sent to the gateway (after validation/normalisation)."""

    prompt: str
    model: str | None = None
    count: int = 1
    width: int | None = None
    height: int | None = None
    size: str | None = None
    steps: int | None = None
    seed: int | None = None
    negative_prompt: str | None = None

    def with_seed(self, seed: int | None) -> JobParams:
        return replace(self, seed=seed)


@dataclass(frozen=True, slots=True)
class ImageJob:
    id: int
    params: JobParams
    user_id: int
    guild_id: int | None
    channel_id: int | None
    profile: str
    status: str
    origin: str = "command"
    parent_id: int | None = None
    source_index: int | None = None
    error: str | None = None
    model_used: str | None = None
    request_id: str | None = None
    message_id: int | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> ImageJob:
        params = JobParams(
            prompt=row["prompt"], model=row["model"], count=row["count"], width=row["width"],
            height=row["height"], size=row["size"], steps=row["steps"], seed=row["seed"],
            negative_prompt=row["negative_prompt"],
        )
        return cls(
            id=row["id"], params=params, user_id=row["user_id"], guild_id=row["guild_id"],
            channel_id=row["channel_id"], profile=row["profile"], status=row["status"], origin=row["origin"],
            parent_id=row["parent_id"], source_index=row["source_index"], error=row["error"],
            model_used=row["model_used"], request_id=row["request_id"], message_id=row["message_id"],
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
        )


@dataclass(frozen=True, slots=True)
class ImageToStore:
    data: bytes
    mime: str
    width: int | None = None
    height: int | None = None
    seed: int | None = None

    def __repr__(self) -> str:
        return f"ImageToStore(mime={self.mime!r}, bytes={len(self.data)}, seed={self.seed!r})"


@dataclass(frozen=True, slots=True)
class StoredImage:
    job_id: int
    index: int  # 1-based, as on the U/V buttons
    name: str  # "<job id>/<index>.<ext>"
    path: Path | None  # the file, when the bytes are kept in a directory rather than the database
    mime: str
    width: int | None
    height: int | None
    seed: int | None
    size_bytes: int


def media_location(storage: StorageSettings) -> Path | None:
    """The directory for image bytes, or None: in the database (PostgreSQL without ``media_dir``)."""
    if storage.media_dir:
        return Path(storage.media_dir)
    if storage.url:
        return None
    return images_dir_for(storage.path)


def process_name() -> str:
    """This process's name as a job owner: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


_JOB_COLUMNS = (
    "id, parent_id, origin, source_index, guild_id, channel_id, user_id, profile, prompt, negative_prompt, model,"
    " count, width, height, size, steps, seed, status, error, model_used, request_id, message_id, created_at,"
    " started_at, finished_at"
)
_IMAGE_COLUMNS = "job_id, idx, path, mime, width, height, seed, size_bytes"


class JobStore:
    def __init__(
        self, store: Store, media_dir: str | Path | None, *, owner: str | None = None,
        clock: Callable[[], float] = time.time, lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        #: None: image bytes in the database
        self.media_dir = None if media_dir is None else Path(media_dir)
        self.owner = owner or process_name()
        self.clock = clock
        self.lease_seconds = lease_seconds

    # -- creating and reading -------------------------------------------------------------------

    async def create(
        self,
        params: JobParams,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        profile: str,
        origin: str = "command",
        parent_id: int | None = None,
        source_index: int | None = None,
        max_active: int | None = None,
    ) -> ImageJob:
        """Record a ``pending`` job of this process; with ``max_active``, atomically refuse a member's job past
        the limit (also against other processes: the member's jobs are counted under a lock)."""
        now = self.clock()

        def body(tx: SyncTx) -> ImageJob:
            if max_active is not None:
                _lock_member(tx, user_id)
                active = _active_count(tx, user_id)
                if active >= max_active:
                    raise ConcurrencyLimitReached(active, max_active)
            row = tx.fetchone(
                "INSERT INTO imagine_jobs(parent_id, origin, source_index, guild_id, channel_id, user_id, profile,"
                " prompt, negative_prompt, model, count, width, height, size, steps, seed, status, created_at, owner,"
                f" lease_until) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',?,?,?) RETURNING {_JOB_COLUMNS}",
                (parent_id, origin, source_index, guild_id, channel_id, user_id, profile, params.prompt,
                 params.negative_prompt, params.model, params.count, params.width, params.height, params.size,
                 params.steps, params.seed, now, self.owner, now + self.lease_seconds),
            )
            assert row is not None
            return ImageJob.from_row(row)

        return await self.store.run(body)

    async def get(self, job_id: int) -> ImageJob | None:
        row = await self.store.fetchone(f"SELECT {_JOB_COLUMNS} FROM imagine_jobs WHERE id = ?", (job_id,))
        return None if row is None else ImageJob.from_row(row)

    async def active_count(self, user_id: int) -> int:
        return await self.store.run(lambda tx: _active_count(tx, user_id))

    async def images(self, job_id: int) -> list[StoredImage]:
        rows = await self.store.fetchall(
            f"SELECT {_IMAGE_COLUMNS} FROM imagine_images WHERE job_id = ? ORDER BY idx", (job_id,)
        )
        return [self._stored(r) for r in rows]

    async def read_image(self, job_id: int, index: int) -> tuple[StoredImage, bytes] | None:
        """The stored image and its bytes, or None when the job has no such image (or its file is gone)."""
        row = await self.store.fetchone(
            f"SELECT {_IMAGE_COLUMNS}, data FROM imagine_images WHERE job_id = ? AND idx = ?", (job_id, index)
        )
        return None if row is None else await self._with_bytes(row)

    async def read_all(self, job_id: int) -> list[tuple[StoredImage, bytes]]:
        rows = await self.store.fetchall(
            f"SELECT {_IMAGE_COLUMNS}, data FROM imagine_images WHERE job_id = ? ORDER BY idx", (job_id,)
        )
        out = []
        for row in rows:
            found = await self._with_bytes(row)
            if found is not None:
                out.append(found)
        return out

    # -- status transitions -----------------------------------------------------------------------

    async def set_message(self, job_id: int, channel_id: int | None, message_id: int) -> None:
        await self.store.execute(
            "UPDATE imagine_jobs SET message_id = ?, channel_id = COALESCE(?, channel_id) WHERE id = ?",
            (message_id, channel_id, job_id),
        )

    async def mark_running(self, job_id: int) -> bool:
        """``pending → running`` just before the paid call; False if the job is no longer pending."""
        changed = await self.store.execute(
            "UPDATE imagine_jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'pending'",
            (self.clock(), job_id),
        )
        return changed == 1

    async def save_generated(
        self, job_id: int, images: Sequence[ImageToStore], *, model_used: str | None = None,
        request_id: str | None = None,
    ) -> list[StoredImage]:
        """Keep the bytes (files: written first, in a thread, renamed atomically), then the rows and
        ``generated`` in one transaction."""
        names = [f"{job_id}/{i}.{_EXT.get(img.mime, 'bin')}" for i, img in enumerate(images, start=1)]
        in_files = self.media_dir is not None
        if self.media_dir is not None:
            await asyncio.to_thread(_write_files, self.media_dir, self.media_dir / str(job_id), names,
                                    [img.data for img in images])
        rows = [
            (job_id, i, name, img.mime, img.width, img.height, img.seed, len(img.data), None if in_files else img.data)
            for i, (name, img) in enumerate(zip(names, images, strict=True), start=1)
        ]

        def body(tx: SyncTx) -> None:
            tx.execute("DELETE FROM imagine_images WHERE job_id = ?", (job_id,))
            tx.executemany(
                "INSERT INTO imagine_images(job_id, idx, path, mime, width, height, seed, size_bytes, data)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            tx.execute(
                "UPDATE imagine_jobs SET status = 'generated', model_used = ?, request_id = ?, error = NULL"
                " WHERE id = ?",
                (model_used, request_id, job_id),
            )

        await self.store.run(body)
        return [
            StoredImage(job_id=job_id, index=i, name=name, path=self._file(name), mime=img.mime, width=img.width,
                        height=img.height, seed=img.seed, size_bytes=len(img.data))
            for i, (name, img) in enumerate(zip(names, images, strict=True), start=1)
        ]

    async def mark_done(self, job_id: int) -> None:
        await self.store.execute(
            "UPDATE imagine_jobs SET status = 'done', finished_at = ? WHERE id = ? AND status != 'deleted'",
            (self.clock(), job_id),
        )

    async def mark_failed(self, job_id: int, error: str) -> None:
        await self.store.execute(
            "UPDATE imagine_jobs SET status = 'failed', error = ?, finished_at = ?"
            " WHERE id = ? AND status != 'deleted'",
            (error[:500], self.clock(), job_id),
        )

    async def mark_deleted(self, job_id: int) -> None:
        """Status ``deleted`` and the images removed (their rows, and their files if any)."""
        now = self.clock()

        def body(tx: SyncTx) -> None:
            tx.execute(
                "UPDATE imagine_jobs SET status = 'deleted', finished_at = COALESCE(finished_at, ?) WHERE id = ?",
                (now, job_id),
            )
            tx.execute("DELETE FROM imagine_images WHERE job_id = ?", (job_id,))

        await self.store.run(body)
        if self.media_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self.media_dir / str(job_id), True)

    # -- processes: leases and recovery -----------------------------------------------------------

    async def renew_leases(self) -> int:
        """Extend this process's claim on the jobs it works on; the number of jobs."""
        return await self.store.execute(
            f"UPDATE imagine_jobs SET lease_until = ? WHERE owner = ? AND status IN {_HELD}",
            (self.clock() + self.lease_seconds, self.owner),
        )

    async def release_leases(self) -> int:
        """This process stops: its unfinished jobs may be recovered by the next process at once."""
        return await self.store.execute(
            f"UPDATE imagine_jobs SET lease_until = 0.0 WHERE owner = ? AND status IN {_HELD}", (self.owner,)
        )

    async def recover_interrupted(self, *, any_owner: bool = False) -> list[ImageJob]:
        """Settle the jobs of processes that are gone (their lease ran out, or ``any_owner``: every other
        process's): ``running`` → ``unknown`` (the gateway may have run it: never resubmitted),
        ``pending`` → ``failed`` (never sent). Returns the jobs changed, plus the ``generated`` jobs whose
        result was stored but not posted, which this process now owns (to post them)."""
        now = self.clock()

        def body(tx: SyncTx) -> list[tuple[int, str]]:
            expired = "" if any_owner else " AND (lease_until IS NULL OR lease_until < ?)"
            params: tuple[Any, ...] = (self.owner,) if any_owner else (self.owner, now)
            rows = tx.fetchall(
                f"SELECT id, status FROM imagine_jobs WHERE status IN {_HELD} AND (owner IS NULL OR owner <> ?)"
                f"{expired} ORDER BY id" + for_update(tx.dialect, skip_locked=True),
                params,
            )
            found = [(int(r["id"]), str(r["status"])) for r in rows]
            ids = {state: [job_id for job_id, s in found if s == state]
                   for state in ("running", "pending", "generated")}
            tx.executemany(
                "UPDATE imagine_jobs SET status = 'unknown', finished_at = ?,"
                " error = 'the bot stopped while the gateway was working on it' WHERE id = ?",
                [(now, job_id) for job_id in ids["running"]],
            )
            tx.executemany(
                "UPDATE imagine_jobs SET status = 'failed', finished_at = ?,"
                " error = 'the bot stopped before it was sent' WHERE id = ?",
                [(now, job_id) for job_id in ids["pending"]],
            )
            tx.executemany(  # this process posts them now
                "UPDATE imagine_jobs SET owner = ?, lease_until = ? WHERE id = ?",
                [(self.owner, now + self.lease_seconds, job_id) for job_id in ids["generated"]],
            )
            return found

        jobs = [await self.get(job_id) for job_id, _ in await self.store.run(body)]
        return [j for j in jobs if j is not None]

    # -- helpers ----------------------------------------------------------------------------------

    def _file(self, name: str) -> Path | None:
        return None if self.media_dir is None else self.media_dir / name

    def _stored(self, row: Any) -> StoredImage:
        return StoredImage(
            job_id=row["job_id"], index=row["idx"], name=row["path"], path=self._file(row["path"]), mime=row["mime"],
            width=row["width"], height=row["height"], seed=row["seed"], size_bytes=row["size_bytes"],
        )

    async def _with_bytes(self, row: Any) -> tuple[StoredImage, bytes] | None:
        stored = self._stored(row)
        if row["data"] is not None:
            return stored, bytes(row["data"])
        if stored.path is None:
            return None  # kept as a file, but this process has no media directory
        try:
            return stored, await asyncio.to_thread(stored.path.read_bytes)
        except FileNotFoundError:
            return None


def _active_count(tx: SyncTx, user_id: int) -> int:
    return int(tx.fetchval(
        "SELECT COUNT(*) FROM imagine_jobs WHERE user_id = ? AND status IN ('pending', 'running')", (user_id,)
    ))


def _lock_member(tx: SyncTx, user_id: int) -> None:
    """Serialise job creation per member across processes until the transaction ends (PostgreSQL: an
    advisory transaction lock, as there is no member row to lock; SQLite has one writer already)."""
    if tx.dialect == "postgresql":
        tx.fetchval("SELECT pg_advisory_xact_lock(?)", (lock_key(f"imagine-member:{user_id}"),))


def _write_files(root: Path, job_dir: Path, names: Sequence[str], blobs: Sequence[bytes]) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    for name, data in zip(names, blobs, strict=True):
        target = root / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)
