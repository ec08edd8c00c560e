"""The gateway's Prometheus metrics, created on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from livecue.metrics import build_info

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DEPTH_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class GatewayMetrics:
    """Every metric of one gateway; label values are bounded (roles, types, reasons, topics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.registry = registry
        self.connections = Gauge(
            "livecue_gateway_connections", "Open authenticated screen connections.", ["role"], registry=r)
        self.messages_sent = Counter(
            "livecue_gateway_messages_sent_total", "Messages sent to screens.", ["type"], registry=r)
        self.slow_clients = Counter(
            "livecue_gateway_slow_clients_total",
            "Screens cut off because they did not keep up (queue full or send stalled).", registry=r)
        self.stats_skipped = Counter(
            "livecue_gateway_stats_skipped_total",
            "Stats snapshots not queued for a screen whose send queue was backing up.", registry=r)
        self.send_queue_depth = Histogram(
            "livecue_gateway_send_queue_depth", "A screen's send-queue depth when a message is queued.",
            buckets=_DEPTH_BUCKETS, registry=r)
        self.refused = Counter(
            "livecue_gateway_refused_total", "Connections or requests refused, by reason.", ["reason"],
            registry=r)
        self.acks = Counter(
            "livecue_gateway_acks_total", "Acknowledgements produced to live.acks, by action.", ["action"],
            registry=r)
        self.delivery_latency = Histogram(
            "livecue_gateway_cue_delivery_latency_seconds",
            "From a cue's emitted_at to its send to a screen (live cues only).",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.records_consumed = Counter(
            "livecue_gateway_records_consumed_total", "Records read from Kafka, by topic.", ["topic"],
            registry=r)
        self.bad_records = Counter(
            "livecue_gateway_bad_records_total", "Records that could not be used, by topic.", ["topic"],
            registry=r)
        self.build_info = build_info(registry, "gateway")
        for role in ("controller", "host", "viewer"):
            self.connections.labels(role)


def observe_many(hist: Histogram, amount: float, n: int) -> None:
    """``n`` observations of ``amount`` at once: what ``n`` calls of ``observe`` record, for a
    fan-out that writes one frame to 1,000 screens (py-spy: the per-screen ``observe`` calls
    were a third of a fan-out's CPU). prometheus_client has no weighted observe, so this adds to
    the histogram's own sum and bucket (pinned by ``test_metrics_observe_many``, which compares
    the exposition with ``n`` plain calls); where those are missing it makes the ``n`` calls."""
    if n <= 0:
        return
    try:
        total, bounds, buckets = hist._sum, hist._upper_bounds, hist._buckets
    except AttributeError:
        for _ in range(n):
            hist.observe(amount)
        return
    total.inc(amount * n)
    for i, bound in enumerate(bounds):
        if amount <= bound:
            buckets[i].inc(n)
            break
