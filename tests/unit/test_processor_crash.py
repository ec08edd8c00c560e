"""The worker's processing layer without a broker: under any interleaving of fetch, process,
flush, broker ack, commit, revoke and crash, a committed offset never runs ahead of the state
written for it, and the final state is applied exactly once (equals a recomputation).

A small model of the broker side: per topic-partition logs, the group's committed offsets, and
the changelog (the table). A worker is a Processor plus a BatchTracker; a crash drops both and a
new worker starts from the committed offsets and the changelog, as a restarted one does.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from livecue.recording import record_of
from livecue.sim.show import generate
from stream.core import dump_state, new_state, step_many
from stream.core.align import canonical_order
from stream.ingest import BatchTracker
from stream.playbook import default_playbook
from stream.processor import Processor, decode_room_value

ROOMS = ["pa", "pb"]
PB = default_playbook()
_EVENTS = sorted(generate(2, ROOMS, "mixed", duration=40.0, rate=6.0), key=lambda e: e.ts)
RECORDS = [record_of(e) for e in _EVENTS]
TOPICS = sorted({r.topic for r in RECORDS})
LOGS = {t: [r for r in RECORDS if r.topic == t] for t in TOPICS}  # one partition


class Raw:
    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self.offset, self.key, self.value = offset, key, value


def expected_state(room: str) -> bytes:
    items = [(r.topic, e.ts, e) for r, e in zip(RECORDS, _EVENTS) if e.room_id == room]
    return dump_state(step_many(new_state(room), canonical_order(items), PB).state)


class World:
    def __init__(self) -> None:
        self.committed = {t: 0 for t in TOPICS}
        self.table: dict[str, bytes] = {}
        self.cues: set[str] = set()
        self.start()

    def start(self) -> None:
        self.proc = Processor(lambda r: PB, self.table.get, max_idle_ms=10**12, grace_ms=0)
        self.tracker: BatchTracker[str] = BatchTracker()
        self.pos = dict(self.committed)
        self.inflight: list[tuple[dict[str, bytes], list[object]]] = []  # flushed, not acked yet

    def fetch(self, t: str, n: int) -> None:
        log = LOGS[t]
        lo = self.pos[t]
        hi = min(lo + n, len(log))
        if lo >= hi:
            return
        recs = [Raw(i, log[i].key_bytes, log[i].value) for i in range(lo, hi)]
        batch = self.tracker.add(t, lo, hi - 1, hi - lo)
        assert not self.proc.ingest_batch(t, 0, recs, batch, 0, 0.0, int(time.time() * 1000))
        self.pos[t] = hi

    def fetch_round(self, n: int) -> None:
        """One fetch round: every topic-partition delivers up to its share of ``n`` records."""
        total = sum(len(v) for v in LOGS.values())
        for t in TOPICS:
            self.fetch(t, max(1, n * len(LOGS[t]) // total))

    def cycle(self, n: int) -> None:
        """The common path: a fetch round, processing, and the broker acknowledging it all."""
        self.fetch_round(n)
        self.process_and_flush()
        while self.inflight:
            self.broker_acks()

    def process_and_flush(self) -> None:
        for t in TOPICS:
            self.proc.mark_caught_up(t, 0, 0 if self.pos[t] == len(LOGS[t]) else None)
        out = self.proc.release(10**13, 0)
        self.cues |= {c.cue_id for c, _ in out.cues}
        flushed = self.proc.flush()
        writes = {room: value for _p, room, value in flushed.table_writes}
        self.inflight.append((writes, flushed.acks))

    def broker_acks(self) -> None:
        """The broker acknowledges the oldest flush's writes: the changelog has them; ack."""
        if not self.inflight:
            return
        writes, handles = self.inflight.pop(0)
        self.table.update(writes)
        for h in handles:
            self.tracker.ack(h)

    def commit(self) -> None:
        for t in TOPICS:
            c = self.tracker.committable(t)
            if c is not None:
                self.committed[t] = max(self.committed[t], c)
        self.check_invariant()

    def check_invariant(self) -> None:
        # every committed record's effect is in the changelog
        for t in TOPICS:
            for i in range(self.committed[t]):
                room = LOGS[t][i].key
                assert room in self.table, f"{t}@{i} committed, room {room} has no state"
                offsets, _state = decode_room_value(self.table[room])
                assert offsets.get(t, -1) >= i, f"{t}@{i} committed before its state was written"

    def crash(self) -> None:
        self.start()  # in-flight writes are lost with the process: never acked, never committed

    def revoke(self) -> None:
        self.proc.revoke({0})
        self.tracker.revoke(TOPICS)
        self.start()


def run_to_end_and_check_state(w: World, n: int) -> None:
    """Fetch rounds of ``n`` records per topic, processed, acknowledged and committed, without
    faults, to the end of every log; then each room's state equals a recomputation."""
    for _ in range(200):
        for t in TOPICS:
            w.fetch(t, n)
        w.process_and_flush()
        while w.inflight:
            w.broker_acks()
        w.commit()
        if all(w.committed[t] == len(LOGS[t]) for t in TOPICS):
            break
    assert all(w.committed[t] == len(LOGS[t]) for t in TOPICS)
    for room in ROOMS:
        assert dump_state(decode_room_value(w.table[room])[1]) == expected_state(room)


OPS = st.one_of(
    st.tuples(st.just("fetch"), st.sampled_from(TOPICS), st.integers(1, 40)),
    st.tuples(st.just("round"), st.just(""), st.integers(5, 120)),
    st.tuples(st.just("cycle"), st.just(""), st.integers(5, 120)),
    st.tuples(st.just("process"), st.just(""), st.just(0)),
    st.tuples(st.just("ack"), st.just(""), st.just(0)),
    st.tuples(st.just("commit"), st.just(""), st.just(0)),
    st.tuples(st.just("crash"), st.just(""), st.just(0)),
    st.tuples(st.just("revoke"), st.just(""), st.just(0)),
)


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(OPS, max_size=80))
def test_any_interleaving_commits_safely_and_applies_each_record_once(ops: list[tuple[str, str, int]]) -> None:
    w = World()
    for op, topic, n in ops:
        {"fetch": lambda: w.fetch(topic, n), "round": lambda: w.fetch_round(n),
         "cycle": lambda: w.cycle(n),
         "process": w.process_and_flush, "ack": w.broker_acks,
         "commit": w.commit, "crash": w.crash, "revoke": w.revoke}[op]()
    run_to_end_and_check_state(w, 50)
    want = set()
    for room in ROOMS:
        items = [(r.topic, e.ts, e) for r, e in zip(RECORDS, _EVENTS) if e.room_id == room]
        want |= {c.cue_id for c in step_many(new_state(room), canonical_order(items), PB).cues}
    assert want <= w.cues and w.cues <= want  # every cue, and only expected ids (re-sends repeat ids)


def test_records_applied_before_a_crash_are_skipped_when_read_again() -> None:
    # the changelog holds the state of every record up to where the chat was read (60 %), the
    # group never committed it: the restarted worker reads it all again and must apply each
    # record once (its rounds mix records the rooms applied with ones they did not)
    w = World()
    for t in TOPICS:
        w.fetch(t, len(LOGS[t]) * 6 // 10 if t == "live.chat" else len(LOGS[t]))
    w.process_and_flush()
    w.broker_acks()
    applied = sum(o + 1 for room in w.table for o in decode_room_value(w.table[room])[0].values())
    assert applied >= 50 and all(w.committed[t] == 0 for t in TOPICS), \
        f"precondition: state of {applied} records written, nothing committed"
    w.crash()
    run_to_end_and_check_state(w, 45)
