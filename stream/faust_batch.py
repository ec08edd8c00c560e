"""Whole-batch ingestion under Faust: the one module that touches Faust's and aiokafka's internals.

Faust (0.15.3) hands a consumed record to an agent through a per-message path: one
``wait_first`` (four tasks, a future), a conductor lock, a ``ConsumerMessage`` and an ``Event``
per record, three lock round trips per ack, and a commit that sorts every acked offset. Measured
on this worker that path cost most of its CPU. Here the six input topics skip it: each fetched
batch of an input topic-partition goes straight to a :class:`BatchSink` (the worker), tracked as
one :class:`~stream.ingest.Batch` whose records are acked by decrementing a counter; the offset
Faust commits for an input topic-partition is the end of the longest prefix of fully acked
batches (:class:`~stream.ingest.BatchTracker`). Everything else stays Faust's: group membership,
assignment (co-partitioned), rebalance callbacks, changelog recovery (changelog and other
topic-partitions keep the per-message path), standby handling, the commit timer and the
producer flush before a commit.

What is overridden, and why (each checked by ``tests/unit/test_faust_canary.py`` against the
pinned versions, so an upgrade that changes them fails loudly instead of silently losing data):

- ``Consumer._drain_messages``: the fetch loop; input batches go to the sink, the rest to
  Faust's callback one by one, as before.
- ``Consumer._new_offset`` and ``Consumer._filter_tps_with_pending_acks``: the committable
  offset of an input topic-partition comes from the batch tracker.
- ``Consumer.on_partitions_revoked``: revoked batches are dropped unacknowledged (the next owner
  re-reads them from the committed offset).
- ``AIOKafkaConsumerThread._create_worker_consumer``: Faust hard-codes ``fetch_max_wait_ms=1500``
  and Tansu does not wake a waiting fetch; the worker's setting is applied before the fetcher
  starts, and so is its ``fetch_min_bytes`` (Faust passes none).
- ``Monitor.stream_inbound_time``: the worker's input skips Faust's streams, so without a
  mark Faust's livelock detector logs a false "Stream has not started processing" ERROR for
  every lagging input partition after five minutes. Each batch marks its partition active.
- ``Consumer.highwaters``: Faust's table recovery reads a changelog up to the end offsets that
  ListOffsets reports. Tansu answers it with the base offset of the partition's last record
  batch, not its end, so a recovery stopped short of the last flush's state writes (they share
  a batch) and a restarted worker resumed with older room states behind a newer committed
  offset. For changelog partitions the end is confirmed by fetching from that offset and taking
  the fetch high watermark (the larger of the two wins; on Apache Kafka they agree).
- ``App._new_transport``: the supported seam to supply a transport with its own consumer.
- ``aiokafka.consumer.fetcher.PartitionRecords._consumer_record``: for the input topics of the
  worker's own consumer it returns aiokafka's parsed record (``offset``, ``key``, ``value``: all
  the sink reads) instead of building a ``ConsumerRecord`` around it. py-spy of a many-room
  catch-up: that construction (11 fields, a headers tuple, on the consumer's thread under the
  GIL) was 8.7 % of the worker's GIL time. The worker's consumer is recognised by its key
  deserializer, :class:`_RawInputs` (the identity); every other consumer in the process, and
  every other topic (changelogs), still gets ``ConsumerRecord``.
- ``aiokafka.consumer.fetcher.FetchResult.getall``: for those same records (read uncommitted)
  the records are taken in slices of each record batch's C iterator (:func:`_take`: ``islice``,
  its first and last record looked at) instead of one at a time through ``PartitionRecords``'
  generator, ``__next__`` and ``_consumer_record``; same records, order and positions (a
  property test against aiokafka's own path), and as lazily (a batch is parsed only as far as
  taken, plus one record: parsing whole batches ahead raised a catch-up's RSS by ~30 MiB).
  Instructions per record taken from a fetch of 5,000 (valgrind): 6,330 -> 2,510; that path was
  ~8 % of a many-room worker's samples (py-spy, the consumer's thread). A limit that ends with
  the fetch's last batch finishes the fetch at once, so the partition is fetched again a round
  earlier. It also drops the record generator ``PartitionRecords.__init__`` makes (never used on
  this path): the unstarted generator holds its ``PartitionRecords`` in a reference cycle, so
  every fetch's raw bytes waited for the cyclic collector, which the worker runs rarely; after a
  600,000-event catch-up ~80 MiB of fetched input was still resident (RSS 231-234 -> 171-176 MiB).

The rest of the worker sees only batches (:class:`BatchSink`) and never imports Faust internals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import Any, Protocol, cast

import aiokafka
import faust
from aiokafka.consumer import fetcher as aiokafka_fetcher
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from stream.ingest import Batch, BatchTracker

__all__ = ["BatchSink", "LiveCueApp", "PINNED", "client_of", "fetch_position"]

#: the versions whose internals this module was written against (checked by the canary tests)
PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
#: longest a fetch round waits for records before reporting positions again
FETCH_ROUND_S = 0.05


class _RawInputs:
    """Key deserializer of the worker's aiokafka consumer: the identity (keys stay bytes, as
    with none), and the mark by which :func:`_record` knows the records are the worker's."""

    __slots__ = ("consumer",)

    def __init__(self, consumer: BatchConsumer) -> None:
        self.consumer = consumer

    def __call__(self, key: bytes | None) -> bytes | None:
        return key


_consumer_record = aiokafka_fetcher.PartitionRecords._consumer_record


def _batches_of(pr: Any, tp: Any) -> bool:
    """``pr`` (a ``PartitionRecords``) holds records of an input topic of a
    :class:`BatchConsumer` with a sink: they go to the sink in batches, as parsed."""
    mark = pr._key_deserializer
    if type(mark) is not _RawInputs or pr._value_deserializer is not None:
        return False
    consumer = mark.consumer
    return tp.topic in consumer.input_topics and consumer.batch_sink is not None


def _record(self: Any, tp: Any, record: Any) -> Any:
    """``PartitionRecords._consumer_record``: the parsed record itself for the input topics of
    a :class:`BatchConsumer` with a sink (its batches), a ``ConsumerRecord`` otherwise."""
    if _batches_of(self, tp):
        return record
    return _consumer_record(self, tp, record)


aiokafka_fetcher.PartitionRecords._consumer_record = _record


def _is_worker_input(pr: Any) -> bool:
    """The records are the worker's input topics, delivered as batches, read uncommitted."""
    return pr._isolation_level == aiokafka_fetcher.READ_UNCOMMITTED and _batches_of(pr, pr._tp)


class _Taken:
    """What :func:`_take` keeps on a ``PartitionRecords`` between calls."""

    __slots__ = ("it", "rest", "end", "error")

    def __init__(self) -> None:
        self.it: Iterator[Any] | None = None  # the record batch being taken (its C iterator)
        self.rest: list[Any] = []  # with ``it``: its next record, read ahead (exactly one)
        self.end: int | None = None  # that batch's next offset, the position once it is done
        self.error: BaseException | None = None  # a corrupt batch: raised again on every call


def _take(pr: Any, limit: int | None) -> tuple[list[Any], bool]:
    """Up to ``limit`` records of ``pr`` (None: all) and whether it is exhausted, taken from
    each record batch's C iterator in slices. The same records, in the same order, with the
    same positions (``next_fetch_offset``) as aiokafka's per-record generator
    (``_unpack_records`` through ``PartitionRecords.__next__``) for what
    :func:`_is_worker_input` admits: no transaction markers to honour (read uncommitted),
    control batches skipped, records below the fetch offset skipped, the CRC checked. A batch
    is parsed only as far as taken (plus one record read ahead), as the generator does: a
    catch-up's fetches stay raw bytes until their turn. One difference: a limit that ends
    exactly with the last batch finishes the fetch at once, where the generator waits for one
    more call to find it empty (so the partition is fetched again one round earlier)."""
    st = pr.__dict__.get("_livecue_taken")
    if st is None:
        st = pr._livecue_taken = _Taken()
    if st.error is not None:
        raise st.error
    out: list[Any] = []
    room = limit
    records = pr._records
    while True:
        if st.it is None:
            if st.end is not None:  # the last batch was taken to its end: move past it
                if room == 0 and records.has_next():
                    return out, False  # where the generator waits, at its last yield
                pr.next_fetch_offset, st.end = st.end, None
            if not records.has_next():
                return out, True
            if room == 0:
                return out, False
            batch = records.next_batch()
            if pr._check_crcs and not batch.validate_crc():
                st.error = aiokafka.errors.CorruptRecordException(f"Invalid CRC - {pr._tp}")
                raise st.error
            if batch.is_control_batch:
                pr.next_fetch_offset = batch.next_offset
                continue
            # the batch iterates itself, and asserts it is iterated once: chain() calls iter()
            # on it once and is its own iterator for the slices after
            it = chain(batch)
            floor = pr.next_fetch_offset
            first = next(it, None)
            while first is not None and first.offset < floor:  # the fetch began inside it
                first = next(it, None)
            if first is None:
                pr.next_fetch_offset = batch.next_offset
                continue
            st.it, st.rest, st.end = it, [first], batch.next_offset
        if room is None:
            got = st.rest + list(st.it)
            done = True
        else:
            got = st.rest + list(islice(st.it, room))  # room + 1 with the one read ahead
            done = len(got) <= room
            st.rest = [] if done else [got.pop()]
            room -= len(got)
        out += got
        pr.next_fetch_offset = got[-1].offset + 1
        if not done:
            return out, False
        st.it = None


_getall = aiokafka_fetcher.FetchResult.getall


def _fetch_getall(self: Any, max_records: int | None = None) -> list[Any]:
    """``FetchResult.getall``: the worker's input records in slices of each record batch
    (:func:`_take`), everything else by aiokafka's own path."""
    pr = self._partition_records
    if pr is None or not _is_worker_input(pr):
        return cast(list[Any], _getall(self, max_records))
    # aiokafka's PartitionRecords makes its record generator in __init__, and the unstarted
    # generator's frame holds the PartitionRecords: a reference cycle, which aiokafka breaks
    # only when __next__ exhausts it. Taken here, it never is, so every fetch's raw bytes stayed
    # until the cyclic collector ran, which the worker's thresholds make rare (tune_gc): the
    # whole input of a 600,000-event catch-up, ~80 MiB, was still held after it (tracemalloc).
    # Dropped here, the fetch is freed once taken, by reference counting.
    pr._records_iterator = None
    if not self.check_assignment(self._topic_partition) or not self.has_more():
        return []
    out, done = _take(pr, max_records)
    self._update_position()
    if done:
        self._partition_records = None
    return out


aiokafka_fetcher.FetchResult.getall = _fetch_getall


class BatchSink(Protocol):
    """Where input batches go: called on the event loop, in fetch order per topic-partition."""

    def on_batch(self, tp: TP, records: Sequence[Any], batch: Batch) -> None: ...

    def on_rewind(self, tp: TP, offset: int) -> None:
        """The consumer went back to ``offset`` (Faust seeks to the committed offsets after a
        rebalance): what was delivered from there on will be delivered again."""

    def on_fetch_state(self, states: dict[TP, tuple[int | None, int | None, int | None]]) -> None:
        """After every fetch round: per input topic-partition (position, high watermark, last
        poll ms), read while no fetch is handing out records, so positions are exactly what was
        delivered (see :func:`fetch_position`)."""


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "livecue_fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read by AIOKafkaConsumer.start() for its Fetcher
        min_bytes = getattr(self.app, "livecue_fetch_min_bytes", None)
        if min_bytes is not None:
            consumer._fetch_min_bytes = min_bytes  # also read by start()
        if consumer._key_deserializer is None and isinstance(self.consumer, BatchConsumer):
            consumer._key_deserializer = _RawInputs(self.consumer)  # also read by start()
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the input topics delivered as whole batches."""

    batch_sink: BatchSink | None = None
    input_topics: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracker: BatchTracker[TP] = BatchTracker()

    def attach(self, sink: BatchSink, topics: Iterable[str]) -> None:
        """Deliver ``topics`` as batches to ``sink``: records with ``offset``, ``key`` and
        ``value`` (aiokafka's parsed records, not ``ConsumerRecord``)."""
        self.input_topics = frozenset(topics)
        self.batch_sink = sink

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # -- fetch loop ----------------------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - run by Faust
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        inputs = self.input_topics
        tracker = self.tracker
        read_offset = self._read_offset
        inbound = self.app.monitor.stream_inbound_time
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                # Short waits: after each round the sink learns the positions and high
                # watermarks (what tells it an empty topic-partition is caught up).
                records, _active = await self._wait_next_records(FETCH_ROUND_S)
                if self.should_stop:
                    continue
                if not records:
                    self._report_fetch_state()
                    await asyncio.sleep(0)
                    continue
                if not self.flow_active:
                    # fetched while a rebalance stopped the flow: not delivered, so seek back
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                sink = self.batch_sink
                now = time.monotonic()
                for tp, recs in records.items():
                    if not recs:
                        continue
                    if self.app.consumer_generation_id != generation:
                        break  # a rebalance began: what is not delivered is re-read
                    if tp.topic in inputs and sink is not None:
                        tp = TP(tp.topic, tp.partition)  # aiokafka's tuple -> Faust's (asserted)
                        first = recs[0].offset
                        last = tracker.last_offset(tp)
                        if last is not None and first <= last:
                            dropped = tracker.rewind(tp, first)
                            sink.on_rewind(tp, first)
                            self.log.info("re-reading %r from %s (%s unacked dropped)", tp, first, dropped)
                        batch = tracker.add(tp, first, recs[-1].offset, len(recs))
                        read_offset[tp] = recs[-1].offset
                        inbound[tp] = now
                        sink.on_batch(tp, recs, batch)
                    else:
                        await self._deliver_one_by_one(tp, recs)
                self._report_fetch_state()
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    def _report_fetch_state(self) -> None:
        """Positions are advanced by aiokafka when a fetch hands records out, in its thread;
        read them here, between fetch rounds, where every handed-out record was delivered."""
        sink = self.batch_sink
        client = client_of(self.app)
        if sink is None or client is None:
            return
        try:
            states = fetch_position(client, [tp for tp in self.assignment() if tp.topic in self.input_topics])
        except Exception:  # the assignment is changing: the next round reports
            return
        sink.on_fetch_state(states)

    async def _deliver_one_by_one(self, tp: TP, recs: Sequence[Any]) -> None:
        """Faust's own path (changelogs in recovery, any non-input topic)."""
        callback = self.callback
        for rec in recs:
            r_offset = self._read_offset[tp]
            if r_offset is not None and rec.offset < r_offset:
                continue
            await self.wait_first(callback(self._to_message(tp, rec)), self.suspend_flow.wait())
            self._read_offset[tp] = rec.offset

    # -- commits -------------------------------------------------------------------------------

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        seen = set()
        for tp in super()._filter_tps_with_pending_acks(topics):
            seen.add(tp)
            yield tp
        for tp in self.tracker.tps():
            if tp not in seen and (topics is None or tp in topics or tp.topic in topics):
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.input_topics:
            return self.tracker.committable(tp)
        return cast(int | None, super()._new_offset(tp))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await super().on_partitions_revoked(revoked)
        self.tracker.revoke(revoked)

    # -- recovery ------------------------------------------------------------------------------

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        ends = dict(await super().highwaters(*partitions))
        changelogs = [tp for tp in partitions if self._is_changelog_tp(tp) and ends.get(tp) is not None]
        if changelogs:
            confirmed = await fetch_highwaters(self.app, {tp: ends[tp] for tp in changelogs})
            for tp, hw in confirmed.items():
                if hw > ends[tp]:
                    self.log.info("changelog end beyond ListOffsets: %r %s -> %s", tp, ends[tp], hw)
                    ends[tp] = hw
        return ends


class _Transport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class LiveCueApp(faust.App):
    """A Faust app whose consumer delivers the input topics as batches (see module docstring)."""

    livecue_fetch_max_wait_ms: int | None = None
    livecue_fetch_min_bytes: int | None = None
    #: awaited first when the app stops (the worker flushes, waits for the broker, commits)
    stop_hook: Any = None

    async def on_stop(self) -> None:
        hook = self.stop_hook
        if hook is not None:
            try:
                await asyncio.wait_for(hook(), 15.0)
            except Exception as exc:  # stopping anyway: what is not committed is re-read
                self.log.warning("final flush before stop failed: %r", exc)
        await super().on_stop()

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def batch_consumer(self) -> BatchConsumer:
        consumer = self.consumer
        if not isinstance(consumer, BatchConsumer):  # pragma: no cover - construction guarantees it
            raise TypeError(f"expected BatchConsumer, got {type(consumer).__name__}")
        return consumer


async def fetch_highwaters(app: faust.App, ends: dict[TP, int], timeout: float = 10.0) -> dict[TP, int]:
    """The fetch high watermark of each partition, read by fetching from its ListOffsets end
    with a short-lived group-less consumer (same brokers and credentials as the app's)."""
    conf = app.conf
    client = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=faust_aiokafka.server_list(conf.broker, faust_aiokafka.Transport.default_port),
        enable_auto_commit=False, fetch_max_wait_ms=50, request_timeout_ms=int(timeout * 1000),
        **faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
    )
    await client.start()
    try:
        tps = [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in ends]
        client.assign(tps)
        for tp in tps:
            client.seek(tp, ends[TP(tp.topic, tp.partition)])
        out: dict[TP, int] = {}
        deadline = time.monotonic() + timeout
        while len(out) < len(tps) and time.monotonic() < deadline:
            await client.getmany(*tps, timeout_ms=200, max_records=1)
            for tp in tps:
                hw = client.highwater(tp)
                if hw is not None:
                    out[TP(tp.topic, tp.partition)] = hw
        return out
    finally:
        await client.stop()


def client_of(app: faust.App) -> aiokafka.AIOKafkaConsumer | None:
    """The aiokafka consumer Faust drives (None before it started)."""
    try:
        return cast(aiokafka.AIOKafkaConsumer, app.consumer._thread._ensure_consumer())
    except Exception:
        return None


def fetch_position(client: aiokafka.AIOKafkaConsumer, tps: Iterable[TP]) -> dict[TP, tuple[int | None, int | None, int | None]]:
    """Per topic-partition: (consumed position, fetch high watermark, last poll ms) from the
    consumer's own subscription state (no request; values of the last fetch response)."""
    out: dict[TP, tuple[int | None, int | None, int | None]] = {}
    assignment = client._subscription.subscription
    if assignment is None or assignment.assignment is None:
        return out
    state_value = assignment.assignment.state_value
    for tp in tps:
        st = state_value(aiokafka.TopicPartition(tp.topic, tp.partition))
        if st is None:
            continue
        position = st.position if st.has_valid_position else None
        out[tp] = (position, st.highwater, st.timestamp)
    return out
