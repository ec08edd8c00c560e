"""The worker's Prometheus metrics, created on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from livecue.metrics import build_info

__all__ = ["WorkerMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class WorkerMetrics:
    """All metrics of one worker process. Label values are bounded (topics, types, reason codes,
    cue kinds, partitions)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._consumed_children: dict[tuple[str, str], Counter] = {}
        build_info(registry, "worker")
        self.events = Counter(
            "livecue_events_consumed_total", "Input events decoded and queued, by topic and type.",
            ["topic", "type"], registry=registry)
        self.events_released = Counter(
            "livecue_events_released_total",
            "Input events released by the cross-topic merge and run through the core.", registry=registry)
        self.send_failures = Counter(
            "livecue_send_failures_total",
            "Output or state writes the broker did not acknowledge (retried; their input stays "
            "unacknowledged until they succeed), by topic kind.", ["kind"], registry=registry)
        self.paused_partitions = Gauge(
            "livecue_paused_partitions",
            "Input topic-partitions whose fetching is paused because their merge queue is full.",
            registry=registry)
        self.rooms = Gauge(
            "livecue_rooms", "Rooms whose state this worker holds decoded in memory, by session state "
            "(live: a session runs; ended; idle: no session yet).", ["state"], registry=registry)
        self.rooms_evicted = Gauge(
            "livecue_rooms_evicted", "Rooms dropped from memory since start, by why: lru (beyond "
            "LIVECUE_MAX_CACHED_ROOMS; the table keeps them) or ended (session ended longer than "
            "LIVECUE_ENDED_ROOM_RETENTION_S ago; removed from the table too).", ["reason"], registry=registry)
        self.partition_pauses = Counter(
            "livecue_partition_pauses_total",
            "Times an input topic-partition's fetching was paused because its merge queue was full.",
            registry=registry)
        self.decode_failures = Counter(
            "livecue_decode_failures_total", "Input records that failed to decode, by topic and reason.",
            ["topic", "reason"], registry=registry)
        self.deadletters = Counter(
            "livecue_deadletters_total", "Records sent to live.deadletter, by source topic and reason.",
            ["topic", "reason"], registry=registry)
        self.cues = Counter("livecue_cues_total", "Cues sent to live.cues, by kind.", ["kind"], registry=registry)
        self.room_stats = Counter(
            "livecue_room_stats_total", "room_stats snapshots sent to live.room_stats.", registry=registry)
        self.batch_size = Histogram(
            "livecue_batch_size", "Events released to the core per partition batch.",
            buckets=_BATCH_BUCKETS, registry=registry)
        self.processing_latency = Histogram(
            "livecue_processing_latency_seconds",
            "Wall time from consuming the earliest event of a batch to its cue being sent.",
            buckets=_LATENCY_BUCKETS, registry=registry)
        self.event_time_lag = Histogram(
            "livecue_event_time_lag_seconds", "Wall time a cue was sent minus the event time it fired at.",
            buckets=_LATENCY_BUCKETS, registry=registry)
        self.active_rooms = Gauge("livecue_active_rooms", "Rooms with state cached in this worker.", registry=registry)
        self.cache_bytes = Gauge(
            "livecue_state_cache_bytes", "Approximate bytes of room state cached in this worker.", registry=registry)
        self.consumer_lag = Gauge(
            "livecue_consumer_lag", "End offset minus consumed position, per input topic partition (messages).",
            ["topic", "partition"], registry=registry)
        self.since_commit = Gauge(
            "livecue_seconds_since_last_commit", "Seconds since this worker last committed offsets.", registry=registry)
        self.forced = Counter(
            "livecue_aligner_forced_total",
            "Events released after max_task_idle_ms while a topic they waited for still had unread "
            "records (order across topics may differ from a replay), by that topic.",
            ["topic"], registry=registry)
        self.pending = Gauge(
            "livecue_aligner_pending", "Events waiting in the cross-topic aligner.", registry=registry)
        self.pending_peak = Gauge(
            "livecue_aligner_pending_peak",
            "Most events waiting in the cross-topic aligner at once since start (what sizes the "
            "memory of a catch-up: ~0.8 KB each).", registry=registry)

    def consumed(self, topic: str, etype: str, n: int = 1) -> None:
        # Per-batch path: resolve the labelled child once (labels() costs ~1 µs a call).
        child = self._consumed_children.get((topic, etype))
        if child is None:
            child = self._consumed_children[(topic, etype)] = self.events.labels(topic, etype)
        child.inc(n)

    def released(self, n: int) -> None:
        self.events_released.inc(n)

    def decode_failure(self, topic: str, reason: str) -> None:
        self.decode_failures.labels(topic, reason).inc()
        self.deadletters.labels(topic, reason).inc()

    def deadletter(self, topic: str, reason: str) -> None:
        self.deadletters.labels(topic, reason).inc()

    def batch(self, n: int) -> None:
        self.batch_size.observe(n)
