"""The worker's processing loop without Kafka: records in, outputs and acks out.

:class:`Processor` sits between the Faust agent (which feeds it raw records and performs the
sends, table writes and acks it asks for) and the pure core. It owns, per input partition,

- the cross-topic :class:`~stream.core.align.PartitionGroup` (merge by head event time,
  bounded wait; Kafka Streams' model);
- a cache of room states (Kafka Streams' record cache): a room's state is written to the table
  at most once per flush, not once per event;
- the per-room offsets already applied, so that reprocessing after a crash (events between the
  last commit and the last state flush) is skipped: the state's effects are exactly-once even
  though delivery is at-least-once, and the restored state equals a recomputation.

Nothing here reads a clock: the caller passes ``now_ms`` (processing time in wall-clock ms, the
clock the consumer stamps its polls with; used for the bounded wait and the bound on events
dated in the future). Nothing here does I/O. Records arrive as whole fetched batches
(:meth:`Processor.ingest_batch`); a record's *handle* is opaque (its
:class:`~stream.ingest.Batch`); handles come back from :meth:`Processor.flush` once everything
they caused has been handed out, and the caller acks them only after the broker acknowledged
those outputs and state writes — so no committed offset runs ahead of its effects.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson

from schemas.decode import decoder_for
from schemas.errors import InvalidEvent
from schemas.events import INPUT_TOPICS, TOPIC_OF_TYPE, Event
from schemas.outputs import Cue, DeadLetter, RoomStats
from stream.core import RoomState, dump_state, load_state, new_state, snapshot, state_size, step_many
from stream.core.align import TOPIC_RANK, PartitionGroup

__all__ = ["Processor", "StatsThrottle", "Outputs", "Record", "reason_code", "encode_room_value", "decode_room_value"]

log = logging.getLogger(__name__)


def reason_code(reason: str) -> str:
    """A bounded label for a reason: the field part of ``"field: text"``, indices stripped."""
    head, sep, _ = reason.partition(":")
    if not sep:
        return "other"
    base = head.split("[")[0].split(".")[-1] if "[" in head else head
    return base.strip()[:40] or "other"


#: One consumed input record waiting in the merge: the merge's own queue entry, one flat tuple
#: (py-spy: building a slotted object per record was 5 % of a many-room worker)
#: ``(ts, rank, offset, ready_ms, event, topic, value, handle, received)``: the merge key and
#: ready time (:class:`~stream.core.align.PartitionGroup`), the event, its topic, the record's
#: value bytes (for a dead letter if the core rejects the event), the batch handle, and when its
#: batch was received (monotonic seconds, for the processing-latency metric). Neither the
#: consumer's record object nor the key is kept: a catch-up queues ~100k records (1,032 -> 768
#: bytes a record without them; one tuple instead of three nested ones, 112 bytes less again).
#: The key of a decoded event is its ``room_id``, UTF-8 (the decoder checked it).
Record = tuple[int, int, int, int, Event, str, Any, Any, float]
_OFFSET, _EVENT, _TOPIC, _HANDLE = itemgetter(2), itemgetter(4), itemgetter(5), itemgetter(7)
#: the one event type of an input topic that carries one (its consumed count needs no per-record tally)
_ONLY_TYPE: dict[str, str] = {
    t: types[0] for t in INPUT_TOPICS
    if len(types := [et for et, tp in TOPIC_OF_TYPE.items() if tp == t]) == 1}


@dataclass(slots=True)
class Outputs:
    """What one call asks the caller to do (in this order): send, write, then ack."""

    cues: list[tuple[Cue, float]] = field(default_factory=list)  # (cue, earliest received)
    stats: list[RoomStats] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    table_writes: list[tuple[int, str, bytes]] = field(default_factory=list)  # partition, room, value
    table_deletes: list[tuple[int, str]] = field(default_factory=list)  # partition, room (tombstone)
    acks: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.cues or self.stats or self.deadletters or self.table_writes or self.table_deletes
                    or self.acks)


def encode_room_value(offsets: dict[str, int], state: RoomState) -> bytes:
    """Table value: the applied offsets per topic, a newline, then the core's state bytes."""
    return orjson.dumps(offsets) + b"\n" + dump_state(state)


def decode_room_value(data: bytes) -> tuple[dict[str, int], RoomState]:
    head, _, body = data.partition(b"\n")
    return dict(orjson.loads(head)), load_state(body)


@dataclass(slots=True)
class _Room:
    partition: int
    state: RoomState
    offsets: dict[str, int]
    dirty: bool = False
    stored: bool = False  # the table holds a value for it
    seen: float = 0.0  # caller's clock (seconds) when it last had an event


class StatsThrottle:
    """Which rooms' room_stats go out now: a room is *due* once its stats tick passed, and goes
    out when it was not sent within the last ``interval`` (the caller's clock, seconds).

    Work per :meth:`take` is proportional to the rooms it sends and the holds that end, not to
    the rooms due: py-spy of a 1,000-room catch-up put the former scan of every due room, on every
    pump, at ~4 % of the worker. Rooms sent recently are kept in send order, so the oldest send is
    first: ``now`` must not decrease between calls (the worker's is monotonic; a smaller one counts
    as the latest seen). Due rooms not held wait in arrival order."""

    __slots__ = ("interval", "_due", "_ready", "_held", "_last")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._due: set[str] = set()  # tick passed, not sent since
        self._ready: dict[str, None] = {}  # due and not held (arrival order)
        self._held: dict[str, float] = {}  # sent within the interval: when (send order)
        self._last = float("-inf")  # the latest ``now`` a send was stamped with

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, room_id: object) -> bool:
        return room_id in self._due

    def due(self, room_id: str) -> None:
        """The room's stats tick passed: send its stats at the next :meth:`take` it may."""
        if room_id not in self._due:
            self._due.add(room_id)
            if room_id not in self._held:
                self._ready[room_id] = None

    def discard(self, room_id: str) -> None:
        """Not due any more (its stats went out another way, or it left memory); a hold stays."""
        if room_id in self._due:
            self._due.discard(room_id)
            self._ready.pop(room_id, None)

    def forget(self, room_id: str) -> None:
        """Nothing is kept about the room (revoked, removed)."""
        self.discard(room_id)
        self._held.pop(room_id, None)

    def take(self, now: float, present: Callable[[str], bool]) -> list[str]:
        """The due rooms that may be sent at ``now`` and for which ``present`` holds, marked
        sent at ``now``; due rooms that may be sent but are not present are no longer due."""
        if now < self._last:
            now = self._last
        held = self._held
        if held:  # kept in send order, oldest first: the holds that ended are a prefix
            due, ready, interval = self._due, self._ready, self.interval
            ended = []
            for room_id, at in held.items():
                if now - at < interval:
                    break
                ended.append(room_id)
            for room_id in ended:
                del held[room_id]
                if room_id in due:
                    ready[room_id] = None
        if not self._ready:
            return []
        out = list(self._ready)
        self._ready = {}
        self._due.difference_update(out)
        sent = [room_id for room_id in out if present(room_id)]
        for room_id in sent:
            held[room_id] = now
        if sent:
            self._last = now
        return sent


class Processor:
    """Per-worker processing state. See the module docstring for the protocol.

    ``playbook_for(room_id)`` returns the room's playbook; ``load_room(room_id)`` returns the
    table's bytes for a room (or None). ``metrics`` is a :class:`stream.metrics.WorkerMetrics`
    (or None in tests). ``max_future_ms``: an event dated further than this ahead of the
    worker's wall clock is dead-lettered before it reaches the merge or any room state.
    """

    def __init__(
        self,
        playbook_for: Callable[[str], Any],
        load_room: Callable[[str], bytes | None],
        max_idle_ms: int,
        grace_ms: int = 50,
        metrics: Any = None,
        max_future_ms: int = 300_000,
        max_rooms: int = 10_000,
        ended_retention_s: float = 3600.0,
        stats_interval_s: float = 1.0,
    ) -> None:
        self._playbook_for = playbook_for
        self._load_room = load_room
        self._max_idle_ms = max_idle_ms
        self._grace_ms = grace_ms
        self._max_future_ms = max_future_ms
        self._groups: dict[int, PartitionGroup] = {}
        self._decoders: dict[str, Callable[[Any, Any], Event]] = {}
        self._rooms: dict[str, _Room] = {}
        self._released_handles: list[Any] = []
        self._deadletter_handles: list[Any] = []
        #: a room's room_stats go out at most once per this many seconds (the caller's clock)
        self._stats = StatsThrottle(stats_interval_s)
        self._junk: list[str] = []
        self._now = 0.0
        #: rooms kept decoded in memory (least recently used clean rooms are evicted past it)
        self.max_rooms = max_rooms
        #: wall seconds after which an ended session's room is removed from the table
        self.ended_retention_s = ended_retention_s
        self.evicted = 0
        self.expired = 0
        self.metrics = metrics

    # -- input -------------------------------------------------------------------------------

    def _group(self, partition: int) -> PartitionGroup:
        g = self._groups.get(partition)
        if g is None:
            g = self._groups[partition] = PartitionGroup(INPUT_TOPICS, self._max_idle_ms, self._grace_ms,
                                                         whole=True)
        return g

    def ingest_batch(
        self, topic: str, partition: int, records: Sequence[Any], handle: Any,
        now_ms: int, received: float, wall_ms: int,
    ) -> list[DeadLetter]:
        """Decode one fetched batch (objects with ``offset``, ``key``, ``value``, in offset order)
        and queue its events for release. Returns the dead letters of unusable records (their
        handles are ackable at the next flush)."""
        decode = self._decoders.get(topic)
        if decode is None:
            decode = self._decoders[topic] = decoder_for(topic)
        horizon = wall_ms + self._max_future_ms
        dls: list[DeadLetter] = []
        m = self.metrics
        rank = TOPIC_RANK[topic]
        group = self._group(partition)
        # ready for the merge: grace_ms after arrival, whatever the producer stamped (see
        # PartitionGroup.ready_at and the module docstring of stream.core.align)
        ready = group.ready_at(now_ms)
        # queue entries built here, once per record (the merge's own form: see push_entries)
        entries: list[Record] = []
        append = entries.append
        for r in records:
            offset, value = r.offset, r.value
            try:
                event = decode(value, r.key)
                ts = event.ts
                if ts > horizon:
                    raise InvalidEvent(
                        f"ts: more than {self._max_future_ms // 1000} s ahead of the worker's clock", "ts")
            except InvalidEvent as exc:
                if m:
                    m.decode_failure(topic, reason_code(exc.reason))
                self._deadletter_handles.append(handle)
                dls.append(DeadLetter.of(topic, partition, offset, r.key, value, exc.reason, exc.field, wall_ms))
                continue
            append((ts, rank, offset, ready, event, topic, value, handle, received))
        if entries:
            group.push_entries(topic, entries)
            if m:
                only = _ONLY_TYPE.get(topic)  # one event type on this topic: no per-record count
                counts = {only: len(entries)} if only is not None else Counter(e[4].type for e in entries)
                for etype, n in counts.items():
                    m.consumed(topic, etype, n)
        return dls

    def mark_caught_up(self, topic: str, partition: int, at_ms: int | None) -> None:
        """A poll at ``at_ms`` found ``topic``'s ``partition`` fully read (None: it is not)."""
        self._group(partition).mark_caught_up(topic, at_ms)

    def rewind(self, topic: str, partition: int, offset: int) -> int:
        """The consumer reads ``topic``/``partition`` again from ``offset``: drop what is queued
        from there (records already applied are skipped by the rooms' applied offsets)."""
        g = self._groups.get(partition)
        return g.drop_from(topic, offset) if g is not None else 0

    def queued(self, topic: str, partition: int) -> int:
        """Events of one topic-partition waiting in the merge (to pause fetching when full)."""
        g = self._groups.get(partition)
        return g.queued(topic) if g is not None else 0

    # -- processing --------------------------------------------------------------------------

    def _room(self, room_id: str, partition: int) -> _Room:
        r = self._rooms.get(room_id)
        if r is None:
            raw = self._load_room(room_id)
            if raw is not None:
                offsets, state = decode_room_value(raw)
            else:
                offsets, state = {}, new_state(room_id)
            r = self._rooms[room_id] = _Room(partition, state, offsets, stored=raw is not None)
        else:  # most recently used last: eviction takes from the front
            del self._rooms[room_id]
            self._rooms[room_id] = r
        return r

    def release(self, now_ms: int, wall_ms: int) -> Outputs:
        """Release what the partition groups allow, run it through the core, collect outputs."""
        self._now = now_ms / 1000.0
        out = Outputs()
        for partition, group in self._groups.items():
            if len(group):
                ready = group.pop_ready(now_ms)
                if ready:
                    self._process(partition, ready, out, wall_ms)
        return out

    def _process(self, partition: int, records: list[Record], out: Outputs, wall_ms: int) -> None:
        # Group by room, preserving the released order within each room.
        by_room: dict[str, list[Record]] = {}
        for rec in records:
            rid = rec[4].room_id
            lst = by_room.get(rid)
            if lst is None:
                by_room[rid] = [rec]
            else:
                lst.append(rec)
        m = self.metrics
        if m:
            m.batch(len(records))
        handles = self._released_handles
        for room_id, recs in by_room.items():
            room = self._room(room_id, partition)
            offsets = room.offsets
            # a topic's records come in offset order: if each topic's first one is past what the
            # room applied, all are (the usual case, checked per topic in C, not per record)
            first = dict(zip(map(_TOPIC, reversed(recs)), map(_OFFSET, reversed(recs))))
            if all(o > offsets.get(t, -1) for t, o in first.items()):
                fresh = recs
                offsets.update(zip(map(_TOPIC, recs), map(_OFFSET, recs)))
            else:
                fresh = []
                for rec in recs:
                    topic, offset = rec[5], rec[2]
                    if offset <= offsets.get(topic, -1):
                        handles.append(rec[7])  # already applied before a restart
                        continue
                    offsets[topic] = offset
                    fresh.append(rec)
                if not fresh:
                    continue
            result = step_many(room.state, list(map(_EVENT, fresh)), self._playbook_for(room_id), snapshots="none")
            room.state = result.state
            room.seen = self._now
            if result.state.max_ts or room.stored:
                room.dirty = True
            else:  # nothing accepted, never stored: a junk room id leaves no state behind
                self._junk.append(room_id)
            if result.cues:
                earliest = min(r[8] for r in fresh)
                for cue in result.cues:
                    out.cues.append((dataclasses.replace(cue, emitted_at=wall_ms), earliest))
            if result.stats:  # a session's final snapshot: sent at once
                out.stats.append(dataclasses.replace(result.stats[-1], emitted_at=wall_ms))
                self._stats.discard(room_id)
            elif result.snapshot_due:
                self._stats.due(room_id)
            if result.rejected:
                by_event = {id(r[4]): r for r in fresh}
                for ev, reason in result.rejected:
                    bad = by_event.get(id(ev))
                    if bad is None:
                        continue
                    topic, offset, value = bad[5], bad[2], bad[6]
                    if m:
                        m.deadletter(topic, reason_code(reason))
                    out.deadletters.append(DeadLetter.of(
                        topic, partition, offset, ev.room_id.encode(), value or b"", reason, None, wall_ms
                    ))
            handles.extend(map(_HANDLE, fresh))
        if m:
            m.released(len(records))

    def take_snapshots(self, now: float, wall_ms: int) -> list[RoomStats]:
        """room_stats of rooms whose stats tick passed, each at most once per ``stats_interval_s``
        (seconds of the caller's clock ``now``): built only when sent, from the room's state."""
        if not self._stats:
            return []
        rooms = self._rooms
        return [snapshot(rooms[room_id].state, self._playbook_for(room_id), wall_ms)
                for room_id in self._stats.take(now, rooms.__contains__)]

    def flush(self, now: float | None = None) -> Outputs:
        """Hand out the dirty rooms' table writes (``None`` value: remove the room) and the
        handles that may now be acked; then keep the room cache bounded: junk rooms (nothing
        ever accepted) are dropped, a session ended more than ``ended_retention_s`` ago (the
        caller's clock ``now``, seconds) is removed from the table, and the least recently used
        clean rooms beyond ``max_rooms`` leave memory (the table keeps them)."""
        out = Outputs()
        rooms = self._rooms
        for room_id in self._junk:
            r = rooms.get(room_id)
            if r is not None and not r.dirty and not r.stored and not r.state.max_ts:
                del rooms[room_id]
        self._junk = []
        for room_id, room in rooms.items():
            if room.dirty:
                out.table_writes.append((room.partition, room_id, encode_room_value(room.offsets, room.state)))
                room.dirty = False
                room.stored = True
        if now is not None:
            expired = [rid for rid, r in rooms.items()
                       if r.state.ended and not r.state.active and now - r.seen >= self.ended_retention_s]
            for rid in expired:
                r = rooms.pop(rid)
                out.table_deletes.append((r.partition, rid))
                self.expired += 1
        while len(rooms) > self.max_rooms:
            rid = next(iter(rooms))
            del rooms[rid]
            self._stats.discard(rid)
            self.evicted += 1
        out.acks = self._released_handles + self._deadletter_handles
        self._released_handles = []
        self._deadletter_handles = []
        return out

    # -- rebalancing -------------------------------------------------------------------------

    def revoke(self, partitions: set[int] | None = None) -> int:
        """Forget everything about ``partitions`` (all when None) without acking: the new owner
        (or this worker after re-assignment) re-reads from the committed offset. Returns the
        number of queued records dropped."""
        dropped = 0
        for p in list(self._groups):
            if partitions is None or p in partitions:
                dropped += len(self._groups.pop(p))
        for room_id in [r for r, room in self._rooms.items() if partitions is None or room.partition in partitions]:
            del self._rooms[room_id]
            self._stats.forget(room_id)
        self._released_handles = []
        self._deadletter_handles = []
        return dropped

    # -- introspection -----------------------------------------------------------------------

    def take_forced(self) -> dict[tuple[str, int], int]:
        """Events released by the max-idle bound since the last call, by the topic-partition
        waited for."""
        out: dict[tuple[str, int], int] = {}
        for p, g in self._groups.items():
            for t, n in g.forced.items():
                out[(t, p)] = n
            g.forced.clear()
        return out

    def pending(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def active_rooms(self) -> int:
        return len(self._rooms)

    def rooms_by_state(self) -> dict[str, int]:
        """Rooms cached in memory by session state: live (a session runs), ended, idle."""
        out = {"live": 0, "ended": 0, "idle": 0}
        for r in self._rooms.values():
            st = r.state
            out["live" if st.active else "ended" if st.ended else "idle"] += 1
        return out

    def cache_bytes(self) -> int:
        return sum(state_size(r.state) for r in self._rooms.values())

    def room_state(self, room_id: str) -> RoomState | None:
        r = self._rooms.get(room_id)
        return r.state if r else None
