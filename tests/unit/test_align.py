"""The aligner restores canonical order whatever the interleaving of topics (catch-up == paced)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.align import Aligner, canonical_order, order_key

TOPICS = ("live.room", "live.viewers", "live.chat", "live.likes", "live.cart", "live.orders")


def test_order_key_puts_room_topic_first_at_equal_ts() -> None:
    assert order_key(5, "live.room", 9) < order_key(5, "live.chat", 0)
    assert order_key(4, "live.orders", 0) < order_key(5, "live.room", 0)


def test_late_event_keeps_its_place_in_its_topic() -> None:
    items = [("live.chat", 10, "c10"), ("live.chat", 3, "c3-late"), ("live.likes", 5, "l5")]
    assert canonical_order(items) == ["l5", "c10", "c3-late"]


def test_event_waits_for_lagging_topic_until_max_idle() -> None:
    a = Aligner(TOPICS, max_idle_ms=300, grace_ms=100)
    for t in TOPICS[1:]:
        a.push("r", t, 0, 100, f"{t}@100", now_ms=0)
    a.push("r", "live.chat", 1, 200, "chat@200", now_ms=0)
    # live.room has shown nothing: nothing may go yet (it could still deliver ts < 100)
    assert a.pop_ready(now_ms=50) == []
    a.push("r", "live.room", 0, 150, "room@150", now_ms=60)
    released = a.pop_ready(now_ms=60)
    # Only viewers@100 is settled: every other topic has reached ts 100, and live.room is past it.
    # chat@100 is not: live.viewers (lower rank) could still deliver another event at ts 100.
    assert released == ["live.viewers@100"]
    assert a.pop_ready(now_ms=299) == []
    # max idle, counted from each head's arrival: the @100 events arrived at 0 ...
    assert a.pop_ready(now_ms=300) == [f"{t}@100" for t in TOPICS[2:]]
    # ... room@150 at 60 (it still waits: viewers' frontier is 100 < 150), chat@200 behind it.
    assert a.pop_ready(now_ms=359) == []
    assert a.pop_ready(now_ms=360) == ["room@150", "chat@200"]


def test_caught_up_topics_do_not_hold_events_after_grace() -> None:
    a = Aligner(TOPICS, max_idle_ms=1000, grace_ms=100)
    a.push("r", "live.chat", 0, 100, "chat", now_ms=0)
    for t in TOPICS:
        if t != "live.chat":
            a.mark_caught_up(t, at_ms=-5)  # a poll from before the event arrived proves nothing
    assert a.pop_ready(now_ms=150) == []
    for t in TOPICS:
        if t != "live.chat":
            a.mark_caught_up(t, at_ms=20)
    assert a.pop_ready(now_ms=50) == []  # grace for records still in flight
    assert a.pop_ready(now_ms=100) == ["chat"]
    a.push("r", "live.chat", 1, 200, "chat2", now_ms=100)
    a.mark_caught_up("live.likes", None)  # likes has unread records again: wait up to max idle
    assert a.pop_ready(now_ms=300) == []
    assert a.pop_ready(now_ms=1100) == ["chat2"]


@st.composite
def per_topic_streams(draw: st.DrawFn) -> list[tuple[str, int, int, str]]:
    """Random events for one room: (topic, offset, ts, label), each topic in offset order."""
    out = []
    for topic in TOPICS:
        n = draw(st.integers(0, 8))
        tss = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
        out.extend((topic, i, ts, f"{topic}#{i}") for i, ts in enumerate(tss))
    return out


@settings(max_examples=200, deadline=None)
@given(events=per_topic_streams(), data=st.data())
def test_any_arrival_interleaving_releases_canonical_order(
    events: list[tuple[str, int, int, str]], data: st.DataObject
) -> None:
    # Arrival: topics interleaved arbitrarily, each topic in its own offset order.
    queues = {t: [e for e in events if e[0] == t] for t in TOPICS}
    a = Aligner(TOPICS, max_idle_ms=10**9, grace_ms=10**9)
    released: list[str] = []
    while any(queues.values()):
        t = data.draw(st.sampled_from([t for t in TOPICS if queues[t]]))
        topic, offset, ts, label = queues[t].pop(0)
        a.push("r", topic, offset, ts, label, now_ms=0)
        released += a.pop_ready(now_ms=0)
    released += a.drain()
    expected = canonical_order([(t, ts, label) for t, _o, ts, label in events])
    assert released == expected


@settings(max_examples=150, deadline=None)
@given(a=per_topic_streams(), b=per_topic_streams(), shift=st.integers(-100, 100), data=st.data())
def test_rooms_with_unrelated_clocks_each_get_their_canonical_order(
    a: list[tuple[str, int, int, str]], b: list[tuple[str, int, int, str]], shift: int,
    data: st.DataObject,
) -> None:
    # Two rooms share the partition; room B's clock is shifted (a replay beside a live room).
    rooms = {"A": a, "B": [(t, o, ts + shift, label) for t, o, ts, label in b]}
    # Each topic delivers both rooms' records interleaved arbitrarily, each room in its own order.
    queues: dict[str, list[tuple[str, int, str]]] = {}
    for t in TOPICS:
        qa = [("A", ts, f"A:{lab}") for tt, _o, ts, lab in rooms["A"] if tt == t]
        qb = [("B", ts, f"B:{lab}") for tt, _o, ts, lab in rooms["B"] if tt == t]
        merged = []
        while qa or qb:
            src = qa if (qa and (not qb or data.draw(st.booleans()))) else qb
            merged.append(src.pop(0))
        queues[t] = merged
    al = Aligner(TOPICS, max_idle_ms=10**9, grace_ms=10**9)
    offsets = {t: 0 for t in TOPICS}
    released: list[str] = []
    while any(queues.values()):
        t = data.draw(st.sampled_from([t for t in TOPICS if queues[t]]))
        room, ts, label = queues[t].pop(0)
        al.push(room, t, offsets[t], ts, label, now_ms=0)
        offsets[t] += 1
        released += al.pop_ready(now_ms=0)
    released += al.drain()
    for name, evs in rooms.items():
        mine = [x for x in released if x.startswith(name + ":")]
        assert mine == [f"{name}:{lab}" for lab in canonical_order([(t, ts, lab) for t, _o, ts, lab in evs])]
