"""Canonical event order of a room, and the cross-topic aligner that restores it.

A room's events arrive on six topics that a consumer may read at different speeds. The core must
see them in one order that depends only on the events, so a worker catching up a backlog decides
exactly like one that kept up, and an offline backtest like both:

    (ts, topic rank, position within its topic)

``live.room`` ranks first so a ``session_start`` precedes everything else at the same ``ts``.

:class:`Aligner` is the bounded-wait merge (the idea of Kafka Streams' ``max.task.idle.ms``):
an event is released once every input topic of its partition has shown it a later-or-equal
event time, or once it has waited ``max_idle_ms`` of *processing* time (passed in by the caller
as ``now_ms``: this module never reads a clock).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.events import INPUT_TOPICS

__all__ = ["TOPIC_RANK", "order_key", "canonical_order", "Aligner", "Pending"]

TOPIC_RANK: Final[dict[str, int]] = {t: i for i, t in enumerate(INPUT_TOPICS)}


def order_key(ts: int, topic: str, seq: int) -> tuple[int, int, int]:
    """Sort key of an event: event time, then topic rank, then its position in that topic."""
    return (ts, TOPIC_RANK.get(topic, len(TOPIC_RANK)), seq)


def canonical_order(items: Iterable[tuple[str, int, Any]]) -> list[Any]:
    """Sort ``(topic, ts, payload)`` items of one source into canonical order.

    ``seq`` is the item's index among the items of the same topic (stable within a topic, as a
    Kafka partition is).
    """
    counters: dict[str, int] = {}
    keyed = []
    for topic, ts, payload in items:
        n = counters.get(topic, 0)
        counters[topic] = n + 1
        keyed.append((order_key(ts, topic, n), payload))
    keyed.sort(key=lambda kv: kv[0])
    return [p for _, p in keyed]


@dataclass(order=True, slots=True)
class Pending:
    """An event waiting in the aligner (ordered by ``key``)."""

    key: tuple[int, int, int]
    arrived_ms: int = field(compare=False)
    topic: str = field(compare=False)
    payload: Any = field(compare=False)


class Aligner:
    """Merges one partition's input topics into canonical order with a bounded wait.

    ``push(topic, offset, ts, payload, now_ms)`` adds a record (``offset`` orders it within its
    topic); ``pop_ready(now_ms)`` returns the payloads that may be released, in order.
    A topic's *frontier* is the largest ``ts`` seen on it. An event at ``ts`` is ready when every
    topic's frontier is ≥ ``ts`` (no earlier event can still arrive, as topics are ts-ordered per
    room), or when it has waited ``max_idle_ms``, or when the caller knows a topic is drained
    (``mark_idle``: fully caught up, nothing more to read right now).
    """

    def __init__(self, topics: Iterable[str], max_idle_ms: int) -> None:
        self.topics = tuple(topics)
        self.max_idle_ms = max_idle_ms
        self._frontier: dict[str, int] = {t: -1 for t in self.topics}
        self._caught_up: dict[str, bool] = {t: False for t in self.topics}
        self._heap: list[Pending] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, topic: str, offset: int, ts: int, payload: Any, now_ms: int) -> None:
        heapq.heappush(self._heap, Pending(order_key(ts, topic, offset), now_ms, topic, payload))
        if ts > self._frontier.get(topic, -1):
            self._frontier[topic] = ts
        self._caught_up[topic] = False

    def mark_caught_up(self, topic: str, caught_up: bool = True) -> None:
        """Tell the aligner ``topic`` has nothing more to read right now (position == end)."""
        self._caught_up[topic] = caught_up

    def _low_watermark(self) -> int:
        lows = [f for t, f in self._frontier.items() if not self._caught_up[t]]
        return min(lows) if lows else 2**63

    def pop_ready(self, now_ms: int) -> list[Any]:
        out = []
        heap = self._heap
        low = self._low_watermark()
        while heap:
            head = heap[0]
            if head.key[0] <= low or now_ms - head.arrived_ms >= self.max_idle_ms:
                out.append(heapq.heappop(heap).payload)
            else:
                break
        return out

    def oldest_wait_ms(self, now_ms: int) -> int:
        """How long the head event has waited (0 when empty)."""
        return now_ms - self._heap[0].arrived_ms if self._heap else 0
