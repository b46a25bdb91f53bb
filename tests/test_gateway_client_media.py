"""GatewayClient's video jobs, music and image edits against the openai emulator (real decoded media),
and the other profiles refusing them without a call."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import numpy as np
import pytest
from PIL import Image

from bot.app.factory import build_gateway_client
from bot.app.settings import Settings
from bot.rendering.errors import user_error_message
from gateway_client import (
    ClientOptions,
    GatewayClient,
    GatewayConfig,
    GatewayTimeout,
    ImageEditRequest,
    InvalidRequest,
    MediaExpired,
    ModelKind,
    MusicRequest,
    ResultDownloadFailed,
    Unsupported,
    UpstreamUnavailable,
    VideoJob,
    VideoRequest,
)
from gateway_client.safe_urls import UnsafeURL
from sandbox.gateways import MODEL_ROLES, GatewayEmulator

pytestmark = pytest.mark.timeout(90)

SORA_PRICE = 0.10  # the emulator's openai/sora-2, USD per second
MUSIC_PRICE = 0.002
EDIT_PRICE = 0.042  # openai/gpt-image-1 per image


@pytest.fixture
async def emu() -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator("openai") as e:
        yield e


def options(**kw: float) -> ClientOptions:
    return ClientOptions(backoff_base=0.01, backoff_max=0.05, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def client(emu: GatewayEmulator) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(GatewayConfig("openai", emu.root_url, emu.api_key), options=options()) as c:
        yield c


def posts(emu: GatewayEmulator, path: str) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path == path)


async def run_to_end(client: GatewayClient, job: VideoJob, limit: int = 20) -> list[VideoJob]:
    seen = []
    for _ in range(limit):
        job = await client.video_status(job.job_id)
        seen.append(job)
        if job.finished:
            break
    return seen


@dataclass
class Probe:
    width: int
    height: int
    duration: float
    video_codec: str
    audio_codec: str
    frames: int


def _probe(data: bytes) -> Probe:
    with av.open(io.BytesIO(data)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        frames = sum(1 for _ in c.decode(v))
        assert c.duration is not None
        return Probe(v.codec_context.width, v.codec_context.height, c.duration / 1_000_000, v.codec_context.name,
                     a.codec_context.name, frames)


def _audio_seconds(data: bytes) -> tuple[str, float]:
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        samples = rate = 0
        for frame in c.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate
        return stream.codec_context.name, samples / rate


def png(size: tuple[int, int], colour: tuple[int, int, int, int] = (30, 90, 200, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def left_half_mask(size: tuple[int, int]) -> bytes:
    """Opaque everywhere but the left half (transparent: edit there)."""
    img = Image.new("RGBA", size, (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.int16)


# -- refusals before anything is sent -----------------------------------------------------------------

async def test_invalid_requests_are_refused_before_sending(emu: GatewayEmulator, client: GatewayClient) -> None:
    cases = [
        (client.submit_video(VideoRequest("a fox", duration=7)), "duration", [4, 5, 6, 8, 10, 12]),
        (client.submit_video(VideoRequest("a fox", size="333x333")), "size", None),
        (client.submit_video(VideoRequest("a fox", model="openai/dall-e-3")), "model",
         ["openai/sora-2", "google/veo-3"]),
        (client.submit_video(VideoRequest("  ")), "prompt", None),
        (client.generate_music(MusicRequest("jazz", duration=500)), "duration", None),
        (client.generate_music(MusicRequest("jazz", format="ogg")), "format", ["mp3", "wav"]),
        (client.generate_music(MusicRequest("jazz", model="openai/sora-2")), "model", ["stability/stable-audio-2"]),
        (client.edit_images(ImageEditRequest("bluer", b"GIF89a not a png")), "image", None),
        (client.edit_images(ImageEditRequest("bluer", png((64, 48)), mask=png((32, 32)))), "mask", "64x48"),
        (client.edit_images(ImageEditRequest("bluer", png((64, 48)), model="dall-e-3")), "model", None),
        (client.edit_images(ImageEditRequest("bluer", png((64, 48)), n=0)), "n", None),
        (client.edit_images(ImageEditRequest("bluer", png((64, 48)), size="1792x1024")), "size", None),
    ]
    for call, field, allowed in cases:
        with pytest.raises(InvalidRequest) as exc:
            await call
        assert exc.value.field == field, exc.value
        if allowed is not None:
            assert exc.value.allowed == allowed
        assert exc.value.status is None  # refused here, not by the gateway
    assert not [r for r in emu.requests if r.method == "POST"]


async def test_validation_fills_in_defaults(emu: GatewayEmulator) -> None:
    cfg = GatewayConfig("openai", emu.root_url, emu.api_key, video_model="google/veo-3", image_model="openai/dall-e-3")
    async with GatewayClient(cfg) as c:
        assert c.validate_video_request(VideoRequest("x")).model == "google/veo-3"
        assert c.validate_video_request(VideoRequest("x", size="1280X720")).size == "1280x720"
        assert c.validate_music_request(MusicRequest("x")).model == "stability/stable-audio-2"
        # dall-e-3 cannot edit: the profile's edit model is used instead of the configured image model
        assert c.validate_image_edit_request(ImageEditRequest("x", png((8, 8)))).model == "gpt-image-1"
    assert not emu.requests


async def test_settings_choose_the_media_models(emu: GatewayEmulator) -> None:
    settings = Settings(gateway={"profile": "openai", "base_url": emu.root_url, "api_key": emu.api_key,
                                 "video_model": "google/veo-3", "music_model": "stable-audio-2"})
    async with build_gateway_client(settings) as c:
        job = await c.submit_video(VideoRequest("a heron"))
        music = await c.generate_music(MusicRequest("rain", duration=2))
        assert [m.id for m in await c.video_models()] == ["openai/sora-2", "google/veo-3"]
        assert [m.id for m in await c.music_models()] == ["stability/stable-audio-2", "stable-audio-2"]
    assert job.model == "google/veo-3" and emu.requests[0].json["model"] == "google/veo-3"
    assert music.meta.model_used == "stability/stable-audio-2"  # the gateway's name for its alias
    assert Settings().gateway.video_model == "" and Settings().gateway.music_model == ""


@pytest.mark.parametrize("profile", ["aicordcloud", "digicord", "aicredits", "aiproxy"])
async def test_other_profiles_refuse_without_a_call(profile: str) -> None:
    async with GatewayEmulator(profile) as other:
        async with GatewayClient(GatewayConfig(profile, other.root_url, other.api_key)) as c:
            for call in (c.submit_video(VideoRequest("a fox")), c.video_status("vid_1"), c.cancel_video("vid_1"),
                         c.generate_music(MusicRequest("jazz")), c.edit_images(ImageEditRequest("x", png((8, 8))))):
                with pytest.raises(Unsupported):
                    await call
            assert await c.video_models() == [] and await c.music_models() == []
            assert not (c.profile.supports("videos") or c.profile.supports("music")
                        or c.profile.supports("image_edits"))
        assert not other.requests


# -- video jobs ---------------------------------------------------------------------------------------

async def test_video_submit_poll_complete_real_mp4(emu: GatewayEmulator, client: GatewayClient) -> None:
    job = await client.submit_video(VideoRequest("a red fox in snow", duration=4, size="640x360"))
    assert job.status == "queued" and job.job_id.startswith("vid_") and not job.finished
    assert job.model == "openai/sora-2" and job.meta.credits_used == 0
    seen = await run_to_end(client, job)
    assert [(j.status, j.progress) for j in seen] == [("processing", 25), ("processing", 50), ("processing", 75),
                                                       ("completed", 100)]
    done = seen[-1]
    assert [j.meta.credits_used for j in seen] == [0, 0, 0, pytest.approx(4 * SORA_PRICE)]
    assert done.finished and done.billed_seconds == 4 and (done.width, done.height) == (640, 360)
    assert done.seconds == 4 and done.url and done.expires_at
    again = await client.video_status(job.job_id)
    assert again.status == "completed" and again.meta.credits_used == 0  # billed once
    assert posts(emu, "/v1/videos/generations") == 1
    media = await client.download_media(done.url, max_bytes=50 * 1024 * 1024)
    assert media.mime == "video/mp4"
    probe = await asyncio.to_thread(_probe, media.data)
    assert (probe.width, probe.height, probe.video_codec, probe.audio_codec) == (640, 360, "h264", "aac")
    assert probe.duration == pytest.approx(4.0, abs=0.1) and probe.frames > 4


async def test_video_default_size_is_small(emu: GatewayEmulator, client: GatewayClient) -> None:
    job = await client.submit_video(VideoRequest("a boat"))
    done = (await run_to_end(client, job))[-1]
    assert (done.width, done.height, done.seconds) == (320, 180, 5)
    assert emu.requests[0].json == {"prompt": "a boat", "model": "openai/sora-2"}
    probe = await asyncio.to_thread(_probe, (await client.download_media(done.url or "", max_bytes=10**8)).data)
    assert (probe.width, probe.height) == (320, 180) and probe.duration == pytest.approx(5.0, abs=0.1)


async def test_cancel_bills_what_was_made(emu: GatewayEmulator, client: GatewayClient) -> None:
    queued = await client.submit_video(VideoRequest("a kite", duration=8))
    cancelled = await client.cancel_video(queued.job_id)
    assert (cancelled.status, cancelled.billed_seconds, cancelled.meta.credits_used) == ("cancelled", 0, 0)

    job = await client.submit_video(VideoRequest("a kite", duration=6))
    await client.video_status(job.job_id)
    half = await client.video_status(job.job_id)
    assert half.progress == 50
    cancelled = await client.cancel_video(job.job_id)
    assert cancelled.status == "cancelled" and cancelled.finished
    assert cancelled.billed_seconds == math.ceil(6 * 0.5)
    assert cancelled.meta.credits_used == pytest.approx(3 * SORA_PRICE)
    assert emu.video_jobs[job.job_id].cancelled
    assert (await client.video_status(job.job_id)).status == "cancelled"

    # a job that finished first: the cancel answers 409 and the client reports what the job became
    done = await client.submit_video(VideoRequest("a kite", duration=4))
    await run_to_end(client, done)
    after = await client.cancel_video(done.job_id)
    assert after.status == "completed" and after.url
    assert [r.status for r in emu.requests if r.method == "DELETE"][-1] == 409


async def test_failed_job(emu: GatewayEmulator, client: GatewayClient) -> None:
    emu.faults.video_fails_next(message="The upstream model refused the prompt.")
    job = await client.submit_video(VideoRequest("a storm", duration=4))
    seen = await run_to_end(client, job)
    last = seen[-1]
    assert last.status == "failed" and last.finished
    assert last.error == "The upstream model refused the prompt."
    assert last.url is None and last.billed_seconds is None and last.meta.credits_used == 0
    nxt = await client.submit_video(VideoRequest("a storm", duration=4))
    assert (await run_to_end(client, nxt))[-1].status == "completed"  # only the next job failed


async def test_never_finishing_job_stays_processing(emu: GatewayEmulator, client: GatewayClient) -> None:
    emu.faults.video_never_finishes()
    job = await client.submit_video(VideoRequest("forever", duration=4))
    seen = await run_to_end(client, job, limit=12)
    assert len(seen) == 12 and all(j.status == "processing" for j in seen)
    assert all(j.progress is not None and j.progress < 100 for j in seen)
    assert emu.video_jobs[job.job_id].polls == 12


async def test_unknown_job_id(client: GatewayClient) -> None:
    with pytest.raises(InvalidRequest) as exc:
        await client.video_status("vid_nope")
    assert exc.value.field == "job_id" and exc.value.status == 404
    with pytest.raises(InvalidRequest):
        await client.video_status("")


async def test_submit_is_never_repeated_nor_sent_elsewhere(emu: GatewayEmulator) -> None:
    async with GatewayEmulator("openai") as fallback:
        cfg = GatewayConfig("openai", emu.root_url, emu.api_key)
        fb = GatewayConfig("openai", fallback.root_url, fallback.api_key, name="backup")
        async with GatewayClient(cfg, fallbacks=[fb], options=options(total_timeout=0.5)) as c:
            emu.faults.fail_next(status=500, path="/videos/generations")
            with pytest.raises(UpstreamUnavailable) as exc:
                await c.submit_video(VideoRequest("a fox"))
            assert exc.value.status == 500 and exc.value.request_sent
            emu.faults.slow_next(delay=1.5, path="/videos/generations")
            with pytest.raises(GatewayTimeout):
                await c.submit_video(VideoRequest("a fox"))
        assert posts(emu, "/v1/videos/generations") == 2  # one per call, none repeated
        assert not fallback.requests


# -- result downloads ---------------------------------------------------------------------------------

async def test_expired_result_url(emu: GatewayEmulator, client: GatewayClient) -> None:
    job = await client.submit_video(VideoRequest("a lighthouse", duration=4))
    done = (await run_to_end(client, job))[-1]
    assert done.url is not None
    emu.faults.expire_media()
    with pytest.raises(MediaExpired) as exc:
        await client.download_media(done.url, max_bytes=10**8)
    assert exc.value.status == 410 and isinstance(exc.value, ResultDownloadFailed)
    sentence = user_error_message(exc.value)
    assert "expired" in sentence and "Traceback" not in sentence and emu.api_key not in sentence


async def test_download_cap(emu: GatewayEmulator, client: GatewayClient) -> None:
    job = await client.submit_video(VideoRequest("a busy market", duration=4))
    done = (await run_to_end(client, job))[-1]
    with pytest.raises(ResultDownloadFailed) as exc:
        await client.download_media(done.url or "", max_bytes=1000)
    assert not isinstance(exc.value, MediaExpired)
    assert "1000-byte cap" in str(exc.value)


async def test_download_only_from_the_gateway_or_public_addresses(emu: GatewayEmulator,
                                                                   client: GatewayClient) -> None:
    for url in ("file:///etc/passwd", "http://10.0.0.7/video.mp4", "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(UnsafeURL):
            await client.download_media(url, max_bytes=10**6)
    assert not emu.requests  # nothing was fetched
    inline = await client.download_media("data:audio/mpeg;base64,SUQzBAAAAAAAAA==", max_bytes=100)
    assert inline.mime == "audio/mpeg" and inline.data.startswith(b"ID3")


# -- music ------------------------------------------------------------------------------------------

async def test_music_is_a_real_mp3(emu: GatewayEmulator, client: GatewayClient) -> None:
    result = await client.generate_music(MusicRequest("calm piano at night", duration=7))
    assert result.mime == "audio/mpeg" and result.format == "mp3" and result.seconds == 7
    assert result.meta.credits_used == pytest.approx(7 * MUSIC_PRICE)
    assert result.meta.model_used == MODEL_ROLES["openai"]["music"]
    codec, seconds = await asyncio.to_thread(_audio_seconds, result.audio)
    assert codec.startswith("mp3") and seconds == pytest.approx(7.0, abs=0.1)
    assert posts(emu, "/v1/music/generations") == 1


async def test_media_models(client: GatewayClient) -> None:
    assert [m.id for m in await client.video_models()] == ["openai/sora-2", "google/veo-3"]
    assert [m.id for m in await client.music_models()] == ["stability/stable-audio-2"]
    assert [m.id for m in await client.list_models(kind=ModelKind.VIDEO)] == ["openai/sora-2", "google/veo-3"]


# -- image edits ------------------------------------------------------------------------------------

async def test_edit_changes_only_the_masked_pixels(emu: GatewayEmulator, client: GatewayClient) -> None:
    size = (64, 48)
    source = png(size)
    result = await client.edit_images(ImageEditRequest("paint it orange", source, mask=left_half_mask(size), n=2))
    assert len(result.images) == 2 and result.meta.credits_used == pytest.approx(2 * EDIT_PRICE)
    before = pixels(source)
    for image in result.images:
        assert image.mime == "image/png" and (image.width, image.height) == size
        after = pixels(image.data)
        changed = np.any(after != before, axis=2)
        assert changed[:, : size[0] // 2].all()  # everywhere under the transparent half
        assert not changed[:, size[0] // 2:].any()  # nowhere else
    assert not np.array_equal(pixels(result.images[0].data), pixels(result.images[1].data))
    form = next(r.form for r in emu.requests if r.path == "/v1/images/edits")
    assert form is not None
    assert form["image"]["content_type"] == "image/png" and form["mask"]["filename"] == "mask.png"
    assert (form["prompt"], form["n"], form["model"]) == ("paint it orange", "2", "gpt-image-1")


async def test_edit_without_mask_and_resized(client: GatewayClient) -> None:
    source = png((40, 40))
    whole = await client.edit_images(ImageEditRequest("make it green", source))
    assert np.any(pixels(whole.images[0].data) != pixels(source), axis=2).all()
    other = await client.edit_images(ImageEditRequest("make it red", source))
    assert not np.array_equal(pixels(whole.images[0].data), pixels(other.images[0].data))  # the instruction counts
    resized = await client.edit_images(ImageEditRequest("make it green", source, model="dall-e-2", size="256x256"))
    assert (resized.images[0].width, resized.images[0].height) == (256, 256)


async def test_edit_is_retried_after_a_rate_limit(emu: GatewayEmulator, client: GatewayClient) -> None:
    emu.faults.fail_next(status=429, retry_after=0, path="/images/edits")
    result = await client.edit_images(ImageEditRequest("bluer", png((16, 16))))  # the form is built afresh
    assert len(result.images) == 1 and result.meta.attempts == 2
