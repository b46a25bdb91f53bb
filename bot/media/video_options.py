"""/video options → a validated ``VideoRequest`` (before anything is reserved or charged), and back.

The gateway client owns the profile's rules (``validate_video_request``: model, allowed durations and
sizes); this module fills the configured default length only where the profile takes it (else the
nearest allowed length), and words refusals for the member with the option's name and allowed values
(``OptionError``, as /imagine's). ``video_params`` / ``video_request`` map the request to the stored
job parameters and back (re-roll after a restart needs nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bot.media.jobs import JobParams
from bot.media.options import OptionError
from gateway_client import InvalidRequest, VideoRequest

__all__ = ["VideoOptions", "build_video_request", "video_params", "video_request"]

#: the gateway's field names → the /video option names members see
OPTION_NAMES = {"prompt": "prompt", "model": "model", "duration": "duration", "size": "size"}


class VideoValidator(Protocol):
    def validate_video_request(self, req: VideoRequest) -> VideoRequest: ...


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """What the member typed (None = not given)."""

    prompt: str
    model: str | None = None
    duration: int | None = None
    size: str | None = None


def build_video_request(
    gateway: VideoValidator, opts: VideoOptions, *, default_model: str | None, default_duration: int | None,
) -> VideoRequest:
    """Validate and normalise; ``OptionError`` for the first refused option the member typed.

    The default length is offered to the profile's rules and moved to the nearest allowed length (or
    left to the gateway) when refused; only what the member typed is refused.
    """
    given: dict[str, Any] = {"prompt": opts.prompt, "model": opts.model, "duration": opts.duration,
                             "size": opts.size}
    req = VideoRequest(
        prompt=opts.prompt,
        model=opts.model or default_model or None,
        duration=opts.duration if opts.duration is not None else default_duration,
        size=opts.size or None,
    )
    for _ in range(3):
        try:
            return gateway.validate_video_request(req)
        except InvalidRequest as exc:
            field = exc.field or "prompt"
            if field == "duration" and opts.duration is None and req.duration is not None:
                req = replace(req, duration=_nearest(req.duration, exc.allowed))
                continue
            raise OptionError(OPTION_NAMES.get(field, field), exc.allowed, given.get(field), exc.message) from None
    return gateway.validate_video_request(req)


def _nearest(wanted: int, allowed: Any) -> int | None:
    """The allowed length closest to ``wanted`` (the shorter on a tie), or None: the gateway's default."""
    if isinstance(allowed, Sequence) and not isinstance(allowed, str):
        lengths = [int(a) for a in allowed if isinstance(a, int) and not isinstance(a, bool)]
        if lengths:
            return min(lengths, key=lambda n: (abs(n - wanted), n))
    return None


def video_params(request: VideoRequest) -> JobParams:
    """What the job row keeps of a video request."""
    return JobParams(prompt=request.prompt, model=request.model, count=1, size=request.size,
                     duration=request.duration)


def video_request(params: JobParams) -> VideoRequest:
    """The request a stored video job was made with (re-roll, retry)."""
    return VideoRequest(prompt=params.prompt, model=params.model, duration=params.duration, size=params.size)
