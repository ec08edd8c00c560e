"""livecue.memory: when the worker gives the allocator's free memory back, and that it can."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from livecue.memory import TrimAfterBurst, malloc_trim, rss_mib


def test_one_trim_per_burst_once_it_is_released() -> None:
    p = TrimAfterBurst(min_burst=1000, min_interval_s=30)
    assert [p.due(q, t) for q, t in [(10, 0), (900, 1), (50, 2)]] == [0, 0, 0], "no burst yet"
    assert [p.due(q, t) for q, t in [(5000, 3), (4000, 4), (600, 5)]] == [0, 0, 0], "not released yet"
    assert p.due(500, 6) == 5000, "a tenth of the peak: trim, and say which peak"
    assert [p.due(q, t) for q, t in [(0, 7), (400, 8), (10, 60)]] == [0, 0, 0], "that burst is done"
    assert p.due(8000, 61) == 0
    assert p.due(100, 62) == 8000, "the next burst, 56 s after the last trim"


def test_bursts_closer_than_the_interval_wait_for_it() -> None:
    p = TrimAfterBurst(min_burst=1000, min_interval_s=30)
    assert p.due(5000, 0) == 0 and p.due(0, 1) == 5000
    assert p.due(5000, 2) == 0 and p.due(0, 3) == 0, "too soon"
    assert p.due(0, 31) == 5000, "the burst still counts once the interval has passed"


@given(st.lists(st.tuples(st.integers(0, 100_000), st.floats(0, 5)), max_size=200))
def test_trims_only_after_a_burst_fell_to_a_tenth_and_never_closer_than_the_interval(
        steps: list[tuple[int, float]]) -> None:
    p = TrimAfterBurst(min_burst=20_000, min_interval_s=30)
    now, peak, trims = 0.0, 0, []
    for queued, dt in steps:
        now += dt
        peak = max(peak, queued)
        got = p.due(queued, now)
        if got:
            assert got == peak >= 20_000 and queued * 10 <= got
            trims.append(now)
            peak = queued
    assert all(b - a >= 30 for a, b in zip(trims, trims[1:]))


def test_this_machine_can_trim_and_read_its_rss() -> None:
    trim = malloc_trim()  # glibc: the worker's image and this machine
    assert trim is not None, "glibc's malloc_trim not found"
    assert trim() in (0, 1)
    rss = rss_mib()
    assert rss is not None and 5 < rss < 10_000
