"""Video jobs, music and image edits (openai profile only; on the others these paths answer 404 as
any unknown path). The OpenAI surface's document names the endpoints; the shapes are ours (the
issue 18 contract), served alike by gateway_client:

* ``POST /v1/videos/generations`` JSON ``{model, prompt, duration, size}`` → 200 ``{"job_id": "vid_…",
  "object": "video.generation", "status": "queued", "model", "created"}``. Model default
  ``openai/sora-2`` (also ``google/veo-3``), duration default 5 s, one of 4, 5, 6, 8, 10, 12; size
  default ``320x180`` (cheap), one of ``VIDEO_SIZES``. ``x-credits-used: 0``: nothing is billed yet.
* ``GET /v1/videos/generations/{job_id}`` → ``{"job_id", "object", "status": queued | processing |
  completed | failed | cancelled, "progress" (0–100), "model", "created"}`` plus ``"error": {"message",
  "code": "generation_failed"}`` when failed, ``"data": [{"url", "expires_at", "duration", "width",
  "height", "format": "mp4"}]`` and ``"billed_seconds"`` when completed (``billed_seconds`` also when
  cancelled). The answer that first says ``completed`` carries ``x-credits-used`` = seconds × the
  model's price per second; every other status answer 0. Unknown id → 404 ``job_not_found``.
* Progress: by default each status GET is one step: queued (after the POST) → processing 25, 50, 75 →
  completed on the 4th GET (``emu.video_polls_to_complete``). With ``emu.video_seconds_to_complete = T``
  the job follows the clock instead: queued for the first 5 % of T, then processing at the elapsed
  share, completed at T. The MP4 is made (PyAV, in a thread) when the job completes.
* ``DELETE /v1/videos/generations/{job_id}`` → the job with status ``cancelled`` and ``billed_seconds``
  (0 while queued; while processing ceil(duration × progress / 100)), ``x-credits-used`` for that.
  A finished job → 409 ``job_finished``.
* ``POST /v1/music/generations`` JSON ``{model, prompt, duration (1–180, default 30), format: mp3 | wav,
  response_format: url (default) | b64_json}`` → ``{"created", "model", "data": [{"url" | "b64_json",
  "duration", "format"}]}``, ``x-credits-used`` = seconds × price; model default ``stability/stable-audio-2``.
* ``POST /v1/images/edits`` multipart (OpenAI's): ``image`` (file), optional ``mask`` (file, same size,
  transparent where to edit), ``prompt``, ``model`` (``openai/gpt-image-1`` default, or ``openai/dall-e-2``),
  ``n``, ``size`` (the model's image sizes; default: the input's size), ``response_format`` → the image
  generations answer (``{"created", "data": [{"url" | "b64_json", "seed"}]}``; gpt-image-1 gives
  b64_json only). The result is the input with the instruction's colour blended in under the mask.
* Media URLs (videos, music, edits) expire: ``expires_at`` = now + 3600; after it, or after
  ``emu.faults.expire_media()``, they answer 410. ``emu.faults.video_fails_next(message)`` /
  ``video_never_finishes()`` mark the next jobs submitted.
"""

from __future__ import annotations

import asyncio
import base64
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import images, media_render
from .errors import GatewayError
from .profiles import Profile

if TYPE_CHECKING:
    from .app import GatewayEmulator, Handler
    from .models import ModelInfo

DEFAULT_VIDEO_MODEL = "openai/sora-2"
DEFAULT_MUSIC_MODEL = "stability/stable-audio-2"
DEFAULT_EDIT_MODEL = "openai/gpt-image-1"
VIDEO_DURATIONS = (4, 5, 6, 8, 10, 12)
DEFAULT_VIDEO_SECONDS = 5
VIDEO_SIZES = ("320x180", "640x360", "854x480", "1280x720", "720x1280", "1920x1080", "1080x1920")
DEFAULT_VIDEO_SIZE = "320x180"
MAX_MUSIC_SECONDS = 180
DEFAULT_MUSIC_SECONDS = 30
MEDIA_TTL = 3600.0
INR_PER_USD = 84.0
_FINISHED = frozenset({"completed", "failed", "cancelled"})


@dataclass
class VideoJobState:
    """One video job as the emulator keeps it (``emu.video_jobs[job_id]``)."""

    job_id: str
    prompt: str
    model: str
    duration: int
    width: int
    height: int
    price_per_second: float
    created: int
    started: float  # monotonic, at the POST
    status: str = "queued"
    progress: int = 0
    posts: int = 1
    polls: int = 0
    cancelled: bool = False
    fail_message: str | None = None
    never_finishes: bool = False
    url: str | None = None
    expires_at: float | None = None
    billed_seconds: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job_id": self.job_id, "object": "video.generation", "status": self.status,
                               "progress": self.progress, "model": self.model, "created": self.created}
        if self.status == "failed":
            out["error"] = {"message": self.fail_message or "The video could not be generated.",
                            "code": "generation_failed"}
        if self.status == "completed":
            out["data"] = [{"url": self.url, "expires_at": int(self.expires_at or 0), "duration": self.duration,
                            "width": self.width, "height": self.height, "format": "mp4"}]
        if self.status in ("completed", "cancelled"):
            out["billed_seconds"] = self.billed_seconds or 0
        return out


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise GatewayError("invalid_request", "'prompt' is required.", param="prompt")
    if len(prompt) > 4000:
        raise GatewayError("invalid_request", "Invalid 'prompt': at most 4000 characters.", param="prompt")
    return prompt


def _whole(value: Any, name: str, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayError("invalid_request", f"Invalid '{name}': must be an integer ({allowed}).", param=name)
    return value


def _bill(emu: "GatewayEmulator", request: web.Request, info: "ModelInfo", cost_usd: float) -> None:
    """Headers for what this answer bills (the balance goes down by it)."""
    emu.balance_inr = max(0.0, emu.balance_inr - cost_usd * INR_PER_USD)
    emu.set_model_headers(request, info, info, cost_usd)


# -- video jobs ------------------------------------------------------------------------------------

async def video_create(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model") or DEFAULT_VIDEO_MODEL, "video")
    prompt = _prompt(body)
    shown = ", ".join(map(str, VIDEO_DURATIONS))
    duration = _whole(body.get("duration", DEFAULT_VIDEO_SECONDS), "duration", shown)
    if duration not in VIDEO_DURATIONS:
        raise GatewayError("invalid_request", f"Invalid 'duration' {duration}: one of {shown} seconds.",
                           param="duration")
    size = body.get("size") or DEFAULT_VIDEO_SIZE
    if size not in VIDEO_SIZES:
        raise GatewayError("invalid_request", f"Invalid 'size' {size!r}: one of {', '.join(VIDEO_SIZES)}.",
                           param="size")
    emu.charge(0.0)  # counts as a paid call (a spent budget refuses it); billed when it completes
    width, height = (int(x) for x in size.split("x"))
    fail, stall = emu.faults.take_video_fault()
    job = VideoJobState(job_id="vid_" + secrets.token_hex(12), prompt=prompt, model=info.id, duration=duration,
                        width=width, height=height, price_per_second=info.price_per_second,
                        created=int(time.time()), started=time.monotonic(), fail_message=fail, never_finishes=stall)
    emu.video_jobs[job.job_id] = job
    emu.set_model_headers(request, info, info, 0.0)
    return web.json_response({"job_id": job.job_id, "object": "video.generation", "status": "queued",
                              "model": job.model, "created": job.created})


def _job(emu: "GatewayEmulator", request: web.Request) -> VideoJobState:
    job_id = request.match_info["job_id"]
    job = emu.video_jobs.get(job_id)
    if job is None:
        raise GatewayError("not_found", f"No video job {job_id!r}.", code="job_not_found", param="job_id")
    return job


def _share(emu: "GatewayEmulator", job: VideoJobState) -> float:
    """How far along the job is (1.0 = done)."""
    if emu.video_seconds_to_complete is None:
        return job.polls / max(1, emu.video_polls_to_complete)
    return (time.monotonic() - job.started) / max(emu.video_seconds_to_complete, 1e-6)


async def _advance(emu: "GatewayEmulator", job: VideoJobState) -> bool:
    """Bring the job up to date; True when it has just completed (this answer bills it)."""
    if job.status in _FINISHED:
        return False
    share = _share(emu, job)
    timed = emu.video_seconds_to_complete is not None
    if share < 1.0 or job.never_finishes:
        if timed and share < 0.05:
            return False
        if share > 0:
            job.status = "processing"
            job.progress = max(job.progress, min(99, int(share * 100)))
        return False
    if job.fail_message is not None:
        job.status = "failed"
        return False
    rgb = images.colour_for(job.prompt, images.seed_for(job.prompt))
    data = await asyncio.to_thread(media_render.make_mp4, job.width, job.height, job.duration, rgb,
                                   images.seed_for(job.prompt))
    if job.status in _FINISHED:  # cancelled while the file was being made
        return False
    job.expires_at = time.time() + MEDIA_TTL
    job.url = emu.store_file(data, "video/mp4", ".mp4", expires_at=job.expires_at)
    job.status, job.progress, job.billed_seconds = "completed", 100, job.duration
    return True


async def video_get(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    job = _job(emu, request)
    info = emu.resolve_model(job.model, "video")
    async with job.lock:
        job.polls += 1
        completed_now = await _advance(emu, job)
    _bill(emu, request, info, job.duration * job.price_per_second if completed_now else 0.0)
    return web.json_response(job.body())


async def video_cancel(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    job = _job(emu, request)
    info = emu.resolve_model(job.model, "video")
    async with job.lock:
        if emu.video_seconds_to_complete is not None:
            await _advance(emu, job)  # by the clock it may have moved on since the last GET
        if job.status in _FINISHED:
            raise GatewayError("invalid_request", f"Video job {job.job_id!r} is already {job.status}.",
                               status=409, code="job_finished", param="job_id")
        billed = 0 if job.status == "queued" else math.ceil(job.duration * job.progress / 100)
        job.status, job.cancelled, job.billed_seconds = "cancelled", True, billed
    _bill(emu, request, info, billed * job.price_per_second)
    return web.json_response(job.body())


# -- music ---------------------------------------------------------------------------------------

async def music_create(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model") or DEFAULT_MUSIC_MODEL, "music")
    prompt = _prompt(body)
    seconds = _whole(body.get("duration", DEFAULT_MUSIC_SECONDS), "duration", f"1 to {MAX_MUSIC_SECONDS}")
    if not 1 <= seconds <= MAX_MUSIC_SECONDS:
        raise GatewayError("invalid_request", f"Invalid 'duration' {seconds}: 1 to {MAX_MUSIC_SECONDS} seconds.",
                           param="duration")
    fmt = body.get("format") or "mp3"
    if fmt not in media_render.MUSIC_CONTENT_TYPES:
        raise GatewayError("invalid_request", "Invalid 'format': mp3 or wav.", param="format")
    response_format = body.get("response_format") or "url"
    if response_format not in ("url", "b64_json"):
        raise GatewayError("invalid_request", "Invalid 'response_format': url or b64_json.", param="response_format")
    cost = seconds * info.price_per_second
    emu.charge(cost)
    emu.set_model_headers(request, info, info, cost)
    data = await asyncio.to_thread(media_render.make_music, prompt, seconds, fmt)
    item: dict[str, Any] = {"duration": seconds, "format": fmt}
    if response_format == "url":
        item["url"] = emu.store_file(data, media_render.MUSIC_CONTENT_TYPES[fmt], "." + fmt,
                                     expires_at=time.time() + MEDIA_TTL)
    else:
        item["b64_json"] = base64.b64encode(data).decode()
    return web.json_response({"created": int(time.time()), "model": info.id, "data": [item]})


# -- image edits ---------------------------------------------------------------------------------

async def _upload(form: Any, name: str) -> bytes | None:
    part = form.get(name)
    if part is None:
        return None
    if isinstance(part, str):
        raise GatewayError("invalid_request", f"'{name}' must be a file.", param=name)
    data: bytes = part.file.read()
    return data


async def image_edits(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    if not request.headers.get("Content-Type", "").startswith("multipart/"):
        raise GatewayError("invalid_request", "Send the edit as multipart/form-data.", param="image")
    form = await request.post()
    emu.ctx(request).record.form = {
        k: (v if isinstance(v, str) else {"filename": v.filename, "content_type": v.content_type})
        for k, v in form.items()}
    image = await _upload(form, "image")
    if not image:
        raise GatewayError("invalid_request", "'image' is required.", param="image")
    mask = await _upload(form, "mask")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    info = emu.resolve_model(fields.get("model") or DEFAULT_EDIT_MODEL, "image_edit")
    prompt = _prompt(fields)
    try:
        n = int(fields.get("n", "1"))
    except ValueError:
        raise GatewayError("invalid_request", "Invalid 'n': must be an integer.", param="n") from None
    if not 1 <= n <= info.max_images:
        raise GatewayError("invalid_request", f"Invalid 'n': 1 to {info.max_images}.", param="n")
    size_text = fields.get("size") or "auto"
    if size_text != "auto" and size_text not in info.image_sizes:
        raise GatewayError("invalid_request", f"Invalid 'size' {size_text!r} for {info.id}: one of "
                           f"{', '.join(info.image_sizes)}.", param="size")
    fmt = fields.get("response_format") or ("b64_json" if info.b64_only else "url")
    if fmt not in ("url", "b64_json"):
        raise GatewayError("invalid_request", "Invalid 'response_format': url or b64_json.", param="response_format")
    if info.b64_only:
        fmt = "b64_json"
    try:
        dims = await asyncio.to_thread(media_render.image_size, image, "image")
        if mask is not None and await asyncio.to_thread(media_render.image_size, mask, "mask") != dims:
            raise GatewayError("invalid_request", "Invalid 'mask': it must have the same size as the image.",
                               param="mask")
    except media_render.UnreadableImage as exc:
        raise GatewayError("invalid_request", f"Invalid '{exc.which}': not a readable image.",
                           param=exc.which) from None
    size = None if size_text == "auto" else (int(size_text.split("x")[0]), int(size_text.split("x")[1]))
    cost = info.price_per_image * n
    emu.charge(cost)
    emu.set_model_headers(request, info, info, cost)
    seed = images.seed_for(prompt)
    data = []
    for i in range(n):
        png = await asyncio.to_thread(media_render.edit_png, image, mask, prompt, seed + i, size)
        item: dict[str, Any] = ({"url": emu.store_file(png, "image/png", ".png", expires_at=time.time() + MEDIA_TTL)}
                                if fmt == "url" else {"b64_json": base64.b64encode(png).decode()})
        item["seed"] = seed + i
        data.append(item)
    return web.json_response({"created": int(time.time()), "data": data})


def routes(profile: Profile) -> list[tuple[str, str, "Handler"]]:
    if profile.name != "openai":
        return []
    b = profile.base_path
    return [("POST", f"{b}/videos/generations", video_create),
            ("GET", f"{b}/videos/generations/{{job_id}}", video_get),
            ("DELETE", f"{b}/videos/generations/{{job_id}}", video_cancel),
            ("POST", f"{b}/music/generations", music_create),
            ("POST", f"{b}/images/edits", image_edits)]
