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
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from livecue.recording import BadLine, Record, iter_lines
from schemas.decode import decode_event
from schemas.errors import InvalidEvent, LiveCueError
from schemas.events import (
    INPUT_TOPICS, TOPIC_ACKS, TOPIC_CUES, TOPIC_DEADLETTER, Event,
)
from schemas.outputs import Ack, Cue

from ._gc import gc_paused

__all__ = ["Inputs", "read_file", "read_records", "read_broker", "ack_of", "cue_of", "SourceError"]

Progress = Callable[[str, int, int], None]


class SourceError(LiveCueError):
    """The inputs cannot be read or name no usable room."""


@dataclass(slots=True)
class Inputs:
    room_id: str
    items: list[tuple[str, int, Event]] = field(default_factory=list)
    cues: list[Cue] | None = None
    acks: list[Ack] = field(default_factory=list)
    deadletters: list[str] = field(default_factory=list)
    lines: int = 0


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


class _Collector:
    def __init__(self, room: str | None) -> None:
        self.room = room
        self.items: dict[str, list[tuple[str, int, Event]]] = {}
        self.cues: list[Cue] = []
        self.acks: list[Ack] = []
        self.dls: list[tuple[str | None, str]] = []

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
            self.items.setdefault(ev.room_id, []).append((topic, ev.ts, ev))
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

    def inputs(self, lines: int, use_cues: bool) -> Inputs:
        room = self.room
        if room is None:
            started = sorted(self.items)
            if len(started) != 1:
                raise SourceError("name a room with --room: " + (
                    "the input holds " + ", ".join(started[:20]) if started else "no room found"))
            room = started[0]
        if room not in self.items:
            raise SourceError(f"no events of room {room!r} found")
        cues = [c for c in self.cues if c.room_id == room] if use_cues else None
        return Inputs(room, self.items[room], cues, [a for a in self.acks if a.room_id == room],
                      [r for k, r in self.dls if k is None or k == room], lines)


def read_file(path: Path | str, room: str | None, progress: Progress | None = None) -> Inputs:
    """One room's inputs from a recording (``livecue record`` / ``simulate --out``); lines of
    ``live.acks`` / ``live.deadletter`` in it count too. Its cues are left to the core (None)."""
    with gc_paused():
        return _read_file(path, room, progress)


def _read_file(path: Path | str, room: str | None, progress: Progress | None) -> Inputs:
    col = _Collector(room)
    size = max(1, Path(path).stat().st_size)
    fast = _FAST.match
    inputs = frozenset(t.encode() for t in INPUT_TOPICS)
    names: dict[bytes, str] = {}
    room_b = None if room is None else room.encode()
    items = col.items
    decode = decode_event
    n = done = 0
    with open(path, "rb") as f:
        for line in f:
            n += 1
            if not n & 0x3FFFF:
                done = f.tell()
                if progress is not None:
                    progress("read", done, size)
            m = fast(line)
            if m is not None and line.endswith(b"}\n"):
                topic_b, key_b = m.group(1, 2)
                if topic_b in inputs:  # the hot path, inlined: one room's input events
                    if room_b is not None and key_b != room_b:
                        continue
                    topic = names.get(topic_b) or names.setdefault(topic_b, topic_b.decode())
                    try:
                        ev = decode(line[m.end():-2], key=key_b, topic=topic)
                    except InvalidEvent as exc:
                        col.dls.append((None if key_b is None else key_b.decode("utf-8", "replace"),
                                        exc.reason))
                        continue
                    lst = items.get(ev.room_id)
                    if lst is None:
                        lst = items[ev.room_id] = []
                    lst.append((topic, ev.ts, ev))
                    continue
                col.add(topic_b.decode(), None if key_b is None else key_b.decode(), line[m.end():-2])
                continue
            for rec in iter_lines([line]):
                if isinstance(rec, BadLine):
                    col.dls.append((None, rec.reason))
                else:
                    col.add(rec.topic, rec.key, rec.value)
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

