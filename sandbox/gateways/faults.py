"""Fault injection: each fault applies to the next N matching calls.

A call *matches* when ``path`` is ``None`` or a substring of the request path; with ``path=None``
the emulator's own image-file downloads (``/_files/``) never match, so a fault meant for the API is
not eaten by a download. Response faults (``fail``, ``html``, ``invalid_json``) are tried in the
order they were set and are applied before authentication, like a proxy in front of the gateway.
``slow`` combines with any other fault. Stream faults (``cut``, ``error``) match streamed
completions only.
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

    def reset(self) -> None:
        self._faults.clear()
        self.revoked = False
        self.budget = None

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
