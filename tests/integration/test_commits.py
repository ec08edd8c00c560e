"""The consumer group's committed offsets: they advance while a show runs, and after a clean
stop (SIGTERM) they equal the end of every input partition (nothing left to re-read)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from livecue.sim.show import generate

from harness import fresh_broker, metric_value, produce, records_of, start_worker
from test_restore import committed

pytestmark = pytest.mark.slow


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with fresh_broker(tmp_path, partitions=1) as b:
        yield b


async def test_commits_advance_during_a_show_and_reach_the_end_on_clean_stop(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    rooms = [f"cm{uid}-{i}" for i in range(3)]
    events = sorted(generate(6, rooms, "mixed", duration=120.0, rate=10.0), key=lambda e: e.ts)
    records = records_of(events)
    ends = {t: sum(1 for r in records if r.topic == t) for t in {r.topic for r in records}}
    # long commit interval: what a clean stop commits is then its own doing, not a timer's
    settings = test_settings.replace(partitions=1, commit_interval_s=8.0)
    w = start_worker(settings, tmp_path / "worker.log", "cm")
    try:
        # the show in four parts; after each of the first three, the commit must move forward
        quarter = len(records) // 4
        parts = [records[i * quarter:(i + 1) * quarter] for i in range(3)] + [records[3 * quarter:]]
        totals: list[int] = []
        done = 0
        for part in parts[:3]:
            produce(broker.bootstrap, part)
            done += len(part)
            deadline = time.monotonic() + 40
            total = totals[-1] if totals else 0
            while time.monotonic() < deadline:
                got = await committed(broker.bootstrap, settings.app_id, sorted(ends))
                total = sum(v or 0 for v in got.values())
                if total >= done:
                    break
                await asyncio.sleep(0.5)
            totals.append(total)
        assert totals[0] > 0, "precondition: the worker processed and committed the first part"
        assert totals == sorted(set(totals)) and totals[-1] >= done, f"commits did not advance: {totals}"
        # the last part: stop cleanly as soon as it is processed, long before the next commit
        produce(broker.bootstrap, parts[3])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and metric_value(w.metrics(), "livecue_events_released_total") < len(records):
            await asyncio.sleep(0.05)
        assert metric_value(w.metrics(), "livecue_events_released_total") == len(records)
        w.proc.send_signal(signal.SIGTERM)
        w.proc.wait(40)
        final = await committed(broker.bootstrap, settings.app_id, sorted(ends))
        assert final == ends, f"after a clean stop: {final} vs the ends {ends}\n{w.log_tail()}"
    finally:
        w.stop()
