"""Canaries for the Faust / aiokafka internals stream.faust_batch relies on (pinned versions).

Each assertion names something the batch path overrides or reads. If an upgrade changes one of
them, this fails loudly, before a worker silently loses or re-orders records.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import aiokafka
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
