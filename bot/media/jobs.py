"""The media job store: one row per job of every kind (image, edit, video, music), its files' bytes in
the database or a shared directory.

A job is written before the paid gateway call and moves ``pending → running → generated → done``
(or ``failed``; ``unknown`` when its process stopped while the paid call was in flight; ``deleted``).
An asynchronous job (video) goes ``running → submitted`` once the gateway accepted it and gave its job
id (kept with the row, in the same statement): from then on a restart resumes polling that id and never
submits again. ``cancelled`` ends a job its requester (or an admin) stopped. Nothing here knows Discord.

Files (``media_files``) have a role: the job's ``result`` files (the U-buttons' images, the video, the
audio), and an edit's ``source`` image and ``mask``, written with the job's row.

Where the bytes go (``media_location``): ``[storage] media_dir`` when set (files every process can read);
otherwise in the database (``media_files.data``) with PostgreSQL, or files in ``images/`` next to the
SQLite file (one process owns that file, so its directory is as shared as the database). Files are named
by job id and index and written atomically in a worker thread; the rows point at them. Either way the
buttons work after a restart and on any process.

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
from collections.abc import Callable, Iterable, Sequence
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
    "KINDS",
    "ROLES",
    "ConcurrencyLimitReached",
    "FileToStore",
    "ImageJob",
    "ImageToStore",
    "JobParams",
    "JobStore",
    "MediaJob",
    "StoredFile",
    "StoredImage",
    "images_dir_for",
    "media_location",
]

#: The kinds of job (``media_jobs.kind``).
KINDS = ("image", "edit", "video", "music")
#: The roles of a job's file (``media_files.role``): what it produced, and what an edit started from.
ROLES = ("result", "source", "mask")
#: Statuses that hold one of the member's concurrent-job slots.
ACTIVE_STATUSES = ("pending", "running", "submitted")
_ACTIVE = "(" + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES) + ")"
#: Statuses of a job its process still works on (what a lease covers, and what recovery settles).
_HELD = "('pending', 'running', 'submitted', 'generated')"
#: How long a process's claim on its jobs holds without being renewed (renewed every third of it).
LEASE_SECONDS = 30.0
_EXT = {
    "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
    "video/mp4": "mp4", "video/webm": "webm", "video/quicktime": "mov",
    "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/ogg": "ogg", "audio/opus": "opus", "audio/wav": "wav",
    "audio/x-wav": "wav", "audio/wave": "wav", "audio/flac": "flac", "audio/x-flac": "flac", "audio/aac": "aac",
    "audio/mp4": "m4a",
}


class ConcurrencyLimitReached(UserFacingError):
    """The member already has ``limit`` jobs waiting or running."""

    code = "too_many_jobs"

    def __init__(self, active: int, limit: int, *, what: str = "image") -> None:
        super().__init__(f"{active} {what} jobs already running (limit {limit})")
        self.active = active
        self.limit = limit
        self.what = what

    def user_message(self) -> str:
        plural = "s" if self.active != 1 else ""
        return (f"You already have {self.active} {self.what} job{plural} in progress — the limit is {self.limit} at "
                "a time. Try again when one has finished.")


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
    duration: int | None = None  # seconds (video, music)

    def with_seed(self, seed: int | None) -> JobParams:
        return replace(self, seed=seed)


@dataclass(frozen=True, slots=True)
class MediaJob:
    id: int
    kind: str
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
    gateway_job_id: str | None = None  # an asynchronous job's id at the gateway (from ``submitted`` on)
    progress: float | None = None  # 0-100, as the gateway last reported it
    reservation_id: str | None = None  # the budget hold taken for the job
    result_url: str | None = None  # where the gateway offers the result, until ``result_expires_at``
    result_expires_at: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> MediaJob:
        params = JobParams(
            prompt=row["prompt"], model=row["model"], count=row["count"], width=row["width"],
            height=row["height"], size=row["size"], steps=row["steps"], seed=row["seed"],
            negative_prompt=row["negative_prompt"], duration=row["duration"],
        )
        return cls(
            id=row["id"], kind=row["kind"], params=params, user_id=row["user_id"], guild_id=row["guild_id"],
            channel_id=row["channel_id"], profile=row["profile"], status=row["status"], origin=row["origin"],
            parent_id=row["parent_id"], source_index=row["source_index"], error=row["error"],
            model_used=row["model_used"], request_id=row["request_id"], message_id=row["message_id"],
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            gateway_job_id=row["gateway_job_id"], progress=row["progress"], reservation_id=row["reservation_id"],
            result_url=row["result_url"], result_expires_at=row["result_expires_at"],
        )


@dataclass(frozen=True, slots=True)
class FileToStore:
    data: bytes
    mime: str
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    duration: float | None = None  # seconds (video, audio)

    def __repr__(self) -> str:
        return f"FileToStore(mime={self.mime!r}, bytes={len(self.data)}, seed={self.seed!r})"


@dataclass(frozen=True, slots=True)
class StoredFile:
    job_id: int
    index: int  # 1-based, as on the U/V buttons
    name: str  # "<job id>/<index>.<ext>" (a result)
    path: Path | None  # the file, when the bytes are kept in a directory rather than the database
    mime: str
    width: int | None
    height: int | None
    seed: int | None
    size_bytes: int
    role: str = "result"  # or an edit's "source" / "mask"
    duration: float | None = None


#: The names the /imagine code knew them by (kept until every user says Media/File).
ImageJob = MediaJob
ImageToStore = FileToStore
StoredImage = StoredFile


def media_location(storage: StorageSettings) -> Path | None:
    """The directory for media bytes, or None: in the database (PostgreSQL without ``media_dir``)."""
    if storage.media_dir:
        return Path(storage.media_dir)
    if storage.url:
        return None
    return images_dir_for(storage.path)


def process_name() -> str:
    """This process's name as a job owner: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


_JOB_COLUMNS = (
    "id, kind, parent_id, origin, source_index, guild_id, channel_id, user_id, profile, prompt, negative_prompt,"
    " model, count, width, height, size, steps, seed, duration, status, error, model_used, request_id, message_id,"
    " created_at, started_at, finished_at, gateway_job_id, progress, reservation_id, result_url, result_expires_at"
)
_FILE_COLUMNS = "job_id, role, idx, path, mime, width, height, seed, size_bytes, duration"
_INSERT_FILE = (
    "INSERT INTO media_files(job_id, role, idx, path, mime, width, height, seed, size_bytes, duration, data)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


class JobStore:
    def __init__(
        self, store: Store, media_dir: str | Path | None, *, owner: str | None = None,
        clock: Callable[[], float] = time.time, lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        #: None: file bytes in the database
        self.media_dir = None if media_dir is None else Path(media_dir)
        self.owner = owner or process_name()
        self.clock = clock
        self.lease_seconds = lease_seconds

    # -- creating and reading -------------------------------------------------------------------

    async def create(
        self,
        params: JobParams,
        *,
        kind: str = "image",
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        profile: str,
        origin: str = "command",
        parent_id: int | None = None,
        source_index: int | None = None,
        max_active: int | None = None,
        active_kinds: Sequence[str] = KINDS,
        sources: Sequence[tuple[str, FileToStore]] = (),
    ) -> MediaJob:
        """Record a ``pending`` job of this process; with ``max_active``, atomically refuse a member's job past
        the limit (its active jobs of ``active_kinds``, also against other processes: counted under a lock).

        ``sources`` (role ``source`` or ``mask``, each once) are kept with the row, in the same transaction; in a
        directory their files are written first (named by a token, as the job has no id yet) and removed again
        when the job is refused."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        roles = [role for role, _ in sources]
        if any(role not in ("source", "mask") for role in roles) or len(set(roles)) != len(roles):
            raise ValueError(f"sources are one 'source' and at most one 'mask', not {roles}")
        now = self.clock()
        token = uuid.uuid4().hex
        names = [f"src-{token}/{role}-1.{_EXT.get(f.mime, 'bin')}" for role, f in sources]
        if self.media_dir is not None and sources:
            await asyncio.to_thread(_write_files, self.media_dir, names, [f.data for _, f in sources])
        in_files = self.media_dir is not None

        def body(tx: SyncTx) -> MediaJob:
            if max_active is not None:
                _lock_member(tx, user_id)
                active = _active_count(tx, user_id, active_kinds)
                if active >= max_active:
                    raise ConcurrencyLimitReached(active, max_active, what=_noun(kind))
            row = tx.fetchone(
                "INSERT INTO media_jobs(kind, parent_id, origin, source_index, guild_id, channel_id, user_id, profile,"
                " prompt, negative_prompt, model, count, width, height, size, steps, seed, duration, status,"
                " created_at, owner, lease_until) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',?,?,?)"
                f" RETURNING {_JOB_COLUMNS}",
                (kind, parent_id, origin, source_index, guild_id, channel_id, user_id, profile, params.prompt,
                 params.negative_prompt, params.model, params.count, params.width, params.height, params.size,
                 params.steps, params.seed, params.duration, now, self.owner, now + self.lease_seconds),
            )
            assert row is not None
            job = MediaJob.from_row(row)
            if sources:
                tx.executemany(_INSERT_FILE, [
                    (job.id, role, 1, name, f.mime, f.width, f.height, f.seed, len(f.data), _seconds(f.duration),
                     None if in_files else f.data)
                    for name, (role, f) in zip(names, sources, strict=True)
                ])
            return job

        try:
            return await self.store.run(body)
        except Exception:  # refused or rolled back (not on cancellation: the row may have been committed)
            if self.media_dir is not None and sources:
                await asyncio.to_thread(_remove_dirs, self.media_dir, {(self.media_dir / n).parent for n in names})
            raise

    async def get(self, job_id: int) -> MediaJob | None:
        row = await self.store.fetchone(f"SELECT {_JOB_COLUMNS} FROM media_jobs WHERE id = ?", (job_id,))
        return None if row is None else MediaJob.from_row(row)

    async def active_count(self, user_id: int, kinds: Sequence[str] = KINDS) -> int:
        """The member's jobs of ``kinds`` waiting, running or submitted."""
        return await self.store.run(lambda tx: _active_count(tx, user_id, kinds))

    async def images(self, job_id: int) -> list[StoredFile]:
        """The job's result files (without their bytes), by index."""
        rows = await self.store.fetchall(
            f"SELECT {_FILE_COLUMNS} FROM media_files WHERE job_id = ? AND role = 'result' ORDER BY idx", (job_id,)
        )
        return [self._stored(r) for r in rows]

    async def read_image(self, job_id: int, index: int) -> tuple[StoredFile, bytes] | None:
        """The stored result and its bytes, or None when the job has no such result (or its file is gone)."""
        row = await self.store.fetchone(
            f"SELECT {_FILE_COLUMNS}, data FROM media_files WHERE job_id = ? AND role = 'result' AND idx = ?",
            (job_id, index),
        )
        return None if row is None else await self._with_bytes(row)

    async def read_all(self, job_id: int) -> list[tuple[StoredFile, bytes]]:
        """Every result of the job that can still be read, by index."""
        rows = await self.store.fetchall(
            f"SELECT {_FILE_COLUMNS}, data FROM media_files WHERE job_id = ? AND role = 'result' ORDER BY idx",
            (job_id,),
        )
        return await self._all_with_bytes(rows)

    async def read_sources(self, job_id: int) -> dict[str, tuple[StoredFile, bytes]]:
        """An edit's ``source`` (and ``mask``) with their bytes; a role whose bytes are gone is left out."""
        rows = await self.store.fetchall(
            f"SELECT {_FILE_COLUMNS}, data FROM media_files WHERE job_id = ? AND role <> 'result' ORDER BY role, idx",
            (job_id,),
        )
        return {stored.role: (stored, data) for stored, data in await self._all_with_bytes(rows)}

    # -- status transitions -----------------------------------------------------------------------

    async def set_message(self, job_id: int, channel_id: int | None, message_id: int) -> None:
        await self.store.execute(
            "UPDATE media_jobs SET message_id = ?, channel_id = COALESCE(?, channel_id) WHERE id = ?",
            (message_id, channel_id, job_id),
        )

    async def set_reservation(self, job_id: int, reservation_id: str | None) -> None:
        """The budget hold taken for the job (reopened after a restart to settle what it used)."""
        await self.store.execute("UPDATE media_jobs SET reservation_id = ? WHERE id = ?", (reservation_id, job_id))

    async def mark_running(self, job_id: int) -> bool:
        """``pending → running`` just before the paid call; False if the job is no longer pending."""
        changed = await self.store.execute(
            "UPDATE media_jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'pending'",
            (self.clock(), job_id),
        )
        return changed == 1

    async def mark_submitted(self, job_id: int, gateway_job_id: str) -> bool:
        """``running → submitted`` with the gateway's job id, in one statement: once this is stored a restart
        polls that id (never a new POST). False if the job was no longer running (cancelled, recovered)."""
        changed = await self.store.execute(
            "UPDATE media_jobs SET status = 'submitted', gateway_job_id = ? WHERE id = ? AND status = 'running'",
            (gateway_job_id, job_id),
        )
        return changed == 1

    async def set_progress(self, job_id: int, progress: float | None) -> None:
        await self.store.execute(
            "UPDATE media_jobs SET progress = ? WHERE id = ?", (None if progress is None else float(progress), job_id)
        )

    async def set_result_url(self, job_id: int, url: str | None, expires_at: float | None) -> None:
        """Where the gateway offers the result (ephemeral), e.g. to link it when it is too large to attach."""
        await self.store.execute(
            "UPDATE media_jobs SET result_url = ?, result_expires_at = ? WHERE id = ?",
            (url, None if expires_at is None else float(expires_at), job_id),
        )

    async def save_generated(
        self, job_id: int, files: Sequence[FileToStore], *, model_used: str | None = None,
        request_id: str | None = None,
    ) -> list[StoredFile]:
        """Keep the result bytes (files: written first, in a thread, renamed atomically), then the rows and
        ``generated`` in one transaction. An edit's sources stay."""
        names = [f"{job_id}/{i}.{_EXT.get(f.mime, 'bin')}" for i, f in enumerate(files, start=1)]
        in_files = self.media_dir is not None
        if self.media_dir is not None:
            await asyncio.to_thread(_write_files, self.media_dir, names, [f.data for f in files])
        rows = [
            (job_id, "result", i, name, f.mime, f.width, f.height, f.seed, len(f.data), _seconds(f.duration),
             None if in_files else f.data)
            for i, (name, f) in enumerate(zip(names, files, strict=True), start=1)
        ]

        def body(tx: SyncTx) -> None:
            tx.execute("DELETE FROM media_files WHERE job_id = ? AND role = 'result'", (job_id,))
            tx.executemany(_INSERT_FILE, rows)
            tx.execute(
                "UPDATE media_jobs SET status = 'generated', model_used = ?, request_id = ?, error = NULL"
                " WHERE id = ?",
                (model_used, request_id, job_id),
            )

        await self.store.run(body)
        return [
            StoredFile(job_id=job_id, index=i, name=name, path=self._file(name), mime=f.mime, width=f.width,
                       height=f.height, seed=f.seed, size_bytes=len(f.data), duration=_seconds(f.duration))
            for i, (name, f) in enumerate(zip(names, files, strict=True), start=1)
        ]

    async def mark_done(self, job_id: int) -> None:
        """``done`` (its result was posted); a deleted or cancelled job stays so."""
        await self.store.execute(
            "UPDATE media_jobs SET status = 'done', finished_at = ? WHERE id = ? AND status NOT IN ('deleted',"
            " 'cancelled')",
            (self.clock(), job_id),
        )

    async def mark_failed(self, job_id: int, error: str) -> None:
        """``failed`` with why; a deleted or cancelled job stays so (a poll that sees the cancel is no failure)."""
        await self.store.execute(
            "UPDATE media_jobs SET status = 'failed', error = ?, finished_at = ?"
            " WHERE id = ? AND status NOT IN ('deleted', 'cancelled')",
            (error[:500], self.clock(), job_id),
        )

    async def mark_cancelled(self, job_id: int, error: str) -> bool:
        """A job still waiting, running or submitted → ``cancelled`` (``error`` says by whom / what it cost);
        False when it had already finished (its result, or failure, stands)."""
        changed = await self.store.execute(
            "UPDATE media_jobs SET status = 'cancelled', error = ?, finished_at = ?"
            f" WHERE id = ? AND status IN {_ACTIVE}",
            (error[:500], self.clock(), job_id),
        )
        return changed == 1

    async def mark_deleted(self, job_id: int) -> None:
        """Status ``deleted`` and the files removed (their rows, and their files if any)."""
        now = self.clock()

        def body(tx: SyncTx) -> list[str]:
            tx.execute(
                "UPDATE media_jobs SET status = 'deleted', finished_at = COALESCE(finished_at, ?) WHERE id = ?",
                (now, job_id),
            )
            names = [str(r["path"]) for r in tx.fetchall("SELECT path FROM media_files WHERE job_id = ?", (job_id,))]
            tx.execute("DELETE FROM media_files WHERE job_id = ?", (job_id,))
            return names

        names = await self.store.run(body)
        if self.media_dir is not None:
            folders = {self.media_dir / str(job_id), *((self.media_dir / name).parent for name in names)}
            await asyncio.to_thread(_remove_dirs, self.media_dir, folders)

    # -- processes: leases and recovery -----------------------------------------------------------

    async def renew_leases(self) -> int:
        """Extend this process's claim on the jobs it works on; the number of jobs."""
        return await self.store.execute(
            f"UPDATE media_jobs SET lease_until = ? WHERE owner = ? AND status IN {_HELD}",
            (self.clock() + self.lease_seconds, self.owner),
        )

    async def release_leases(self) -> int:
        """This process stops: its unfinished jobs may be recovered by the next process at once."""
        return await self.store.execute(
            f"UPDATE media_jobs SET lease_until = 0.0 WHERE owner = ? AND status IN {_HELD}", (self.owner,)
        )

    async def recover_interrupted(self, *, any_owner: bool = False) -> list[MediaJob]:
        """Settle the jobs of processes that are gone (their lease ran out, or ``any_owner``: every other
        process's): ``running`` → ``unknown`` (the gateway may have run it: never resubmitted),
        ``pending`` → ``failed`` (never sent). Returns the jobs changed, plus the jobs this process now owns,
        as they are: ``generated`` ones (their result was stored but not posted: to post) and ``submitted``
        ones (the gateway has them: to resume polling their ``gateway_job_id``, never a new POST)."""
        now = self.clock()

        def body(tx: SyncTx) -> list[tuple[int, str]]:
            expired = "" if any_owner else " AND (lease_until IS NULL OR lease_until < ?)"
            params: tuple[Any, ...] = (self.owner,) if any_owner else (self.owner, now)
            rows = tx.fetchall(
                f"SELECT id, status FROM media_jobs WHERE status IN {_HELD} AND (owner IS NULL OR owner <> ?)"
                f"{expired} ORDER BY id" + for_update(tx.dialect, skip_locked=True),
                params,
            )
            found = [(int(r["id"]), str(r["status"])) for r in rows]
            ids = {state: [job_id for job_id, s in found if s == state]
                   for state in ("running", "pending", "submitted", "generated")}
            tx.executemany(
                "UPDATE media_jobs SET status = 'unknown', finished_at = ?,"
                " error = 'the bot stopped while the gateway was working on it' WHERE id = ?",
                [(now, job_id) for job_id in ids["running"]],
            )
            tx.executemany(
                "UPDATE media_jobs SET status = 'failed', finished_at = ?,"
                " error = 'the bot stopped before it was sent' WHERE id = ?",
                [(now, job_id) for job_id in ids["pending"]],
            )
            tx.executemany(  # this process posts them, or polls them, now
                "UPDATE media_jobs SET owner = ?, lease_until = ? WHERE id = ?",
                [(self.owner, now + self.lease_seconds, job_id) for job_id in ids["generated"] + ids["submitted"]],
            )
            return found

        jobs = [await self.get(job_id) for job_id, _ in await self.store.run(body)]
        return [j for j in jobs if j is not None]

    # -- helpers ----------------------------------------------------------------------------------

    def _file(self, name: str) -> Path | None:
        return None if self.media_dir is None else self.media_dir / name

    def _stored(self, row: Any) -> StoredFile:
        return StoredFile(
            job_id=row["job_id"], index=row["idx"], name=row["path"], path=self._file(row["path"]), mime=row["mime"],
            width=row["width"], height=row["height"], seed=row["seed"], size_bytes=row["size_bytes"],
            role=row["role"], duration=row["duration"],
        )

    async def _with_bytes(self, row: Any) -> tuple[StoredFile, bytes] | None:
        stored = self._stored(row)
        if row["data"] is not None:
            return stored, bytes(row["data"])
        if stored.path is None:
            return None  # kept as a file, but this process has no media directory
        try:
            return stored, await asyncio.to_thread(stored.path.read_bytes)
        except FileNotFoundError:
            return None

    async def _all_with_bytes(self, rows: Sequence[Any]) -> list[tuple[StoredFile, bytes]]:
        out = []
        for row in rows:
            found = await self._with_bytes(row)
            if found is not None:
                out.append(found)
        return out


def _seconds(duration: float | None) -> float | None:
    return None if duration is None else float(duration)


def _noun(kind: str) -> str:
    """The refused job's kind in words for the limit's message: "image" (images and edits, as /imagine has
    always said) or "media" (video and music share their limit)."""
    return "image" if kind in ("image", "edit") else "media"


def _active_count(tx: SyncTx, user_id: int, kinds: Sequence[str] = KINDS) -> int:
    if not kinds:
        return 0
    marks = ", ".join("?" for _ in kinds)
    return int(tx.fetchval(
        f"SELECT COUNT(*) FROM media_jobs WHERE user_id = ? AND status IN {_ACTIVE} AND kind IN ({marks})",
        (user_id, *kinds),
    ))


def _lock_member(tx: SyncTx, user_id: int) -> None:
    """Serialise job creation per member across processes until the transaction ends (PostgreSQL: an
    advisory transaction lock, as there is no member row to lock; SQLite has one writer already)."""
    if tx.dialect == "postgresql":
        tx.fetchval("SELECT pg_advisory_xact_lock(?)", (lock_key(f"imagine-member:{user_id}"),))


def _write_files(root: Path, names: Sequence[str], blobs: Sequence[bytes]) -> None:
    """Each ``root / name`` written atomically (a temporary file renamed), mode 0600."""
    for name, data in zip(names, blobs, strict=True):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)


def _remove_dirs(root: Path, folders: Iterable[Path]) -> None:
    """Remove ``folders`` (a job's ``<id>/``, an edit's sources'), never ``root`` itself or anything outside it."""
    base = root.resolve()
    for folder in folders:
        resolved = folder.resolve()
        if resolved != base and resolved.is_relative_to(base):
            shutil.rmtree(folder, ignore_errors=True)
