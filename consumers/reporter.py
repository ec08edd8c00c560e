"""The reporter: writes a room's post-show review (复盘) when its ``session_end`` arrives, and the
read-only view of the reports directory that the gateway serves at ``/reports/``.

Layout of ``reports_dir``: ``ROOM/SESSION/index.html`` plus that review's PNG charts, and
``ROOM/index.html``, a copy of the room's latest review (the page is self-contained, so the copy
needs no charts beside it). Room and session ids that are not plain file names
(``[A-Za-z0-9._-]``, not starting with a dot) are stored under a hash of the id instead.

The reporter assigns itself every partition of ``live.room`` (no consumer group) from the end,
so it reviews the shows that end while it runs. On a ``session_end`` it waits ``delay_s`` (late
payments and acks), then reads the room's records from all the topics up to their high
watermarks (:func:`livecue.report.source.read_broker`), builds the review with the room's
playbook and writes it; the CPU-bound part runs in a thread so the loop keeps consuming. It
reads each topic from its beginning per review: fine for a retention of days, slow for months.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from livecue.config import Settings
from livecue.kafka_client import client_kwargs
from schemas.decode import decode_event
from schemas.errors import InvalidEvent
from schemas.events import TOPIC_ROOM, SessionEnd

__all__ = ["Reporter", "ReporterMetrics", "safe_name", "report_dir", "serve_report", "REPORT_TYPES"]

log = logging.getLogger(__name__)

_SAFE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
REPORT_TYPES: Final = {".html": "text/html; charset=utf-8", ".png": "image/png"}
#: CSP of a served review: inline style and data: images only, no script, nothing fetched.
REPORT_CSP: Final = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_MAX_BYTES: Final = 64 * 1024 * 1024


def safe_name(ident: str) -> str:
    """``ident`` itself when it is a plain file name, else ``h-`` and a hash of it."""
    if _SAFE.fullmatch(ident) and ident not in (".", ".."):
        return ident
    return "h-" + hashlib.blake2b(ident.encode(), digest_size=12).hexdigest()


def report_dir(root: Path, room_id: str, session_id: str) -> Path:
    return root / safe_name(room_id) / safe_name(session_id)


def serve_report(root: Path, rel: str) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` for ``/reports/<rel>``: an ``.html`` or ``.png`` file
    under ``root``, each path segment a plain name, no symlink out of ``root``; a path ending
    in ``/`` means its ``index.html``. Anything else is 404."""
    if rel == "" or rel.endswith("/"):
        rel += "index.html"
    parts = rel.split("/")
    if len(parts) > 3 or not all(_SAFE.fullmatch(p) for p in parts):
        return 404, b"not found\n", "text/plain; charset=utf-8"
    ext = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    ctype = REPORT_TYPES.get(ext)
    if ctype is None:
        return 404, b"not found\n", "text/plain; charset=utf-8"
    try:
        base = root.resolve(strict=True)
        path = base.joinpath(*parts).resolve(strict=True)
        if not path.is_relative_to(base) or not path.is_file() or path.stat().st_size > _MAX_BYTES:
            return 404, b"not found\n", "text/plain; charset=utf-8"
        return 200, path.read_bytes(), ctype
    except OSError:
        return 404, b"not found\n", "text/plain; charset=utf-8"


class ReporterMetrics:
    """``livecue_reporter_reviews_total{result}`` (written / failed) and
    ``livecue_reporter_review_duration_seconds`` (reading the topics, the figures, the page and
    its charts: from the end of the delay to the page written), on an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reviews = Counter("livecue_reporter_reviews", "Post-show reviews, by result (written, failed).",
                               ["result"], registry=registry)
        for result in ("written", "failed"):
            self.reviews.labels(result)
        self.duration = Histogram(
            "livecue_reporter_review_duration_seconds",
            "Time to read a session's records, build its review and write it.",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=registry)


class Reporter:
    """Consumes ``live.room``; writes a review per ``session_end`` (see the module docstring).

    ``written`` is called with the page's path after each review (tests, the CLI's output).
    Metrics go to ``registry`` (a fresh one when none is given).
    """

    def __init__(self, settings: Settings, *, delay_s: float = 10.0, lang: str = "zh",
                 written: Callable[[Path], None] | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = ReporterMetrics(registry if registry is not None else CollectorRegistry())
        self.delay_s = delay_s
        self.lang = lang
        self.written = written
        self.reports = 0
        self.failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()

    async def wait_ready(self) -> None:
        """Returns once the reporter reads ``live.room`` from its end."""
        await self._ready.wait()

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.broker, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest",
                                    **client_kwargs(self.settings))
        await consumer.start()
        try:
            await consumer.topics()
            parts = sorted(consumer.partitions_for_topic(TOPIC_ROOM) or ())
            tps = [TopicPartition(TOPIC_ROOM, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            self._ready.set()
            log.info("reporter ready", extra={"partitions": len(tps),
                                              "reports_dir": str(self.settings.reports_dir)})
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                for tp, msgs in batch.items():
                    for m in msgs:
                        self._on_record(m.key, m.value, tp.partition, m.offset)
        finally:
            await consumer.stop()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_record(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        try:
            ev = decode_event(value or b"", key=key, topic=TOPIC_ROOM)
        except InvalidEvent:
            return  # the worker dead-letters it
        if isinstance(ev, SessionEnd):
            log.info("session ended: review scheduled",
                     extra={"room_id": ev.room_id, "partition": partition, "offset": offset})
            task = asyncio.create_task(self._review(ev.room_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _review(self, room_id: str) -> None:
        from livecue.report.source import read_broker

        await asyncio.sleep(self.delay_s)
        t0 = time.monotonic()
        try:
            inputs = await read_broker(self.settings.broker, room_id, security=client_kwargs(self.settings))
            path = await asyncio.to_thread(self._write, inputs)
        except Exception as exc:  # a review that fails must not stop the reporter
            self.failures += 1
            self.metrics.reviews.labels("failed").inc()
            log.warning("review failed", extra={"room_id": room_id, "error": str(exc)[:300]})
            return
        finally:
            # A review ends by freezing what is alive (livecue.report._gc); this process lives on,
            # so hand it back to the collector: whatever the review left behind stays collectable.
            gc.unfreeze()
        took = time.monotonic() - t0
        self.reports += 1
        self.metrics.reviews.labels("written").inc()
        self.metrics.duration.observe(took)
        log.info("review written", extra={"room_id": room_id, "path": str(path), "seconds": round(took, 3),
                                          "events": len(inputs.events)})
        if self.written is not None:
            self.written(path)

    def _write(self, inputs: object) -> Path:
        from livecue.report import build_report, write_report
        from livecue.report.source import Inputs
        from stream.playbook import PlaybookSet

        assert isinstance(inputs, Inputs)
        pbs = PlaybookSet(self.settings.playbook, self.settings.playbook_dir)
        rep = build_report(inputs.ordered(), pbs.for_room(inputs.room_id), cues=inputs.cues or None,
                           acks=inputs.acks, deadletters=inputs.deadletters)
        root = Path(self.settings.reports_dir)
        out = report_dir(root, rep.room_id, rep.session_id)
        page = write_report(rep, out, self.lang)
        latest = root / safe_name(rep.room_id) / "index.html"
        tmp = latest.with_name(".index.html.tmp")
        shutil.copyfile(page, tmp)
        tmp.replace(latest)
        return page
