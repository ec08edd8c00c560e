"""bench.common.hist_quantile: quantiles of what a Prometheus histogram observed between two
scrapes, checked against a real prometheus_client histogram and the exact values fed to it."""

from __future__ import annotations

import random

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
