"""Small statistics helpers shared by the benchmark scripts (no project imports)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values_ms),
        "mean_ms": (sum(values_ms) / len(values_ms)) if values_ms else None,
        "p50_ms": percentile(values_ms, 50),
        "p95_ms": percentile(values_ms, 95),
        "p99_ms": percentile(values_ms, 99),
        "max_ms": max(values_ms) if values_ms else None,
    }


def sample(values: Sequence[float], limit: int = 20000, seed: int = 1) -> list[float]:
    """At most ``limit`` values, for the JSON and the plots (percentiles use all values)."""
    if len(values) <= limit:
        return [round(v, 3) for v in values]
    return [round(v, 3) for v in random.Random(seed).sample(list(values), limit)]


def rate_timeline(
    timestamps: Sequence[float], start: float, bin_seconds: float = 1.0
) -> dict[str, list[float]]:
    """Events per second in bins of ``bin_seconds`` from ``start``."""
    if not timestamps:
        return {"t": [], "rate": []}
    end = max(timestamps)
    bins = max(1, math.ceil((end - start) / bin_seconds))
    counts = [0] * bins
    for ts in timestamps:
        index = min(bins - 1, max(0, int((ts - start) / bin_seconds)))
        counts[index] += 1
    return {
        "t": [round((i + 1) * bin_seconds, 3) for i in range(bins)],
        "rate": [c / bin_seconds for c in counts],
    }


def cumulative_to_rate(points: Sequence[tuple[float, int]]) -> dict[str, list[float]]:
    """(t, cumulative count) samples to a rate series (events/s between samples)."""
    t: list[float] = []
    rate: list[float] = []
    for (t0, c0), (t1, c1) in zip(points, points[1:], strict=False):
        if t1 > t0:
            t.append(round(t1, 3))
            rate.append((c1 - c0) / (t1 - t0))
    return {"t": t, "rate": rate}


def row(metric: str, value: Any, unit: str = "", target: str | None = None, ok: bool | None = None) -> dict:
    """One line of the results table."""
    return {"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok}
