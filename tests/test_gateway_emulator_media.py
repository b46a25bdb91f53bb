"""The openai emulator's video jobs, music and image edits, checked with plain aiohttp against the wire
shapes of the issue 18 contract (sandbox/gateways/media_jobs.py); the other profiles do not serve them."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import av
import pytest
from PIL import Image

from sandbox.gateways import PROFILES, GatewayEmulator

pytestmark = pytest.mark.timeout(60)

JOB_KEYS = {"job_id", "object", "status", "progress", "model", "created"}


@pytest.fixture
async def emu() -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator("openai") as e:
        yield e


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def auth(emu: GatewayEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.api_key}"}


async def call(http: aiohttp.ClientSession, emu: GatewayEmulator, method: str, path: str,
               body: Any = None) -> tuple[int, Any, Mapping[str, str]]:
    async with http.request(method, emu.api_base + path, json=body, headers=auth(emu)) as r:
        return r.status, await r.json(), r.headers


def png(size: tuple[int, int], alpha: int = 255) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (100, 100, 100, alpha)).save(buf, format="PNG")
    return buf.getvalue()


def edit_form(fields: dict[str, str], image: bytes | None, mask: bytes | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if image is not None:
        form.add_field("image", image, filename="in.png", content_type="image/png")
    if mask is not None:
        form.add_field("mask", mask, filename="mask.png", content_type="image/png")
    for k, v in fields.items():
        form.add_field(k, v)
    return form


async def test_video_job_wire_shapes_and_billing(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    status, body, headers = await call(http, emu, "POST", "/videos/generations",
                                       {"model": "veo-3", "prompt": "waves", "duration": 4, "size": "640x360"})
    assert status == 200
    assert set(body) == {"job_id", "object", "status", "model", "created"}
    assert (body["object"], body["status"], body["model"]) == ("video.generation", "queued", "google/veo-3")
    assert headers["x-credits-used"] == "0.000000" and headers["x-request-id"]
    job_id = body["job_id"]
    state = emu.video_jobs[job_id]
    assert (state.prompt, state.posts, state.polls, state.status) == ("waves", 1, 0, "queued")
    answers = []
    for _ in range(4):
        status, body, headers = await call(http, emu, "GET", f"/videos/generations/{job_id}")
        answers.append((body["status"], body["progress"], float(headers["x-credits-used"])))
    assert answers == [("processing", 25, 0), ("processing", 50, 0), ("processing", 75, 0),
                       ("completed", 100, pytest.approx(4 * 0.40))]
    assert set(body) == JOB_KEYS | {"data", "billed_seconds"} and body["billed_seconds"] == 4
    (item,) = body["data"]
    assert (item["duration"], item["width"], item["height"], item["format"]) == (4, 640, 360, "mp4")
    assert item["expires_at"] > body["created"] + 3000
    async with http.get(item["url"]) as r:  # public, like the emulator's image files
        assert r.status == 200 and r.content_type == "video/mp4"
        data = await r.read()
    with av.open(io.BytesIO(data)) as c:
        assert (c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name) == ("h264", "aac")
    status, again, headers = await call(http, emu, "GET", f"/videos/generations/{job_id}")
    assert again["status"] == "completed" and headers["x-credits-used"] == "0.000000"
    status, body, _ = await call(http, emu, "DELETE", f"/videos/generations/{job_id}")
    assert status == 409 and body["error"]["code"] == "job_finished"
    assert emu.video_jobs[job_id].polls == 5


async def test_video_cancel_and_refusals(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    _, body, _ = await call(http, emu, "POST", "/videos/generations", {"prompt": "clouds", "duration": 10})
    job_id = body["job_id"]
    await call(http, emu, "GET", f"/videos/generations/{job_id}")  # processing 25
    status, body, headers = await call(http, emu, "DELETE", f"/videos/generations/{job_id}")
    assert status == 200 and body["status"] == "cancelled" and body["billed_seconds"] == 3  # ceil(10 * 0.25)
    assert float(headers["x-credits-used"]) == pytest.approx(3 * 0.10)
    assert emu.video_jobs[job_id].cancelled
    status, body, _ = await call(http, emu, "GET", "/videos/generations/vid_unknown")
    assert status == 404 and body["error"]["code"] == "job_not_found"
    for bad, param in (({"prompt": "x", "duration": 7}, "duration"), ({"prompt": "x", "size": "100x100"}, "size"),
                       ({"prompt": ""}, "prompt"), ({"prompt": "x", "model": "openai/tts-1"}, "model"),
                       ({"prompt": "x", "duration": "5"}, "duration")):
        status, body, _ = await call(http, emu, "POST", "/videos/generations", bad)
        assert status == 400 and body["error"]["param"] == param, bad
    assert len(emu.video_jobs) == 1


async def test_video_time_driven_pace(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.video_seconds_to_complete = 3600.0
    _, body, _ = await call(http, emu, "POST", "/videos/generations", {"prompt": "slow"})
    slow = body["job_id"]
    for _ in range(6):  # polls do not move a clock-paced job
        _, body, _ = await call(http, emu, "GET", f"/videos/generations/{slow}")
        assert (body["status"], body["progress"]) == ("queued", 0)
    emu.video_seconds_to_complete = 0.0  # its time is up
    _, body, _ = await call(http, emu, "GET", f"/videos/generations/{slow}")
    assert body["status"] == "completed"


async def test_video_faults(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.video_fails_next(message="Content policy.")
    emu.faults.video_never_finishes()
    _, failing, _ = await call(http, emu, "POST", "/videos/generations", {"prompt": "a"})
    _, stuck, _ = await call(http, emu, "POST", "/videos/generations", {"prompt": "b"})
    for _ in range(4):
        _, body, _ = await call(http, emu, "GET", f"/videos/generations/{failing['job_id']}")
    assert body["status"] == "failed" and body["error"] == {"message": "Content policy.", "code": "generation_failed"}
    assert "data" not in body and "billed_seconds" not in body
    for _ in range(8):
        _, body, _ = await call(http, emu, "GET", f"/videos/generations/{stuck['job_id']}")
    assert body["status"] == "processing" and body["progress"] < 100


async def test_music_url_and_b64(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    status, body, headers = await call(http, emu, "POST", "/music/generations",
                                       {"prompt": "lofi beats", "duration": 3, "format": "mp3"})
    assert status == 200 and set(body) == {"created", "model", "data"}
    assert body["model"] == "stability/stable-audio-2"
    assert float(headers["x-credits-used"]) == pytest.approx(3 * 0.002)
    (item,) = body["data"]
    assert (item["duration"], item["format"]) == (3, "mp3")
    async with http.get(item["url"]) as r:
        assert r.content_type == "audio/mpeg"
        from_url = await r.read()
    _, body, _ = await call(http, emu, "POST", "/music/generations",
                            {"prompt": "lofi beats", "duration": 3, "response_format": "b64_json"})
    assert base64.b64decode(body["data"][0]["b64_json"]) == from_url  # same prompt, same music
    with av.open(io.BytesIO(from_url)) as c:
        assert c.streams.audio[0].codec_context.name.startswith("mp3")
    emu.faults.expire_media()
    async with http.get(item["url"]) as r:
        assert r.status == 410
    for bad, param in (({"prompt": "x", "duration": 181}, "duration"), ({"prompt": "x", "format": "ogg"}, "format"),
                       ({"prompt": "x", "model": "openai/sora-2"}, "model")):
        status, body, _ = await call(http, emu, "POST", "/music/generations", bad)
        assert status == 400 and body["error"]["param"] == param


async def test_image_edits(emu: GatewayEmulator, http: aiohttp.ClientSession) -> None:
    url = emu.api_base + "/images/edits"
    async with http.post(url, data=edit_form({"prompt": "sunset", "model": "dall-e-2", "n": "2"}, png((32, 16))),
                         headers=auth(emu)) as r:
        assert r.status == 200
        body = await r.json()
        assert float(r.headers["x-credits-used"]) == pytest.approx(2 * 0.02)
    assert len(body["data"]) == 2 and all("url" in item for item in body["data"])
    async with http.get(body["data"][0]["url"]) as r:
        assert Image.open(io.BytesIO(await r.read())).size == (32, 16)
    record = next(r for r in emu.requests if r.path == "/v1/images/edits")
    assert record.form is not None and record.form["image"]["filename"] == "in.png"
    cases = [
        (edit_form({"prompt": "x"}, None), "image"),
        (edit_form({"prompt": "x"}, png((32, 16)), mask=png((8, 8), alpha=0)), "mask"),
        (edit_form({"prompt": "x"}, b"not an image"), "image"),
        (edit_form({"prompt": "x", "model": "openai/dall-e-3"}, png((8, 8))), "model"),
        (edit_form({"prompt": "x", "size": "999x999"}, png((8, 8))), "size"),
        (edit_form({"prompt": ""}, png((8, 8))), "prompt"),
    ]
    for form, param in cases:
        async with http.post(url, data=form, headers=auth(emu)) as r:
            err = await r.json()
            assert r.status == 400 and err["error"]["param"] == param, err
    async with http.post(url, json={"prompt": "x"}, headers=auth(emu)) as r:
        assert r.status == 400


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "openai"])
async def test_other_profiles_do_not_serve_media(profile: str, http: aiohttp.ClientSession) -> None:
    async with GatewayEmulator(profile) as other:
        for method, path in (("POST", "/videos/generations"), ("GET", "/videos/generations/vid_1"),
                             ("DELETE", "/videos/generations/vid_1"), ("POST", "/music/generations"),
                             ("POST", "/images/edits")):
            async with http.request(method, other.api_base + path, json={"prompt": "x"}, headers=auth(other)) as r:
                assert r.status == 404, (profile, path)
