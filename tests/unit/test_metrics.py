from __future__ import annotations

from tg_actors.metrics import Histogram, render


def test_histogram_is_cumulative() -> None:
    hist = Histogram(buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 3.0):
        hist.observe(value)
    assert hist.snapshot() == {"buckets": [0.1, 1.0], "counts": [1, 3], "sum": 4.05, "count": 4}


def test_render_prometheus_text() -> None:
    hist = Histogram(buckets=(0.1,))
    hist.observe(0.2)
    text = render(
        {"tg_queue_depth": ("Runs waiting.", 3)},
        {"tg_runs": ("Runs by state.", "state", {"succeeded": 2, "failed": 1})},
        {"tg_lateness_seconds": ("Lateness.", hist.snapshot())},
        {"tg_rows_loaded_total": ("Rows.", 10)},
    )
    assert "# TYPE tg_queue_depth gauge\ntg_queue_depth 3\n" in text
    assert 'tg_runs{state="failed"} 1\ntg_runs{state="succeeded"} 2' in text
    assert 'tg_lateness_seconds_bucket{le="0.1"} 0\ntg_lateness_seconds_bucket{le="+Inf"} 1' in text
    assert "tg_lateness_seconds_count 1" in text and "# TYPE tg_rows_loaded_total counter" in text
