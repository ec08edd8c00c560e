"""Canonical event order, and the partition group that restores it while consuming.

A room's events arrive on six topics that a consumer reads at different speeds. The core must
see them in an order that depends only on what the topics hold, so that a worker catching up a
backlog decides exactly like one that kept up, and an offline backtest like both.

The order is Kafka Streams' (``PartitionGroup``): per input partition, the six topic-partitions
are merged by the key of their *head* record,

    (ts, topic rank, offset)

always taking the smallest head. ``live.room`` ranks first so a ``session_start`` precedes
everything else at the same ``ts``. A topic-partition's own order (offsets) is never changed.
The merge depends only on the records, never on when they were fetched, provided it never takes
a head while another topic-partition of the group is empty but could still deliver a smaller one
(and at every step the heads are fixed by the records: the merge waits rather than guess):

- empty with unread records (the broker holds more): wait for them, bounded by
  ``max_idle_ms`` counted from when the wait began (KIP-695's ``max.task.idle.ms``: how long the
  merge may stand still, not how long a record has been queued: a backlog's records queue for
  long, legitimately); a release forced by that bound is counted in
  :attr:`PartitionGroup.forced`, the one case where order can depend on timing (a fetch that
  stalls for seconds);
- empty and caught up (nothing more to read): the head waits until it is *ready*, ``grace_ms``
  after it arrived (what was produced before it, on other topic-partitions, has reached the
  broker by then: a producer's ``linger.ms`` plus a produce request, and its retries), and until
  a poll made at or after that moment found the empty topic-partition caught up; then it goes.
  With ``grace_ms`` 0 this is KIP-695 with ``max.task.idle.ms`` 0: no wait for a topic-partition
  the broker has nothing more of. The grace counts from the arrival, not from the producer's
  stamp: what matters is how much later than this record an earlier one may reach the broker,
  and a producer may hold both for long (waiting for metadata when it starts, retrying through
  a leader election): counted from the stamp, such a record was ready at once, and a test that
  produced in bursts saw records of another topic released ahead of earlier ones (2 of 3 runs).

An *outlier*, a head dated more than ``outlier_ms`` past every other head (the heads are fixed
by the records once none is missing), goes first, at once: one record dated far ahead (a wrong
clock; the core then rejects it) must not hold back every later record of its topic-partition
until the others catch up to it, which would make a catch-up and a paced replay decide
differently. A whole partition moving on in time (a show two days after the last) is no outlier:
its heads move together.

When each topic-partition holds its records in time order (a live platform, the simulator, and
``livecue replay``, which produces in time order), the merge of a partition is the sort of its
records by that key, so each room sees its own events sorted by ``(ts, rank, position)``:
:func:`canonical_order` computes exactly that merge for one room's events, offline, for the
backtest. No per-room frontier is kept: an event the core later rejects (far in the future, say)
moves nothing but its own place in the merge.

While every queue of a group holds records, the heads decide alone: nothing waits. That is
most of a catch-up, and there the same merge is done in bulk: each queue's sorted prefix is a
run, and everything up to the smallest run end goes in one sort
(:meth:`PartitionGroup._bulk`); a property test holds it equal to the head-by-head loop.

Times are *processing* time passed in by the caller as ``now_ms``: this module never reads a
clock. Keys are plain tuples and the queues plain deques: this is the worker's per-record path.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from itertools import islice, repeat, starmap
from operator import gt, itemgetter
from typing import Any, Final

from schemas.events import INPUT_TOPICS

__all__ = ["TOPIC_RANK", "order_key", "canonical_order", "PartitionGroup"]

TOPIC_RANK: Final[dict[str, int]] = {t: i for i, t in enumerate(INPUT_TOPICS)}
_UNREAD: Final = -1  # caught_up marker: the topic-partition has unread records (or is unknown)
_FAR_PAST: Final = -(2**62)
_FAR_FUTURE: Final = 2**62
#: A queue entry: one flat tuple ``(ts, rank, offset, ready_ms, payload, ...)``. Its first three
#: fields are the merge key, unique within a group (a topic's rank and an offset name one
#: record), so entries compare as their keys do, in C, and nothing past the key is ever
#: compared. Flat rather than ``(key, ready, payload)``: a catch-up queues ~100k records, and
#: the two nested tuples were 112 of the ~560 bytes each one held (tracemalloc).
Entry = tuple[Any, ...]
_PAYLOAD: Final = itemgetter(4)
_offset: Final = itemgetter(2)


def order_key(ts: int, topic: str, seq: int) -> tuple[int, int, int]:
    """Merge key of a record: event time, then topic rank, then its position in that topic."""
    return (ts, TOPIC_RANK.get(topic, len(TOPIC_RANK)), seq)


def canonical_order(items: Iterable[tuple[str, int, Any]]) -> list[Any]:
    """Merge ``(topic, ts, payload)`` items of one room into the worker's release order.

    The items are in the order each topic delivered them (as a Kafka partition does); an item's
    position among its topic's items is its ``seq``. The result is the head-by-head merge of
    :class:`PartitionGroup` (smallest ``(ts, rank, seq)`` head first, each topic's own order
    kept), which is what a worker releases for this room when its partitions hold their records
    in time order.
    """
    per_topic: dict[str, list[tuple[tuple[int, int, int], Any]]] = {}
    for topic, ts, payload in items:
        lst = per_topic.setdefault(topic, [])
        lst.append((order_key(ts, topic, len(lst)), payload))
    merged = heapq.merge(*per_topic.values(), key=lambda kv: kv[0])
    return [p for _, p in merged]


class PartitionGroup:
    """Merges one partition's input topic-partitions by head key, with a bounded wait.

    ``push(topic, ts, offset, payload, now_ms)`` appends a record that arrived at ``now_ms`` to
    its topic's queue (records of a topic must be pushed in offset order);
    ``mark_caught_up(topic, at_ms)`` says a poll at ``at_ms`` found the topic-partition fully read
    (``None``: it has unread records); ``pop_ready(now_ms)`` returns the payloads that may be
    released, in merge order (with ``whole``, the queue entries themselves: the worker pushes
    its records already in entry form, see :meth:`push_entries`). See the module docstring for
    the rule.
    """

    __slots__ = ("topics", "max_idle_ms", "grace_ms", "outlier_ms", "_queues",
                 "_caught_up", "forced", "outliers", "_n", "_idle_since", "_descents", "fast", "whole")

    def __init__(self, topics: Iterable[str], max_idle_ms: int, grace_ms: int = 50,
                 outlier_ms: int = 3_600_000, fast: bool = True, whole: bool = False) -> None:
        self.topics = tuple(topics)
        self.max_idle_ms = max_idle_ms
        self.grace_ms = min(grace_ms, max_idle_ms)
        self.outlier_ms = outlier_ms
        #: heads released first as outliers (dated far past the stream time)
        self.outliers = 0
        #: when the merge began waiting for a topic-partition with unread records (None: not)
        self._idle_since: int | None = None
        # topic -> deque of entries (ts, rank, offset, ready_ms, payload...): ready_ms from ready_at()
        self._queues: dict[str, deque[Entry]] = {
            t: deque() for t in self.topics}
        self._caught_up: dict[str, int] = {t: _UNREAD for t in self.topics}
        #: records released by the max-idle bound while a topic still had unread records, by topic
        self.forced: dict[str, int] = {}
        self._n = 0
        #: per topic, offsets (ascending) of queued records whose key is below their
        #: predecessor's (their ts went back): where a queue stops being sorted
        self._descents: dict[str, deque[int]] = {t: deque() for t in self.topics}
        #: take sorted runs in bulk when every queue holds records (see _bulk); False: one
        #: head at a time only (the reference the property tests compare it with)
        self.fast = fast
        #: pop_ready / drain return whole entries rather than their payload (entry[4])
        self.whole = whole

    def __len__(self) -> int:
        return self._n

    def queued(self, topic: str) -> int:
        """Records waiting in one topic's queue (the caller pauses fetching when it is full)."""
        return len(self._queues[topic])

    def ready_at(self, now_ms: int) -> int:
        """When a record that arrived at ``now_ms`` is ready to go past quiet topic-partitions."""
        return now_ms + self.grace_ms

    def push(self, topic: str, ts: int, offset: int, payload: Any, now_ms: int) -> None:
        self.push_many(topic, ((ts, offset, payload),), now_ms)

    def push_many(self, topic: str, records: Iterable[tuple[int, int, Any]], now_ms: int) -> None:
        """Append ``(ts, offset, payload)`` records of one topic, in offset order, that arrived at
        ``now_ms``."""
        rank = TOPIC_RANK.get(topic, len(TOPIC_RANK))
        ready = self.ready_at(now_ms)
        self.push_entries(topic, [(ts, rank, offset, ready, payload) for ts, offset, payload in records])

    def push_entries(self, topic: str, entries: list[Entry]) -> None:
        """Append records of one topic, in offset order, already in queue form
        ``(ts, TOPIC_RANK[topic], offset, ready_ms, ...)`` with ``ready_ms`` from
        :meth:`ready_at` and anything after it (the payload at index 4): the worker builds them
        as it decodes a batch, one tuple per record."""
        if not entries:
            return
        q = self._queues[topic]
        # where the queue's keys go down (a ts earlier than the record before it): compared in C,
        # entry against entry (keys are unique within a topic, so the key decides)
        if q and entries[0] < q[-1]:
            self._descents[topic].append(entries[0][2])
        if len(entries) > 1 and any(map(gt, entries, islice(entries, 1, None))):
            self._descents[topic].extend(entries[j][2] for j in range(1, len(entries))
                                         if entries[j] < entries[j - 1])
        q.extend(entries)
        self._n += len(entries)

    def drop_from(self, topic: str, offset: int) -> int:
        """Forget ``topic``'s queued records at ``offset`` and after (the consumer went back to
        read them again). Returns how many."""
        q = self._queues[topic]
        n = 0
        while q and q[-1][2] >= offset:
            q.pop()
            n += 1
        self._n -= n
        descents = self._descents[topic]
        while descents and descents[-1] >= offset:
            descents.pop()
        return n

    def mark_caught_up(self, topic: str, at_ms: int | None) -> None:
        """A poll at ``at_ms`` found ``topic`` fully read (``None``: it has unread records)."""
        self._caught_up[topic] = _UNREAD if at_ms is None else at_ms

    def pop_ready(self, now_ms: int) -> list[Any]:
        out: list[Any] = []
        queues = self._queues
        caught_up = self._caught_up
        whole = self.whole
        idle_line = now_ms - self.max_idle_ms
        while self._n:
            if self.fast and all(queues.values()):
                taken = self._bulk(out)
                if taken:
                    self._n -= taken
                    self._idle_since = None
                    continue
            # the smallest head, the runner-up head (entries: they compare as their keys), and
            # what the empty queues allow
            best_q = None
            best_k: Entry | None = None
            second_k: Entry | None = None
            confirmed = now_ms  # ready times up to this were confirmed by a poll of every empty queue
            empty = False
            unread: list[str] = []
            far_q = None
            far_ts = 0
            for t, q in queues.items():
                if q:
                    k = q[0]
                    if best_k is None or k < best_k:
                        second_k, best_k, best_q = best_k, k, q
                    elif second_k is None or k < second_k:
                        second_k = k
                    if far_q is None or k[0] > far_ts:
                        far_q, far_ts = q, k[0]
                else:
                    empty = True
                    at = caught_up[t]
                    if at == _UNREAD:
                        unread.append(t)
                    elif at < confirmed:
                        confirmed = at
            assert best_q is not None and best_k is not None
            # an outlier: a head dated far past every other head
            outlier = far_q if far_q is not best_q and far_ts > best_k[0] + self.outlier_ms else None
            # the best queue's run stops where its head would make another head an outlier
            others = [q[0][0] for q in queues.values() if q and q is not best_q]
            floor = max(others) - self.outlier_ms if others else None
            if unread:
                # the broker holds records we wait for: stand still, at most max idle
                if self._idle_since is None:
                    self._idle_since = now_ms
                allowed = now_ms if now_ms - self._idle_since >= self.max_idle_ms else _FAR_PAST
            elif empty:
                # quiet topics: a head goes once it is ready and a poll of every empty queue at
                # or after that found nothing more (a poll older proves nothing: max idle)
                allowed = max(confirmed, idle_line)
            else:
                allowed = _FAR_FUTURE  # every head is known: nothing to wait for
            if not unread:
                self._idle_since = None
            if outlier is not None:  # first, once the heads are all known (same wait rule)
                if outlier[0][3] > allowed:
                    break
                head = outlier.popleft()
                out.append(head if whole else head[4])
                self._n -= 1
                self.outliers += 1
                if unread:
                    for t in unread:
                        self.forced[t] = self.forced.get(t, 0) + 1
                continue
            # a run: take from the best queue while it stays below the runner-up (a head of its
            # own that is far ahead stops the run at once: the next round judges it)
            taken = 0
            while best_q:
                e = best_q[0]
                if second_k is not None and e > second_k:
                    break
                if e[3] > allowed:
                    break
                if taken and floor is not None and e[0] < floor:
                    break  # judged again by the next round (another head is now an outlier)
                best_q.popleft()
                out.append(e if whole else e[4])
                taken += 1
            if not taken:
                break
            self._n -= taken
            if unread:
                for t in unread:
                    self.forced[t] = self.forced.get(t, 0) + taken
        return out

    def _bulk(self, out: list[Any]) -> int:
        """Every queue holds records: release what the head-by-head merge would release until a
        queue runs out, in one sort, and return how many (0: not here, the caller goes head by
        head).

        Each queue's sorted prefix (up to its first descent) is a run; the merge of the runs
        takes every record keyed at most ``limit``, the smallest of the runs' last keys, and
        then the queue that ends there runs out. Nothing else can stop it: no queue is empty (so
        nothing waits), and if the heads it passes through are all within ``outlier_ms`` of
        each other no head is an outlier and no run is cut short."""
        queues = self._queues
        descents = self._descents
        runs: list[tuple[deque[Any], int]] = []
        limit: Entry | None = None
        for t, q in queues.items():
            d = descents[t]
            head_offset = q[0][2]
            while d and d[0] <= head_offset:  # a descent at the head is the start of a run
                d.popleft()
            n = bisect_left(q, d[0], key=_offset) if d else len(q)
            last = q[n - 1]
            if limit is None or last < limit:
                limit = last
            runs.append((q, n))
        assert limit is not None  # every queue holds records
        heads = [q[0][0] for q, _ in runs]
        lo, hi = min(heads), max(heads)
        takes: list[int] = []
        for q, n in runs:
            k = bisect_right(q, limit, 0, n)
            takes.append(k)
            if k:  # the heads it passes through: its taken records and the one after them
                hi = max(hi, q[k - 1][0], q[k][0] if k < len(q) else hi)
        if hi - lo > self.outlier_ms:
            return 0
        taken: list[Any] = []
        for (q, _n), k in zip(runs, takes, strict=True):
            if k:
                taken.extend(islice(q, 0, k))
                deque(starmap(q.popleft, repeat((), k)), maxlen=0)
        taken.sort()  # tuples, decided by their keys (CPython compares the first fields unboxed)
        if self.whole:
            out.extend(taken)
        else:
            out.extend(map(_PAYLOAD, taken))
        return len(taken)

    def drain(self) -> list[Any]:
        """Remove and return everything, merged (revocation / shutdown)."""
        merged = heapq.merge(*(list(q) for q in self._queues.values()))
        out = list(merged) if self.whole else list(map(_PAYLOAD, merged))
        for q in self._queues.values():
            q.clear()
        for d in self._descents.values():
            d.clear()
        self._n = 0
        return out
