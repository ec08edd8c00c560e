"""Canonical event order of a room, and the cross-topic aligner that restores it.

A room's events arrive on six topics that a consumer may read at different speeds. The core must
see them in one order that depends only on the events, so a worker catching up a backlog decides
exactly like one that kept up, and an offline backtest like both:

    (effective ts, topic rank, position within its topic)

``live.room`` ranks first so a ``session_start`` precedes everything else at the same ``ts``.
The *effective* ts of an event is ``max(ts, effective ts of the room's previous event on the same
topic)``: a late event keeps its place in its topic (Kafka's per-partition order), so a room's
events of one topic always reach the core in offset order. That makes "skip what this room has
already processed, by offset" exact after a crash. The core still sees the event's own ``ts``.

:class:`Aligner` is the bounded-wait merge (the idea of Kafka Streams' ``max.task.idle.ms``,
KIP-695): an event is released once no topic of its partition can still deliver an earlier one;
or, when the topics it waits for are caught up (nothing left to read), after a short grace for
records in flight; or, when some of them still have unread records (a worker catching up a
backlog), after at most ``max_idle_ms``. Times are *processing* time passed in by the caller as
``now_ms``: this module never reads a clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.events import INPUT_TOPICS

__all__ = ["TOPIC_RANK", "order_key", "canonical_order", "Aligner", "Pending"]

TOPIC_RANK: Final[dict[str, int]] = {t: i for i, t in enumerate(INPUT_TOPICS)}
_NEVER: Final = -(2**63)  # frontier of a topic a room has not shown yet


def order_key(ts: int, topic: str, seq: int) -> tuple[int, int, int]:
    """Sort key of an event: event time, then topic rank, then its position in that topic."""
    return (ts, TOPIC_RANK.get(topic, len(TOPIC_RANK)), seq)


def canonical_order(items: Iterable[tuple[str, int, Any]]) -> list[Any]:
    """Sort ``(topic, ts, payload)`` items of one source into canonical order.

    The items are one room's, in the order each topic delivered them (as a Kafka partition
    does); an item's position among its topic's items orders it within that topic.
    """
    counters: dict[str, int] = {}
    frontier: dict[str, int] = {}
    keyed = []
    for topic, ts, payload in items:
        n = counters.get(topic, 0)
        counters[topic] = n + 1
        eff = max(ts, frontier.get(topic, ts))
        frontier[topic] = eff
        keyed.append((order_key(eff, topic, n), payload))
    keyed.sort(key=lambda kv: kv[0])
    return [p for _, p in keyed]


@dataclass(order=True, slots=True)
class Pending:
    """An event waiting in the aligner (ordered by ``key``)."""

    key: tuple[int, int, int]
    arrived_ms: int = field(compare=False)
    room: str = field(compare=False)
    payload: Any = field(compare=False)


class Aligner:
    """Merges one partition's input topics into canonical order with a bounded wait.

    ``push(room, topic, offset, ts, payload, now_ms)`` adds a record (``offset`` orders it within
    its topic); ``pop_ready(now_ms)`` returns the payloads that may be released, in order.
    A room's *frontier* on a topic is the effective ts of its latest event there. An event is
    ready when the room's frontier on every topic has reached its effective ts (no earlier event
    of the room can still arrive); or, if the
    topics behind are all caught up (``mark_caught_up``: a poll made after the event arrived found
    position == end offset), once it has waited ``grace_ms``; or, if some topic behind still has unread records, once it has waited
    ``max_idle_ms``. Catching up therefore releases in canonical order unless a topic stalls for
    longer than ``max_idle_ms``, and live traffic waits at most ``grace_ms`` for a quiet topic.
    """

    def __init__(self, topics: Iterable[str], max_idle_ms: int, grace_ms: int = 100) -> None:
        self.topics = tuple(topics)
        self.max_idle_ms = max_idle_ms
        self.grace_ms = min(grace_ms, max_idle_ms)
        self._caught_up: dict[str, int] = {t: -1 for t in self.topics}
        self._room_frontier: dict[tuple[str, str], int] = {}
        self._heap: list[Pending] = []
        #: events released by the max-idle bound while a topic still had unread records, by topic
        self.forced: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, room: str, topic: str, offset: int, ts: int, payload: Any, now_ms: int) -> None:
        rk = (room, topic)
        eff = max(ts, self._room_frontier.get(rk, ts))
        self._room_frontier[rk] = eff
        heapq.heappush(self._heap, Pending(order_key(eff, topic, offset), now_ms, room, payload))

    def forget_room(self, room: str) -> None:
        """Drop a room's per-topic frontiers (bounded memory once a room goes quiet)."""
        for t in self.topics:
            self._room_frontier.pop((room, t), None)

    def mark_caught_up(self, topic: str, at_ms: int | None) -> None:
        """Tell the aligner that a poll at ``at_ms`` found nothing more to read on ``topic``
        (position == end offset); ``None``: it has unread records."""
        self._caught_up[topic] = -1 if at_ms is None else at_ms

    def _blocking(self, head: Pending) -> list[str]:
        """Topics on which the head's room could still deliver an event ordered before it.

        The room's next event on a topic has an effective ts ≥ the room's frontier there (its
        latest effective ts on that topic); at ``f == ts`` it can still deliver ``(ts, its
        rank)``, which sorts first if its rank is lower. A topic the room has not shown yet
        blocks too. Frontiers are the room's own, never the partition's: rooms on a partition
        need not share a clock (a replay of last night's show beside live rooms).
        """
        ts, rank = head.key[0], head.key[1]
        rank_of = TOPIC_RANK
        rf = self._room_frontier
        room = head.room
        out = []
        for t in self.topics:
            f = rf.get((room, t), _NEVER)
            if f < ts or (f == ts and rank_of.get(t, 99) < rank):
                out.append(t)
        return out

    def pop_ready(self, now_ms: int) -> list[Any]:
        out = []
        heap = self._heap
        while heap:
            head = heap[0]
            waited = now_ms - head.arrived_ms
            blocking = self._blocking(head)
            if blocking:
                arrived = head.arrived_ms
                if all(self._caught_up[t] >= arrived for t in blocking):
                    # quiet topics, confirmed by a poll after this event arrived: only records
                    # still in flight from producers can come
                    limit = self.grace_ms
                else:
                    limit = self.max_idle_ms  # a topic with unread records: wait, bounded
                if waited < limit:
                    break
                if limit == self.max_idle_ms:
                    for t in blocking:
                        if self._caught_up[t] < arrived:
                            self.forced[t] = self.forced.get(t, 0) + 1
            out.append(heapq.heappop(heap).payload)
        return out

    def drain(self) -> list[Any]:
        """Remove and return everything, in order (revocation / shutdown)."""
        out = [p.payload for p in sorted(self._heap)]
        self._heap.clear()
        return out

    def oldest_wait_ms(self, now_ms: int) -> int:
        """How long the head event has waited (0 when empty)."""
        return now_ms - self._heap[0].arrived_ms if self._heap else 0
