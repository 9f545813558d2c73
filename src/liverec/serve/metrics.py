"""Prometheus metrics on a per-app registry (several apps in one process do not clash)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from liverec.serve.errors import StoreUnavailable

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's metrics, registered on their own ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("liverec_request_seconds", "request latency by route",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.responses = Counter("liverec_responses", "responses by route and status",
                                 ["method", "route", "status"], registry=r)
        self.cache = Counter("liverec_cache_lookups", "answer cache lookups", ["result"],
                             registry=r)
        self.cache_hits = self.cache.labels("hit")  # bound once: the hot path skips labels()
        self.cache_misses = self.cache.labels("miss")
        self.batch_size = Histogram("liverec_batch_size", "queries per micro-batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.events = Counter("liverec_events", "events received", ["result"], registry=r)
        self.reloads = Counter("liverec_model_reloads", "successful hot-swaps", registry=r)
        self.stored = Gauge("liverec_events_in_store", "events in the store", registry=r)
        self.store_up = Gauge("liverec_store_up", "1 while the store answers", registry=r)

        self.caches: dict[str, Callable[[], dict[str, int]]] = {}
        r.register(_CacheCollector(self.caches))

    def track_store(self, store) -> None:
        """Report the store's event count and whether it answers, at each scrape (never an
        error: a store that cannot answer reads as NaN events and ``up`` 0)."""
        def count() -> float:
            try:
                return float(store.stats()["events"])
            except StoreUnavailable:
                return float("nan")

        breaker = getattr(store, "breaker", None)
        self.stored.set_function(count)
        self.store_up.set_function(lambda: 1.0 if breaker is None or breaker.up else 0.0)

    def track_cache(self, name: str, stats: Callable[[], dict[str, int]]) -> None:
        """Report a cache's ``bytes``, ``entries`` and ``evictions`` at each scrape."""
        self.caches[name] = stats


class _CacheCollector:
    """``liverec_cache_bytes``/``_entries``/``_evictions_total`` with a ``cache`` label."""

    def __init__(self, caches: dict[str, Callable[[], dict[str, int]]]) -> None:
        self.caches = caches

    def collect(self):
        size = GaugeMetricFamily("liverec_cache_bytes", "bytes held by a cache (estimate)",
                                 labels=["cache"])
        entries = GaugeMetricFamily("liverec_cache_entries", "entries held by a cache",
                                    labels=["cache"])
        evicted = CounterMetricFamily("liverec_cache_evictions", "entries evicted to stay "
                                      "within a cache's byte budget", labels=["cache"])
        for name, stats in list(self.caches.items()):
            s = stats()
            size.add_metric([name], s["bytes"])
            entries.add_metric([name], s["entries"])
            evicted.add_metric([name], s["evictions"])
        yield from (size, entries, evicted)


class MetricsMiddleware:
    """Pure ASGI middleware: latency and status per route template (bounded label set)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - t0)
            self.metrics.responses.labels(method, path, str(status[0])).inc()
