"""Per-route buckets, the global limit, and injected 429s, with Discord's rate-limit headers."""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Optional

from . import limits as L

# Routes exempt from the global limit (as on Discord): interaction callbacks and interaction webhooks.
GLOBAL_EXEMPT_PREFIXES = ("/interactions/", "/webhooks/")


def route_matches(substring: str, method: str, path: str) -> bool:
    """Fault-injection matching: the substring occurs in the path or in "METHOD path"."""
    return substring in f"{method} {path}"


def classify(method: str, route: str, match: dict[str, str]) -> tuple[str, str]:
    """(bucket name, major parameter) for a request."""
    if route.startswith("/interactions/"):
        return "interaction_callback", match.get("interaction_id", "")
    if route.startswith("/webhooks/{webhook_id}/{webhook_token}"):
        return "webhook", match.get("webhook_token", "")
    if route == "/channels/{channel_id}/messages" and method == "POST":
        return "message_create", match["channel_id"]
    if route == "/channels/{channel_id}/messages/{message_id}" and method == "PATCH":
        return "message_edit", match["channel_id"]
    if route == "/channels/{channel_id}/messages/{message_id}" and method == "DELETE":
        return "message_delete", match["channel_id"]
    if route == "/channels/{channel_id}/typing":
        return "typing", match["channel_id"]
    if route.endswith("/threads") and method == "POST":
        return "thread_create", match.get("channel_id", "")
    if "/commands" in route and method in ("PUT", "POST", "PATCH", "DELETE"):
        return "commands", match.get("guild_id", "")
    major = match.get("channel_id") or match.get("guild_id") or match.get("webhook_id") or ""
    return f"{method} {route}", major


def default_bucket_limits() -> dict[str, tuple[int, float]]:
    return {
        "message_create": L.BUCKET_MESSAGE_CREATE,
        "message_edit": L.BUCKET_MESSAGE_EDIT,
        "message_delete": L.BUCKET_MESSAGE_DELETE,
        "webhook": L.BUCKET_WEBHOOK,
        "typing": L.BUCKET_TYPING,
        "thread_create": L.BUCKET_THREAD_CREATE,
        "commands": L.BUCKET_COMMANDS,
        "interaction_callback": (1000, 1.0),
    }


@dataclass
class _Window:
    limit: int
    per: float
    reset_at: float  # monotonic
    count: int = 0


@dataclass
class InjectedRateLimit:
    route_substring: str
    count: int
    retry_after: float
    is_global: bool


@dataclass
class Decision:
    """Outcome of a rate-limit check: headers to add, and a 429 body when refused."""

    headers: dict[str, str] = field(default_factory=dict)
    retry_after: Optional[float] = None
    is_global: bool = False
    scope: str = "user"
    injected: bool = False
    bucket: str = ""

    @property
    def limited(self) -> bool:
        return self.retry_after is not None

    def body(self) -> dict[str, object]:
        return {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": self.is_global}


class RateLimiter:
    """Fixed windows per (bucket, major parameter); ``enabled`` and ``scale`` let tests relax it."""

    def __init__(self) -> None:
        self.enabled = True
        self.scale = 1.0  # multiplies every window length (0.1 → ten times faster resets)
        self.bucket_limits = default_bucket_limits()
        self.default_limit = L.BUCKET_DEFAULT
        self.global_limit = L.GLOBAL_RATE_LIMIT
        self.injected: list[InjectedRateLimit] = []
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global: Optional[_Window] = None

    def configure(self, bucket: str, limit: int, per: float) -> None:
        self.bucket_limits[bucket] = (limit, per)
        for key in [k for k in self._windows if k[0] == bucket]:
            del self._windows[key]

    def inject(self, route_substring: str, count: int = 1, retry_after: float = 0.5, is_global: bool = False) -> None:
        self.injected.append(InjectedRateLimit(route_substring, count, retry_after, is_global))

    def reset(self) -> None:
        self._windows.clear()
        self._global = None

    def _window(self, key: tuple[str, str], limit: int, per: float, now: float) -> _Window:
        win = self._windows.get(key)
        if win is None or now >= win.reset_at:
            win = _Window(limit=limit, per=per, reset_at=now + per)
            self._windows[key] = win
        return win

    def check(self, method: str, path: str, route: str, match: dict[str, str]) -> Decision:
        now = time.monotonic()
        bucket, major = classify(method, route, match)
        limit, per = self.bucket_limits.get(bucket, self.default_limit)
        per *= self.scale
        win = self._window((bucket, major), limit, per, now)
        decision = Decision(bucket=bucket)

        for inj in self.injected:
            if inj.count > 0 and route_matches(inj.route_substring, method, path):
                inj.count -= 1
                self.injected = [i for i in self.injected if i.count > 0]
                decision.retry_after = inj.retry_after
                decision.is_global = inj.is_global
                decision.scope = "global" if inj.is_global else "user"
                decision.injected = True
                break

        if not decision.limited and self.enabled:
            exempt = route.startswith(GLOBAL_EXEMPT_PREFIXES)
            if not exempt:
                glimit, gper = self.global_limit
                if self._global is None or now >= self._global.reset_at:
                    self._global = _Window(limit=glimit, per=gper * self.scale, reset_at=now + gper * self.scale)
                if self._global.count >= glimit:
                    decision.retry_after = round(self._global.reset_at - now, 3)
                    decision.is_global = True
                    decision.scope = "global"
                else:
                    self._global.count += 1
            if not decision.limited:
                if win.count >= win.limit:
                    decision.retry_after = round(max(win.reset_at - now, 0.001), 3)
                else:
                    win.count += 1

        remaining = max(win.limit - win.count, 0) if self.enabled else win.limit
        reset_after = max(win.reset_at - now, 0.0)
        decision.headers = {
            "X-RateLimit-Limit": str(win.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": _bucket_hash(bucket),
        }
        if decision.limited:
            assert decision.retry_after is not None
            decision.headers.update(
                {
                    "Retry-After": str(max(1, math.ceil(decision.retry_after))),
                    "X-RateLimit-Scope": decision.scope,
                    "Via": "1.1 google",
                }
            )
            if decision.is_global:
                decision.headers["X-RateLimit-Global"] = "true"
        return decision


@functools.lru_cache(maxsize=256)
def _bucket_hash(bucket: str) -> str:
    """The opaque X-RateLimit-Bucket value for a bucket name (stable, so computed once)."""
    return hashlib.sha1(bucket.encode()).hexdigest()[:32]
