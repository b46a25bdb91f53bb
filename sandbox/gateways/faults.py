"""Fault injection: each fault applies to the next N matching calls.

A call *matches* when ``path`` is ``None`` or a substring of the request path; with ``path=None``
the emulator's own image-file downloads (``/_files/``) never match, so a fault meant for the API is
not eaten by a download. Response faults (``fail``, ``html``, ``invalid_json``) are tried in the
order they were set and are applied before authentication, like a proxy in front of the gateway.
``slow`` combines with any other fault. Stream faults (``cut``, ``error``) match streamed
completions only.

Video and media faults are not per call: ``video_fails_next`` and ``video_never_finishes`` mark the
next video jobs *submitted* (taken at their POST, so a job already running is unchanged);
``expire_media`` makes every media URL the emulator produced (video, music, image edits) answer 410.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FILES_PREFIX = "/_files/"


@dataclass
class Fault:
    kind: str  # fail | html | invalid_json | slow | cut | stream_error
    remaining: int
    path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        if self.path is None:
            return not path.startswith(FILES_PREFIX)
        return self.path in path


class FaultInjector:
    """The emulator's fault switchboard (``emu.faults``)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self.revoked = False
        self.budget: int | None = None  # paid calls left; None = unlimited
        self.video_failures: list[str] = []  # the next jobs end "failed" with these messages
        self.video_stalls = 0  # the next jobs stay "processing" forever
        self.media_expired = False  # produced media URLs answer 410
        self.tool_loops = 0  # answers after a tool result that call a tool again (-1: forever)

    # -- setting faults -------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 429, retry_after: float | None = 1,
                  path: str | None = None) -> None:
        """429 with ``Retry-After`` (+ rate-limit headers), or another status in the error shape."""
        self._add("fail", n, path, status=status, retry_after=retry_after)

    def html_error_next(self, n: int = 1, status: int = 502, path: str | None = None) -> None:
        """A ``text/html`` proxy error page."""
        self._add("html", n, path, status=status)

    def invalid_json_next(self, n: int = 1, path: str | None = None) -> None:
        """200 ``application/json`` whose body is not JSON."""
        self._add("invalid_json", n, path)

    def slow_next(self, n: int = 1, delay: float = 2.0, path: str | None = None) -> None:
        """The answer (or first stream byte) comes after ``delay`` seconds."""
        self._add("slow", n, path, delay=delay)

    def cut_stream_next(self, n: int = 1, after_chunks: int = 3, path: str | None = None) -> None:
        """A stream sends ``after_chunks`` ``data:`` events, then the connection drops."""
        self._add("cut", n, path, after_chunks=after_chunks)

    def error_in_stream_next(self, n: int = 1, after_chunks: int = 2, path: str | None = None) -> None:
        """A stream sends ``after_chunks`` events, then ``data: {"error": {...}}`` and ends."""
        self._add("stream_error", n, path, after_chunks=after_chunks)

    def revoke_key(self) -> None:
        """Every authenticated call answers 401 from now on."""
        self.revoked = True

    def set_budget(self, calls: int) -> None:
        """The key runs out after ``calls`` more paid calls (then 402 insufficient credits)."""
        self.budget = max(0, calls)

    def video_fails_next(self, message: str = "The video could not be generated.", n: int = 1) -> None:
        """The next ``n`` video jobs submitted end ``failed`` with ``message`` (when they would complete)."""
        self.video_failures.extend([message] * max(0, n))

    def video_never_finishes(self, n: int = 1) -> None:
        """The next ``n`` video jobs submitted stay ``processing`` (their progress stops short of 100)."""
        self.video_stalls += max(0, n)

    def tool_loop(self, n: int | None = None) -> None:
        """The model calls tools forever: an answer to a tool result (with tools offered and ``tool_choice``
        not "none") calls a tool again — the next ``n`` times, or always (``n`` None) until ``reset``."""
        self.tool_loops = -1 if n is None else max(0, n)

    def take_tool_loop(self) -> bool:
        """Whether this answer to a tool result calls a tool again."""
        if self.tool_loops == 0:
            return False
        if self.tool_loops > 0:
            self.tool_loops -= 1
        return True

    def expire_media(self) -> None:
        """Every media URL produced so far and from now on answers 410 Gone (as an expired link)."""
        self.media_expired = True

    def take_video_fault(self) -> tuple[str | None, bool]:
        """(failure message, never finishes) for a job being submitted."""
        if self.video_failures:
            return self.video_failures.pop(0), False
        if self.video_stalls:
            self.video_stalls -= 1
            return None, True
        return None, False

    def reset(self) -> None:
        self._faults.clear()
        self.revoked = False
        self.budget = None
        self.video_failures.clear()
        self.video_stalls = 0
        self.media_expired = False
        self.tool_loops = 0

    # -- consulted by the server ----------------------------------------------------------------
    def take(self, kinds: tuple[str, ...], path: str) -> Fault | None:
        """Consume one use of the first pending fault of ``kinds`` that matches ``path``."""
        for f in self._faults:
            if f.kind in kinds and f.matches(path):
                f.remaining -= 1
                if f.remaining <= 0:
                    self._faults.remove(f)
                return f
        return None

    def spend_paid_call(self) -> bool:
        """Count one paid call; ``False`` when the budget is already exhausted."""
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    @property
    def pending(self) -> list[Fault]:
        return list(self._faults)

    def _add(self, kind: str, n: int, path: str | None, **params: Any) -> None:
        if n > 0:
            self._faults.append(Fault(kind, n, path, params))
