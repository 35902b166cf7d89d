"""Prometheus text exposition of our few metrics, and a fixed-bucket histogram.

Hand-written because it is tiny and the numbers live in different actors: the Scheduler keeps
the lateness histogram and the queue, DuckDB has the run counts; the Serve app renders them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENESS_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": self.total,
            "count": self.count,
        }


def _value(v: float) -> str:
    return "+Inf" if math.isinf(v) else repr(float(v)) if isinstance(v, float) else str(v)


def _label(value: str) -> str:
    """A label value escaped as the exposition format wants (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(
    gauges: Mapping[str, tuple[str, float]],
    labelled: Mapping[str, tuple[str, str, Mapping[str, float]]],
    histograms: Mapping[str, tuple[str, Mapping[str, object]]],
    counters: Mapping[str, tuple[str, float]] | None = None,
    labelled_counters: Mapping[str, tuple[str, str, Mapping[str, float]]] | None = None,
) -> str:
    """gauges/counters: name -> (help, value); labelled gauges/counters: name -> (help, label,
    {label value: value}); histograms: name -> (help, Histogram.snapshot())."""
    lines: list[str] = []
    for kind, series in (("gauge", gauges), ("counter", counters or {})):
        for name, (text, value) in series.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {_value(value)}"]
    for kind, by_label in (("gauge", labelled), ("counter", labelled_counters or {})):
        for name, (text, label, values) in by_label.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            lines += [
                f'{name}{{{label}="{_label(key)}"}} {_value(v)}'
                for key, v in sorted(values.items())
            ]
    for name, (text, snap) in histograms.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
        bounds: Iterable[float] = snap["buckets"]  # type: ignore[assignment]
        counts: list[int] = snap["counts"]  # type: ignore[assignment]
        for bound, count in zip(bounds, counts, strict=True):
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {snap["count"]}')
        lines += [f"{name}_sum {snap['sum']}", f"{name}_count {snap['count']}"]
    return "\n".join(lines) + "\n"
