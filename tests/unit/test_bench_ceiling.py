"""The bench's ceiling is the median of its reads of the backlog, every read kept."""

from __future__ import annotations

import pytest

from bench.ceiling import median_read


def _read(eps: float) -> dict[str, float]:
    return {"eps": eps, "cpu_us_per_event": 1e6 / eps, "events": 600_000}


@pytest.mark.parametrize("order", [(139_811.0, 220_778.0, 189_636.0), (220_778.0, 189_636.0, 139_811.0),
                                   (189_636.0, 139_811.0, 220_778.0)])
def test_the_median_read_whatever_the_order(order: tuple[float, ...]) -> None:
    got = median_read([_read(e) for e in order])
    assert got["eps"] == 189_636.0
    assert got["cpu_us_per_event"] == pytest.approx(1e6 / 189_636.0)  # that read's own CPU figure
    assert got["reads_eps"] == list(order)


def test_one_read_is_its_own_median_and_none_is_an_error() -> None:
    assert median_read([_read(5.0)])["eps"] == 5.0
    assert median_read([_read(1.0), _read(3.0)])["eps"] == 3.0
    with pytest.raises(ValueError):
        median_read([])
