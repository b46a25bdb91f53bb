"""Alembic 0019 on both backends: /imagine's tables become media_jobs/media_files with every row and id
(old buttons name jobs by id), new ids continue past every id ever handed out, and the downgrade
brings back what imagine_* can hold."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.media.jobs import FileToStore, JobParams, JobStore
from bot.storage import migrations
from bot.storage.postgres_backend import async_url
from bot.storage.store import Store

T = TypeVar("T")

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
OLD_JOB_COLUMNS = (
    "id, parent_id, origin, source_index, guild_id, channel_id, user_id, profile, prompt, negative_prompt, model,"
    " count, width, height, size, steps, seed, status, error, model_used, request_id, message_id, created_at,"
    " started_at, finished_at, owner, lease_until"
)
OLD_FILE_COLUMNS = "job_id, idx, path, mime, width, height, seed, size_bytes, data"


class Database:
    """An SQLite file or a PostgreSQL database, migrated to any revision."""

    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self.path = tmp_path / "g.db"
        self.url = request.getfixturevalue("pg_url") if backend == "postgresql" else None

    def store(self) -> Store:
        return Store(self.path) if self.url is None else Store(url=self.url)

    async def on_connection(self, fn: Callable[[Any], T]) -> T:
        if self.url is None:
            def in_thread() -> T:
                engine = migrations.sqlite_engine(self.path)
                try:
                    with engine.connect() as connection:
                        return fn(connection)
                finally:
                    engine.dispose()

            return await asyncio.to_thread(in_thread)
        engine = create_async_engine(async_url(self.url), poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    async def upgrade(self, to: str) -> int:
        return await self.on_connection(lambda c: migrations.upgrade(c, to=to))

    async def downgrade(self, to: str) -> int:
        return await self.on_connection(lambda c: migrations.downgrade(c, to))

    async def opened_as_is(self) -> Store:
        store = self.store()
        await store.open(migrate=False)
        return store


async def tables(store: Store) -> set[str]:
    if store.dialect == "sqlite":
        rows = await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await store.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


async def fill_0018(store: Store) -> dict[str, int]:
    """/imagine rows as version 0018 holds them: a variation, a parent with a larger id than its child,
    images with bytes and as files, and a deleted last job (its id stays used up)."""
    async def job(status: str, **extra: Any) -> int:
        row = {"user_id": 7, "profile": "flux", "prompt": "a red fox 🦊", "count": 2, "created_at": 1.5,
               "status": status, **extra}
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        return int(await store.fetchval(f"INSERT INTO imagine_jobs ({names}) VALUES ({marks}) RETURNING id", row))

    first = await job("done", guild_id=2**62 + 1, channel_id=3, model="flux-schnell", seed=2**40, width=512,
                      height=512, message_id=2**63 - 1, model_used="flux-schnell", request_id="req-1",
                      started_at=2.25, finished_at=9.5, owner="host:1:aa", lease_until=31.5)
    child = await job("failed", origin="variation", parent_id=first, source_index=2, error="gateway timed out")
    later = await job("running", owner="host:1:aa", lease_until=40.0)
    await store.execute("UPDATE imagine_jobs SET parent_id = ? WHERE id = ?", (later, first))
    gone = await job("pending")
    await store.execute("DELETE FROM imagine_jobs WHERE id = ?", (gone,))
    await store.execute(f"INSERT INTO imagine_images ({OLD_FILE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                        (first, 1, f"{first}/1.png", "image/png", 512, 512, 2**40, len(PNG_BYTES), PNG_BYTES))
    await store.execute(f"INSERT INTO imagine_images ({OLD_FILE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                        (first, 2, f"{first}/2.jpg", "image/jpeg", None, None, None, 5, None))
    return {"first": first, "child": child, "later": later, "gone": gone}


async def test_imagine_rows_become_media_rows_with_their_ids_and_back(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = Database(backend, tmp_path, request)
    assert await db.upgrade("0018") == 18
    store = await db.opened_as_is()
    ids = await fill_0018(store)
    old_jobs = [dict(r) for r in await store.fetchall(f"SELECT {OLD_JOB_COLUMNS} FROM imagine_jobs ORDER BY id")]
    old_files = [dict(r) for r in await store.fetchall(
        f"SELECT {OLD_FILE_COLUMNS} FROM imagine_images ORDER BY job_id, idx")]
    await store.close()

    store = db.store()
    assert await store.open() >= 19
    try:
        names = await tables(store)
        assert {"media_jobs", "media_files"} <= names and not {"imagine_jobs", "imagine_images"} & names
        # every row, every value, the same ids; the new columns say what the rows were
        jobs = await store.fetchall(f"SELECT {OLD_JOB_COLUMNS}, kind, duration, gateway_job_id, progress,"
                                    " reservation_id, result_url, result_expires_at FROM media_jobs ORDER BY id")
        assert [{k: r[k] for k in old_jobs[0]} for r in jobs] == old_jobs
        assert {(r["kind"], r["duration"], r["gateway_job_id"], r["progress"], r["reservation_id"],
                 r["result_url"], r["result_expires_at"]) for r in jobs} == {("image",) + (None,) * 6}
        files = await store.fetchall(f"SELECT {OLD_FILE_COLUMNS}, role, duration FROM media_files"
                                     " ORDER BY job_id, idx")
        assert [{k: (bytes(r[k]) if k == "data" and r[k] is not None else r[k]) for k in old_files[0]}
                for r in files] == old_files
        assert {(r["role"], r["duration"]) for r in files} == {("result", None)}

        # an old U-button still finds its image; a new job takes an id no job ever had
        media = JobStore(store, None, owner="after")
        found = await media.read_image(ids["first"], 1)
        assert found is not None and found[1] == PNG_BYTES and found[0].role == "result"
        old = await media.get(ids["child"])
        assert old is not None and (old.kind, old.parent_id, old.status) == ("image", ids["first"], "failed")
        image = await media.create(JobParams(prompt="after"), user_id=7, guild_id=None, channel_id=None,
                                   profile="flux")
        assert image.id > ids["gone"]
        video = await media.create(JobParams(prompt="a boat", duration=8), kind="video", user_id=7,
                                   guild_id=None, channel_id=None, profile="openai")
        assert await media.mark_running(video.id) and await media.mark_submitted(video.id, "vid_1")
        edit = await media.create(JobParams(prompt="violet sky"), kind="edit", user_id=7, guild_id=None,
                                  channel_id=None, profile="openai", parent_id=video.id,
                                  sources=[("source", FileToStore(PNG_BYTES, "image/png", 16, 16))])
        submitted = await media.create(JobParams(prompt="an image"), user_id=7, guild_id=None, channel_id=None,
                                       profile="openai", origin="variation", parent_id=video.id)
        await store.execute("UPDATE media_jobs SET status = 'submitted' WHERE id = ?", (submitted.id,))
        await media.save_generated(edit.id, [FileToStore(b"edited", "image/png")])
    finally:
        await store.close()

    # back to 0018: the image jobs and their results stay (a status imagine_jobs lacks becomes its nearest)
    assert await db.downgrade("0018") == 18
    store = await db.opened_as_is()
    try:
        names = await tables(store)
        assert {"imagine_jobs", "imagine_images"} <= names and not {"media_jobs", "media_files"} & names
        back = await store.fetchall(f"SELECT {OLD_JOB_COLUMNS} FROM imagine_jobs ORDER BY id")
        assert [dict(r) for r in back][:3] == old_jobs
        assert [(r["id"], r["status"], r["parent_id"]) for r in back[3:]] == [
            (image.id, "pending", None), (submitted.id, "unknown", None)]  # its parent, a video, is not kept
        assert await store.fetchval("SELECT COUNT(*) FROM imagine_images") == len(old_files)
        again = int(await store.fetchval(
            "INSERT INTO imagine_jobs (user_id, profile, prompt, count, created_at) VALUES (7, 'p', 'x', 1, 1.0)"
            " RETURNING id"))
        assert again > submitted.id  # the dropped video and edit jobs' ids stay used up too
    finally:
        await store.close()

    # and up again: the same rows
    store = db.store()
    assert await store.open() >= 19
    try:
        assert [r["id"] for r in await store.fetchall("SELECT id FROM media_jobs WHERE kind = 'image' ORDER BY id")
                ] == [r["id"] for r in back] + [again]
        newest = await JobStore(store, None).create(JobParams(prompt="x"), user_id=1, guild_id=None,
                                                    channel_id=None, profile="p")
        assert newest.id > again
    finally:
        await store.close()


async def test_an_empty_0018_database_upgrades_and_numbers_from_one(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = Database(backend, tmp_path, request)
    assert await db.upgrade("0018") == 18
    store = db.store()
    await store.open()
    try:
        job = await JobStore(store, None).create(JobParams(prompt="x"), user_id=1, guild_id=None, channel_id=None,
                                                 profile="p")
        assert job.id == 1 and job.kind == "image"
    finally:
        await store.close()
