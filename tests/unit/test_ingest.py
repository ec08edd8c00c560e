"""Batch bookkeeping: the committable offset never passes a batch with an unacked record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.ingest import BatchTracker

TP = ("live.chat", 0)


def test_commit_advances_only_over_fully_acked_prefix() -> None:
    t: BatchTracker[tuple[str, int]] = BatchTracker()
    a = t.add(TP, 0, 9, 10)
    b = t.add(TP, 10, 14, 5)
    t.ack(b, 5)
    assert t.committable(TP) is None  # b is done but a is not: nothing is safe yet
    t.ack(a, 9)
    assert t.committable(TP) is None
    t.ack(a)
    assert t.committable(TP) == 15
    assert t.pending(TP) == 0


def test_gaps_between_batches_do_not_matter() -> None:
    # compacted or transactional topics skip offsets: a batch covers first..last whatever its count
    t: BatchTracker[tuple[str, int]] = BatchTracker()
    a = t.add(TP, 0, 20, 3)
    t.ack(a, 3)
    assert t.committable(TP) == 21


def test_revoke_drops_batches_and_ignores_late_acks() -> None:
    t: BatchTracker[tuple[str, int]] = BatchTracker()
    a = t.add(TP, 0, 4, 5)
    t.ack(a, 2)
    assert t.revoke([TP]) == 3
    t.ack(a, 3)  # an in-flight ack of a revoked batch
    assert t.committable(TP) is None
    assert TP not in t.tps()
    # re-assigned: starts again from what the broker says, not from the revoked batches
    b = t.add(TP, 0, 4, 5)
    t.ack(b, 5)
    assert t.committable(TP) == 5


def test_misuse_is_refused() -> None:
    t: BatchTracker[tuple[str, int]] = BatchTracker()
    a = t.add(TP, 0, 4, 5)
    with pytest.raises(ValueError):
        t.add(TP, 3, 8, 5)  # overlaps
    with pytest.raises(ValueError):
        t.ack(a, 6)


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=8), data=st.data())
def test_committable_is_exactly_the_acked_prefix_under_any_ack_order(sizes: list[int], data: st.DataObject) -> None:
    t: BatchTracker[tuple[str, int]] = BatchTracker()
    batches, first = [], 0
    for n in sizes:
        batches.append(t.add(TP, first, first + n - 1, n))
        first += n
    acked = [0] * len(batches)
    records = [(i, j) for i, n in enumerate(sizes) for j in range(n)]
    order = data.draw(st.permutations(records))
    for i, _j in order:
        t.ack(batches[i])
        acked[i] += 1
        # the longest prefix of fully acked batches, recomputed from scratch
        end = None
        for k, n in enumerate(sizes):
            if acked[k] < n:
                break
            end = batches[k].last + 1
        assert t.committable(TP) == end


def test_rewind_drops_the_batches_read_again_and_keeps_the_acked_prefix() -> None:
    t: BatchTracker[tuple[str, int]] = BatchTracker()
    a = t.add(TP, 0, 9, 10)
    b = t.add(TP, 10, 19, 10)
    t.ack(a, 10)
    assert t.committable(TP) == 10
    # after a rebalance the consumer seeks back to the committed offset, 10
    assert t.last_offset(TP) == 19
    assert t.rewind(TP, 10) == 10
    t.ack(b, 10)  # a late ack of the dropped batch counts for nothing
    assert t.committable(TP) == 10
    c = t.add(TP, 10, 19, 10)  # the same records, delivered again
    t.ack(c, 10)
    assert t.committable(TP) == 20
