"""A many-room backlog caught up by one worker: zero forced releases, and exactly the backtest's
cues (ids, event times, kinds, SKUs, severities).

The backlog is a simulated show of ``ROOMS`` rooms over 8 partitions, produced in time order
(as ``livecue replay`` does) before the worker starts, so the worker reads it as fast as it can:
the regime where fetch order across topics is most uneven. ``LIVECUE_CATCHUP_ROOMS`` /
``LIVECUE_CATCHUP_SECONDS`` scale it up (the closing note's million-event run).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from livecue.memory import TrimAfterBurst
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from schemas.events import INPUT_TOPICS
from stream.playbook import default_playbook

from harness import collect, fresh_broker, metric_value, produce, records_of, start_worker

pytestmark = pytest.mark.slow

ROOMS = int(os.environ.get("LIVECUE_CATCHUP_ROOMS", "50"))
SECONDS = float(os.environ.get("LIVECUE_CATCHUP_SECONDS", "240"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with fresh_broker(tmp_path, partitions=8) as b:
        yield b


def _key(c: object) -> tuple:
    g = (lambda k: c[k]) if isinstance(c, dict) else (lambda k: getattr(c, k))  # noqa: E731
    return (g("cue_id"), g("ts"), g("kind"), g("sku_id"), g("severity"), g("target_sku_id"))


@pytest.mark.parametrize("mode", ["backlog", "paced20x"])
async def test_many_room_backlog_catch_up_equals_backtest_with_no_forced_release(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, mode: str
) -> None:
    # the same room ids in both modes (each test has a broker of its own): both modes play the
    # one recording, so both equal the same backtest, and so each other
    rooms = [f"catchup-{i}" for i in range(ROOMS)]
    events = sorted(generate(11, rooms, "mixed", duration=SECONDS, rate=6.0), key=lambda e: e.ts)
    records = records_of(events)  # in time order, as replay produces
    bt = run_backtest(records, default_playbook())
    assert not bt.rejected, bt.reasons()
    expected = {_key(c) for c in bt.cues}
    assert len(expected) >= ROOMS, "the show should fire cues in most rooms"
    # a small merge queue bound, so fetch pausing and resuming is exercised all along the run
    settings = test_settings.replace(partitions=8, max_queued_per_partition=int(
        os.environ.get("LIVECUE_CATCHUP_QUEUE", "300")))
    if mode == "backlog":
        produce(broker.bootstrap, records)  # the whole backlog first
        w = start_worker(settings, tmp_path / "worker.log", "catchup")
    else:  # the same recording paced at 20x event time into a running worker
        w = start_worker(settings, tmp_path / "worker.log", "paced")
        start_wall, start_ts = time.monotonic(), events[0].ts
        ts_of = {id(r): e.ts for r, e in zip(records, events)}

        def pace(rec: object) -> None:
            due = start_wall + (ts_of[id(rec)] - start_ts) / 1000 / 20
            delay = due - time.monotonic()
            if delay > 0.005:
                time.sleep(delay)

        produce(broker.bootstrap, records, pace=pace)
    try:
        rs = set(rooms)
        ids = {k[0] for k in expected}
        got = await collect(broker.bootstrap, "live.cues", lambda v: v.get("room_id") in rs,
                            lambda got: ids <= {c["cue_id"] for c in got}, timeout=240)
        text = w.metrics()
        released = metric_value(text, "livecue_events_released_total")
        assert released > 0, "precondition: the worker processed the backlog"
        got_keys = {_key(c) for c in got}
        missing = sorted(expected - got_keys)[:10]
        extra = sorted(got_keys - expected)[:10]
        assert got_keys == expected, f"missing {missing}\nextra {extra}\n{w.log_tail()}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and released < len(records):
            time.sleep(0.2)
            text = w.metrics()
            released = metric_value(text, "livecue_events_released_total")
        assert released == len(records)
        assert metric_value(text, "livecue_aligner_forced_total") == 0
        pauses = metric_value(text, "livecue_partition_pauses_total")
        peak = metric_value(text, "livecue_aligner_pending_peak")
        if mode == "backlog":
            assert pauses > 0, "precondition: the merge queue bound paused fetching"
            # memory of a catch-up: a fetch round hands over at most one queue bound of records
            # (the rest stays raw in the fetch buffer), so a topic-partition's queue never holds
            # more than twice the bound, however much one fetch brought
            bound = settings.max_queued_per_partition
            assert bound < peak <= 2 * bound * len(INPUT_TOPICS) * settings.partitions, (peak, bound)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        if mode == "backlog":
            # the burst's memory went back to the system once it was released (livecue.memory)
            assert peak >= TrimAfterBurst().min_burst, "precondition: a burst worth a trim"
            assert "allocator trimmed after a burst" in log, w.log_tail()
        for marker in ("Traceback", "Crashed", "pump failed"):
            assert marker not in log, f"{marker!r} in the worker log:\n{w.log_tail()}"
        digest = hashlib.sha256(repr(sorted(got_keys)).encode()).hexdigest()[:16]
        print(f"{mode}: {len(records)} events, {ROOMS} rooms, 8 partitions, {len(expected)} cues, "
              f"forced releases 0, {pauses:.0f} fetch pauses, at most {peak:.0f} events queued, "
              f"cues (id, ts, kind, sku, severity, target) sha256 {digest} == the backtest's")
    finally:
        w.stop()
