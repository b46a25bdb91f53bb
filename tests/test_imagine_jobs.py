"""bot/media/jobs.py on both backends: jobs survive a reopen, limits are atomic (also between processes),
the images are readable by every process, and recovery only settles jobs whose process is gone."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app.settings import Settings, StorageSettings
from bot.media.jobs import (
    LEASE_SECONDS,
    ConcurrencyLimitReached,
    ImageToStore,
    JobParams,
    JobStore,
    images_dir_for,
    media_location,
)
from bot.media.service import MediaJobService
from bot.storage.store import Store

PARAMS = JobParams(prompt="a red fox", model="flux", count=2, width=512, height=512, steps=4, seed=42)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def media_for(tmp_path: Path, mode: str) -> Path | None:
    """``files``: a directory (shared by every process of the test); ``database``: None."""
    return tmp_path / "media" if mode == "files" else None


def default_media(store: Store) -> Path | None:
    """What a bot without ``media_dir`` uses: files next to a SQLite file, the database with PostgreSQL."""
    return media_location(StorageSettings(path=str(store.path)) if store.path else StorageSettings(url=store.url))


@pytest.fixture
async def other_store(store: Store) -> AsyncIterator[Store]:
    """The same database as ``store``, opened again: what another process sees."""
    other = Store(url=store.url) if store.url else Store(store.path)
    await other.open()
    yield other
    await other.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(store: Store, clock: Clock) -> JobStore:
    return JobStore(store, default_media(store), owner="process-a", clock=clock)


async def make(jobs: JobStore, user_id: int = 7, **kw: Any) -> int:
    job = await jobs.create(PARAMS, user_id=user_id, guild_id=1, channel_id=2, profile="digicord", **kw)
    return job.id


def png(colour: tuple[int, int, int], size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def test_where_the_images_go(tmp_path: Path) -> None:
    assert images_dir_for(tmp_path / "x" / "g.db") == (tmp_path / "x" / "images").resolve()
    sqlite = StorageSettings(path=str(tmp_path / "g.db"))
    assert media_location(sqlite) == (tmp_path / "images").resolve()
    assert media_location(StorageSettings(url="postgresql://u@db/g")) is None  # in the database
    shared = str(tmp_path / "shared")
    assert media_location(StorageSettings(url="postgresql://u@db/g", media_dir=shared)) == Path(shared)
    assert media_location(StorageSettings(path=str(tmp_path / "g.db"), media_dir=shared)) == Path(shared)
    assert StorageSettings(media_dir="  ").media_dir is None


async def test_create_records_parameters(jobs: JobStore) -> None:
    job = await jobs.create(PARAMS, user_id=7, guild_id=1, channel_id=2, profile="digicord")
    assert job.status == "pending"
    assert job.params == PARAMS
    assert (job.user_id, job.guild_id, job.channel_id, job.profile, job.origin) == (7, 1, 2, "digicord", "command")
    child = await jobs.create(PARAMS.with_seed(9), user_id=8, guild_id=1, channel_id=2, profile="digicord",
                              origin="variation", parent_id=job.id, source_index=3)
    assert (child.parent_id, child.source_index, child.origin, child.params.seed) == (job.id, 3, "variation", 9)
    assert child.id != job.id and await jobs.get(child.id) == child
    big = 1_300_000_000_000_000_003  # Discord ids are 64-bit
    other = await jobs.create(PARAMS.with_seed(2**40), user_id=big, guild_id=big, channel_id=big, profile="p")
    assert (other.user_id, other.guild_id, other.params.seed) == (big, big, 2**40)


async def test_concurrency_limit_is_enforced_atomically(jobs: JobStore) -> None:
    results = await asyncio.gather(
        *(jobs.create(PARAMS, user_id=7, guild_id=1, channel_id=2, profile="p", max_active=2) for _ in range(5)),
        return_exceptions=True,
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ConcurrencyLimitReached)]
    assert len(created) == 2 and len(refused) == 3
    assert refused[0].limit == 2 and refused[0].active == 2
    # another member is not affected; a finished job frees the slot
    await make(jobs, user_id=8, max_active=2)
    await jobs.mark_failed(created[0].id, "boom")
    await make(jobs, user_id=7, max_active=2)
    assert await jobs.active_count(7) == 2


async def test_concurrency_limit_holds_across_processes(store: Store, other_store: Store) -> None:
    here, there = JobStore(store, None, owner="a"), JobStore(other_store, None, owner="b")
    results = await asyncio.gather(
        *(js.create(PARAMS, user_id=7, guild_id=1, channel_id=2, profile="p", max_active=3)
          for _ in range(6) for js in (here, there)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert sum(isinstance(r, ConcurrencyLimitReached) for r in results) == 9
    assert await here.active_count(7) == 3


@pytest.mark.parametrize("mode", ["files", "database"])
async def test_generated_images_are_readable_after_reopen(store: Store, tmp_path: Path, mode: str) -> None:
    js = JobStore(store, media_for(tmp_path, mode))
    job_id = await make(js)
    assert await js.mark_running(job_id)
    assert not await js.mark_running(job_id)  # only once
    stored = await js.save_generated(
        job_id,
        [ImageToStore(b"\x89PNG-one", "image/png", 512, 512, 42), ImageToStore(b"\xff\xd8\xff-two", "image/jpeg",
                                                                               512, 512, 43)],
        model_used="flux-used", request_id="req-1",
    )
    await js.mark_done(job_id)
    assert [s.index for s in stored] == [1, 2]
    assert [s.name for s in stored] == [f"{job_id}/1.png", f"{job_id}/2.jpg"]
    assert await js.images(job_id) == stored
    if mode == "files":
        assert stored[0].path is not None and stored[0].path.read_bytes() == b"\x89PNG-one"
        assert stored[0].path.stat().st_mode & 0o777 == 0o600
    else:
        assert stored[0].path is None and not (tmp_path / "media").exists()
    await store.close()

    await store.open()
    js2 = JobStore(store, media_for(tmp_path, mode))
    job = await js2.get(job_id)
    assert job is not None
    assert (job.status, job.model_used, job.request_id) == ("done", "flux-used", "req-1")
    found = await js2.read_image(job_id, 2)
    assert found is not None
    meta, data = found
    assert data == b"\xff\xd8\xff-two" and meta.seed == 43 and meta.mime == "image/jpeg"
    assert await js2.read_image(job_id, 3) is None
    assert [(s.index, data) for s, data in await js2.read_all(job_id)] == [(1, b"\x89PNG-one"),
                                                                          (2, b"\xff\xd8\xff-two")]


@pytest.mark.parametrize("shared_dir", [False, True])
async def test_an_upscale_is_served_by_a_process_that_did_not_make_the_job(
    store: Store, other_store: Store, tmp_path: Path, shared_dir: bool
) -> None:
    """Two processes on one database: the job is made and generated by one, its U2 served by the other
    (PostgreSQL: the bytes in the database, or in ``media_dir``; SQLite: next to its file, or ``media_dir``)."""
    storage: dict[str, Any] = {"url": store.url} if store.url else {"path": str(store.path)}
    if shared_dir:
        storage["media_dir"] = str(tmp_path / "shared")
    settings = Settings(storage=storage)
    maker = MediaJobService(settings, store, None, None, None, None)  # type: ignore[arg-type]
    server = MediaJobService(settings, other_store, None, None, None, None)  # type: ignore[arg-type]
    assert maker.jobs.owner != server.jobs.owner
    assert (maker.jobs.media_dir is None) == (store.url is not None and not shared_dir)
    job = await maker.jobs.create(PARAMS, user_id=7, guild_id=1, channel_id=2, profile="digicord")
    await maker.jobs.mark_running(job.id)
    await maker.jobs.save_generated(job.id, [ImageToStore(png((250, 0, 0)), "image/png", 64, 64, 42),
                                             ImageToStore(png((0, 0, 250)), "image/png", 64, 64, 43)])
    await maker.jobs.mark_done(job.id)

    seen = await server.job(job.id)
    found = await server.stored_image(seen, 2)
    content, file = await server.single_image(seen, found, upload=8 * 1024 * 1024)
    image = Image.open(file.fp).convert("RGB")
    assert image.size == (64, 64) and image.getpixel((32, 32)) == (0, 0, 250)
    assert "seed 43" in content and f"#{job.id}" in content


async def test_a_process_starting_never_recovers_a_live_processs_jobs(
    store: Store, other_store: Store, clock: Clock
) -> None:
    a = JobStore(store, None, owner="process-a", clock=clock)
    b = JobStore(other_store, None, owner="process-b", clock=clock)
    pending = await make(a)
    running = await make(a)
    await a.mark_running(running)
    generated = await make(a)
    await a.mark_running(generated)
    await a.save_generated(generated, [ImageToStore(b"x", "image/png")])
    done = await make(a)
    await a.mark_done(done)

    assert await b.recover_interrupted() == []  # process a is alive: its lease holds
    clock.now += LEASE_SECONDS * 2 / 3
    assert await a.renew_leases() == 3  # a renews (pending, running and generated)
    clock.now += LEASE_SECONDS * 2 / 3
    assert await b.recover_interrupted() == []  # past the first lease, within the renewed one
    assert await a.recover_interrupted() == []  # never its own jobs
    clock.now += LEASE_SECONDS / 3 + 1  # a stopped renewing: it is gone

    changed = {j.id: j for j in await b.recover_interrupted()}
    assert set(changed) == {pending, running, generated}
    assert changed[running].status == "unknown"
    assert "stopped while the gateway" in (changed[running].error or "")
    assert changed[pending].status == "failed"
    assert changed[generated].status == "generated"  # b posts it now
    assert (await b.get(done)).status == "done"  # type: ignore[union-attr]
    assert await b.active_count(7) == 0
    assert await b.recover_interrupted() == []  # settled once
    c = JobStore(store, None, owner="process-c", clock=clock)
    assert await c.recover_interrupted() == []  # the generated job is b's now, b is alive


async def test_a_clean_stop_gives_its_jobs_up_at_once(store: Store, other_store: Store, clock: Clock) -> None:
    a = JobStore(store, None, owner="process-a", clock=clock)
    b = JobStore(other_store, None, owner="process-b", clock=clock)
    running = await make(a)
    await a.mark_running(running)
    other = await make(b)
    assert await a.release_leases() == 1
    assert [(j.id, j.status) for j in await b.recover_interrupted()] == [(running, "unknown")]
    assert (await b.get(other)).status == "pending"  # type: ignore[union-attr]
    # SQLite's start: one process owns the file, so every other owner's job is a previous run's
    c = JobStore(store, None, owner="process-c", clock=clock)
    assert [(j.id, j.status) for j in await c.recover_interrupted(any_owner=True)] == [(other, "failed")]


async def test_delete_removes_files_and_rows(store: Store, tmp_path: Path) -> None:
    jobs = JobStore(store, tmp_path / "media")
    job_id = await make(jobs)
    stored = await jobs.save_generated(job_id, [ImageToStore(b"abc", "image/png")])
    assert stored[0].path is not None and stored[0].path.exists()
    await jobs.mark_deleted(job_id)
    assert not stored[0].path.exists()
    assert await jobs.images(job_id) == []
    assert (await jobs.get(job_id)).status == "deleted"  # type: ignore[union-attr]
    await jobs.mark_done(job_id)  # a late completion does not resurrect it
    assert (await jobs.get(job_id)).status == "deleted"  # type: ignore[union-attr]


async def test_delete_in_the_database(store: Store) -> None:
    jobs = JobStore(store, None)
    job_id = await make(jobs)
    await jobs.save_generated(job_id, [ImageToStore(b"abc", "image/png")])
    assert await jobs.read_image(job_id, 1) is not None
    await jobs.mark_deleted(job_id)
    assert await jobs.read_image(job_id, 1) is None
    assert await store.fetchval("SELECT COUNT(*) FROM media_files") == 0


async def test_missing_file_reads_as_none(store: Store, tmp_path: Path) -> None:
    jobs = JobStore(store, tmp_path / "media")
    job_id = await make(jobs)
    stored = await jobs.save_generated(job_id, [ImageToStore(b"abc", "image/png")])
    assert stored[0].path is not None
    stored[0].path.unlink()
    assert await jobs.read_image(job_id, 1) is None
    assert await JobStore(store, None).read_image(job_id, 1) is None  # a file, and no directory here
