"""bot/media/jobs.py for every kind, on both backends: asynchronous jobs (submitted with the gateway's id,
progress, result URL, cancel), an edit's sources kept with its row, per-kind limits, and recovery that
resumes a submitted job (never a new POST) while settling the rest as /imagine always has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.media.jobs import (
    LEASE_SECONDS,
    ConcurrencyLimitReached,
    FileToStore,
    JobParams,
    JobStore,
    MediaJob,
)
from bot.storage.errors import IntegrityError
from bot.storage.store import Store

VIDEO = JobParams(prompt="a paper boat on a river", model="sora-mini", size="1280x720", duration=8)
EDIT = JobParams(prompt="make the sky violet", count=2, size="512x512")
SOURCE = FileToStore(b"\x89PNG-source", "image/png", 64, 64)
MASK = FileToStore(b"\x89PNG-mask", "image/png", 64, 64)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def other_store(store: Store) -> AsyncIterator[Store]:
    """The same database as ``store``, opened again: what another process sees."""
    other = Store(url=store.url) if store.url else Store(store.path)
    await other.open()
    yield other
    await other.close()


async def video(jobs: JobStore, user_id: int = 7, **kw: Any) -> MediaJob:
    return await jobs.create(VIDEO, kind="video", user_id=user_id, guild_id=1, channel_id=2, profile="openai", **kw)


async def submitted(jobs: JobStore, gateway_id: str = "vid_1", **kw: Any) -> MediaJob:
    job = await video(jobs, **kw)
    assert await jobs.mark_running(job.id)
    assert await jobs.mark_submitted(job.id, gateway_id)
    found = await jobs.get(job.id)
    assert found is not None
    return found


def media_for(tmp_path: Path, mode: str) -> Path | None:
    return tmp_path / "media" if mode == "files" else None


async def test_a_video_job_goes_running_submitted_generated_with_what_the_gateway_said(
    store: Store, clock: Clock
) -> None:
    jobs = JobStore(store, None, owner="a", clock=clock)
    job = await video(jobs)
    assert (job.kind, job.status, job.params, job.gateway_job_id, job.progress) == ("video", "pending", VIDEO,
                                                                                     None, None)
    assert not await jobs.mark_submitted(job.id, "vid_early")  # only a running job is submitted
    await jobs.set_reservation(job.id, "res-1")
    assert await jobs.mark_running(job.id)
    assert await jobs.mark_submitted(job.id, "vid_abc")
    assert not await jobs.mark_submitted(job.id, "vid_again")  # once: the id first recorded stays
    await jobs.set_progress(job.id, 50)
    await jobs.set_result_url(job.id, "https://media.example/v.mp4?sig=x", clock.now + 3600)
    seen = await jobs.get(job.id)
    assert seen is not None
    assert (seen.status, seen.gateway_job_id, seen.progress, seen.reservation_id) == ("submitted", "vid_abc", 50.0,
                                                                                      "res-1")
    assert (seen.result_url, seen.result_expires_at) == ("https://media.example/v.mp4?sig=x", clock.now + 3600)
    await jobs.set_progress(job.id, None)
    assert (await jobs.get(job.id)).progress is None  # type: ignore[union-attr]

    stored = await jobs.save_generated(job.id, [FileToStore(b"\x00\x00\x00\x18ftypmp42", "video/mp4", 1280, 720,
                                                            duration=8.04)], model_used="sora-mini",
                                       request_id="req-v")
    assert [(s.name, s.role, s.duration) for s in stored] == [(f"{job.id}/1.mp4", "result", 8.04)]
    assert await jobs.images(job.id) == stored
    assert (await jobs.get(job.id)).status == "generated"  # type: ignore[union-attr]


async def test_the_database_refuses_an_unknown_kind_or_status(store: Store) -> None:
    jobs = JobStore(store, None)
    with pytest.raises(ValueError, match="unknown job kind"):
        await jobs.create(VIDEO, kind="hologram", user_id=7, guild_id=1, channel_id=2, profile="openai")
    job = await video(jobs)
    with pytest.raises(IntegrityError):
        await store.execute("UPDATE media_jobs SET kind = 'hologram' WHERE id = ?", (job.id,))
    with pytest.raises(IntegrityError):
        await store.execute("UPDATE media_jobs SET status = 'paused' WHERE id = ?", (job.id,))
    for status in ("submitted", "cancelled"):
        await store.execute("UPDATE media_jobs SET status = ? WHERE id = ?", (status, job.id))


async def test_cancel_stops_an_unfinished_job_only(store: Store) -> None:
    jobs = JobStore(store, None)
    waiting, running, sent, done = [await video(jobs) for _ in range(4)]
    await jobs.mark_running(running.id)
    await jobs.mark_running(sent.id)
    await jobs.mark_submitted(sent.id, "vid_2")
    await jobs.mark_done(done.id)
    for job in (waiting, running, sent):
        assert await jobs.mark_cancelled(job.id, "cancelled by the requester; 4 video seconds billed")
        seen = await jobs.get(job.id)
        assert seen is not None and seen.status == "cancelled" and seen.finished_at is not None
        assert seen.error == "cancelled by the requester; 4 video seconds billed"
    assert not await jobs.mark_cancelled(done.id, "too late")
    assert (await jobs.get(done.id)).status == "done"  # type: ignore[union-attr]
    assert not await jobs.mark_cancelled(sent.id, "twice")
    await jobs.mark_failed(sent.id, "the gateway answered cancelled")  # the poller saw it: still cancelled
    await jobs.mark_done(running.id)
    assert [(await jobs.get(j.id)).status for j in (sent, running)] == ["cancelled"] * 2  # type: ignore[union-attr]
    assert not await jobs.mark_submitted(sent.id, "vid_2")  # a cancelled job is not resumed
    assert await jobs.active_count(7) == 0


async def test_limits_count_the_kinds_asked_for(store: Store) -> None:
    jobs = JobStore(store, None)
    await submitted(jobs)  # a video the gateway works on holds its slot
    await video(jobs)
    assert await jobs.active_count(7) == 2
    assert await jobs.active_count(7, kinds=("video", "music")) == 2
    assert await jobs.active_count(7, kinds=("image", "edit")) == 0
    with pytest.raises(ConcurrencyLimitReached) as refused:
        await video(jobs, max_active=2, active_kinds=("video", "music"))
    assert (refused.value.active, refused.value.limit) == (2, 2)
    assert "2 media jobs in progress" in refused.value.user_message()
    # an image is counted against the images' limit only
    image = await jobs.create(JobParams(prompt="fox"), user_id=7, guild_id=1, channel_id=2, profile="p",
                              max_active=1, active_kinds=("image", "edit"))
    assert image.kind == "image"
    with pytest.raises(ConcurrencyLimitReached) as refused:
        await jobs.create(EDIT, kind="edit", user_id=7, guild_id=1, channel_id=2, profile="p", max_active=1,
                          active_kinds=("image", "edit"), sources=[("source", SOURCE)])
    assert refused.value.user_message().startswith("You already have 1 image job in progress")


@pytest.mark.parametrize("mode", ["files", "database"])
async def test_an_edit_keeps_its_source_and_mask_with_the_row(store: Store, tmp_path: Path, mode: str) -> None:
    jobs = JobStore(store, media_for(tmp_path, mode))
    job = await jobs.create(EDIT, kind="edit", user_id=7, guild_id=1, channel_id=2, profile="openai",
                            sources=[("source", SOURCE), ("mask", MASK)])
    sources = await jobs.read_sources(job.id)
    assert {role: data for role, (_, data) in sources.items()} == {"source": SOURCE.data, "mask": MASK.data}
    assert (sources["source"][0].role, sources["source"][0].index, sources["source"][0].width) == ("source", 1, 64)
    assert await jobs.images(job.id) == [] and await jobs.read_image(job.id, 1) is None  # results only
    if mode == "files":
        path = sources["mask"][0].path
        assert path is not None and path.read_bytes() == MASK.data and path.stat().st_mode & 0o777 == 0o600
    else:
        assert sources["mask"][0].path is None and not (tmp_path / "media").exists()

    await jobs.mark_running(job.id)
    results = [FileToStore(b"edit-1", "image/png", 64, 64, 1), FileToStore(b"edit-2", "image/png", 64, 64, 2)]
    await jobs.save_generated(job.id, results)
    await jobs.save_generated(job.id, results[:1])  # saved again (a retry): the results replaced, sources kept
    assert [(s.index, data) for s, data in await jobs.read_all(job.id)] == [(1, b"edit-1")]
    assert set(await jobs.read_sources(job.id)) == {"source", "mask"}
    # another process reads them too (the same directory, or the database)
    assert set(await JobStore(store, media_for(tmp_path, mode)).read_sources(job.id)) == {"source", "mask"}

    await jobs.mark_deleted(job.id)
    assert await jobs.read_sources(job.id) == {} and await jobs.read_all(job.id) == []
    assert await store.fetchval("SELECT COUNT(*) FROM media_files") == 0
    if mode == "files":
        assert list((tmp_path / "media").iterdir()) == []  # the sources' folder and the job's


@pytest.mark.parametrize("mode", ["files", "database"])
async def test_a_refused_edit_leaves_no_file_and_no_row(store: Store, tmp_path: Path, mode: str) -> None:
    jobs = JobStore(store, media_for(tmp_path, mode))
    await video(jobs)
    with pytest.raises(ConcurrencyLimitReached):
        await jobs.create(EDIT, kind="edit", user_id=7, guild_id=1, channel_id=2, profile="openai", max_active=1,
                          sources=[("source", SOURCE), ("mask", MASK)])
    assert await store.fetchval("SELECT COUNT(*) FROM media_files") == 0
    assert await store.fetchval("SELECT COUNT(*) FROM media_jobs WHERE kind = 'edit'") == 0
    assert not (tmp_path / "media").exists() or list((tmp_path / "media").iterdir()) == []
    with pytest.raises(ValueError, match="sources are"):
        await jobs.create(EDIT, kind="edit", user_id=7, guild_id=1, channel_id=2, profile="openai",
                          sources=[("mask", MASK), ("mask", MASK)])


async def test_a_submitted_job_is_resumed_by_the_next_process_never_settled(
    store: Store, other_store: Store, clock: Clock
) -> None:
    a = JobStore(store, None, owner="process-a", clock=clock)
    b = JobStore(other_store, None, owner="process-b", clock=clock)
    sent = await submitted(a, "vid_resume")
    await a.set_progress(sent.id, 25)
    cut_off = await video(a)
    await a.mark_running(cut_off.id)  # the POST was in flight: its fate is unknown

    clock.now += LEASE_SECONDS * 2 / 3
    assert await a.renew_leases() == 2  # the lease covers submitted jobs
    clock.now += LEASE_SECONDS * 2 / 3
    assert await b.recover_interrupted() == []  # a lives: nothing to take over
    clock.now += LEASE_SECONDS / 3 + 1  # a stopped renewing

    recovered = {j.id: j for j in await b.recover_interrupted()}
    assert set(recovered) == {sent.id, cut_off.id}
    resumed = recovered[sent.id]
    assert (resumed.status, resumed.gateway_job_id, resumed.progress, resumed.error) == ("submitted", "vid_resume",
                                                                                         25.0, None)
    assert recovered[cut_off.id].status == "unknown"  # never resubmitted
    assert await b.recover_interrupted() == []  # b owns it now
    c = JobStore(store, None, owner="process-c", clock=clock)
    assert await c.recover_interrupted() == []  # b is alive
    assert await b.renew_leases() == 1
    assert await b.active_count(7) == 1  # it still holds its slot

    assert await b.release_leases() == 1  # b stops cleanly: the next process takes it at once
    assert [(j.id, j.status) for j in await c.recover_interrupted()] == [(sent.id, "submitted")]


async def test_a_restarted_sqlite_process_resumes_every_submitted_job(store: Store, clock: Clock) -> None:
    before = JobStore(store, None, owner="run-1", clock=clock)
    sent = await submitted(before, "vid_x")
    waiting = await video(before)
    after = JobStore(store, None, owner="run-2", clock=clock)
    found = {j.id: j.status for j in await after.recover_interrupted(any_owner=True)}
    assert found == {sent.id: "submitted", waiting.id: "failed"}
    assert await after.renew_leases() == 1
