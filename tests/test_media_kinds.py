"""The image-edit and music runners (bot/media/image_kind.py, bot/media/music_kind.py) on a real job
store: what they hold and charge, that an edit's call is made from the sources stored with its row, and
what re-roll and V-n of an edit send."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app.settings import Settings
from bot.media.image_kind import EditRunner, SourceGone
from bot.media.jobs import FileToStore, JobStore
from bot.media.kinds import JobRun, KindContext
from bot.media.music_kind import MusicOptions, MusicRunner
from bot.media.options import OptionError
from bot.storage.store import Store
from gateway_client import CallMeta, GeneratedImage, ImageEditRequest, ImageResult, MusicRequest, MusicResult


def png(colour: tuple[int, int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, colour).save(out, format="PNG")
    return out.getvalue()


class FakeGateway:
    """Validates as is and answers edits with one image, music with a track of ``seconds``."""

    def __init__(self, seconds: float | None = 3.2) -> None:
        self.edits: list[ImageEditRequest] = []
        self.music: list[MusicRequest] = []
        self.seconds = seconds

    def validate_image_edit_request(self, req: ImageEditRequest) -> ImageEditRequest:
        return req

    def validate_music_request(self, req: MusicRequest) -> MusicRequest:
        return req

    async def edit_images(self, req: ImageEditRequest) -> ImageResult:
        self.edits.append(req)
        images = [GeneratedImage(png((0, 200, 0, 255), (48, 48)), "image/png", width=48, height=48)
                  for _ in range(req.n)]
        return ImageResult(images=images, meta=CallMeta(profile="openai", request_id="req-edit"))

    async def generate_music(self, req: MusicRequest) -> MusicResult:
        self.music.append(req)
        return MusicResult(audio=b"ID3-not-really", mime="audio/mpeg", format="mp3", seconds=self.seconds,
                           meta=CallMeta(profile="openai", request_id="req-music"))


@dataclass(frozen=True)
class Source:
    image: FileToStore
    mask: FileToStore | None


@dataclass(frozen=True)
class EditOpts:
    prompt: str
    model: str | None = None
    count: int | None = None
    size: str | None = None


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[JobStore]:
    store = Store(tmp_path / "gatecord.db")
    await store.open()
    yield JobStore(store, tmp_path / "media")
    await store.close()


def context(jobs: JobStore, gateway: Any, **settings: Any) -> KindContext:
    return KindContext(settings=Settings(**settings), gateway=gateway, jobs=jobs, client=None,  # type: ignore[arg-type]
                       presenter=None)  # type: ignore[arg-type]


def run_of(job: Any, request: Any = None) -> JobRun:
    return JobRun(job=job, request=request, hold=None, message=None, upload_limit=0, started=0.0)  # type: ignore[arg-type]


async def test_an_edit_is_made_from_its_stored_source_and_rerolled_or_varied_from_the_store(jobs: JobStore) -> None:
    gateway = FakeGateway()
    runner = EditRunner(context(jobs, gateway))
    source = FileToStore(png((200, 0, 0, 255)), "image/png", 32, 32)
    mask = FileToStore(png((0, 0, 0, 0)), "image/png", 32, 32)
    request = runner.build_edit(EditOpts("make it green", count=2), Source(source, mask), default_model="gpt-image-1")
    assert request.kind == "edit" and [role for role, _ in request.sources] == ["source", "mask"]
    assert runner.amounts(request.params) == {"images": 2}
    job = await jobs.create(request.params, kind="edit", user_id=7, guild_id=1, channel_id=2, profile="openai",
                            sources=request.sources)

    produced = await runner.produce(run_of(job, request))
    (call,) = gateway.edits
    assert call.image == source.data and call.mask == mask.data and call.n == 2 and call.model == "gpt-image-1"
    assert produced.amounts == {"images": 2} and len(produced.files) == 2
    await jobs.save_generated(job.id, produced.files)

    reroll = await runner.again(job, "reroll", None)
    assert dict(reroll.sources)["source"].data == source.data and dict(reroll.sources)["mask"].data == mask.data
    assert reroll.params.prompt == "make it green" and reroll.params.count == 2

    variation = await runner.again(job, "v", 2)
    varied = dict(variation.sources)
    assert varied["source"].data == produced.files[1].data  # result 2 is the new source
    assert "mask" not in varied  # drawn for a 32×32 source, the 48×48 result is edited whole


async def test_an_edit_whose_source_is_gone_says_so(jobs: JobStore) -> None:
    runner = EditRunner(context(jobs, FakeGateway()))
    request = runner.build_edit(EditOpts("x"), Source(FileToStore(png((1, 2, 3, 255)), "image/png", 32, 32), None),
                                default_model=None)
    job = await jobs.create(request.params, kind="edit", user_id=7, guild_id=1, channel_id=2, profile="openai")
    with pytest.raises(SourceGone) as caught:
        await runner.produce(run_of(job))
    assert "no longer stored" in caught.value.user_message()


async def test_music_holds_the_requested_seconds_and_charges_the_track_rounded_up(jobs: JobStore) -> None:
    gateway = FakeGateway(seconds=3.2)
    runner = MusicRunner(context(jobs, gateway))
    request = runner.build(MusicOptions("a calm piano", duration=3), default_model=None)
    assert runner.amounts(request.params) == {"music_seconds": 3}
    job = await jobs.create(request.params, kind="music", user_id=7, guild_id=1, channel_id=2, profile="openai")
    produced = await runner.produce(run_of(job, request))
    assert produced.amounts == {"music_seconds": 4}
    assert produced.files[0].mime == "audio/mpeg" and produced.files[0].duration == 3.2
    assert gateway.music[0].duration == 3

    default = runner.build(MusicOptions("a calm piano"), default_model=None)
    assert default.params.duration == 30  # [media] default_music_seconds


async def test_music_duration_is_refused_past_the_configured_limit(jobs: JobStore) -> None:
    runner = MusicRunner(context(jobs, FakeGateway(), media={"max_music_seconds": 60}))
    with pytest.raises(OptionError) as caught:
        runner.build(MusicOptions("x", duration=61), default_model=None)
    assert "duration" in caught.value.user_message() and "1–60 seconds" in caught.value.user_message()
