"""bench.common.hist_quantile: quantiles of what a Prometheus histogram observed between two
scrapes, checked against a real prometheus_client histogram and the exact values fed to it."""

from __future__ import annotations

import random
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.common import hist_quantile

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _scrape(reg: CollectorRegistry) -> str:
    return generate_latest(reg).decode()


def test_only_what_was_observed_between_the_scrapes_counts_and_lands_in_its_bucket() -> None:
    reg = CollectorRegistry()
    h = Histogram("lat_seconds", "x", ["kind"], buckets=BUCKETS, registry=reg)
    for _ in range(1000):  # before the first scrape: must not count
        h.labels("a").observe(2.0)
    before = _scrape(reg)
    rnd = random.Random(3)
    values = [rnd.uniform(0.1, 0.25) for _ in range(900)] + [rnd.uniform(0.5, 1.0) for _ in range(100)]
    for i, v in enumerate(values):
        h.labels("ab"[i % 2]).observe(v)  # two label sets, summed
    after = _scrape(reg)
    p50 = hist_quantile(before, after, "lat_seconds", 0.5)
    p99 = hist_quantile(before, after, "lat_seconds", 0.99)
    assert p50 is not None and 0.1 <= p50 <= 0.25
    assert p99 is not None and 0.5 <= p99 <= 1.0
    # linear inside the bucket: half the observations are below the bucket's middle rank
    assert abs(p50 - (0.1 + 0.15 * (500 / 900))) < 1e-9


def test_nothing_observed_is_none_and_past_the_last_bucket_is_its_bound() -> None:
    reg = CollectorRegistry()
    h = Histogram("lat_seconds", "x", buckets=BUCKETS, registry=reg)
    s = _scrape(reg)
    assert hist_quantile(s, s, "lat_seconds", 0.5) is None
    assert hist_quantile("", s, "missing_seconds", 0.5) is None
    h.observe(60.0)
    assert hist_quantile(s, _scrape(reg), "lat_seconds", 0.99) == 2.5


def test_busy_cores_is_the_busy_share_of_the_host_in_cores(monkeypatch: Any) -> None:
    import os

    from bench.common import busy_cores, host_cpu_s

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert busy_cores((10.0, 40.0), (13.0, 44.0)) == 1.5  # 3 of 4 CPU-seconds busy, on 2 cores
    assert busy_cores((10.0, 40.0), (10.0, 40.0)) is None
    a = host_cpu_s()
    x = 0
    for i in range(2_000_000):  # this process busy in between: the host was
        x += i
    b = host_cpu_s()
    assert b[1] > a[1] and b[0] > a[0] and 0 < busy_cores(a, b) <= 2


def test_a_drain_is_polled_fast_at_its_start_and_near_its_end_only() -> None:
    from bench.worker import POLL_S, _next_poll

    assert _next_poll(None, 10.0, 0, 1000) == 0.05  # not begun
    assert _next_poll(10.0, 10.0, 0, 1000) == 0.05
    # 100 events/s so far: 10 s left → slow polls; 0.5 s left → fast, so the end is not
    # interpolated across a poll interval in which the drain had already stopped
    assert _next_poll(10.0, 11.0, 100, 1000) == POLL_S
    assert _next_poll(10.0, 11.0, 100, 50) == 0.05
    assert _next_poll(10.0, 11.0, 100, 2 * POLL_S * 100 + 1) == POLL_S
