"""Batch bookkeeping for at-least-once consumption: which offsets may be committed.

The worker receives input records as whole fetched batches, one per topic-partition. Each batch
is one :class:`Batch` here: it counts the records of the batch not yet acknowledged. A record is
acknowledged only once everything it caused (cues, stats, dead letters, and the room state it
changed) has been acknowledged by the broker. The committable offset of a topic-partition is the
end of the longest prefix of fully acknowledged batches (Kafka's "commit the next offset to
read"): never past a batch with an unacknowledged record, whatever order acks come in.

Pure bookkeeping, no Kafka and no clock: the Faust adapter (:mod:`stream.faust_batch`) asks
:meth:`BatchTracker.committable` when Faust commits, and calls :meth:`BatchTracker.revoke` when
partitions are taken away (their batches are dropped unacknowledged: the next owner re-reads
them from the committed offset).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["Batch", "BatchTracker"]

TP = TypeVar("TP", bound=Hashable)


class Batch:
    """One fetched batch of a topic-partition: offsets ``first..last`` and records left to ack."""

    __slots__ = ("tp", "first", "last", "remaining", "dead")

    def __init__(self, tp: Any, first: int, last: int, count: int) -> None:
        self.tp = tp
        self.first = first
        self.last = last
        self.remaining = count
        self.dead = False  # its partition was revoked: acks no longer count

    def __repr__(self) -> str:
        return f"Batch({self.tp!r}, {self.first}..{self.last}, remaining={self.remaining})"


class BatchTracker(Generic[TP]):
    """Per topic-partition queue of batches in fetch order; see the module docstring."""

    def __init__(self) -> None:
        self._batches: dict[TP, deque[Batch]] = {}
        self._committable: dict[TP, int] = {}

    def add(self, tp: TP, first: int, last: int, count: int) -> Batch:
        """Track a new batch (offsets ascending, ``count`` records between first and last)."""
        if count <= 0 or last < first:
            raise ValueError(f"batch of {tp!r}: {count} records at {first}..{last}")
        q = self._batches.get(tp)
        if q is None:
            q = self._batches[tp] = deque()
        elif q and first <= q[-1].last:
            raise ValueError(f"batch of {tp!r} at {first} does not follow {q[-1].last} (rewind first)")
        b = Batch(tp, first, last, count)
        q.append(b)
        return b

    def ack(self, batch: Batch, n: int = 1) -> None:
        """Acknowledge ``n`` records of ``batch`` (ignored once its partition was revoked)."""
        if batch.dead:
            return
        batch.remaining -= n
        if batch.remaining < 0:
            raise ValueError(f"{batch!r} acknowledged more records than it holds")
        if batch.remaining == 0:
            q = self._batches.get(batch.tp)
            if q is not None:
                while q and q[0].remaining == 0:
                    done = q.popleft()
                    self._committable[done.tp] = done.last + 1

    def last_offset(self, tp: TP) -> int | None:
        """The last offset tracked for ``tp`` (None: nothing in flight)."""
        q = self._batches.get(tp)
        return q[-1].last if q else None

    def rewind(self, tp: TP, offset: int) -> int:
        """The consumer went back to ``offset`` on ``tp`` (a seek to the committed offset after a
        rebalance): drop the batches from there on, unacknowledged. Returns records dropped."""
        q = self._batches.get(tp)
        dropped = 0
        while q and q[-1].last >= offset:
            b = q.pop()
            b.dead = True
            dropped += b.remaining
        return dropped

    def committable(self, tp: TP) -> int | None:
        """The offset to commit for ``tp`` (next to read), or None if nothing new is safe."""
        return self._committable.get(tp)

    def tps(self) -> list[TP]:
        """Topic-partitions with a committable offset."""
        return list(self._committable)

    def pending(self, tp: TP) -> int:
        """Records of ``tp`` fetched and not yet acknowledged."""
        q = self._batches.get(tp)
        return sum(b.remaining for b in q) if q else 0

    def revoke(self, tps: Iterable[TP]) -> int:
        """Forget ``tps``: their batches are dropped unacknowledged. Returns records dropped."""
        dropped = 0
        for tp in tps:
            q = self._batches.pop(tp, None)
            if q:
                for b in q:
                    b.dead = True
                    dropped += b.remaining
            self._committable.pop(tp, None)
        return dropped

    def revoke_all(self) -> int:
        return self.revoke(list(self._batches) + list(self._committable))
