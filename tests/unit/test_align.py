"""The partition group's merge depends only on what the topics hold, never on fetch timing
(catch-up == paced), and equals each room's canonical order when partitions are time-ordered."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.align import PartitionGroup, canonical_order, order_key

TOPICS = ("live.room", "live.viewers", "live.chat", "live.likes", "live.cart", "live.orders")
NEVER = 10**12  # a max-idle bound no test reaches: a forced release would be a failure
OUTLIER = 1000  # heads dated this far past the stream time go first


def test_order_key_puts_room_topic_first_at_equal_ts() -> None:
    assert order_key(5, "live.room", 9) < order_key(5, "live.chat", 0)
    assert order_key(4, "live.orders", 0) < order_key(5, "live.room", 0)


def test_late_event_keeps_its_place_in_its_topic() -> None:
    items = [("live.chat", 10, "c10"), ("live.chat", 3, "c3-late"), ("live.likes", 5, "l5")]
    assert canonical_order(items) == ["l5", "c10", "c3-late"]


def test_empty_topic_with_unread_records_holds_everything_until_max_idle() -> None:
    g = PartitionGroup(TOPICS, max_idle_ms=300, grace_ms=100)
    for t in TOPICS[1:]:
        g.push(t, 100, 0, f"{t}@100", now_ms=0)
        g.mark_caught_up(t, 0)
    g.mark_caught_up("live.room", None)  # live.room is empty but the broker holds records
    assert g.pop_ready(now_ms=299) == []
    assert g.forced == {}
    g.push("live.room", 150, 0, "room@150", now_ms=60)
    # live.room delivered: the smallest head goes at once; once viewers' queue is empty (it is
    # caught up) the rest waits the grace from its arrival (0), then goes in key order
    assert g.pop_ready(now_ms=60) == ["live.viewers@100"]
    assert g.pop_ready(now_ms=99) == []
    assert g.pop_ready(now_ms=100) == [f"{t}@100" for t in TOPICS[2:]]
    assert g.forced == {}


def test_forced_release_after_max_idle_is_counted() -> None:
    g = PartitionGroup(TOPICS, max_idle_ms=300, grace_ms=100)
    g.push("live.chat", 100, 0, "chat", now_ms=0)
    for t in TOPICS:
        if t != "live.chat":
            g.mark_caught_up(t, 5)
    g.mark_caught_up("live.likes", None)
    assert g.pop_ready(now_ms=0) == []  # the wait begins
    assert g.pop_ready(now_ms=299) == []
    assert g.pop_ready(now_ms=300) == ["chat"]
    assert g.forced == {"live.likes": 1}


def test_max_idle_counts_from_when_the_merge_stood_still_not_from_arrival() -> None:
    # a backlog: records queue for long while the merge works through others; when a topic runs
    # empty with unread records, the merge waits max_idle from then, not from their arrival
    g = PartitionGroup(TOPICS, max_idle_ms=300, grace_ms=100)
    for t in TOPICS:
        g.push(t, 100, 0, f"{t}@100", now_ms=0)
        g.push(t, 200, 1, f"{t}@200", now_ms=0)
        g.mark_caught_up(t, None)
    assert g.pop_ready(now_ms=10_000) == [f"{t}@100" for t in TOPICS] + ["live.room@200"]
    assert g.pop_ready(now_ms=10_299) == []  # live.room ran empty at 10_000
    assert g.forced == {}
    g.push("live.room", 300, 2, "live.room@300", now_ms=10_250)
    # live.room delivered: viewers@200 goes; then viewers is empty with unread records: wait again
    assert g.pop_ready(now_ms=10_299) == ["live.viewers@200"]
    assert g.pop_ready(now_ms=10_598) == []
    # 300 ms after that wait began: forced, and the merge goes on without the stalled topics
    # (KIP-695's enforced processing) until they deliver again
    assert g.pop_ready(now_ms=10_599) == [f"{t}@200" for t in TOPICS[2:]] + ["live.room@300"]
    assert sum(g.forced.values()) >= 1


def test_caught_up_topics_hold_a_record_only_for_the_grace() -> None:
    g = PartitionGroup(TOPICS, max_idle_ms=1000, grace_ms=100)
    g.push("live.chat", 100, 0, "chat", now_ms=10)
    for t in TOPICS:
        if t != "live.chat":
            g.mark_caught_up(t, 5)  # a poll from before the record arrived proves nothing
    assert g.pop_ready(now_ms=150) == []
    for t in TOPICS:
        if t != "live.chat":
            g.mark_caught_up(t, 20)
    assert g.pop_ready(now_ms=100) == []  # grace for records still in flight
    assert g.pop_ready(now_ms=110) == ["chat"]
    assert g.forced == {}
    g.push("live.chat", 200, 1, "chat2", now_ms=120)
    assert g.pop_ready(now_ms=1119) == []  # the polls (at 20) predate it: wait up to max idle
    assert g.pop_ready(now_ms=1120) == ["chat2"]
    assert g.forced == {}  # nothing was unread: not counted as forced


def test_a_far_future_head_goes_at_once_and_does_not_hold_back_its_topic() -> None:
    g = PartitionGroup(TOPICS, max_idle_ms=NEVER, grace_ms=0, outlier_ms=1000)
    for t in TOPICS:
        if t not in ("live.chat", "live.likes"):
            g.mark_caught_up(t, 0)
    g.push("live.likes", 50, 0, "like50", now_ms=0)
    g.push("live.likes", 60, 1, "like60", now_ms=0)
    g.push("live.likes", 70, 2, "like70", now_ms=0)
    g.push("live.chat", 55, 0, "chat55", now_ms=0)
    g.push("live.chat", 10**10, 1, "chat-future", now_ms=0)
    g.push("live.chat", 65, 2, "chat65", now_ms=0)
    g.mark_caught_up("live.chat", 0)
    g.mark_caught_up("live.likes", 0)
    # without the outlier rule chat65 would wait until likes caught up to 10**10
    assert g.pop_ready(now_ms=0) == ["like50", "chat55", "chat-future", "like60", "chat65", "like70"]
    assert g.outliers == 1


@st.composite
def partition_logs(draw: st.DrawFn, rooms: int = 3, sorted_ts: bool = False) -> dict[str, list[tuple[int, str, str]]]:
    """Per topic: the records of one partition in offset order, as (ts, room, label); now and
    then a record dated far in the future (a wrong clock) among them."""
    logs: dict[str, list[tuple[int, str, str]]] = {}
    for topic in TOPICS:
        n = draw(st.integers(0, 12))
        tss = draw(st.lists(st.one_of(st.integers(0, 60), st.just(10**9)) if not sorted_ts
                            else st.integers(0, 60), min_size=n, max_size=n))
        if sorted_ts:
            tss.sort()
        rs = draw(st.lists(st.integers(0, rooms - 1), min_size=n, max_size=n))
        logs[topic] = [(ts, f"R{r}", f"{topic}#{i}") for i, (ts, r) in enumerate(zip(tss, rs))]
    return logs


def offline_merge(logs: dict[str, list[tuple[int, str, str]]]) -> list[str]:
    """The merge with every record at hand (no waiting, no timing), record by record."""
    g = PartitionGroup(TOPICS, max_idle_ms=0, grace_ms=0, outlier_ms=OUTLIER)
    for t, recs in logs.items():
        for i, (ts, _r, label) in enumerate(recs):
            g.push(t, ts, i, label, now_ms=0)
        g.mark_caught_up(t, 0)
    return g.pop_ready(now_ms=0)


def test_offline_merge_of_time_ordered_logs_is_the_sort_by_key() -> None:
    logs = {t: [(ts, "R", f"{t}#{i}") for i, ts in enumerate(range(k, 60, 7))] for k, t in enumerate(TOPICS)}
    keyed = [[(order_key(ts, t, i), label) for i, (ts, _r, label) in enumerate(recs)] for t, recs in logs.items()]
    assert offline_merge(logs) == [label for _, label in heapq.merge(*keyed, key=lambda kv: kv[0])]


def consume(logs: dict[str, list[tuple[int, str, str]]], data: st.DataObject) -> tuple[list[str], PartitionGroup]:
    """Feed the logs in random fetch chunks, polling at random moments, as a worker would: a
    topic-partition counts as caught up only once all its records were fetched."""
    g = PartitionGroup(TOPICS, max_idle_ms=NEVER, grace_ms=data.draw(st.integers(0, 50)), outlier_ms=OUTLIER)
    pos = {t: 0 for t in TOPICS}
    now = 0
    out: list[str] = []
    for t in TOPICS:
        g.mark_caught_up(t, None if logs[t] else 0)
    while any(pos[t] < len(logs[t]) for t in TOPICS):
        t = data.draw(st.sampled_from([t for t in TOPICS if pos[t] < len(logs[t])]))
        k = data.draw(st.integers(1, 5))
        for i in range(pos[t], min(pos[t] + k, len(logs[t]))):
            ts, _room, label = logs[t][i]
            g.push(t, ts, i, label, now_ms=now)
        pos[t] = min(pos[t] + k, len(logs[t]))
        now += data.draw(st.integers(0, 30))
        for u in TOPICS:  # a fetch round answers for every partition: read ones are caught up
            if pos[u] == len(logs[u]):
                g.mark_caught_up(u, now)
        if data.draw(st.booleans()):
            out += g.pop_ready(now_ms=now)
    for _ in range(3):
        now += 100
        for u in TOPICS:
            g.mark_caught_up(u, now)
        out += g.pop_ready(now_ms=now)
    return out, g


@settings(max_examples=300, deadline=None)
@given(logs=partition_logs(), data=st.data())
def test_release_order_depends_only_on_the_logs_not_on_fetch_timing(
    logs: dict[str, list[tuple[int, str, str]]], data: st.DataObject
) -> None:
    out, g = consume(logs, data)
    assert out == offline_merge(logs)
    assert g.forced == {} and len(g) == 0


@settings(max_examples=200, deadline=None)
@given(logs=partition_logs(sorted_ts=True), data=st.data())
def test_time_ordered_partitions_give_each_room_its_canonical_order(
    logs: dict[str, list[tuple[int, str, str]]], data: st.DataObject
) -> None:
    out, _g = consume(logs, data)
    room_of = {label: room for recs in logs.values() for _ts, room, label in recs}
    for room in {r for recs in logs.values() for _ts, r, _l in recs}:
        mine = [x for x in out if room_of[x] == room]
        items = [(t, ts, label) for t, recs in logs.items() for ts, r, label in recs if r == room]
        assert mine == canonical_order(items)


@settings(max_examples=200, deadline=None)
@given(logs=partition_logs())
def test_with_every_queue_holding_records_something_is_always_released(
    logs: dict[str, list[tuple[int, str, str]]]
) -> None:
    # No deadlock: while every topic has a queued record, the smallest head can always go.
    g = PartitionGroup(TOPICS, max_idle_ms=NEVER, grace_ms=NEVER)
    for t, recs in logs.items():
        for i, (ts, _r, label) in enumerate(recs):
            g.push(t, ts, i, label, now_ms=0)
    while all(g.queued(t) for t in TOPICS):
        assert g.pop_ready(now_ms=0), "all queues hold records, yet nothing was released"


def test_drop_from_forgets_the_records_read_again() -> None:
    g = PartitionGroup(TOPICS, max_idle_ms=NEVER, grace_ms=0)
    for i in range(5):
        g.push("live.chat", 10 * i, i, f"c{i}", now_ms=0)
    g.push("live.likes", 5, 0, "l0", now_ms=0)
    assert g.drop_from("live.chat", 3) == 2
    assert len(g) == 4 and g.queued("live.chat") == 3


def test_records_that_arrived_after_now_wait_when_the_clock_stepped_back() -> None:
    # pushed at 100 (wall clock), released at 50 (it stepped back): nothing may go before its
    # arrival
    g = PartitionGroup(TOPICS, max_idle_ms=NEVER, grace_ms=0)
    for t in TOPICS:
        g.push_many(t, [(10, 0, f"{t}@10"), (20, 1, f"{t}@20")], now_ms=100)
        g.mark_caught_up(t, 100)
    assert g.pop_ready(now_ms=50) == []
    assert len(g.pop_ready(now_ms=100)) == 12
