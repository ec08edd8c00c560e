"""Backtest: fold a recording through the pure decision core, with no Kafka.

Per room, each record's value is decoded (with its key and topic checked, as the worker does);
what cannot be used is reported, counted, and skipped, never raised. Each room's events are put
in the canonical order of :func:`stream.core.align.canonical_order` — the order the worker
releases them to the core — and folded through :func:`stream.core.step_many` with a playbook.
Because the core decides on event time only, the cues are the ones the worker emits for the same
records (same ids, same event times), which is what lets a controller tune a playbook on last
night's show. :func:`compare` lists what changes between two playbooks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from livecue.recording import BadLine, Record, iter_lines
from schemas.decode import decode_event
from schemas.errors import InvalidEvent
from schemas.events import INPUT_TOPICS, TOPIC_OF_TYPE, Event, SessionStart
from schemas.outputs import Cue
from stream.core import Playbook, new_state, step_many
from stream.core.align import canonical_order

__all__ = ["Rejected", "BacktestResult", "CueDiff", "run_backtest", "compare"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input the backtest could not use: where it was (line number when known) and why."""

    reason: str
    line_no: int | None = None
    room_id: str | None = None
    topic: str | None = None
    event_id: str | None = None


@dataclass(slots=True)
class BacktestResult:
    """What a recording produced: cues in event-time order, rejected inputs, stats snapshots."""

    cues: list[Cue]
    rejected: list[Rejected]
    stats_count: int
    events: int = 0
    #: room id -> ts of its first event (session start when it has one): offsets are from here
    started: dict[str, int] = field(default_factory=dict)

    def kinds(self) -> Counter[str]:
        return Counter(c.kind for c in self.cues)

    def reasons(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejected)


@dataclass(frozen=True, slots=True)
class CueDiff:
    """Cues of playbook A vs B by cue id: only in A, only in B, in both (as (A's, B's))."""

    only_a: list[Cue]
    only_b: list[Cue]
    both: list[tuple[Cue, Cue]]

    @property
    def changed(self) -> list[tuple[Cue, Cue]]:
        """Same id, but fired at another time or with another severity or text."""
        return [(a, b) for a, b in self.both
                if (a.ts, a.severity, a.headline, a.target_sku_id) != (b.ts, b.severity, b.headline, b.target_sku_id)]


Item = bytes | str | Record | Event


def run_backtest(lines_or_events: Iterable[Item], playbook: Playbook) -> BacktestResult:
    """Run recording lines (JSONL bytes/str), records, or events through the core.

    Never raises for bad input: a bad line or event becomes a :class:`Rejected`.
    """
    rejected: list[Rejected] = []
    per_room: dict[str, list[tuple[str, int, Event]]] = {}
    n_events = 0
    for line_no, item in _numbered(lines_or_events):
        if isinstance(item, BadLine):
            rejected.append(Rejected(item.reason, item.line_no))
            continue
        if isinstance(item, Record):
            if item.topic not in INPUT_TOPICS:
                rejected.append(Rejected(f"topic: {item.topic} is not an input topic", line_no,
                                         item.key, item.topic))
                continue
            try:
                ev = decode_event(item.value, key=item.key_bytes, topic=item.topic)
            except InvalidEvent as exc:
                rejected.append(Rejected(exc.reason, line_no, item.key, item.topic))
                continue
            topic = item.topic
        else:
            ev = item
            topic = TOPIC_OF_TYPE[ev.type]
        n_events += 1
        per_room.setdefault(ev.room_id, []).append((topic, ev.ts, ev))

    cues: list[tuple[int, int, Cue]] = []
    stats = 0
    started: dict[str, int] = {}
    for room_id, items in per_room.items():
        events: list[Event] = canonical_order(items)
        first = next((e.ts for e in events if isinstance(e, SessionStart)), events[0].ts)
        started[room_id] = first
        result = step_many(new_state(room_id), events, playbook)
        for i, cue in enumerate(result.cues):
            cues.append((cue.ts, i, cue))
        stats += len(result.stats)
        for rej in result.rejected:
            rejected.append(_core_rejected(room_id, rej))
    cues.sort(key=lambda x: (x[0], x[2].room_id, x[1]))
    return BacktestResult([c for _, _, c in cues], rejected, stats, n_events, started)


def _numbered(items: Iterable[Item]) -> Iterable[tuple[int | None, Record | BadLine | Event]]:
    n = 0
    for item in items:
        n += 1
        if isinstance(item, (bytes, str)):
            for parsed in iter_lines([item]):
                if isinstance(parsed, BadLine):
                    yield n, BadLine(n, parsed.reason, parsed.text)
                else:
                    yield n, parsed
        else:
            yield (n if isinstance(item, Record) else None), item


def _core_rejected(room_id: str, rej: Any) -> Rejected:
    """The core's own rejections (e.g. an event too far behind the room's time)."""
    event = getattr(rej, "event", None)
    if event is None and isinstance(rej, tuple) and rej:
        event = rej[0]
    reason = getattr(rej, "reason", None)
    if reason is None and isinstance(rej, tuple) and len(rej) > 1:
        reason = rej[1]
    return Rejected(str(reason or rej), None, room_id,
                    TOPIC_OF_TYPE.get(getattr(event, "type", ""), None),
                    getattr(event, "event_id", None))


def compare(a: BacktestResult, b: BacktestResult) -> CueDiff:
    """Cues that differ between two backtests of the same recording, by cue id."""
    ids_a = {c.cue_id: c for c in a.cues}
    ids_b = {c.cue_id: c for c in b.cues}
    return CueDiff(
        [c for c in a.cues if c.cue_id not in ids_b],
        [c for c in b.cues if c.cue_id not in ids_a],
        [(c, ids_b[c.cue_id]) for c in a.cues if c.cue_id in ids_b],
    )
