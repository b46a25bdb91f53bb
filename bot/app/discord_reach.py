"""Before ``gatecord run`` logs in: wait, a bounded number of times, until Discord's REST API answers.

A Discord (or proxy) that cannot be reached at start-up is usually a network that is not up yet (a
container started before its network, a proxy restarting): the bot tries again with a doubling wait
(``discord.connect_retries`` more times, starting at ``discord.connect_backoff_seconds``), printing one
line per failed try that names the host and the error, and gives up with one line. Any HTTP answer
counts as reachable: a refused token or a Discord outage is reported by the login itself. The probe
(``GET /gateway``) needs no token and sends none.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import aiohttp
import yarl

__all__ = ["DiscordUnreachable", "MAX_BACKOFF_SECONDS", "describe_connection_error", "wait_for_discord"]

#: the longest single wait between two tries, however many retries are configured
MAX_BACKOFF_SECONDS = 60.0
PROBE_TIMEOUT_SECONDS = 10.0

Sleep = Callable[[float], Awaitable[object]]
Say = Callable[[str], None]


class DiscordUnreachable(Exception):
    """Discord's API did not answer after every try; ``str()`` is the one line for the operator."""

    def __init__(self, host: str, error: str, attempts: int) -> None:
        tries = "1 try" if attempts == 1 else f"{attempts} tries"
        super().__init__(f"cannot reach Discord at {host} ({error}) after {tries}; check the network, or "
                         "discord.api_base_url if the bot goes through a proxy")
        self.host = host
        self.error = error
        self.attempts = attempts


def describe_connection_error(exc: BaseException, timeout: float = PROBE_TIMEOUT_SECONDS) -> str:
    """A few words for a failed connection: "connection refused", "name not resolved" …"""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "name not resolved"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not accepted"
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        return os.strerror(errno).lower() if errno else type(exc.os_error).__name__
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return type(exc).__name__


def _host(url: str) -> str:
    parsed = yarl.URL(url)
    host = parsed.host or url
    return f"{host}:{parsed.explicit_port}" if parsed.explicit_port is not None else host


async def _probe(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url, allow_redirects=False) as resp:
        await resp.read()  # any HTTP status: Discord (or the proxy) is there


async def wait_for_discord(
    api_base_url: str, *, retries: int, backoff: float, say: Say, sleep: Sleep = asyncio.sleep,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> None:
    """Return once ``api_base_url`` answers; raise ``DiscordUnreachable`` after ``retries + 1`` failed tries.

    ``say`` gets one line per failed try that will be retried; ``sleep`` waits between tries (tests)."""
    url = api_base_url.rstrip("/") + "/gateway"
    host = _host(url)
    attempts = retries + 1
    wait = backoff
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
        for attempt in range(1, attempts + 1):
            try:
                await _probe(session, url)
                return
            except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
                error = describe_connection_error(exc, timeout)
            if attempt == attempts:
                raise DiscordUnreachable(host, error, attempts)
            say(f"cannot reach Discord at {host} ({error}); trying again in {wait:g} s "
                f"(try {attempt} of {attempts})")
            await sleep(wait)
            wait = min(MAX_BACKOFF_SECONDS, wait * 2)
