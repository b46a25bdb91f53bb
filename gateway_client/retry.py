"""The one retry policy of the client: what may be repeated, how long to wait, and the loop itself.

What is repeated: a 429 (refused before any work) and a connection that was never established,
always; timeouts and 5xx only for calls that are safe to repeat (not image generation: the gateway
may already have charged). Never an answer that could not be read, a 4xx, or anything after the
first byte of a stream reached the caller (the retried call only *opens* the stream).

How long: the server's Retry-After first, then its rate-limit reset header (when the window is
spent), else exponential backoff with jitter; a wait above ``max_wait`` is not slept, the error is
raised at once with ``retry_after`` set to the wait the server asked for.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .config import ClientOptions
from .errors import GatewayError, GatewayTimeout, InvalidResponse, RateLimited, UpstreamUnavailable
from .meta import CallMeta

__all__ = ["RetryPolicy", "Sleep", "Jitter", "retryable", "call_with_retries"]

log = logging.getLogger("gateway_client")
T = TypeVar("T")

#: ``asyncio.sleep``-like; tests inject one that records the waits instead of sleeping.
Sleep = Callable[[float], Awaitable[object]]
#: ``random.uniform``-like: a value in ``[low, high]``; tests inject a fixed one.
Jitter = Callable[[float, float], float]


def retryable(err: GatewayError, *, safe: bool) -> bool:
    """Whether ``err`` may be cured by sending the same request again (``safe``: repeating cannot double-charge)."""
    if isinstance(err, RateLimited):
        return True  # refused before any work: safe even for image generation
    if err.connection_error and not err.request_sent:
        return True
    if not safe or isinstance(err, InvalidResponse):
        return False
    if isinstance(err, GatewayTimeout):
        return True
    if isinstance(err, UpstreamUnavailable):
        return err.status is None or err.status >= 500
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to retry and how long to wait; ``jitter`` and ``sleep`` are injectable for tests."""

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_wait: float = 30.0
    jitter: Jitter = random.uniform
    sleep: Sleep = asyncio.sleep

    @classmethod
    def from_options(cls, options: ClientOptions, *, jitter: Jitter | None = None,
                     sleep: Sleep | None = None) -> RetryPolicy:
        return cls(
            max_retries=options.max_retries,
            backoff_base=options.backoff_base,
            backoff_max=options.backoff_max,
            max_wait=options.max_retry_after,
            jitter=jitter if jitter is not None else random.uniform,
            sleep=sleep if sleep is not None else asyncio.sleep,
        )

    def wait(self, err: GatewayError, attempt: int, meta: CallMeta | None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based); raises ``err`` when that is above ``max_wait``."""
        if err.retry_after is not None:
            wait = err.retry_after
        elif isinstance(err, RateLimited) and meta is not None and meta.ratelimit_reset is not None \
                and not meta.ratelimit_remaining:
            wait = meta.ratelimit_reset
        else:
            ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
            wait = self.jitter(ceiling / 2, ceiling)
        if wait > self.max_wait:
            if err.retry_after is None:
                err.retry_after = wait
            raise err
        return wait


async def call_with_retries(
    call: Callable[[CallMeta], Awaitable[T]],
    new_meta: Callable[[], CallMeta],
    policy: RetryPolicy,
    *,
    safe: bool,
    what: str,
    max_retries: int | None = None,
) -> T:
    """Run ``call`` with a fresh ``CallMeta`` per attempt until it returns, or raise its last error.

    ``what`` names the call in the warning logged before each retry; ``max_retries`` overrides the policy's.
    """
    limit = policy.max_retries if max_retries is None else max_retries
    attempt = 0
    while True:
        attempt += 1
        meta = new_meta()
        meta.attempts = attempt
        try:
            return await call(meta)
        except GatewayError as err:
            if err.meta is None:  # which gateway failed, for whoever records the call (the usage ledger)
                err.meta = meta
            if attempt > limit or not retryable(err, safe=safe):
                raise
            wait = policy.wait(err, attempt, meta)
            log.warning("gateway %s: %s; retry %d/%d in %.2fs", what, type(err).__name__, attempt, limit, wait)
            await policy.sleep(wait)
