"""The worker's input records taken from a fetch a whole record batch at a time
(``stream.faust_batch._take``, patched into aiokafka's ``FetchResult.getall``) equal aiokafka's own
per-record path: the same records per call, in the same order, at the same positions; under any
batch layout (gaps between and inside batches, control batches, a fetch offset inside a batch)
and any sequence of per-round limits."""

from __future__ import annotations

import asyncio
import gc
import struct
import sys
import weakref
from typing import Any

import pytest
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import faust_batch
from stream.faust_batch import _RawInputs

TOPIC = "live.chat"


class Owner:  # what _RawInputs reads of its BatchConsumer
    input_topics = frozenset({TOPIC, "live.likes"})
    batch_sink: Any = object()


def _batch(base: int, deltas: list[int], control: bool = False, tail: int = 0) -> bytes:
    """One record batch at ``base``; ``tail`` > 0: its last offset delta beyond its last record
    (what compaction leaves), so the batch's next offset is past its last record + 1."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for d in deltas:
        b.append(d, timestamp=1_700_000_000_000 + d, key=b"room-%d" % (base + d), value=b'{"o":%d}' % (base + d),
                 headers=[])
    raw = bytearray(b.build())
    raw[0:8] = struct.pack(">q", base)  # the base offset is outside the CRC
    if control or tail:
        if control:
            attrs = struct.unpack(">h", raw[21:23])[0] | 0x20
            raw[21:23] = struct.pack(">h", attrs)
        raw[23:27] = struct.pack(">i", deltas[-1] + tail)  # lastOffsetDelta
        raw[17:21] = struct.pack(">I", calc_crc32c(bytes(raw[21:])))
    return bytes(raw)


Spec = list[tuple[int, list[int], bool, int]]


def _layout(spec: Spec) -> tuple[bytes, list[int]]:
    """Batches one after another: (gap before it, offset deltas, control?, tail gap). Returns the
    bytes and the offsets of the data records."""
    out, offsets, base = b"", [], 0
    for gap, deltas, control, tail in spec:
        base += gap
        out += _batch(base, deltas, control, tail)
        if not control:
            offsets += [base + d for d in deltas]
        base += deltas[-1] + tail + 1
    return out, offsets


def _fetch(data: bytes, fetch_offset: int, topic: str = TOPIC, mark: Any = "worker",
           isolation: int = 0) -> FetchResult:
    tp = TopicPartition(topic, 0)
    subs = SubscriptionState()  # in a running loop (_in_loop): it makes futures
    subs.assign_from_user({tp})
    assignment = subs.subscription.assignment  # type: ignore[union-attr]
    assignment.state_value(tp).seek(fetch_offset)
    if mark == "worker":
        mark = _RawInputs(Owner())  # type: ignore[arg-type]
    pr = PartitionRecords(tp, MemoryRecords(data), [], fetch_offset, mark, None, True, isolation)
    return FetchResult(tp, assignment=assignment, partition_records=pr, backoff=0)


def _in_loop(fn: Any) -> Any:
    """Run ``fn`` (sync) inside a running event loop: aiokafka's subscription state needs one."""
    async def go() -> Any:
        return fn()
    return asyncio.run(go())


def _position(fr: FetchResult) -> int:
    return fr._assignment.state_value(fr._topic_partition).position  # type: ignore[no-any-return]


def _drain(fr: FetchResult, limits: list[int | None], getall: Any) -> list[tuple[list[tuple[int, bytes, bytes]], int]]:
    """(records, position) per call until the fetch is exhausted; limits cycle."""
    out = []
    i = 0
    while fr.has_more():
        recs = getall(fr, limits[i % len(limits)])
        out.append(([(r.offset, r.key, r.value) for r in recs], _position(fr)))
        i += 1
        assert i < 10_000
    return out


batches = st.lists(
    st.tuples(st.sampled_from([0, 0, 0, 3]),  # gap before the batch
              st.lists(st.integers(0, 3), min_size=1, max_size=9).map(  # offset deltas with gaps
                  lambda steps: [sum(steps[:i + 1]) + i for i in range(len(steps))]),
              st.sampled_from([False, False, False, True]),  # a control batch (transaction marker)
              st.sampled_from([0, 0, 2])),  # offsets past the last record (compacted away)
    min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(batches, st.lists(st.one_of(st.none(), st.integers(1, 12)), min_size=1, max_size=5), st.integers(0, 12))
def test_bulk_take_equals_aiokafkas_per_record_path(spec: Spec,
                                                   limits: list[int | None], skip: int) -> None:
    _in_loop(lambda: _compare(spec, limits, skip))


def _compare(spec: Spec, limits: list[int | None], skip: int) -> None:
    data, offsets = _layout(spec)
    # a fetch starts in the batch holding its offset (a broker never returns one wholly below it)
    # (or past its last record, in a compacted tail: then none of it is delivered)
    first_base, first_deltas, first_tail = spec[0][0], spec[0][1], spec[0][3]
    fetch_offset = first_base + min(skip, first_deltas[-1] + first_tail)
    want = _drain(_fetch(data, fetch_offset), limits, faust_batch._getall)  # aiokafka's own path
    got = _drain(_fetch(data, fetch_offset), limits, FetchResult.getall)  # patched: _fetch_getall
    assert FetchResult.getall is faust_batch._fetch_getall
    delivered = [o for o, _, _ in sum((r for r, _ in want), [])]
    assert delivered == [o for o in offsets if o >= fetch_offset]  # the reference itself is right
    # the same records per call and positions; the bulk path may finish one (empty) call earlier,
    # at the position aiokafka reaches with that call
    if len(want) == len(got) + 1:
        assert want[-1][0] == [] and got[-1] == (want[-2][0], want[-1][1])
        want, got = want[:-2], got[:-1]
    assert got == want


def test_a_limit_ending_with_the_last_batch_finishes_the_fetch_at_once() -> None:
    _in_loop(_a_limit_ending_with_the_last_batch_finishes_the_fetch_at_once)


def _a_limit_ending_with_the_last_batch_finishes_the_fetch_at_once() -> None:
    data, _ = _layout([(0, [0, 1, 2], False, 0), (0, [0, 1], False, 0)])
    fr = _fetch(data, 0)
    assert [r.offset for r in fr.getall(3)] == [0, 1, 2] and fr.has_more()
    assert [r.offset for r in fr.getall(2)] == [3, 4] and not fr.has_more()  # no empty round
    assert _position(fr) == 5
    ref = _fetch(data, 0)
    assert [len(faust_batch._getall(ref, n)) for n in (3, 2, 2)] == [3, 2, 0]  # aiokafka: one more call


def test_other_topics_and_consumers_keep_aiokafkas_path() -> None:
    _in_loop(_other_topics_and_consumers_keep_aiokafkas_path)


def _other_topics_and_consumers_keep_aiokafkas_path() -> None:
    from aiokafka.structs import ConsumerRecord

    data, _ = _layout([(0, [0, 1, 2], False, 0)])
    for fr in (_fetch(data, 0, topic="livecue-rooms-changelog"), _fetch(data, 0, mark=None)):
        recs = fr.getall(None)
        assert len(recs) == 3 and all(isinstance(r, ConsumerRecord) for r in recs)
        assert fr._partition_records is None
    # read committed (transaction markers to honour): aiokafka's generator, not the bulk path
    fr = _fetch(data, 0, isolation=1)
    pr = fr._partition_records
    assert [r.offset for r in fr.getall(None)] == [0, 1, 2] and "_livecue_taken" not in vars(pr)
    fr = _fetch(data, 0)
    pr = fr._partition_records
    recs = fr.getall(None)
    assert len(recs) == 3 and not any(isinstance(r, ConsumerRecord) for r in recs)
    assert "_livecue_taken" in vars(pr)  # taken by the bulk path


def test_a_corrupt_batch_raises_on_every_call_and_delivers_nothing_past_it() -> None:
    _in_loop(_a_corrupt_batch_raises_on_every_call_and_delivers_nothing_past_it)


def _a_corrupt_batch_raises_on_every_call_and_delivers_nothing_past_it() -> None:
    good, _ = _layout([(0, [0, 1, 2], False, 0)])
    bad = bytearray(_batch(3, [0, 1]))
    at = bad.index(b'{"o":4}') + 5
    bad[at:at + 1] = b"7"  # a value still parses, but the CRC no longer matches
    fr = _fetch(good + bytes(bad), 0)
    assert [r.offset for r in fr.getall(3)] == [0, 1, 2]
    with pytest.raises(CorruptRecordException):
        fr.getall(None)
    with pytest.raises(CorruptRecordException):
        fr.getall(None)
    assert _position(fr) == 3  # never moved past the corrupt batch
    ref = _fetch(good + bytes(bad), 0)
    assert len(faust_batch._getall(ref, 3)) == 3
    with pytest.raises(CorruptRecordException):
        faust_batch._getall(ref, None)


def test_a_batch_is_parsed_only_as_far_as_taken() -> None:
    _in_loop(_a_batch_is_parsed_only_as_far_as_taken)


def _a_batch_is_parsed_only_as_far_as_taken() -> None:
    # a catch-up's fetch brings whole producer batches (thousands of records each, 48 input
    # partitions); parsed whole and kept between rounds they raised the worker's RSS by ~30 MiB
    data, _ = _layout([(0, list(range(100)), False, 0)])
    fr = _fetch(data, 0)
    pr = fr._partition_records
    assert [r.offset for r in fr.getall(10)] == list(range(10))
    st = vars(pr)["_livecue_taken"]
    assert len(st.rest) == 1 and st.rest[0].offset == 10  # one record read ahead, no more
    assert [r.offset for r in fr.getall(85)] == list(range(10, 95)) and len(st.rest) == 1
    assert [r.offset for r in fr.getall(10)] == list(range(95, 100)) and not fr.has_more()


def test_a_fetch_starting_in_a_compacted_tail_skips_that_batch() -> None:
    _in_loop(_a_fetch_starting_in_a_compacted_tail_skips_that_batch)


def _a_fetch_starting_in_a_compacted_tail_skips_that_batch() -> None:
    # records 0..2, offsets 3..4 compacted away; the consumer's position is 4
    data, _ = _layout([(0, [0, 1, 2], False, 2), (0, [0, 1], False, 0)])
    for getall in (faust_batch._getall, FetchResult.getall):
        fr = _fetch(data, 4)
        assert [r.offset for r in getall(fr, 1)] == [5] and _position(fr) == 6
        assert [r.offset for r in getall(fr, 1)] == [6] and _position(fr) == 7
    # that batch alone: nothing delivered, and the position moves past it
    data, _ = _layout([(0, [0, 1, 2], False, 2)])
    for getall in (faust_batch._getall, FetchResult.getall):
        fr = _fetch(data, 4)
        while fr.has_more():
            assert getall(fr, 1) == []
        assert _position(fr) == 5


def test_a_taken_fetch_is_freed_by_reference_counting() -> None:
    _in_loop(_a_taken_fetch_is_freed_by_reference_counting)


def _a_taken_fetch_is_freed_by_reference_counting() -> None:
    # The worker runs the cyclic collector rarely (livecue.commands.worker.tune_gc): a fetch kept
    # alive by a reference cycle stays until a full pass, and a 600,000-event catch-up left its
    # whole input (~80 MiB of fetched bytes) resident. aiokafka's PartitionRecords is in a cycle
    # with the generator it makes in __init__ until __next__ exhausts it; the bulk take never
    # calls __next__. Taken (all of it, or part of it and then dropped as a paused partition's
    # is), the fetch must go with its last reference, with the collector off.
    data, offsets = _layout([(0, list(range(50)), False, 0), (0, list(range(50)), False, 0)])
    gc.collect()
    gc.disable()
    unheld = sys.getrefcount(data)  # the fetched bytes, held by nothing but this test
    try:
        for limits in ([None], [7], [100, 100]):
            fr = _fetch(data, 0)
            pr = weakref.ref(fr._partition_records)
            assert sys.getrefcount(data) > unheld  # the fetch holds them
            got = _drain(fr, limits, FetchResult.getall)
            assert [o for recs, _pos in got for o, _k, _v in recs] == offsets  # all taken
            del fr, got
            assert pr() is None and sys.getrefcount(data) == unheld, limits
        # part taken, then paused: getall finds the partition not fetchable and drops the fetch
        fr = _fetch(data, 0)
        pr = weakref.ref(fr._partition_records)
        assert len(fr.getall(10)) == 10
        fr._assignment.state_value(fr._topic_partition).pause()
        assert fr.getall(10) == [] and fr._partition_records is None
        assert pr() is None and sys.getrefcount(data) == unheld
        # aiokafka's own path, for contrast, exhausted by __next__: freed as well (it breaks
        # the cycle itself then); a fetch it drops unexhausted is not, which is what the test
        # above guards against on the worker's path
        fr = _fetch(data, 0, mark=None)
        pr = weakref.ref(fr._partition_records)
        assert len(fr.getall(10)) == 10
        del fr
        assert pr() is not None and sys.getrefcount(data) > unheld  # the cycle: held until a pass
        gc.collect()
        assert pr() is None and sys.getrefcount(data) == unheld
    finally:
        gc.enable()
