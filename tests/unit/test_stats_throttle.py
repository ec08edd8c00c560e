"""StatsThrottle (which rooms' room_stats go out at a pump) equals the plain rule it replaced:
a due room goes out when it was not sent within ``min_interval``; under any sequence of ticks,
discards, forgets and takes with a non-decreasing clock."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.processor import StatsThrottle

ROOMS = [f"r{i}" for i in range(6)]


class Plain:
    """The former rule: every due room checked against its last send, at every take."""

    def __init__(self) -> None:
        self.due_set: set[str] = set()
        self.sent: dict[str, float] = {}

    def due(self, room: str) -> None:
        self.due_set.add(room)

    def discard(self, room: str) -> None:
        self.due_set.discard(room)

    def forget(self, room: str) -> None:
        self.due_set.discard(room)
        self.sent.pop(room, None)

    def take(self, now: float, min_interval: float, present: set[str]) -> list[str]:
        out = []
        for room in sorted(self.due_set):
            if now - self.sent.get(room, -1e18) >= min_interval:
                self.due_set.discard(room)
                if room in present:
                    self.sent[room] = now
                    out.append(room)
        return out


room = st.sampled_from(ROOMS)
op = st.one_of(
    st.tuples(st.just("due"), room),
    st.tuples(st.just("discard"), room),
    st.tuples(st.just("forget"), room),
    # clock step (0 repeats the last instant; steps land exactly on the interval's edge), rooms
    # present in memory
    st.tuples(st.just("take"), st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]), st.frozensets(room, min_size=4)),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1.0, 0.5]), st.lists(op, max_size=80))
def test_same_rooms_sent_as_the_plain_rule(interval: float, ops: list[tuple[Any, ...]]) -> None:
    fast, plain = StatsThrottle(interval), Plain()
    now = 100.0
    takes = sent = 0
    for o in ops:
        if o[0] == "take":
            now += o[1]
            got = fast.take(now, o[2].__contains__)
            want = plain.take(now, interval, set(o[2]))
            assert sorted(got) == want, (o, now)
            assert len(set(got)) == len(got)
            takes += 1
            sent += len(got)
        else:
            getattr(fast, o[0])(o[1])
            getattr(plain, o[0])(o[1])
        assert len(fast) == len(plain.due_set)
        assert all((r in fast) == (r in plain.due_set) for r in ROOMS)


def test_a_held_room_waits_for_its_interval_then_goes_out_once() -> None:
    t = StatsThrottle(1.0)
    t.due("a")
    t.due("b")
    assert t.take(10.0, lambda r: True) == ["a", "b"]  # arrival order
    t.due("a")
    assert t.take(10.5, lambda r: True) == []  # sent 0.5 s ago: held
    assert "a" in t and len(t) == 1
    assert t.take(11.0, lambda r: True) == ["a"]  # the interval passed
    assert t.take(20.0, lambda r: True) == []  # not due again: nothing
    t.due("b")
    t.forget("b")
    assert t.take(30.0, lambda r: True) == [] and len(t) == 0


def test_a_clock_that_goes_back_counts_as_the_latest_seen() -> None:
    t = StatsThrottle(1.0)
    t.due("a")
    assert t.take(10.0, lambda r: True) == ["a"]
    t.due("a")
    assert t.take(5.0, lambda r: True) == []  # taken as 10.0: still held
    t.due("b")
    assert t.take(5.0, lambda r: True) == ["b"]  # sent "at 10.0"
    t.forget("a")
    t.due("b")
    assert t.take(10.5, lambda r: True) == []  # held until 11.0, not 6.0
    assert t.take(11.0, lambda r: True) == ["b"]


def test_a_forgotten_room_is_not_held() -> None:
    t = StatsThrottle(1.0)
    for r in ("a", "b"):
        t.due(r)
    assert t.take(10.0, lambda r: True) == ["a", "b"]
    t.forget("a")  # revoked, then assigned again: its first stats go out at once
    t.due("a")
    t.due("b")
    assert t.take(10.25, lambda r: True) == ["a"]
    t.discard("b")  # a discard keeps the hold
    t.due("b")
    assert t.take(10.5, lambda r: True) == []
    assert t.take(11.0, lambda r: True) == ["b"]


def test_a_room_not_in_memory_is_dropped_not_marked_sent() -> None:
    t = StatsThrottle(1.0)
    t.due("gone")
    assert t.take(10.0, lambda r: False) == []
    assert len(t) == 0
    t.due("gone")  # back in memory at once: not held, since nothing was sent
    assert t.take(10.1, lambda r: True) == ["gone"]
