"""Live service figures for the dashboard, read from the app's own Prometheus registry.

Requests/s, latency p50/p99 and the cache hit rate over the last ``window_s`` seconds come
from the difference between two snapshots of the cumulative counters; latency quantiles are
interpolated inside histogram buckets (as Prometheus' ``histogram_quantile`` does), so they
are as fine as the buckets in :data:`liverec.serve.metrics.LATENCY_BUCKETS`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

RECOMMEND = "/v1/recommend"
UNCOUNTED = ("/v1/stats", "/v1/model")  # the dashboard's own polling is not traffic


@dataclass
class Snapshot:
    """Cumulative counts at time ``t``."""

    t: float
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # group -> le -> n
    cache: dict[str, float] = field(default_factory=dict)  # hit / miss -> n


def _group(route: str) -> list[str]:
    if not route.startswith("/v1/") or route.startswith(UNCOUNTED):
        return []
    return ["api", "recommend"] if route == RECOMMEND else ["api"]


def take_snapshot(registry: CollectorRegistry, now: float | None = None) -> Snapshot:
    """The registry's request-latency buckets (grouped: all API routes, recommend) and cache
    lookups, now."""
    snap = Snapshot(time.monotonic() if now is None else now)
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == "liverec_request_seconds_bucket":
                for g in _group(s.labels.get("route", "")):
                    le = float(s.labels["le"])
                    b = snap.buckets.setdefault(g, {})
                    b[le] = b.get(le, 0.0) + s.value
            elif s.name == "liverec_cache_lookups_total":
                snap.cache[s.labels["result"]] = s.value
    return snap


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile (seconds) of cumulative bucket counts, linear within a bucket."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):  # above the last finite bucket: its bound is all we know
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def figures(new: Snapshot, old: Snapshot | None) -> dict:
    """Rates and quantiles between ``old`` and ``new`` (since start when ``old`` is None)."""
    span = new.t - old.t if old is not None else None
    out: dict = {"window_s": None if span is None else round(span, 3)}
    for g in ("api", "recommend"):
        now = new.buckets.get(g, {})
        then = old.buckets.get(g, {}) if old is not None else {}
        delta = {le: n - then.get(le, 0.0) for le, n in now.items()}
        count = delta.get(math.inf, 0.0)
        p50, p99 = quantile(delta, 0.5), quantile(delta, 0.99)
        out[g] = {"requests": int(count),
                  "requests_per_s": None if not span else round(count / span, 2),
                  "p50_ms": None if p50 is None else round(p50 * 1e3, 3),
                  "p99_ms": None if p99 is None else round(p99 * 1e3, 3)}
    hits = new.cache.get("hit", 0.0) - (old.cache.get("hit", 0.0) if old else 0.0)
    misses = new.cache.get("miss", 0.0) - (old.cache.get("miss", 0.0) if old else 0.0)
    out["cache_lookups"] = int(hits + misses)
    out["cache_hit_rate"] = round(hits / (hits + misses), 4) if hits + misses else None
    return out


class StatsWindow:
    """Snapshots taken at each ``/v1/stats`` call; figures over the last ``window_s``."""

    def __init__(self, registry: CollectorRegistry, window_s: float = 10.0) -> None:
        self.registry = registry
        self.window_s = window_s
        self._snaps: deque[Snapshot] = deque(maxlen=256)
        self._lock = threading.Lock()

    def read(self) -> dict:
        """``{"window": figures over the recent window, "total": since the start}``."""
        new = take_snapshot(self.registry)
        with self._lock:
            while len(self._snaps) > 1 and new.t - self._snaps[1].t >= self.window_s:
                self._snaps.popleft()  # keep the newest snapshot at least window_s old
            old = self._snaps[0] if self._snaps else None
            self._snaps.append(new)
        return {"window": figures(new, old), "total": figures(new, None)}
