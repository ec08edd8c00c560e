"""The worker's processing loop without Kafka: records in, outputs and acks out.

:class:`Processor` sits between the Faust agent (which feeds it raw records and performs the
sends, table writes and acks it asks for) and the pure core. It owns, per input partition,

- the cross-topic :class:`~stream.core.align.Aligner` (canonical event order, bounded wait);
- a cache of room states (Kafka Streams' record cache): a room's state is written to the table
  at most once per flush, not once per event;
- the per-room offsets already applied, so that reprocessing after a crash (events between the
  last commit and the last state flush) is skipped: the state's effects are exactly-once even
  though delivery is at-least-once, and the restored state equals a recomputation.

Nothing here reads a clock: the caller passes ``now_ms`` (processing time in wall-clock ms, the
clock the consumer stamps its polls with; used for the bounded wait only). Nothing here does I/O. A record's *handle* is opaque (the Faust event); handles come back
from :meth:`flush` once everything they caused has been handed out, and only then may the caller
ack them — so Faust never commits an offset whose effects are not in the table and the outputs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.decode import decode_event
from schemas.errors import InvalidEvent
from schemas.events import INPUT_TOPICS, Event
from schemas.outputs import Cue, DeadLetter, RoomStats
from stream.core import RoomState, dump_state, load_state, new_state, state_size, step_many
from stream.core.align import Aligner

__all__ = ["Processor", "Outputs", "Record", "reason_code", "encode_room_value", "decode_room_value"]

log = logging.getLogger(__name__)


def reason_code(reason: str) -> str:
    """A bounded label for a reason: the field part of ``"field: text"``, indices stripped."""
    head, sep, _ = reason.partition(":")
    if not sep:
        return "other"
    base = head.split("[")[0].split(".")[-1] if "[" in head else head
    return base.strip()[:40] or "other"


@dataclass(slots=True)
class Record:
    """One consumed input record waiting in the aligner."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: Event
    handle: Any
    received: float  # monotonic seconds, for the processing-latency metric


@dataclass(slots=True)
class Outputs:
    """What one call asks the caller to do (in this order): send, write, then ack."""

    cues: list[tuple[Cue, float]] = field(default_factory=list)  # (cue, earliest received)
    stats: list[RoomStats] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    table_writes: list[tuple[int, str, bytes]] = field(default_factory=list)  # partition, room, value
    acks: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.cues or self.stats or self.deadletters or self.table_writes or self.acks)


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


class Processor:
    """Per-worker processing state. See the module docstring for the protocol.

    ``playbook_for(room_id)`` returns the room's playbook; ``load_room(room_id)`` returns the
    table's bytes for a room (or None). ``metrics`` is a :class:`stream.metrics.WorkerMetrics`
    (or None in tests).
    """

    def __init__(
        self,
        playbook_for: Callable[[str], Any],
        load_room: Callable[[str], bytes | None],
        max_idle_ms: int,
        grace_ms: int = 100,
        metrics: Any = None,
    ) -> None:
        self._playbook_for = playbook_for
        self._load_room = load_room
        self._max_idle_ms = max_idle_ms
        self._grace_ms = grace_ms
        self._aligners: dict[int, Aligner] = {}
        self._rooms: dict[str, _Room] = {}
        self._released_handles: list[Any] = []
        self._deadletter_handles: list[Any] = []
        self.metrics = metrics

    # -- input -------------------------------------------------------------------------------

    def _aligner(self, partition: int) -> Aligner:
        a = self._aligners.get(partition)
        if a is None:
            a = self._aligners[partition] = Aligner(INPUT_TOPICS, self._max_idle_ms, self._grace_ms)
        return a

    def ingest(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        handle: Any, now_ms: int, received: float, wall_ms: int,
    ) -> DeadLetter | None:
        """Decode one record and queue it for release. Returns a dead letter if it is unusable
        (its handle is then ackable at the next flush)."""
        m = self.metrics
        try:
            event = decode_event(value, key, topic)  # type: ignore[arg-type]
        except InvalidEvent as exc:
            if m:
                m.decode_failure(topic, reason_code(exc.reason))
            self._deadletter_handles.append(handle)
            return DeadLetter.of(topic, partition, offset, key, value, exc.reason, exc.field, wall_ms)
        if m:
            m.consumed(topic, event.type)
        rec = Record(topic, partition, offset, key, value or b"", event, handle, received)
        self._aligner(partition).push(event.room_id, topic, offset, event.ts, rec, now_ms)
        return None

    def mark_caught_up(self, topic: str, partition: int, at_ms: int | None) -> None:
        """A poll at ``at_ms`` found ``topic``'s ``partition`` fully read (None: it is not)."""
        self._aligner(partition).mark_caught_up(topic, at_ms)

    # -- processing --------------------------------------------------------------------------

    def _room(self, room_id: str, partition: int) -> _Room:
        r = self._rooms.get(room_id)
        if r is None:
            raw = self._load_room(room_id)
            if raw is not None:
                offsets, state = decode_room_value(raw)
            else:
                offsets, state = {}, new_state(room_id)
            r = self._rooms[room_id] = _Room(partition, state, offsets)
        return r

    def release(self, now_ms: int, wall_ms: int) -> Outputs:
        """Release what the aligners allow, run it through the core, collect outputs."""
        out = Outputs()
        for partition, aligner in self._aligners.items():
            ready = aligner.pop_ready(now_ms)
            if ready:
                self._process(partition, ready, out, wall_ms)
        return out

    def _process(self, partition: int, records: list[Record], out: Outputs, wall_ms: int) -> None:
        # Group consecutive records by room, preserving the released order within each room.
        by_room: dict[str, list[Record]] = {}
        for rec in records:
            by_room.setdefault(rec.event.room_id, []).append(rec)
        m = self.metrics
        if m:
            m.batch(len(records))
        for room_id, recs in by_room.items():
            room = self._room(room_id, partition)
            offsets = room.offsets
            fresh: list[Record] = []
            for rec in recs:
                if rec.offset <= offsets.get(rec.topic, -1):
                    self._released_handles.append(rec.handle)  # already applied before a restart
                    continue
                offsets[rec.topic] = rec.offset
                fresh.append(rec)
            if not fresh:
                continue
            result = step_many(room.state, [r.event for r in fresh], self._playbook_for(room_id))
            room.state = result.state
            room.dirty = True
            earliest = min(r.received for r in fresh)
            for cue in result.cues:
                out.cues.append((dataclasses.replace(cue, emitted_at=wall_ms), earliest))
            for st in result.stats:
                out.stats.append(dataclasses.replace(st, emitted_at=wall_ms))
            if result.rejected:
                by_event = {id(r.event): r for r in fresh}
                for ev, reason in result.rejected:
                    bad = by_event.get(id(ev))
                    if bad is None:
                        continue
                    if m:
                        m.deadletter(bad.topic, reason_code(reason))
                    out.deadletters.append(DeadLetter.of(
                        bad.topic, bad.partition, bad.offset, bad.key, bad.value, reason, None, wall_ms
                    ))
            self._released_handles.extend(r.handle for r in fresh)

    def flush(self) -> Outputs:
        """Hand out the dirty rooms' table writes and the handles that may now be acked."""
        out = Outputs()
        for room_id, room in self._rooms.items():
            if room.dirty:
                out.table_writes.append((room.partition, room_id, encode_room_value(room.offsets, room.state)))
                room.dirty = False
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
        for p in list(self._aligners):
            if partitions is None or p in partitions:
                dropped += len(self._aligners.pop(p))
        for room_id in [r for r, room in self._rooms.items() if partitions is None or room.partition in partitions]:
            del self._rooms[room_id]
        self._released_handles = []
        self._deadletter_handles = []
        return dropped

    # -- introspection -----------------------------------------------------------------------

    def take_forced(self) -> dict[str, int]:
        """Events released by the max-idle bound since the last call, by the topic waited for."""
        out: dict[str, int] = {}
        for a in self._aligners.values():
            for t, n in a.forced.items():
                out[t] = out.get(t, 0) + n
            a.forced.clear()
        return out

    def pending(self) -> int:
        return sum(len(a) for a in self._aligners.values())

    def active_rooms(self) -> int:
        return len(self._rooms)

    def cache_bytes(self) -> int:
        return sum(state_size(r.state) for r in self._rooms.values())

    def room_state(self, room_id: str) -> RoomState | None:
        r = self._rooms.get(room_id)
        return r.state if r else None
