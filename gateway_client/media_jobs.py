"""Video jobs and music: typed requests and results, validation (pure, before any call), request
bodies and answer parsing. No I/O here; ``GatewayClient`` sends.

Wire shapes (the OpenAI surface's document names the endpoints only; these are fixed in
/work/tools/media_contract.md and served alike by sandbox/gateways/media_jobs.py):

* ``POST videos/generations`` ``{model, prompt, duration, size}`` -> ``{"job_id", "object":
  "video.generation", "status": "queued", "model", "created"}``; the job is billed when it completes
  (``x-credits-used`` on the status answer that first says ``completed``).
* ``GET videos/generations/{job_id}`` -> ``{"job_id", "status", "progress", "model", "created",
  "error": {"message", "code"}, "data": [{"url", "expires_at", "duration", "width", "height",
  "format"}], "billed_seconds"}``; ``DELETE`` the same -> the job object, status ``cancelled``.
* ``POST music/generations`` ``{model, prompt, duration, format, response_format}`` -> ``{"created",
  "model", "data": [{"url" | "b64_json", "duration", "format"}]}``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from .catalog import kind_from_id
from .config import GatewayConfig
from .errors import InvalidRequest, InvalidResponse, ResultDownloadFailed, Unsupported
from .meta import CallMeta
from .models import ModelKind, sniff_image_mime
from .profiles import Profile

__all__ = [
    "VIDEO_STATUSES",
    "DownloadedMedia",
    "MediaExpired",
    "MusicRequest",
    "MusicResult",
    "VideoJob",
    "VideoRequest",
    "VideoStatus",
    "music_audio",
    "music_body",
    "parse_video_job",
    "sniff_media_mime",
    "validate_music_request",
    "validate_video_request",
    "video_body",
]

VideoStatus = Literal["queued", "processing", "completed", "failed", "cancelled"]
VIDEO_STATUSES: tuple[str, ...] = ("queued", "processing", "completed", "failed", "cancelled")
_FINISHED = frozenset({"completed", "failed", "cancelled"})
_AUDIO_MIME = {"mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "opus": "audio/ogg",
               "flac": "audio/flac", "aac": "audio/aac", "m4a": "audio/mp4"}


def _no_meta() -> CallMeta:
    return CallMeta(profile="")


@dataclass(frozen=True, slots=True)
class VideoRequest:
    prompt: str
    model: str | None = None
    duration: int | None = None  # whole seconds; None: the gateway's default
    size: str | None = None  # "WxH"; None: the gateway's default


@dataclass(frozen=True, slots=True)
class VideoJob:
    """One video job as the gateway last described it; ``meta`` is the call that said so (its
    ``credits_used`` is what THIS call billed: the completing status, or a cancel)."""

    job_id: str
    status: VideoStatus
    progress: float | None = None
    url: str | None = None
    expires_at: float | None = None
    seconds: float | None = None
    width: int | None = None
    height: int | None = None
    billed_seconds: int | None = None
    error: str | None = None
    model: str | None = None
    meta: CallMeta = field(default_factory=_no_meta)

    @property
    def finished(self) -> bool:
        return self.status in _FINISHED


@dataclass(frozen=True, slots=True)
class MusicRequest:
    prompt: str
    model: str | None = None
    duration: int | None = None  # whole seconds; None: the gateway's default
    format: str = "mp3"


@dataclass(frozen=True, slots=True)
class MusicResult:
    audio: bytes = field(repr=False)
    mime: str
    format: str
    seconds: float | None
    meta: CallMeta


@dataclass(frozen=True, slots=True)
class DownloadedMedia:
    data: bytes = field(repr=False)
    mime: str


class MediaExpired(ResultDownloadFailed):
    """The result URL answered 403/404/410: the gateway no longer serves it (its links last about an hour)."""

    default_message = "the result link has expired"

    def user_message(self) -> str:
        return (f"The AI gateway made the result, but its download link on {self.host} has expired, so I "
                "couldn't fetch it. Start it again.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _prompt(req_prompt: Any) -> None:
    if not isinstance(req_prompt, str) or not req_prompt.strip():
        raise InvalidRequest("the prompt is empty", field="prompt", allowed="non-empty text")


def _known(profile: Profile, kind: ModelKind) -> list[str]:
    ids = [mid for mid, k in profile.known_model_kinds.items() if k is kind and "/" in mid]
    return ids or [mid for mid, k in profile.known_model_kinds.items() if k is kind]


def _check_model(profile: Profile, model: str, kind: ModelKind, what: str) -> None:
    """Refuse a model the profile (or its id) says is of another kind; others go to the gateway."""
    stated = profile.known_model_kinds.get(model) or kind_from_id(model)
    if stated is not None and stated is not kind:
        raise InvalidRequest(f"{model} is not a {what} model", field="model", allowed=_known(profile, kind))


def validate_video_request(profile: Profile, config: GatewayConfig | None, req: VideoRequest) -> VideoRequest:
    """``req`` with the model filled in, or ``InvalidRequest(field, allowed)`` / ``Unsupported``. Pure."""
    if not profile.supports("videos"):
        raise Unsupported(f"video generation is not offered by the {profile.name} gateway", profile=profile.name)
    _prompt(req.prompt)
    model = req.model or (config.video_model if config else "") or profile.default_video_model
    if model:
        _check_model(profile, model, ModelKind.VIDEO, "video")
    if req.duration is not None:
        allowed = list(profile.video_durations)
        if not _is_int(req.duration) or req.duration <= 0 or (allowed and req.duration not in allowed):
            raise InvalidRequest(f"a video of {req.duration} seconds is not available", field="duration",
                                 allowed=allowed or "positive whole seconds")
    size = req.size
    if size is not None:
        size = size.strip().lower()
        allowed_sizes = list(profile.video_sizes)
        w, sep, h = size.partition("x")
        if not (sep and w.isdigit() and h.isdigit()) or (allowed_sizes and size not in allowed_sizes):
            raise InvalidRequest(f"video size {req.size!r} is not available", field="size",
                                 allowed=allowed_sizes or "WIDTHxHEIGHT")
    return replace(req, model=model or None, size=size)


def video_body(req: VideoRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": req.prompt}
    if req.model:
        body["model"] = req.model
    if req.duration is not None:
        body["duration"] = req.duration
    if req.size is not None:
        body["size"] = req.size
    return body


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def parse_video_job(data: Any, meta: CallMeta, *, job_id: str | None = None) -> VideoJob:
    """A ``VideoJob`` from a submit/status/cancel answer; ``InvalidResponse`` when it is not one."""
    if not isinstance(data, dict):
        raise InvalidResponse("the video job answer is not a JSON object", profile=meta.profile)
    jid = data.get("job_id") or data.get("id") or job_id
    status = data.get("status")
    if not isinstance(jid, str) or not jid:
        raise InvalidResponse("the video job answer has no job_id", profile=meta.profile)
    if status == "in_progress":  # OpenAI's own video API says so
        status = "processing"
    if status not in VIDEO_STATUSES:
        raise InvalidResponse(f"the video job answer has an unknown status {status!r}", profile=meta.profile)
    error = data.get("error")
    message = None
    if isinstance(error, dict):
        raw = error.get("message") or error.get("code")
        message = str(raw) if raw else "the gateway did not say why"
    elif isinstance(error, str) and error:
        message = error
    if status == "failed" and message is None:
        message = "the gateway did not say why"
    item: dict[str, Any] = {}
    rows = data.get("data")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        item = rows[0]
    url = item.get("url") if isinstance(item.get("url"), str) else None
    if status == "completed" and not url:
        raise InvalidResponse("the completed video job has no result URL", profile=meta.profile)
    model = data.get("model") if isinstance(data.get("model"), str) else None
    if model and meta.model_used is None:
        meta.model_used = model
    return VideoJob(
        job_id=jid, status=cast(VideoStatus, status), progress=_num(data.get("progress")), url=url,
        expires_at=_num(item.get("expires_at")), seconds=_num(item.get("duration")), width=_int(item.get("width")),
        height=_int(item.get("height")), billed_seconds=_int(data.get("billed_seconds")), error=message,
        model=model, meta=meta,
    )


def validate_music_request(profile: Profile, config: GatewayConfig | None, req: MusicRequest) -> MusicRequest:
    """``req`` with the model filled in, or ``InvalidRequest(field, allowed)`` / ``Unsupported``. Pure."""
    if not profile.supports("music"):
        raise Unsupported(f"music generation is not offered by the {profile.name} gateway", profile=profile.name)
    _prompt(req.prompt)
    model = req.model or (config.music_model if config else "") or profile.default_music_model
    if model:
        _check_model(profile, model, ModelKind.MUSIC, "music")
    limit = profile.max_music_seconds
    if req.duration is not None and (not _is_int(req.duration) or req.duration <= 0
                                     or (limit and req.duration > limit)):
        raise InvalidRequest(f"music of {req.duration} seconds is not available", field="duration",
                             allowed=f"1 to {limit} seconds" if limit else "positive whole seconds")
    if profile.music_formats and req.format not in profile.music_formats:
        raise InvalidRequest(f"music format {req.format!r} is not available", field="format",
                             allowed=list(profile.music_formats))
    return replace(req, model=model or None)


def music_body(req: MusicRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": req.prompt, "format": req.format, "response_format": "b64_json"}
    if req.model:
        body["model"] = req.model
    if req.duration is not None:
        body["duration"] = req.duration
    return body


def music_audio(data: Any, profile: str) -> tuple[bytes | None, str | None, dict[str, Any]]:
    """(bytes when inline, else None; the URL otherwise; the item) of a music answer."""
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        raise InvalidResponse("the music answer holds no audio", profile=profile)
    item = rows[0]
    raw = item.get("b64_json")
    if isinstance(raw, str) and raw:
        try:
            return base64.b64decode(raw, validate=True), None, item
        except (binascii.Error, ValueError):
            raise InvalidResponse("the music answer's audio is not valid base64", profile=profile) from None
    url = item.get("url")
    if isinstance(url, str) and url:
        return None, url, item
    raise InvalidResponse("the music answer holds no audio", profile=profile)


def sniff_media_mime(data: bytes, fallback: str = "", fmt: str = "") -> str:
    """The MIME type of media bytes from their magic (mp4, webm, mp3, wav, ogg, flac, images), else the
    server's ``Content-Type`` (``fallback``), else the asked format's, else octet-stream."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "video/mp4" if data[8:11] not in (b"M4A", b"M4B") else "audio/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if data.startswith(b"ID3") or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0
                                   and data[1] & 0x06):
        return "audio/mpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if data.startswith(b"fLaC"):
        return "audio/flac"
    image = sniff_image_mime(data)
    if image:
        return image
    declared = fallback.split(";", 1)[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    return _AUDIO_MIME.get(fmt, "application/octet-stream")
