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
    # caught up) the rest waits until ready (the grace from its arrival at 0) and a poll of the
    # viewers made then, and goes in key order
    assert g.pop_ready(now_ms=60) == ["live.viewers@100"]
    g.mark_caught_up("live.viewers", 99)
    assert g.pop_ready(now_ms=120) == []  # a poll before the records were ready proves nothing
    for t in TOPICS[1:]:  # (each queue the merge empties on the way needs it too)
        g.mark_caught_up(t, 100)
    assert g.pop_ready(now_ms=120) == [f"{t}@100" for t in TOPICS[2:]]
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


def _poll_all_but(g: PartitionGroup, topic: str, at_ms: int) -> None:
    for t in TOPICS:
        if t != topic:
            g.mark_caught_up(t, at_ms)


def test_caught_up_topics_hold_a_record_only_for_the_grace() -> None:
    g = PartitionGroup(TOPICS, max_idle_ms=1000, grace_ms=100)
    g.push("live.chat", 100, 0, "chat", now_ms=10)  # ready at its arrival + the grace: 110
    _poll_all_but(g, "live.chat", 5)  # a poll from before the record arrived proves nothing
    assert g.pop_ready(now_ms=150) == []
    _poll_all_but(g, "live.chat", 20)
    assert g.pop_ready(now_ms=150) == []  # a poll before it is ready proves nothing either
    _poll_all_but(g, "live.chat", 110)
    assert g.pop_ready(now_ms=110) == ["chat"]
    assert g.forced == {}
    g.push("live.chat", 200, 1, "chat2", now_ms=120)
    assert g.pop_ready(now_ms=1219) == []  # the polls (at 110) predate it: wait up to max idle
    assert g.pop_ready(now_ms=1220) == ["chat2"]  # max idle after it was ready
    assert g.forced == {}  # nothing was unread: not counted as forced


def test_ready_is_the_grace_after_arrival() -> None:
    assert PartitionGroup(TOPICS, max_idle_ms=1000, grace_ms=50).ready_at(1000) == 1050
    assert PartitionGroup(TOPICS, max_idle_ms=1000, grace_ms=0).ready_at(1000) == 1000
    assert PartitionGroup(TOPICS, max_idle_ms=30, grace_ms=50).ready_at(1000) == 1030  # capped by max idle


def test_nothing_waits_while_every_topic_has_a_head() -> None:
    # every head known: the smallest goes at once, however recently it arrived (and a wall
    # clock that stepped back changes nothing)
    g = PartitionGroup(TOPICS, max_idle_ms=NEVER, grace_ms=10_000)
    for i, t in enumerate(TOPICS):
        g.push(t, 100 + i, 0, f"{t}@{100 + i}", now_ms=5_000)
        g.push(t, 200 + i, 1, f"{t}@{200 + i}", now_ms=5_000)
    assert g.pop_ready(now_ms=0) == [f"{t}@{100 + i}" for i, t in enumerate(TOPICS)] + ["live.room@200"]
    assert len(g) == 5  # live.room ran empty: the rest waits for it (unread)


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
    # pushed at 100 (wall clock), released at 50 (it stepped back): with quiet topics around it
    # nothing goes before it is ready (with every head known nothing waits: see above)
    g = PartitionGroup(TOPICS, max_idle_ms=NEVER, grace_ms=0)
    g.push_many("live.chat", [(10, 0, "chat@10"), (20, 1, "chat@20")], now_ms=100)
    _poll_all_but(g, "live.chat", 100)
    assert g.pop_ready(now_ms=50) == []
    assert g.pop_ready(now_ms=100) == ["chat@10", "chat@20"]


# -- the bulk path: runs taken in one sort must release exactly what head by head would -----


class CountingGroup(PartitionGroup):
    """A partition group that counts what its bulk path released."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.bulk_released = 0

    def _bulk(self, out: list[object]) -> int:
        n = super()._bulk(out)
        self.bulk_released += n
        return n


@st.composite
def operations(draw: st.DrawFn) -> list[tuple]:
    """Pushes of several records (ts going back now and then, the odd far-future head),
    polls, rewinds and releases, with a wall clock that sometimes steps back."""
    ops: list[tuple] = []
    next_offset = {t: 0 for t in TOPICS}
    stream_ts = {t: 0 for t in TOPICS}
    now = 0
    for _ in range(draw(st.integers(5, 60))):
        kind = draw(st.sampled_from(["push", "push", "push", "push", "poll", "pop", "pop", "rewind"]))
        if kind == "push":
            t = draw(st.sampled_from(TOPICS))
            recs = []
            for _ in range(draw(st.integers(1, 8))):
                step = draw(st.one_of(st.integers(0, 20), st.integers(-30, -1), st.just(5 * OUTLIER)))
                ts = max(0, stream_ts[t] + step)
                if step < 5 * OUTLIER:
                    stream_ts[t] = ts
                recs.append((ts, next_offset[t], f"{t}#{next_offset[t]}"))
                next_offset[t] += 1
            ops.append(("push", t, recs, now))
        elif kind == "poll":
            ops.append(("poll", draw(st.sampled_from(TOPICS)), draw(st.one_of(st.none(), st.just(now)))))
        elif kind == "rewind":
            t = draw(st.sampled_from(TOPICS))
            at = draw(st.integers(0, max(0, next_offset[t])))
            ops.append(("rewind", t, at))
            next_offset[t] = at  # read again from there (the records may differ: a new draw)
        else:
            ops.append(("pop", now))
        now = max(0, now + draw(st.one_of(st.integers(0, 40), st.integers(-20, -1))))
    for t in TOPICS:
        ops.append(("poll", t, now + 1000))
    ops.append(("pop", now + 1000))
    return ops


def replay_ops(g: PartitionGroup, ops: list[tuple]) -> list[object]:
    trace: list[object] = []
    for op in ops:
        if op[0] == "push":
            g.push_many(op[1], op[2], now_ms=op[3])
        elif op[0] == "poll":
            g.mark_caught_up(op[1], op[2])
        elif op[0] == "rewind":
            trace.append(("dropped", g.drop_from(op[1], op[2])))
        else:
            trace.append(("released", g.pop_ready(now_ms=op[1])))
        trace.append((len(g), {t: g.queued(t) for t in TOPICS}, dict(g.forced), g.outliers))
    return trace


@settings(max_examples=500, deadline=None)
@given(ops=operations(), grace=st.integers(0, 50), idle=st.sampled_from([60, 200, NEVER]))
def test_bulk_release_is_exactly_the_head_by_head_merge(ops: list[tuple], grace: int, idle: int) -> None:
    bulk = CountingGroup(TOPICS, max_idle_ms=idle, grace_ms=grace, outlier_ms=OUTLIER)
    one_by_one = PartitionGroup(TOPICS, max_idle_ms=idle, grace_ms=grace, outlier_ms=OUTLIER, fast=False)
    assert replay_ops(bulk, ops) == replay_ops(one_by_one, ops)


def test_bulk_path_takes_sorted_runs_and_stops_at_a_descent_or_an_outlier() -> None:
    # every queue holds records: the bulk path releases up to the smallest run end
    g = CountingGroup(TOPICS, max_idle_ms=NEVER, grace_ms=0, outlier_ms=OUTLIER)
    for t in TOPICS:
        g.push_many(t, [(ts, i, f"{t}@{ts}") for i, ts in enumerate((10, 20, 30, 5, 40))], now_ms=0)
        g.mark_caught_up(t, 0)
    out = g.pop_ready(now_ms=0)
    # each queue is a run 10, 20, 30, then one 5, 40 (ts went back): the first sort takes every
    # key up to the room's 30 (the smallest run end: rank 0); then the room's next run starts
    # with its 5, which goes before every other 30, and so on topic by topic
    assert out == ([f"{t}@{ts}" for ts in (10, 20) for t in TOPICS]
                   + [f"{t}@{ts}" for t in TOPICS for ts in (30, 5)]
                   + [f"{t}@40" for t in TOPICS])
    assert g.bulk_released >= 13
    # a bulk release ends where a queue runs out (then head by head: an empty queue's rules)
    h = CountingGroup(TOPICS, max_idle_ms=NEVER, grace_ms=0, outlier_ms=OUTLIER)
    for t in TOPICS:
        h.push_many(t, [(10, 0, f"{t}@10"), (20, 1, f"{t}@20")] + ([(30, 2, f"{t}@30")] if t != TOPICS[0] else []),
                    now_ms=0)
        h.mark_caught_up(t, 0)
    assert h.pop_ready(now_ms=0) == [f"{t}@{ts}" for ts in (10, 20, 30) for t in TOPICS if ts < 30 or t != TOPICS[0]]
    assert h.bulk_released == 7  # every 10 and the room's 20: then the room's queue is empty
    # a record that would become a head far ahead of the others keeps the bulk path out: the
    # outlier rule decides, head by head
    f = CountingGroup(TOPICS, max_idle_ms=NEVER, grace_ms=0, outlier_ms=OUTLIER)
    for t in TOPICS:
        mid = (10 * OUTLIER, 1, "far") if t == "live.chat" else (20, 1, f"{t}@20")
        f.push_many(t, [(10, 0, f"{t}@10"), mid, (30, 2, f"{t}@30")], now_ms=0)
        f.mark_caught_up(t, 0)
    out = f.pop_ready(now_ms=0)
    assert out == (["live.room@10", "live.viewers@10", "live.chat@10", "far"]
                   + [f"{t}@10" for t in TOPICS[3:]]
                   + [f"{t}@{ts}" for ts in (20, 30) for t in TOPICS if (t, ts) != ("live.chat", 20)])
    # head by head up to "far" (the outlier goes first); after it, one bulk sort of the rest up
    # to the room's 30 (three 10s, five 20s, the room's 30), then the room's queue is empty
    assert f.bulk_released == 9
