"""Canaries for the Faust / aiokafka internals stream.faust_batch relies on (pinned versions).

Each assertion names something the batch path overrides or reads. If an upgrade changes one of
them, this fails loudly, before a worker silently loses or re-orders records.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

import aiokafka
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.consumer.subscription_state import TopicPartitionState
from faust.sensors.monitor import Monitor
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream.faust_batch import PINNED, BatchConsumer


def test_pinned_versions_are_the_installed_ones() -> None:
    assert {name: version(name) for name in PINNED} == PINNED


def test_overridden_consumer_methods_still_exist_with_their_signatures() -> None:
    base = faust_consumer.Consumer
    sigs = {
        "_drain_messages": ["self", "fetcher"],
        "_new_offset": ["self", "tp"],
        "_filter_tps_with_pending_acks": ["self", "topics"],
        "on_partitions_revoked": ["self", "revoked"],
        "_wait_next_records": ["self", "timeout"],
        "perform_seek": ["self"],
        "pause_partitions": ["self", "tps"],
        "resume_partitions": ["self", "tps"],
    }
    for name, params in sigs.items():
        fn = getattr(base, name)
        assert list(inspect.signature(fn).parameters) == params, name
    # the commit path asks _filter_tps_with_pending_acks, then _new_offset per tp
    src = inspect.getsource(base.force_commit) + inspect.getsource(base._commit_tps) + \
        inspect.getsource(base._filter_committable_offsets)
    assert "_filter_tps_with_pending_acks" in src and "_new_offset" in src
    # _wait_next_records returns (records, active_partitions)
    assert "return records, active_partitions" in inspect.getsource(base._wait_next_records)
    # the fetcher service runs _drain_messages
    assert "_drain_messages" in inspect.getsource(faust_consumer.Fetcher)


def test_fetch_wait_is_still_hard_coded_and_read_at_start() -> None:
    src = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in src  # the reason for our override
    start = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "self._fetch_max_wait_ms" in start  # read when the Fetcher is built, after construction
    assert "fetch_min_bytes=self._fetch_min_bytes" in start  # the same for LIVECUE_FETCH_MIN_BYTES
    # and the Fetcher puts it in every fetch request
    assert "self._fetch_min_bytes" in inspect.getsource(aiokafka_fetcher.Fetcher._get_actions_per_node)
    assert list(inspect.signature(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer).parameters) == [
        "self", "transport"]


def test_state_read_for_caught_up_detection_exists() -> None:
    src = inspect.getsource(TopicPartitionState.__init__)
    for attr in ("self.highwater", "self.timestamp", "self._position"):
        assert attr in src, attr
    assert isinstance(TopicPartitionState.has_valid_position, property)
    assert isinstance(TopicPartitionState.position, property)
    assert "self._subscription = SubscriptionState(" in inspect.getsource(aiokafka.AIOKafkaConsumer.__init__)


def test_livelock_detector_reads_stream_inbound_time() -> None:
    src = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.verify_event_path)
    assert "stream_inbound_time" in src
    assert "stream_inbound_time" in inspect.getsource(Monitor.__init__)


def test_app_builds_its_transport_in_new_transport() -> None:
    import faust
    assert "_new_transport" in faust.App.__dict__
    assert issubclass(BatchConsumer, faust_aiokafka.Consumer)


def test_recovery_takes_changelog_ends_from_consumer_highwaters() -> None:
    from faust.tables.recovery import Recovery
    assert "await consumer.highwaters(*tps)" in inspect.getsource(Recovery._build_highwaters)
    assert "_is_changelog_tp" in faust_consumer.Consumer.__dict__


def _partition_records(topic: str, key_deserializer: Any) -> Any:
    """aiokafka's PartitionRecords over one real record batch (offsets 0..2), as a fetch makes it."""
    from aiokafka.consumer.fetcher import PartitionRecords
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
    from aiokafka.record.memory_records import MemoryRecords
    from aiokafka.structs import TopicPartition

    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(3):
        b.append(i, timestamp=1_700_000_000_000 + i, key=b"room-1", value=b'{"n":%d}' % i, headers=[])
    return PartitionRecords(TopicPartition(topic, 0), MemoryRecords(bytes(b.build())), [], 0,
                            key_deserializer, None, True, 0)


def test_the_worker_consumer_gets_parsed_records_for_its_input_topics_only() -> None:
    from aiokafka.structs import ConsumerRecord

    from stream.faust_batch import _RawInputs

    class Owner:  # what _RawInputs reads of its BatchConsumer
        input_topics = frozenset({"live.chat"})
        batch_sink: Any = object()

    owner = Owner()
    mark = _RawInputs(owner)  # type: ignore[arg-type]
    raw = list(_partition_records("live.chat", mark))
    assert [(r.offset, r.key, r.value) for r in raw] == [(i, b"room-1", b'{"n":%d}' % i) for i in range(3)]
    assert not any(isinstance(r, ConsumerRecord) for r in raw)  # the parsed records themselves
    # a changelog (Faust's own per-message path reads timestamp, headers, sizes) keeps ConsumerRecord
    log = list(_partition_records("livecue-rooms-changelog", mark))
    assert all(isinstance(r, ConsumerRecord) for r in log) and log[2].key == b"room-1"
    assert log[2].timestamp == 1_700_000_000_002 and log[2].serialized_value_size == len(b'{"n":2}')
    # any other consumer in the process (no mark), or a BatchConsumer without a sink
    assert all(isinstance(r, ConsumerRecord) for r in _partition_records("live.chat", None))
    owner.batch_sink = None
    assert all(isinstance(r, ConsumerRecord) for r in _partition_records("live.chat", mark))


def test_parsed_record_path_relies_on_what_it_patches() -> None:
    from aiokafka.consumer import fetcher

    from stream import faust_batch

    assert fetcher.PartitionRecords._consumer_record is faust_batch._record  # patched at import
    assert list(inspect.signature(faust_batch._consumer_record).parameters) == ["self", "tp", "record"]
    assert "self._key_deserializer" in inspect.getsource(faust_batch._consumer_record)
    assert "self._consumer_record(tp, record)" in inspect.getsource(fetcher.PartitionRecords._unpack_records)
    # the consumer hands its key deserializer to the Fetcher at start(), which gives it to every
    # PartitionRecords: the mark set after construction reaches the records
    assert "key_deserializer=self._key_deserializer" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "self._key_deserializer," in inspect.getsource(fetcher.Fetcher._proc_fetch_request)
    src = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "key_deserializer" not in src  # Faust sets none: keys are bytes, as _RawInputs keeps them


def test_bulk_take_mirrors_aiokafkas_record_generator() -> None:
    """stream.faust_batch._take reproduces PartitionRecords._unpack_records (read uncommitted)
    and replaces FetchResult.getall for the worker's inputs: what it mirrors is still there."""
    from aiokafka.consumer import fetcher

    from stream import faust_batch

    assert fetcher.FetchResult.getall is faust_batch._fetch_getall  # patched at import
    unpack = inspect.getsource(fetcher.PartitionRecords._unpack_records)
    for line in ("while records.has_next():", "next_batch = records.next_batch()",
                 "if self._check_crcs and not next_batch.validate_crc():",
                 "if next_batch.is_control_batch:", "if record.offset < self.next_fetch_offset:",
                 "self.next_fetch_offset = record.offset + 1",
                 "self.next_fetch_offset = next_batch.next_offset",
                 "self._isolation_level == READ_COMMITTED"):
        assert line in unpack, line
    getall = inspect.getsource(faust_batch._getall)
    for line in ("if not self.check_assignment(tp) or not self.has_more():",
                 "for msg in self._partition_records:", "self._update_position()",
                 "self._partition_records = None"):
        assert line in getall, line
    assert list(inspect.signature(faust_batch._getall).parameters) == ["self", "max_records"]
    init = inspect.getsource(fetcher.PartitionRecords.__init__)
    for line in ("self._tp = tp", "self._records = records", "self._check_crcs = check_crcs",
                 "self._isolation_level = isolation_level", "self.next_fetch_offset = fetch_offset",
                 # the generator _fetch_getall drops (a reference cycle with the PartitionRecords)
                 "self._records_iterator = self._unpack_records()"):
        assert line in init, line
    assert "return next(self._records_iterator)" in inspect.getsource(fetcher.PartitionRecords.__next__)
    # Faust takes records only through getall (getmany -> fetched_records), never getone
    assert "res_or_error.getall(max_records)" in inspect.getsource(fetcher.Fetcher.fetched_records)
    assert "fetched_records(" in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._fetch_records)
    assert fetcher.READ_UNCOMMITTED == 0
