"""``livecue worker``: run a stream worker (Faust) that turns the room's events into cues."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket

from livecue.broker import create_topics, topic_partitions
from livecue.kafka_client import client_kwargs
from livecue.config import Settings
from schemas.errors import ConfigError
from schemas.events import INPUT_TOPICS
from stream.core import _native
from livecue.metrics import serve_metrics

NAME = "worker"
HELP = "run a stream worker: consume the room topics, keep windows and tiers, emit cues and room_stats"
SETTINGS = (
    "broker", "partitions", "replication_factor", "app_id", "data_dir", "playbook", "playbook_dir", "worker_id",
    "metrics_port", "metrics_host", "web_port", "web_host", "fetch_max_wait_ms", "fetch_min_bytes", "linger_ms",
    "max_task_idle_ms", "align_grace_ms", "max_queued_per_partition", "max_future_ms", "max_cached_rooms", "ended_room_retention_s", "commit_interval_s", "session_timeout_s", "heartbeat_interval_s",
    "rebalance_timeout_s", "log_format", "log_level",
)

log = logging.getLogger("livecue.worker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-create-topics", action="store_true",
                   help="do not create missing contract topics at start-up")


def _input_partitions(settings: Settings) -> int:
    """The input topics' common partition count; the state table must be co-partitioned with it.

    A room's events meet on one worker only if every input topic has the same partition count.
    """
    counts = asyncio.run(topic_partitions(settings.broker, INPUT_TOPICS, security=client_kwargs(settings)))
    missing = [t for t in INPUT_TOPICS if t not in counts]
    if missing:
        raise ConfigError(f"input topics missing on {settings.broker_url}: {', '.join(missing)} "
                          "(create them with `livecue topics`)")
    if len(set(counts.values())) != 1:
        shown = ", ".join(f"{t}={n}" for t, n in counts.items())
        raise ConfigError(f"input topics must share one partition count, got {shown}")
    n = next(iter(counts.values()))
    if n != settings.partitions:
        log.info("using the input topics' partition count", extra={"partitions": n, "setting": settings.partitions})
    return n


def tune_gc() -> None:
    """The worker allocates a few objects per event and holds up to a few hundred thousand
    (merge queues, rooms' states); with CPython's default thresholds (700, 10, 10) the cyclic
    collector scans them again and again. What start-up left alive (modules, Faust, the
    playbooks) is frozen out of every pass, and a young collection runs only after 100,000 more
    container allocations than deallocations. Each fetch round allocates a burst (~10 objects per
    queued event) and the release frees it again, so a catch-up rarely reaches that line; cyclic
    garbage, which only a pass frees, still triggers one at that bound.
    Measured (collector time, gc.callbacks probe, 600,000-event many-room catch-up, ~10 s CPU):
    (10,000, 10, 10) 1.2-1.3 s, passes of 2 / 15 / 60 ms (young / middle / old);
    (50,000, 10, 10) 0.6 s; (100,000, 10, 10) 0.15-0.2 s, passes of 0.4-0.8 / 1.3-1.7 / 35 ms;
    many-room worker 14.5-16.7 -> 13.3-13.4 us/event CPU in single runs at the time; once the
    merge built one tuple less per record, alternating runs were the same within noise (10,000:
    13.1 / 11.2, 100,000: 13.0 / 11.3 us/event): kept for the shorter passes. Reference counting
    still frees everything acyclic at once."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 10, 10)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from stream.app import create_app

    if not settings.worker_id:
        settings = settings.replace(worker_id=f"{socket.gethostname()}-{os.getpid()}")
    if not args.no_create_topics:
        asyncio.run(create_topics(settings.broker, settings.partitions, security=client_kwargs(settings)))
    settings = settings.replace(partitions=_input_partitions(settings))
    worker_app = create_app(settings)  # a bad playbook fails here, naming file and key
    tune_gc()
    _server, port = serve_metrics(worker_app.metrics.registry, settings.metrics_host, settings.metrics_port)
    print(f"metrics: http://{settings.metrics_host}:{port}/metrics", flush=True)
    log.info("worker starting", extra={"broker": settings.broker_url, "app_id": settings.app_id,
                                       "worker_id": settings.worker_id, "metrics_port": port,
                                       "core": _native.MODE})
    worker = faust.Worker(
        worker_app.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
        override_logging=False,
    )
    worker.execute_from_commandline()
    return 0
