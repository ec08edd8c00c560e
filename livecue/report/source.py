"""Where a review's inputs come from: a JSONL recording, or the topics of a running deployment.

Both give an :class:`Inputs`: one room's decoded input events as ``(topic, ts, event)`` in the
order each topic delivered them, plus whatever the file or the broker holds of ``live.cues``,
``live.acks`` and ``live.deadletter`` for that room. Records of other rooms are skipped by key
before they are decoded, so a many-room recording costs little per foreign line.

From the broker, every partition of the ten topics is *assigned* (no consumer group: Tansu forms
groups slowly) and read from the beginning up to the high watermark that the first fetch of each
partition reported (not ListOffsets: Tansu's answer to it can lag behind the log's real end).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from livecue.recording import BadLine, Record, iter_lines
from schemas.decode import MAX_EVENT_BYTES, decode_event
from schemas.errors import InvalidEvent, LiveCueError
from schemas.events import (
    INPUT_TOPICS, TOPIC_ACKS, TOPIC_CUES, TOPIC_DEADLETTER, TOPIC_OF_TYPE, Event,
)
from schemas.outputs import Ack, Cue
from stream.core.align import TOPIC_RANK, canonical_order

from ._gc import gc_paused

__all__ = ["Inputs", "read_file", "read_records", "read_broker", "ack_of", "cue_of", "SourceError"]

Progress = Callable[[str, int, int], None]


class SourceError(LiveCueError):
    """The inputs cannot be read or name no usable room."""


@dataclass(slots=True)
class Inputs:
    """One room's decoded input events and what the source holds of its outputs.

    ``events`` are in arrival order (each topic's own order kept); ``keys[i]`` is the merge key
    ``ts * 8 + topic rank`` of ``events[i]``; ``in_order`` says every topic's events came in time
    order (then the canonical order is the stable sort by key). :meth:`ordered` gives the
    canonical order; :attr:`items` the ``(topic, ts, event)`` view that build_report also takes.
    """

    room_id: str
    events: list[Event] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    in_order: bool = True
    cues: list[Cue] | None = None
    acks: list[Ack] = field(default_factory=list)
    deadletters: list[str] = field(default_factory=list)
    lines: int = 0

    @property
    def items(self) -> list[tuple[str, int, Event]]:
        topics = INPUT_TOPICS
        return [(topics[k & 7], k >> 3, ev) for k, ev in zip(self.keys, self.events)]

    def ordered(self) -> list[Event]:
        """The events in canonical order (:func:`stream.core.align.canonical_order`)."""
        return ordered_events(self.events, self.keys, self.in_order)


def ordered_events(events: list[Event], keys: list[int], in_order: bool) -> list[Event]:
    """Canonical order of one room's events given their merge keys (see :class:`Inputs`)."""
    if not in_order:
        topics = INPUT_TOPICS
        return canonical_order([(topics[k & 7], k >> 3, ev) for k, ev in zip(keys, events)])
    n = len(keys)
    if n < 2 or all(a <= b for a, b in zip(keys, itertools.islice(keys, 1, None))):
        return list(events)  # already merged (a recording written in time order)
    import numpy as np

    order = np.argsort(np.fromiter(keys, dtype=np.int64, count=n), kind="stable")
    get = events.__getitem__
    return [get(i) for i in order.tolist()]


class _Room:
    """A room's events as they are read: events and merge keys (see :class:`Inputs`)."""

    __slots__ = ("events", "keys")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.keys: list[int] = []

    def add(self, rank: int, ev: Event) -> None:
        self.events.append(ev)
        self.keys.append(ev.ts * 8 + rank)


def keys_in_order(keys: list[int]) -> bool:
    """Whether every topic's events in ``keys`` (merge keys, arrival order) are in time order."""
    if len(keys) < 2:
        return True
    import numpy as np

    k = np.fromiter(keys, dtype=np.int64, count=len(keys))
    rank = k & 7
    ts = k >> 3
    for r in np.unique(rank).tolist():
        t = ts[rank == r]
        if t.size > 1 and bool((t[1:] < t[:-1]).any()):
            return False
    return True


def ack_of(d: Any) -> Ack | None:
    """An ack from its wire JSON (None when it is not one)."""
    try:
        if d["action"] not in ("ack", "done", "dismiss"):
            return None
        return Ack(str(d["cue_id"]), str(d["room_id"]), d["action"], str(d.get("by") or ""),
                   int(d["ts"]))
    except (KeyError, TypeError, ValueError):
        return None


def cue_of(d: Any) -> Cue | None:
    """A cue from its wire JSON (None when it is not one)."""
    try:
        return Cue(
            cue_id=str(d["cue_id"]), room_id=str(d["room_id"]), session_id=str(d["session_id"]),
            kind=d["kind"], severity=d["severity"], sku_id=d.get("sku_id"),
            target_sku_id=d.get("target_sku_id"), headline=str(d.get("headline", "")),
            detail=str(d.get("detail", "")), evidence=dict(d.get("evidence") or {}),
            ts=int(d["ts"]), emitted_at=int(d.get("emitted_at") or 0),
            texts=dict(d.get("texts") or {}),
        )
    except (KeyError, TypeError, ValueError):
        return None


# `{"topic":"T","key":"K","value":{...}}` as orjson writes it: the value's bytes are sliced out
# without parsing the line twice; anything else goes through loads_line.
_FAST = re.compile(rb'\{"topic":"([a-z_.]+)","key":(?:"([^"\\]*)"|null),"value":')


def _fast_decoders() -> dict[str, tuple[int, dict[str, Callable[[dict[str, Any]], Event | None]]]]:
    """topic -> (its rank, event type -> the generated decoder of :mod:`schemas.decode` for that type
    (a value dict in, the event or None out: None means "let decode_event say what is wrong").
    Private to schemas.decode; tests/unit/test_report_source.py holds the reader that uses them
    equal to decode_event on every event of a show and on bad ones."""
    from schemas.decode import _FAST  # generated per type from schemas.limits

    out: dict[str, tuple[int, dict[str, Callable[[dict[str, Any]], Event | None]]]] = {
        t: (TOPIC_RANK[t], {}) for t in INPUT_TOPICS}
    for etype, fn in _FAST.items():
        if fn is not None:
            out[TOPIC_OF_TYPE[etype]][1][etype] = fn
    return out


class _Collector:
    def __init__(self, room: str | None) -> None:
        self.room = room
        self.rooms: dict[str, _Room] = {}
        self.cues: list[Cue] = []
        self.acks: list[Ack] = []
        self.dls: list[tuple[str | None, str]] = []

    def room_of(self, room_id: str) -> _Room:
        r = self.rooms.get(room_id)
        if r is None:
            r = self.rooms[room_id] = _Room()
        return r

    def add(self, topic: str, key: str | None, value: bytes) -> None:
        room = self.room
        if topic in INPUT_TOPICS:
            if room is not None and key != room:
                return
            try:
                ev = decode_event(value, key=None if key is None else key.encode(), topic=topic)
            except InvalidEvent as exc:
                self.dls.append((key, exc.reason))
                return
            self.room_of(ev.room_id).add(TOPIC_RANK[topic], ev)
        elif topic in (TOPIC_ACKS, TOPIC_CUES, TOPIC_DEADLETTER):
            if room is not None and key is not None and key != room:
                return
            try:
                d = orjson.loads(value)
            except orjson.JSONDecodeError:
                return
            if type(d) is not dict:
                return
            if topic == TOPIC_ACKS:
                a = ack_of(d)
                if a is not None:
                    self.acks.append(a)
            elif topic == TOPIC_CUES:
                c = cue_of(d)
                if c is not None:
                    self.cues.append(c)
            else:
                self.dls.append((d.get("key") if isinstance(d.get("key"), str) else key,
                                 str(d.get("reason") or "?")))

    def add_line(self, line: bytes, names: dict[bytes, str]) -> None:
        """One recording line the fast path did not take: exactly the reading of before."""
        room = self.room
        m = _FAST.match(line)
        if m is not None and line.endswith(b"}\n"):
            topic_b, key_b = m.group(1, 2)
            topic = names.get(topic_b) or names.setdefault(topic_b, topic_b.decode())
            if topic in INPUT_TOPICS:
                if room is not None and key_b != room.encode():
                    return
                try:
                    ev = decode_event(line[m.end():-2], key=key_b, topic=topic)
                except InvalidEvent as exc:
                    self.dls.append((None if key_b is None else key_b.decode("utf-8", "replace"),
                                     exc.reason))
                    return
                self.room_of(ev.room_id).add(TOPIC_RANK[topic], ev)
                return
            self.add(topic, None if key_b is None else key_b.decode(), line[m.end():-2])
            return
        for rec in iter_lines([line]):
            if isinstance(rec, BadLine):
                self.dls.append((None, rec.reason))
            else:
                self.add(rec.topic, rec.key, rec.value)

    def inputs(self, lines: int, use_cues: bool) -> Inputs:
        room = self.room
        if room is None:
            started = sorted(k for k, r in self.rooms.items() if r.events)
            if len(started) != 1:
                raise SourceError("name a room with --room: " + (
                    "the input holds " + ", ".join(started[:20]) if started else "no room found"))
            room = started[0]
        r = self.rooms.get(room)
        if r is None or not r.events:
            raise SourceError(f"no events of room {room!r} found")
        cues = [c for c in self.cues if c.room_id == room] if use_cues else None
        return Inputs(room, r.events, r.keys, keys_in_order(r.keys), cues,
                      [a for a in self.acks if a.room_id == room],
                      [reason for k, reason in self.dls if k is None or k == room], lines)


def read_file(path: Path | str, room: str | None, progress: Progress | None = None) -> Inputs:
    """One room's inputs from a recording (``livecue record`` / ``simulate --out``); lines of
    ``live.acks`` / ``live.deadletter`` in it count too. Its cues are left to the core (None)."""
    with gc_paused():
        return _read_file(path, room, progress)


def _read_file(path: Path | str, room: str | None, progress: Progress | None) -> Inputs:
    """The hot loop. A line is parsed once, whole (orjson), and its value handed to the
    generated decoder of its type; whatever that path does not take (a foreign room's line, a
    line not in the simple shape, an event the generated decoder declines, a key that disagrees)
    goes through :meth:`_Collector.add_line`, the reading of before, which names every problem.
    With ``room`` given, other rooms' lines are skipped by their key before any parsing."""
    col = _Collector(room)
    size = max(1, Path(path).stat().st_size)
    loads = orjson.loads
    JSONDecodeError = orjson.JSONDecodeError
    decoders = _fast_decoders()
    fast_re = _FAST.match
    room_b = None if room is None else room.encode()
    names: dict[bytes, str] = {}
    max_len = MAX_EVENT_BYTES
    slow = col.add_line
    cur: str | None = None  # the room of the last line, and its lists' appends
    ev_add = key_add = None
    n = 0
    with open(path, "rb") as f:
        for line in f:
            n += 1
            if not n & 0x3FFFF and progress is not None:
                progress("read", f.tell(), size)
            if room_b is not None:
                m = fast_re(line)
                if m is not None and m.group(2) != room_b and m.group(1) != b"live.acks" \
                        and m.group(1) != b"live.cues" and m.group(1) != b"live.deadletter":
                    continue  # another room's input line (or a keyless one: not this room's)
            try:
                d = loads(line)
                key = d["key"]
                rank, fns = decoders[d["topic"]]
                v = d["value"]
                fn = fns[v["type"]]
            except (JSONDecodeError, KeyError, TypeError):
                slow(line, names)
                continue
            ev = fn(v) if len(line) <= max_len else None
            if ev is None or ev.room_id != key:
                slow(line, names)
                continue
            if key != cur or ev_add is None or key_add is None:
                if room is not None and key != room:
                    slow(line, names)
                    continue
                r = col.room_of(key)
                cur, ev_add, key_add = key, r.events.append, r.keys.append
            ev_add(ev)
            key_add(ev.ts * 8 + rank)
    if progress is not None:
        progress("read", size, size)
    return col.inputs(n, use_cues=False)


def read_records(records: Iterable[Record], room: str | None) -> Inputs:
    """One room's inputs from records in memory (tests, the reporter)."""
    col = _Collector(room)
    n = 0
    with gc_paused():
        for rec in records:
            n += 1
            col.add(rec.topic, rec.key, rec.value)
    return col.inputs(n, use_cues=True)


async def read_broker(bootstrap: str, room: str, progress: Progress | None = None,
                      *, timeout_s: float = 120.0, security: dict[str, Any] | None = None) -> Inputs:
    """One room's inputs, outputs and acks from the topics, up to their high watermarks now.

    Partitions are assigned, not subscribed. Raises :class:`SourceError` if the broker has none
    of the input topics or reading stalls for ``timeout_s``.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    col = _Collector(room)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest", **(security or {}))
    await consumer.start()
    n = 0
    try:
        with gc_paused():
            topics = INPUT_TOPICS + (TOPIC_CUES, TOPIC_ACKS, TOPIC_DEADLETTER)
            await consumer.topics()  # refresh metadata
            tps = [TopicPartition(t, p) for t in topics
                   for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not any(tp.topic in INPUT_TOPICS for tp in tps):
                raise SourceError("the broker has none of the input topics")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            # The target per partition is the high watermark of the first fetch response that
            # carries one (ListOffsets answers from Tansu can lag behind what a fetch returns).
            targets: dict[Any, int] = {}
            todo = set(tps)
            last = time.monotonic()
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=300, max_records=10_000)
                for tp in todo:
                    if tp not in targets:
                        hw = consumer.highwater(tp)
                        if hw is not None:
                            targets[tp] = hw
                for tp, msgs in batch.items():
                    end = targets.get(tp, 1 << 62)
                    for m in msgs:
                        if m.offset >= end:
                            continue
                        n += 1
                        key = None if m.key is None else m.key.decode("utf-8", "replace")
                        col.add(tp.topic, key, m.value or b"")
                for tp in list(todo):
                    if tp in targets and await consumer.position(tp) >= targets[tp]:
                        todo.discard(tp)
                        consumer.pause(tp)
                if batch:
                    last = time.monotonic()
                    if progress is not None:
                        progress("fetch", n, max(n, sum(targets.values())))
                elif time.monotonic() - last > timeout_s:
                    raise SourceError("reading the topics stalled")
    finally:
        await consumer.stop()
    return col.inputs(n, use_cues=True)

