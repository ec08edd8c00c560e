"""The reporter: writes a room's post-show review (复盘) when its ``session_end`` arrives, and the
read-only view of the reports directory that the gateway serves at ``/reports/``.

Layout of ``reports_dir``: ``ROOM/SESSION/index.html`` plus that review's PNG charts, and
``ROOM/index.html``, a copy of the room's latest review (the page is self-contained, so the copy
needs no charts beside it). Room and session ids that are not plain file names
(``[A-Za-z0-9._-]``, not starting with a dot) are stored under a hash of the id instead.

The reporter assigns itself every partition of the six input topics and of ``live.cues`` /
``live.acks`` / ``live.deadletter`` (no consumer group) from their end, and *follows* each
session whose ``session_start`` it consumes (:class:`livecue.report.live.LiveTracker`): the
room's events go through the decision core and the review's fold as they arrive (the fold is
advanced after every fetched batch, a few µs an event), so at the end only the last events, the
page and its charts are left. Rebuilding a 4-hour show from the topics after its end costs the
core alone ~35 s of CPU (~3.4 µs an event) plus reading ~10 M records back: following it is
what makes the review take seconds.

On a ``session_end`` it waits ``delay_s`` (late payments and acks), catches up with the topics'
ends as of then, and writes the review of the followed session. It builds the review from
scratch instead (reads the room's records from all the topics up to their high watermarks,
:func:`livecue.report.source.read_broker`, and runs the core over them) whenever following cannot
give the same review: the reporter (re)started after the show began, a topic delivered the
room's events out of time order, another ``session_start`` came, the room's playbook changed,
too many of the room's events arrived before its ``session_start`` (see
:class:`~livecue.report.live.LiveTracker`). The CPU-bound end runs in a thread so the loop keeps
consuming. ``livecue_reporter_reviews_built_total{how="live"|"scratch"}`` counts both.
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
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from livecue.config import Settings
from livecue.kafka_client import client_kwargs
from schemas.decode import decode_event
from schemas.errors import InvalidEvent
from schemas.events import (
    INPUT_TOPICS, TOPIC_ACKS, TOPIC_CUES, TOPIC_DEADLETTER, TOPIC_ROOM, SessionEnd, SessionStart,
)

if TYPE_CHECKING:  # the review's modules load the core: not at import (the gateway imports this module)
    from livecue.report.live import LiveTracker, Taken
    from livecue.report.model import Report

__all__ = ["Reporter", "ReporterMetrics", "safe_name", "report_dir", "serve_report", "REPORT_TYPES"]

log = logging.getLogger(__name__)

_SAFE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
REPORT_TYPES: Final = {".html": "text/html; charset=utf-8", ".png": "image/png"}
#: CSP of a served review: inline style and data: images only, no script, nothing fetched.
REPORT_CSP: Final = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_MAX_BYTES: Final = 64 * 1024 * 1024
_OUTPUT_TOPICS: Final = (TOPIC_CUES, TOPIC_ACKS, TOPIC_DEADLETTER)


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
        self.built = Counter("livecue_reporter_reviews_built", "Reviews written, by how they were built: "
                             "live (the session followed while it ran) or scratch (read back from the topics).",
                             ["how"], registry=registry)
        for how in ("live", "scratch"):
            self.built.labels(how)
        self.duration = Histogram(
            "livecue_reporter_review_duration_seconds",
            "Time to read a session's records, build its review and write it.",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=registry)


class Reporter:
    """Consumes the input topics and ``live.cues`` / ``live.acks`` / ``live.deadletter``;
    writes a review per ``session_end`` (see the module docstring).

    ``written`` is called with the page's path after each review (tests, the CLI's output);
    ``reviewed`` with the review and how it was built (``"live"`` or ``"scratch"``).
    ``follow=False`` builds every review from scratch. Metrics go to ``registry`` (a fresh one
    when none is given).
    """

    def __init__(self, settings: Settings, *, delay_s: float = 10.0, lang: str = "zh",
                 written: Callable[[Path], None] | None = None,
                 reviewed: Callable[[Report, str], None] | None = None,
                 registry: CollectorRegistry | None = None, follow: bool = True) -> None:
        from livecue.report.live import LiveTracker
        from stream.playbook import PlaybookSet

        self.settings = settings
        self.metrics = ReporterMetrics(registry if registry is not None else CollectorRegistry())
        self.delay_s = delay_s
        self.lang = lang
        self.written = written
        self.reviewed = reviewed
        self.follow = follow
        self.reports = 0
        self.failures = 0
        self._pbs = PlaybookSet(settings.playbook, settings.playbook_dir)
        self.tracker: LiveTracker = LiveTracker(self._playbook)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self._consumer: Any = None
        self._tps: list[Any] = []

    def _playbook(self, room_id: str) -> Any:
        """The room's playbook now (files reloaded if they changed; called on the loop only)."""
        for line in self._pbs.reload_if_changed():
            log.info("playbook: " + line)
        return self._pbs.for_room(room_id)

    async def wait_ready(self) -> None:
        """Returns once the reporter reads its topics from their end."""
        await self._ready.wait()

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.broker, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest",
                                    max_partition_fetch_bytes=1 << 20,
                                    **client_kwargs(self.settings))
        await consumer.start()
        try:
            await consumer.topics()
            topics = (TOPIC_ROOM,) if not self.follow else INPUT_TOPICS + _OUTPUT_TOPICS
            tps = [TopicPartition(t, p) for t in topics
                   for p in sorted(consumer.partitions_for_topic(t) or ())]
            consumer.assign(tps)
            ends = await self._ends(consumer, tps)
            for tp in tps:
                if tp.topic in INPUT_TOPICS:
                    self.tracker.started(tp.topic, tp.partition, empty=ends[tp] == 0)
            self._consumer, self._tps = consumer, tps
            self._ready.set()
            log.info("reporter ready", extra={"partitions": len(tps), "follow": self.follow,
                                              "reports_dir": str(self.settings.reports_dir)})
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                for tp, msgs in batch.items():
                    for m in msgs:
                        self._on_record(tp.topic, tp.partition, m.key, m.value, m.offset)
                if batch:
                    self.tracker.advance()  # the core and the fold of the followed sessions
        finally:
            self._consumer = None
            await consumer.stop()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    @staticmethod
    async def _ends(consumer: Any, tps: list[Any], timeout_s: float = 60.0) -> dict[Any, int]:
        """Start every partition at its end. Tansu answers ListOffsets (latest) with the base
        offset of the partition's last record batch, not its end: read that way, the last batch
        written before the reporter started would count as new records (and a partition of one
        batch as empty), which the follower's rules must not see. The end is confirmed by a
        fetch's high watermark (on Apache Kafka the two agree)."""
        await consumer.seek_to_end(*tps)
        ends = {tp: await consumer.position(tp) for tp in tps}
        todo = set(tps)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fetch answered for {sorted(map(str, todo))[:3]}")
            await consumer.getmany(*todo, timeout_ms=300)
            for tp in list(todo):
                hw = consumer.highwater(tp)
                if hw is not None:
                    ends[tp] = max(ends[tp], hw)
                    consumer.seek(tp, ends[tp])  # what that fetch returned is not read
                    todo.discard(tp)
        return ends

    def _on_record(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                   offset: int) -> None:
        if self.follow:
            ev = self.tracker.record(topic, partition, key, value)
        elif topic == TOPIC_ROOM:
            try:
                ev = decode_event(value or b"", key=key, topic=TOPIC_ROOM)
            except InvalidEvent:
                return  # the worker dead-letters it
        else:
            return
        if isinstance(ev, SessionEnd):
            log.info("session ended: review scheduled",
                     extra={"room_id": ev.room_id, "partition": partition, "offset": offset})
            task = asyncio.create_task(self._review(ev.room_id, ev.ts))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _caught_up(self, timeout_s: float = 120.0) -> None:
        """Wait until every partition read is consumed up to its end as of now (what a
        from-scratch read would stop at), so the followed session has all of it."""
        consumer = self._consumer
        if consumer is None:
            return
        ends = await consumer.end_offsets(self._tps)
        deadline = time.monotonic() + timeout_s
        for tp in self._tps:
            target = max(ends.get(tp, 0), consumer.highwater(tp) or 0)
            while self._consumer is not None and await consumer.position(tp) < target:
                if time.monotonic() > deadline:
                    raise TimeoutError("catching up with the topics took too long")
                await asyncio.sleep(0.05)

    async def _review(self, room_id: str, ended_ts: int) -> None:
        """Review the room's session that ended at ``ended_ts``: the last one started by then
        (after the delay the next show may have begun; it is not this review's)."""
        from livecue.report.live import NotFollowable, Taken

        await asyncio.sleep(self.delay_s)
        t0 = time.monotonic()
        how = "scratch"
        try:
            taken: Taken | str = "following is off"
            pb = self._playbook(room_id)
            if self.follow:
                await self._caught_up()
                taken = self.tracker.take(room_id, pb, ended_ts)
            if isinstance(taken, Taken):
                try:
                    rep, path = await asyncio.to_thread(self._write_live, taken)
                    how = "live"
                except NotFollowable as exc:  # found out at the end (the last events)
                    taken = str(exc)
            if not isinstance(taken, Taken):
                log.info("review from scratch", extra={"room_id": room_id, "reason": taken})
                rep, path = await self._from_scratch(room_id, pb, ended_ts)
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
        self.metrics.built.labels(how).inc()
        self.metrics.duration.observe(took)
        log.info("review written", extra={"room_id": room_id, "path": str(path), "seconds": round(took, 3),
                                          "events": rep.events, "built": how})
        if self.reviewed is not None:
            self.reviewed(rep, how)
        if self.written is not None:
            self.written(path)

    async def _from_scratch(self, room_id: str, pb: Any, ended_ts: int | None = None) -> tuple[Report, Path]:
        from livecue.report.source import read_broker

        inputs = await read_broker(self.settings.broker, room_id, security=client_kwargs(self.settings))
        return await asyncio.to_thread(self._write, inputs, pb, ended_ts)

    def _write_live(self, taken: Taken) -> tuple[Report, Path]:
        rep = taken.follower.finish(cues=taken.cues, acks=taken.acks,
                                    deadletters=taken.deadletters)
        return rep, self._store(rep)

    def _write(self, inputs: object, pb: Any, ended_ts: int | None = None) -> tuple[Report, Path]:
        from livecue.report import build_report
        from livecue.report.source import Inputs

        assert isinstance(inputs, Inputs)
        events = inputs.ordered()
        session_id = None  # the last session (a review asked for without a session_end)
        if ended_ts is not None:
            started = [e.session_id for e in events if type(e) is SessionStart and e.ts <= ended_ts]
            session_id = started[-1] if started else None
        rep = build_report(events, pb, session_id=session_id, cues=inputs.cues or None,
                           acks=inputs.acks, deadletters=inputs.deadletters)
        return rep, self._store(rep)

    def _store(self, rep: Report) -> Path:
        from livecue.report import write_report

        root = Path(self.settings.reports_dir)
        out = report_dir(root, rep.room_id, rep.session_id)
        page = write_report(rep, out, self.lang)
        latest = root / safe_name(rep.room_id) / "index.html"
        tmp = latest.with_name(".index.html.tmp")
        shutil.copyfile(page, tmp)
        tmp.replace(latest)
        return page
