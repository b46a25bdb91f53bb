"""The /imagine job store (SQLite rows + image files under the data directory).

A job is written before the paid gateway call and moves ``pending → running → generated → done``
(or ``failed``; ``unknown`` when the bot stopped while the paid call was in flight; ``deleted``).
Image bytes are files named by job id and index, written atomically in a worker thread; their rows
point at them so U-buttons work after a restart. Nothing here knows Discord.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.rendering.user_facing import UserFacingError
from bot.storage.store import Store

__all__ = [
    "ACTIVE_STATUSES",
    "ConcurrencyLimitReached",
    "ImageJob",
    "ImageToStore",
    "JobParams",
    "JobStore",
    "StoredImage",
    "images_dir_for",
]

#: Statuses that hold one of the member's concurrent-job slots.
ACTIVE_STATUSES = ("pending", "running")
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
    path: Path
    mime: str
    width: int | None
    height: int | None
    seed: int | None
    size_bytes: int


def images_dir_for(database_path: str | Path) -> Path:
    """``<directory of the database>/images`` (``data/images`` for an in-memory database)."""
    db = Path(database_path)
    if str(database_path) == ":memory:":
        return Path("data") / "images"
    return db.resolve().parent / "images"


class JobStore:
    def __init__(self, store: Store, images_dir: str | Path) -> None:
        self.store = store
        self.images_dir = Path(images_dir)

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
        """Record a ``pending`` job; with ``max_active``, atomically refuse a member's job past the limit."""
        async with self.store.transaction():
            if max_active is not None:
                active = await self.active_count(user_id)
                if active >= max_active:
                    raise ConcurrencyLimitReached(active, max_active)
            job_id = await self.store.execute(
                "INSERT INTO imagine_jobs(parent_id, origin, source_index, guild_id, channel_id, user_id, profile,"
                " prompt, negative_prompt, model, count, width, height, size, steps, seed, status, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',?)",
                (parent_id, origin, source_index, guild_id, channel_id, user_id, profile, params.prompt,
                 params.negative_prompt, params.model, params.count, params.width, params.height, params.size,
                 params.steps, params.seed, time.time()),
            )
            job = await self.get(job_id)
        assert job is not None
        return job

    async def get(self, job_id: int) -> ImageJob | None:
        row = await self.store.fetchone("SELECT * FROM imagine_jobs WHERE id = ?", (job_id,))
        return None if row is None else ImageJob.from_row(row)

    async def active_count(self, user_id: int) -> int:
        return int(await self.store.fetchval(
            "SELECT COUNT(*) FROM imagine_jobs WHERE user_id = ? AND status IN ('pending', 'running')", (user_id,)
        ))

    async def images(self, job_id: int) -> list[StoredImage]:
        rows = await self.store.fetchall("SELECT * FROM imagine_images WHERE job_id = ? ORDER BY idx", (job_id,))
        return [self._stored(r) for r in rows]

    async def read_image(self, job_id: int, index: int) -> tuple[StoredImage, bytes] | None:
        """The stored image and its bytes, or None when the job has no such image (or its file is gone)."""
        row = await self.store.fetchone("SELECT * FROM imagine_images WHERE job_id = ? AND idx = ?", (job_id, index))
        if row is None:
            return None
        stored = self._stored(row)
        try:
            data = await asyncio.to_thread(stored.path.read_bytes)
        except FileNotFoundError:
            return None
        return stored, data

    async def read_all(self, job_id: int) -> list[tuple[StoredImage, bytes]]:
        out = []
        for stored in await self.images(job_id):
            try:
                out.append((stored, await asyncio.to_thread(stored.path.read_bytes)))
            except FileNotFoundError:
                continue
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
            (time.time(), job_id),
        )
        return changed == 1

    async def save_generated(
        self, job_id: int, images: Sequence[ImageToStore], *, model_used: str | None = None,
        request_id: str | None = None,
    ) -> list[StoredImage]:
        """Write the image files (thread, atomic renames), then rows + ``generated`` in one transaction."""
        job_dir = self.images_dir / str(job_id)
        names = [f"{job_id}/{i}.{_EXT.get(img.mime, 'bin')}" for i, img in enumerate(images, start=1)]
        await asyncio.to_thread(_write_files, self.images_dir, job_dir, names, [img.data for img in images])
        async with self.store.transaction():
            await self.store.execute("DELETE FROM imagine_images WHERE job_id = ?", (job_id,))
            await self.store.executemany(
                "INSERT INTO imagine_images(job_id, idx, path, mime, width, height, seed, size_bytes)"
                " VALUES (?,?,?,?,?,?,?,?)",
                [(job_id, i, name, img.mime, img.width, img.height, img.seed, len(img.data))
                 for i, (name, img) in enumerate(zip(names, images, strict=True), start=1)],
            )
            await self.store.execute(
                "UPDATE imagine_jobs SET status = 'generated', model_used = ?, request_id = ?, error = NULL"
                " WHERE id = ?",
                (model_used, request_id, job_id),
            )
        return await self.images(job_id)

    async def mark_done(self, job_id: int) -> None:
        await self.store.execute(
            "UPDATE imagine_jobs SET status = 'done', finished_at = ? WHERE id = ? AND status != 'deleted'",
            (time.time(), job_id),
        )

    async def mark_failed(self, job_id: int, error: str) -> None:
        await self.store.execute(
            "UPDATE imagine_jobs SET status = 'failed', error = ?, finished_at = ?"
            " WHERE id = ? AND status != 'deleted'",
            (error[:500], time.time(), job_id),
        )

    async def mark_deleted(self, job_id: int) -> None:
        """Status ``deleted`` and the image files removed (the rows go too)."""
        async with self.store.transaction():
            await self.store.execute(
                "UPDATE imagine_jobs SET status = 'deleted', finished_at = COALESCE(finished_at, ?) WHERE id = ?",
                (time.time(), job_id),
            )
            await self.store.execute("DELETE FROM imagine_images WHERE job_id = ?", (job_id,))
        await asyncio.to_thread(shutil.rmtree, self.images_dir / str(job_id), True)

    async def recover_interrupted(self) -> list[ImageJob]:
        """At start-up: ``running`` → ``unknown`` (the gateway may have run it: never resubmitted),
        ``pending`` → ``failed`` (never sent). Returns the jobs changed, plus ``generated`` jobs whose
        result was stored but not posted."""
        async with self.store.transaction():
            rows = await self.store.fetchall(
                "SELECT id FROM imagine_jobs WHERE status IN ('pending', 'running', 'generated') ORDER BY id"
            )
            now = time.time()
            await self.store.execute(
                "UPDATE imagine_jobs SET status = 'unknown', finished_at = ?,"
                " error = 'the bot stopped while the gateway was working on it' WHERE status = 'running'",
                (now,),
            )
            await self.store.execute(
                "UPDATE imagine_jobs SET status = 'failed', finished_at = ?,"
                " error = 'the bot stopped before it was sent' WHERE status = 'pending'",
                (now,),
            )
        jobs = [await self.get(r["id"]) for r in rows]
        return [j for j in jobs if j is not None]

    # -- helpers ----------------------------------------------------------------------------------

    def _stored(self, row: Any) -> StoredImage:
        return StoredImage(
            job_id=row["job_id"], index=row["idx"], path=self.images_dir / row["path"], mime=row["mime"],
            width=row["width"], height=row["height"], seed=row["seed"], size_bytes=row["size_bytes"],
        )


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
