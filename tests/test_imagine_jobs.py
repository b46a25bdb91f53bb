"""bot/media/jobs.py + bot/storage/sql/0004: jobs survive a reopen, limits are atomic, crashes never resubmit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.media.jobs import ConcurrencyLimitReached, ImageToStore, JobParams, JobStore, images_dir_for
from bot.storage.store import Store

PARAMS = JobParams(prompt="a red fox", model="flux", count=2, width=512, height=512, steps=4, seed=42)


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[JobStore]:
    store = Store(tmp_path / "g.db")
    await store.open()
    yield JobStore(store, images_dir_for(store.path))
    await store.close()


async def make(jobs: JobStore, user_id: int = 7, **kw: object) -> int:
    job = await jobs.create(PARAMS, user_id=user_id, guild_id=1, channel_id=2, profile="digicord", **kw)  # type: ignore[arg-type]
    return job.id


def test_images_dir_is_next_to_the_database(tmp_path: Path) -> None:
    assert images_dir_for(tmp_path / "x" / "g.db") == (tmp_path / "x" / "images").resolve()


async def test_create_records_parameters(jobs: JobStore) -> None:
    job = await jobs.create(PARAMS, user_id=7, guild_id=1, channel_id=2, profile="digicord")
    assert job.status == "pending"
    assert job.params == PARAMS
    assert (job.user_id, job.guild_id, job.channel_id, job.profile, job.origin) == (7, 1, 2, "digicord", "command")
    child = await jobs.create(PARAMS.with_seed(9), user_id=8, guild_id=1, channel_id=2, profile="digicord",
                              origin="variation", parent_id=job.id, source_index=3)
    assert (child.parent_id, child.source_index, child.origin, child.params.seed) == (job.id, 3, "variation", 9)


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


async def test_generated_images_are_files_readable_after_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    await store.open()
    js = JobStore(store, images_dir_for(store.path))
    job_id = await make(js)
    assert await js.mark_running(job_id)
    assert not await js.mark_running(job_id)  # only once
    stored = await js.save_generated(
        job_id,
        [ImageToStore(b"\x89PNG-one", "image/png", 512, 512, 42), ImageToStore(b"\xff\xd8\xff-two", "image/jpeg", 512, 512, 43)],
        model_used="flux-used", request_id="req-1",
    )
    await js.mark_done(job_id)
    assert [s.index for s in stored] == [1, 2]
    assert stored[0].path.read_bytes() == b"\x89PNG-one"
    assert stored[1].path.suffix == ".jpg"
    assert stored[0].path.stat().st_mode & 0o777 == 0o600
    await store.close()

    store2 = Store(tmp_path / "g.db")
    await store2.open()
    js2 = JobStore(store2, images_dir_for(store2.path))
    job = await js2.get(job_id)
    assert job is not None
    assert (job.status, job.model_used, job.request_id) == ("done", "flux-used", "req-1")
    found = await js2.read_image(job_id, 2)
    assert found is not None
    meta, data = found
    assert data == b"\xff\xd8\xff-two" and meta.seed == 43 and meta.mime == "image/jpeg"
    assert await js2.read_image(job_id, 3) is None
    assert [s.index for s, _ in await js2.read_all(job_id)] == [1, 2]
    await store2.close()


async def test_recover_interrupted_never_resubmits(jobs: JobStore) -> None:
    pending = await make(jobs)
    running = await make(jobs)
    await jobs.mark_running(running)
    generated = await make(jobs)
    await jobs.mark_running(generated)
    await jobs.save_generated(generated, [ImageToStore(b"x", "image/png")])
    done = await make(jobs)
    await jobs.mark_done(done)

    changed = {j.id: j for j in await jobs.recover_interrupted()}
    assert set(changed) == {pending, running, generated}
    assert changed[running].status == "unknown"
    assert "stopped while the gateway" in (changed[running].error or "")
    assert changed[pending].status == "failed"
    assert changed[generated].status == "generated"
    assert (await jobs.get(done)).status == "done"  # type: ignore[union-attr]
    assert await jobs.active_count(7) == 0
    assert await jobs.recover_interrupted() == [await jobs.get(generated)]  # idempotent


async def test_delete_removes_files_and_rows(jobs: JobStore) -> None:
    job_id = await make(jobs)
    stored = await jobs.save_generated(job_id, [ImageToStore(b"abc", "image/png")])
    await jobs.mark_deleted(job_id)
    assert not stored[0].path.exists()
    assert await jobs.images(job_id) == []
    assert (await jobs.get(job_id)).status == "deleted"  # type: ignore[union-attr]
    await jobs.mark_done(job_id)  # a late completion does not resurrect it
    assert (await jobs.get(job_id)).status == "deleted"  # type: ignore[union-attr]


async def test_missing_file_reads_as_none(jobs: JobStore) -> None:
    job_id = await make(jobs)
    stored = await jobs.save_generated(job_id, [ImageToStore(b"abc", "image/png")])
    stored[0].path.unlink()
    assert await jobs.read_image(job_id, 1) is None
