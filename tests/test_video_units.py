"""The video runner on its own (bot/media/video_kind.py): a scripted gateway, a recording job store
and a fake clock whose sleeps move time at once. What the member would see is checked through the
reports, the raised errors' sentences and the message edits; the runner in the bot is tested end to
end in tests/test_video_e2e.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest

from bot.media.jobs import JobParams, MediaJob, StoredFile
from bot.media.kinds import JobRun, MediaRequest
from bot.media.options import OptionError
from bot.media.video_kind import VideoFailed, VideoPolling, VideoRunner, VideoTimedOut
from bot.media.video_options import VideoOptions, build_video_request, video_params, video_request
from gateway_client import (
    CallMeta,
    DownloadedMedia,
    GatewayClient,
    GatewayConfig,
    InvalidRequest,
    MediaExpired,
    ResultDownloadFailed,
    UpstreamUnavailable,
    VideoJob,
    VideoRequest,
)
from tests.media_samples import make_mp4, media_info

MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64
URL = "https://media.example/v/vid_1.mp4"


def meta(**kw: Any) -> CallMeta:
    return CallMeta(profile="openai", **kw)


def state(status: str, **kw: Any) -> VideoJob:
    return VideoJob(job_id="vid_1", status=status, meta=meta(), **kw)


DONE = state("completed", progress=100, url=URL, expires_at=10_000.0, seconds=8.0, width=640, height=360,
             billed_seconds=8, model="openai/sora-2")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@dataclass
class Gateway:
    """Answers status calls from ``script`` (the last answer repeats); records every call."""

    script: list[VideoJob | Exception]
    calls: list[str] = field(default_factory=list)
    on_submit: Any = None
    cancel_answer: VideoJob | Exception | None = None
    download: DownloadedMedia | Exception = field(default_factory=lambda: DownloadedMedia(MP4, "video/mp4"))
    max_bytes: list[int] = field(default_factory=list)

    async def submit_video(self, req: VideoRequest) -> VideoJob:
        self.calls.append("POST")
        if self.on_submit:
            self.on_submit()
        return VideoJob(job_id="vid_1", status="queued", meta=meta(request_id="req-post"))

    async def video_status(self, job_id: str) -> VideoJob:
        self.calls.append("GET")
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def cancel_video(self, job_id: str) -> VideoJob:
        self.calls.append("DELETE")
        answer = self.cancel_answer or state("cancelled", billed_seconds=0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def download_media(self, url: str, *, max_bytes: int) -> DownloadedMedia:
        self.calls.append("DOWNLOAD")
        self.max_bytes.append(max_bytes)
        if isinstance(self.download, Exception):
            raise self.download
        return self.download


@dataclass
class Jobs:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    submitted_ok: bool = True

    async def set_result_url(self, job_id: int, url: str, expires_at: float | None) -> None:
        self.events.append(("url", job_id, url, expires_at))


def make_job(**kw: Any) -> MediaJob:
    params = JobParams(prompt="a red fox running", model="openai/sora-2", size="640x360", duration=8)
    base: dict[str, Any] = dict(id=7, params=params, user_id=42, guild_id=1, channel_id=2, profile="openai",
                                status="running", kind="video", started_at=1_000.0)
    base.update(kw)
    return MediaJob(**base)


@dataclass
class Seen:
    reports: list[tuple[str, float | None]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def setup(script: list[VideoJob | Exception], *, job: MediaJob | None = None, resumed: bool = False,
          polling: VideoPolling | None = None) -> tuple[VideoRunner, Gateway, Jobs, JobRun, Clock, Seen]:
    clock = Clock()
    gateway, jobs, seen = Gateway(script), Jobs(), Seen()
    ctx = SimpleNamespace(gateway=gateway, jobs=jobs, settings=None)
    runner = VideoRunner(ctx, polling=polling or VideoPolling(), wall_clock=clock.now,
                         sleep=clock.sleep)
    req = VideoRequest(prompt="a red fox running", model="openai/sora-2", duration=8, size="640x360")
    job = job or make_job()

    async def reporter(run: JobRun) -> None:
        seen.reports.append((run.status, run.progress))
        seen.texts.append(runner.progress_text(run, elapsed=12, position=0))

    async def submitter(run: JobRun, gateway_job_id: str) -> bool:
        jobs.events.append(("submitted", run.job.id, gateway_job_id))
        run.job = replace(run.job, gateway_job_id=gateway_job_id, status="submitted")
        return jobs.submitted_ok

    request = None if resumed else MediaRequest(kind="video", params=video_params(req), gateway_request=req)
    run = JobRun(job=job, request=request, hold=None, message=None, upload_limit=10 * 1024 * 1024,
                 started=0.0, reporter=reporter, submitter=submitter)
    return runner, gateway, jobs, run, clock, seen


# -- produce ----------------------------------------------------------------------------------------

async def test_produce_posts_once_records_the_id_at_once_polls_with_backoff_and_downloads() -> None:
    processing = [state("processing", progress=p) for p in (10, 20, 30, 40, 50, 60, 70)]
    runner, gateway, jobs, run, clock, seen = setup([*processing, DONE])
    order: list[str] = []
    gateway.on_submit = lambda: order.append("post")

    produced = await runner.produce(run)

    assert gateway.calls.count("POST") == 1 and gateway.calls[0] == "POST"
    assert jobs.events[0] == ("submitted", 7, "vid_1")  # recorded before the first status call
    assert gateway.calls[1] == "GET"
    # ×1.5 from 2 s, capped at 15 s
    assert clock.slept == [2.0, 3.0, 4.5, 6.75, 10.125, 15.0, 15.0, 15.0]
    assert ("queued", None) in seen.reports and ("processing", 50) in seen.reports
    assert any("50%" in t and "processing" in t for t in seen.texts)
    assert any("Queued at the video gateway" in t for t in seen.texts)
    assert gateway.calls[-1] == "DOWNLOAD" and gateway.max_bytes == [256 * 1024 * 1024]
    assert ("url", 7, URL, 10_000.0) in jobs.events
    assert produced.amounts == {"video_seconds": 8}
    assert produced.link == (URL, 10_000.0)
    assert produced.request_id == "req-post" and produced.model_used == "openai/sora-2"
    [file] = produced.files
    assert file.data == MP4 and file.mime == "video/mp4" and (file.width, file.height) == (640, 360)


async def test_billed_seconds_missing_charges_the_videos_length() -> None:
    runner, _, _, run, _, seen = setup([replace(DONE, billed_seconds=None, seconds=4.2)])
    produced = await runner.produce(run)
    assert produced.amounts == {"video_seconds": 5}


async def test_a_transient_status_error_is_retried_not_fatal() -> None:
    runner, gateway, _, run, _, seen = setup([state("processing", progress=25), UpstreamUnavailable("502", status=502),
                                        UpstreamUnavailable("reset", status=None), DONE])
    produced = await runner.produce(run)
    assert produced.files and gateway.calls.count("GET") == 4 and gateway.calls.count("POST") == 1


async def test_a_failed_job_raises_the_gateways_message() -> None:
    runner, gateway, _, run, _, seen = setup([state("processing", progress=25),
                                        state("failed", error="content policy: no foxes")])
    with pytest.raises(VideoFailed) as caught:
        await runner.produce(run)
    assert "content policy: no foxes" in caught.value.user_message()
    assert "DOWNLOAD" not in gateway.calls


async def test_a_job_past_the_timeout_is_given_up_and_cancelled() -> None:
    polling = VideoPolling(interval=2, max_interval=15, timeout=60)
    runner, gateway, _, run, clock, seen = setup([state("processing", progress=10)], polling=polling)
    with pytest.raises(VideoTimedOut) as caught:
        await runner.produce(run)
    assert sum(clock.slept) == pytest.approx(60)
    assert gateway.calls[-1] == "DELETE"
    assert "still not ready after 1 minute" in caught.value.user_message()


async def test_cancelled_while_posting_cancels_at_the_gateway() -> None:
    runner, gateway, jobs, run, _, seen = setup([DONE])
    jobs.submitted_ok = False
    with pytest.raises(VideoFailed):
        await runner.produce(run)
    assert gateway.calls == ["POST", "DELETE"]


async def test_an_oversized_result_is_offered_as_its_link() -> None:
    runner, gateway, _, run, _, seen = setup([DONE])
    gateway.download = ResultDownloadFailed("too big", host="media.example", reason="larger than the cap")
    produced = await runner.produce(run)
    assert produced.files == [] and produced.link == (URL, 10_000.0) and produced.amounts == {"video_seconds": 8}


async def test_an_expired_result_fails_the_job() -> None:
    runner, gateway, _, run, _, seen = setup([DONE])
    gateway.download = MediaExpired("gone", host="media.example", status=410)
    with pytest.raises(MediaExpired):
        await runner.produce(run)


# -- resume -----------------------------------------------------------------------------------------

async def test_resume_polls_the_recorded_job_and_never_posts() -> None:
    job = make_job(status="submitted", gateway_job_id="vid_1", request_id="req-before")
    runner, gateway, jobs, run, _, seen = setup([state("processing", progress=75), DONE], job=job, resumed=True)
    produced = await runner.resume(run)
    assert "POST" not in gateway.calls and gateway.calls.count("GET") == 2
    assert not [e for e in jobs.events if e[0] == "submitted"]
    assert produced.files and produced.request_id == "req-before"


async def test_resume_keeps_the_original_deadline() -> None:
    polling = VideoPolling(timeout=100)
    job = make_job(status="submitted", gateway_job_id="vid_1", started_at=1_000.0 - 95)
    runner, gateway, _, run, clock, seen = setup([state("processing", progress=5)], job=job, resumed=True,
                                           polling=polling)
    with pytest.raises(VideoTimedOut):
        await runner.resume(run)
    assert sum(clock.slept) == pytest.approx(5)


# -- cancel -----------------------------------------------------------------------------------------

async def test_cancel_returns_what_the_gateway_billed() -> None:
    runner, gateway, *_ = setup([DONE])
    gateway.cancel_answer = state("cancelled", billed_seconds=4)
    found = await runner.cancel(make_job(status="submitted", gateway_job_id="vid_1"))
    assert found is not None and found[0] == {"video_seconds": 4}
    assert await runner.cancel(make_job(status="running")) is None  # never submitted: nothing billed
    gateway.cancel_answer = DONE  # the gateway finished it first: billed whole
    found = await runner.cancel(make_job(status="submitted", gateway_job_id="vid_1"))
    assert found is not None and found[0] == {"video_seconds": 8}
    gateway.cancel_answer = state("failed", error="x")
    found = await runner.cancel(make_job(status="submitted", gateway_job_id="vid_1"))
    assert found is not None and found[0] == {"video_seconds": 0}


# -- presenting -------------------------------------------------------------------------------------

class Message:
    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []

    async def edit(self, **fields: Any) -> None:
        for f in fields.get("attachments") or ():
            fields.setdefault("data", []).append(f.fp.read())
        self.edits.append(fields)


def stored(data: bytes) -> StoredFile:
    return StoredFile(job_id=7, index=1, name="7/1.mp4", path=None, mime="video/mp4", width=640, height=360,
                      seed=None, size_bytes=len(data), duration=8.0)


def labels(view: Any) -> list[str]:
    return [item.item.label for item in view.children]


async def test_present_attaches_the_video_reencoded_to_fit_with_its_caption_and_buttons() -> None:
    data = make_mp4(640, 360, 2.0)
    limit = len(data) // 2
    runner, *_ = setup([DONE])
    msg = Message()
    job = make_job(status="generated", model_used="openai/sora-2")
    await runner.present(msg, job, [(stored(data), data)], limit, elapsed=65, link=(URL, 10_000.0))
    [edit] = msg.edits
    [sent] = edit["data"]
    assert len(sent) <= limit and edit["attachments"][0].filename == "video-7.mp4"
    assert media_info(sent)["video_codec"] == "h264"
    content = edit["content"]
    for part in ("a red fox running", "openai/sora-2", "8 s", "job #7", "1 min 05 s", "Re-encoded to fit"):
        assert part in content, (part, content)
    assert labels(edit["view"]) == ["Re-roll", "Delete"]


async def test_present_attaches_a_video_that_fits_as_is() -> None:
    data = make_mp4(320, 180, 1.0)
    runner, *_ = setup([DONE])
    msg = Message()
    await runner.present(msg, make_job(status="generated"), [(stored(data), data)], 10 * 1024 * 1024,
                         elapsed=5)
    [edit] = msg.edits
    assert edit["data"] == [data] and "Re-encoded" not in edit["content"] and "320x180" in edit["content"]


async def test_present_links_a_video_that_cannot_fit() -> None:
    data = make_mp4(640, 360, 2.0)
    runner, *_ = setup([DONE])
    msg = Message()
    await runner.present(msg, make_job(status="generated"), [(stored(data), data)], 2000,
                         elapsed=5, link=(URL, 10_000.0))
    [edit] = msg.edits
    assert edit["attachments"] == []
    assert URL in edit["content"] and "<t:10000:R>" in edit["content"] and "upload limit" in edit["content"]


async def test_present_after_a_restart_uses_the_stored_link() -> None:
    runner, *_ = setup([DONE])
    msg = Message()
    job = make_job(status="generated", result_url=URL, result_expires_at=500.0)  # already expired (now 1000)
    await runner.present(msg, job, [], 1024, elapsed=5)
    assert "expired <t:500:R>" in msg.edits[0]["content"]


def test_buttons_cancel_while_running() -> None:
    runner, *_ = setup([DONE])
    view = runner.buttons(make_job(), running=True)
    assert labels(view) == ["Cancel"]
    assert [item.item.custom_id for item in view.children] == ["img:cancel:7"]


def test_progress_text_shows_the_queue_position() -> None:
    runner, _, _, run, _, seen = setup([DONE])
    text = runner.progress_text(run, elapsed=3, position=2)
    assert "position 2" in text and "job #7" in text
    assert len(re.findall(r"a red fox running", text)) == 1


# -- options ----------------------------------------------------------------------------------------

def openai_client() -> GatewayClient:
    return GatewayClient(GatewayConfig(profile="openai", base_url="http://127.0.0.1:9", api_key="k"))


def test_options_validate_against_the_profile() -> None:
    gw = openai_client()
    req = build_video_request(gw, VideoOptions(prompt="a fox", size="640x360"), default_model=None,
                              default_duration=7)
    assert req.duration in (6, 8) and req.model == "openai/sora-2"  # the default moved to an allowed length
    with pytest.raises(OptionError) as caught:
        build_video_request(gw, VideoOptions(prompt="a fox", duration=7), default_model=None, default_duration=5)
    message = caught.value.user_message()
    assert "**duration**" in message and "`7`" in message and "8" in message
    with pytest.raises(OptionError) as caught:
        build_video_request(gw, VideoOptions(prompt="a fox", size="99x99"), default_model=None, default_duration=5)
    assert "**size**" in caught.value.user_message()


def test_params_round_trip() -> None:
    req = VideoRequest(prompt="a fox", model="openai/sora-2", duration=8, size="640x360")
    assert video_request(video_params(req)) == req


def test_invalid_request_field_names() -> None:
    # the client's refusals name the gateway's fields, which are the option names of /video
    exc = InvalidRequest("x", field="duration", allowed=[4, 8])
    assert exc.field == "duration"
