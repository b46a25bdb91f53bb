"""A small Prometheus text-format registry (counters, gauges, histograms) and the web middleware
that counts every request of the bot's web server by route, method and status."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _fmt_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)

    def _key(self, labels: dict[str, Any]) -> Labels:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple((n, str(labels[n])) for n in self.label_names)

    def samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}", *self.samples()]
        return "\n".join(lines)


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self.values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: Any) -> float:
        return self.values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        return [f"{self.name}{_fmt_labels(k)} {_fmt_value(v)}" for k, v in sorted(self.values.items())]


class Gauge(Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self.values: dict[Labels, float] = {}

    def set(self, value: float, **labels: Any) -> None:
        self.values[self._key(labels)] = float(value)

    def get(self, **labels: Any) -> float:
        return self.values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        return [f"{self.name}{_fmt_labels(k)} {_fmt_value(v)}" for k, v in sorted(self.values.items())]


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, label_names: Iterable[str] = (), *, buckets: Iterable[float]) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[Labels, list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0.0] * (len(self.buckets) + 2)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                series[i] += 1
        series[-2] += value
        series[-1] += 1

    def count(self, **labels: Any) -> float:
        series = self.series.get(self._key(labels))
        return series[-1] if series else 0.0

    def samples(self) -> list[str]:
        out = []
        for key, series in sorted(self.series.items()):
            for i, bound in enumerate(self.buckets):
                out.append(f"{self.name}_bucket{_fmt_labels(key, (('le', _fmt_value(bound)),))} {_fmt_value(series[i])}")
            out.append(f"{self.name}_bucket{_fmt_labels(key, (('le', '+Inf'),))} {_fmt_value(series[-1])}")
            out.append(f"{self.name}_sum{_fmt_labels(key)} {_fmt_value(series[-2])}")
            out.append(f"{self.name}_count{_fmt_labels(key)} {_fmt_value(series[-1])}")
        return out


Collector = Callable[[], Awaitable[None]]


class Registry:
    """Holds metrics; ``collectors`` refresh gauges (e.g. queue depth from the database) before a scrape."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.collectors: list[Collector] = []

    def register(self, metric: Metric) -> Any:
        existing = self.metrics.get(metric.name)
        if existing is not None:
            return existing
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        return self.register(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
        return self.register(Gauge(name, help_text, labels))

    def histogram(self, name: str, help_text: str, labels: Iterable[str] = (), *, buckets: Iterable[float]) -> Histogram:
        return self.register(Histogram(name, help_text, labels, buckets=buckets))

    def add_collector(self, collector: Collector) -> None:
        self.collectors.append(collector)

    async def render(self) -> str:
        for collector in self.collectors:
            try:
                await collector()
            except Exception:  # a failing collector leaves its gauges stale rather than breaking the scrape
                pass
        return "\n".join(m.render() for m in self.metrics.values()) + "\n"


class HttpMetrics:
    """Requests by route/method/status and their latency, for every route of the web server."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.requests = registry.counter(
            "gatecord_http_requests_total", "HTTP requests answered, by route, method and status", ("route", "method", "status")
        )
        self.latency = registry.histogram(
            "gatecord_http_request_duration_seconds", "Time to answer an HTTP request", ("route", "method"),
            buckets=LATENCY_BUCKETS,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        started = time.perf_counter()
        route = _route_label(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.requests.inc(route=route, method=request.method, status=status)
            self.latency.observe(time.perf_counter() - started, route=route, method=request.method)

    async def metrics_handler(self, request: web.Request) -> web.Response:
        text = await self.registry.render()
        return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


def _route_label(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical
