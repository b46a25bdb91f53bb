"""The bot's Prometheus metrics: one ``CollectorRegistry`` per bot, and values refreshed per scrape.

Never prometheus_client's global default registry: tests build many bots in one process, and two
registrations of one name in a registry fail. Features create their metrics on ``registry``.

A value that needs an async query (e.g. the relay's queue depth, from the database) is a *refresher*,
run just before the text is generated. A refresher that fails or hangs past ``refresh_timeout`` is
logged at warning with the reason and counted in ``gatecord_metrics_collect_errors_total{collector}``;
the scrape still answers with every other metric (that collector's values stay as last refreshed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, generate_latest

log = logging.getLogger(__name__)

REFRESH_TIMEOUT = 5.0

Refresher = Callable[[], Awaitable[None]]


class Metrics:
    def __init__(self, *, refresh_timeout: float = REFRESH_TIMEOUT) -> None:
        self.registry = CollectorRegistry()
        self.refresh_timeout = refresh_timeout
        self._refreshers: dict[str, Refresher] = {}
        self.collect_errors = Counter(
            "gatecord_metrics_collect_errors_total",
            "Scrape-time refreshes that failed (their values were stale in that scrape), by collector",
            ("collector",), registry=self.registry,
        )

    def add_refresher(self, name: str, refresher: Refresher) -> None:
        """Run ``refresher`` before every scrape; ``name`` is its ``collector`` label."""
        if name in self._refreshers:
            raise ValueError(f"a metrics refresher named {name!r} is already registered")
        self._refreshers[name] = refresher
        self.collect_errors.labels(collector=name)  # exported as 0 until the first failure

    async def refresh(self) -> None:
        for name, refresher in self._refreshers.items():
            try:
                await asyncio.wait_for(refresher(), self.refresh_timeout)
            except Exception as exc:
                if isinstance(exc, TimeoutError):
                    reason = f"no answer within {self.refresh_timeout:g} s"
                else:
                    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("metrics: refreshing %s failed (%s); its values are stale in this scrape", name, reason)
                self.collect_errors.labels(collector=name).inc()

    async def render(self) -> bytes:
        """Refresh, then the Prometheus text format (serve it as ``prometheus_client.CONTENT_TYPE_LATEST``)."""
        await self.refresh()
        return generate_latest(self.registry)
