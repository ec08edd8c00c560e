"""``observe_many`` records exactly what ``n`` calls of ``observe`` record (it adds to
prometheus_client's private sum and buckets: this is the canary for a version that changes them)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from consumers.metrics import observe_many

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _pair() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    ra, rb = CollectorRegistry(), CollectorRegistry()
    return ra, Histogram("h", "h", buckets=BUCKETS, registry=ra), rb, Histogram("h", "h", buckets=BUCKETS, registry=rb)


@given(st.lists(st.tuples(st.sampled_from([0.0, 0.004, 0.005, 0.0051, 0.3, 2.5, 7.0, -1.0]),
                          st.integers(min_value=0, max_value=2000)), max_size=8))
def test_observe_many_equals_n_observations(calls: list[tuple[float, int]]) -> None:
    ra, ha, rb, hb = _pair()
    for amount, n in calls:
        observe_many(ha, amount, n)
        for _ in range(n):
            hb.observe(amount)
    a, b = _samples(ra), _samples(rb)
    assert {k: v for k, v in a.items() if k != "h_sum"} == {k: v for k, v in b.items() if k != "h_sum"}
    assert math.isclose(a["h_sum"], b["h_sum"], rel_tol=1e-9, abs_tol=1e-9)  # n × a vs a + a + …


def _samples(r: CollectorRegistry) -> dict[str, float]:
    """Every sample but the creation time, keyed by name and bucket."""
    out = {}
    for metric in r.collect():
        for s in metric.samples:
            if not s.name.endswith("_created"):
                out[s.name + str(sorted(s.labels.items()))] = s.value
    out["h_sum"] = out.pop("h_sum[]")
    return out


def test_observe_many_without_the_private_fields_makes_the_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    ra, ha, rb, hb = _pair()
    monkeypatch.delattr(ha, "_buckets")
    calls: list[float] = []
    monkeypatch.setattr(ha, "observe", calls.append)
    observe_many(ha, 0.3, 4)
    assert calls == [0.3] * 4
