"""The relay's Prometheus metrics, created on the bot's registry (``bot.app.metrics``).

Names, labels and buckets are the ones the README and dashboards use; keep them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.posts = Counter(
            "gatecord_relay_posts_total", "POST /send-data results (accepted, replayed, rejected reason)",
            ("result",), registry=registry,
        )
        self.deliveries = Counter(
            "gatecord_relay_deliveries_total", "Relay delivery outcomes (delivered, failed, retried)",
            ("outcome",), registry=registry,
        )
        self.delivery_latency = Histogram(
            "gatecord_relay_delivery_latency_seconds", "Seconds from acceptance to delivery in Discord",
            buckets=DELIVERY_BUCKETS, registry=registry,
        )
        self.scheduled = Gauge(
            "gatecord_relay_scheduled_posts",
            "Posts the delivery workers (of every process) have yet to settle; 0 where this process does not deliver",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "gatecord_relay_queue_depth", "Relay posts stored but not yet delivered or failed",
            ("status",), registry=registry,
        )
        self.pruned = Counter(
            "gatecord_relay_pruned_total",
            "Relay rows cleaned by the retention sweep (posts deleted, idempotency keys released)",
            ("what",), registry=registry,
        )
