"""Soak, short version: a steady show (~300 events/s, shows restarting in rooms every ~20 s) runs
for 40 s through a worker and a gateway with a screen on every room.

Checked: the group's committed offsets advance in every 5-second window, new cues reach
live.cues and the screen in every 15-second window, the cues are exactly the backtest's, and the
worker and gateway are still alive. RSS is sampled and printed, never asserted: 40 s has no
warm-up to compare with; ``scripts/soak.py --minutes 60`` judges growth after warm-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.tokens import mint
from fault_tools import (
    EXACT_GRACE_MS, Observer, PacedProducer, rss_bytes, screen_counter, start_gateway, steady_show, tansu_settings,
)
from harness import fresh_broker, metric_value, start_worker
from livecue.broker import EmbeddedBroker
from livecue.sim.backtest import run_backtest
from stream.playbook import default_playbook

pytestmark = pytest.mark.slow

RUN_S = 40.0
ROOMS, PER_ROOM, SHOW_S = 10, 40.0, 20.0
COMMIT_WINDOW_S, CUE_WINDOW_S = 5.0, 15.0
MIB = 1024 * 1024


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with fresh_broker(tmp_path) as b:
        yield b


async def test_a_steady_show_keeps_committing_and_cues_keep_flowing(
    broker: EmbeddedBroker, tmp_path: Path, uid: str
) -> None:
    items = list(steady_show(f"sk{uid}-", ROOMS, RUN_S, PER_ROOM, int(time.time() * 1000), cohorts=4, show_s=SHOW_S))
    records = [r for _, r in items]
    rooms = sorted({r.key for r in records if r.key})
    expected = {c.cue_id for c in run_backtest(records, default_playbook()).cues}
    assert len(expected) >= 9, "precondition: the show fires cues throughout"
    # the production commit interval; the longer merge grace: the cues are compared with the backtest
    settings = tansu_settings(broker.url, tmp_path, uid, LIVECUE_COMMIT_INTERVAL_S="1.0",
                              LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
    worker = await asyncio.to_thread(start_worker, settings, tmp_path / "worker.log", "soak")
    gw = None
    screen: set[str] = set()
    screen_at: list[tuple[float, int]] = []
    stop = asyncio.Event()
    obs = await Observer(broker.bootstrap, settings.app_id, rooms=frozenset(rooms), output_topics=("live.cues",)).start()
    rss: list[tuple[float, int, int]] = []
    try:
        gw = await asyncio.to_thread(start_gateway, settings, tmp_path / "gateway.log")
        tok = mint(settings.token_secret, "controller", rooms, 3600, "soak", time.time())
        screen_task = asyncio.create_task(screen_counter(gw.ws_url, tok, screen, stop))
        producer = PacedProducer(broker.bootstrap, items).start()
        t0 = producer.t0
        while not producer.done.is_set():
            await asyncio.sleep(1.0)
            rss.append((time.monotonic() - t0, rss_bytes(worker.proc.pid), rss_bytes(gw.proc.pid)))
            screen_at.append((time.monotonic(), len(screen)))
            assert worker.proc.poll() is None, f"worker exited\n{worker.log_tail()}"
            assert gw.proc.poll() is None, f"gateway exited\n{gw.log_path.read_text()[-2000:]}"
        await asyncio.to_thread(producer.join, 30)
        t_end = time.monotonic()
        deadline = t_end + 60
        while time.monotonic() < deadline and not expected <= screen:
            await asyncio.sleep(0.5)
        released = metric_value(await asyncio.to_thread(worker.metrics), "livecue_events_released_total")
        stop.set()
        await asyncio.gather(screen_task, return_exceptions=True)
    finally:
        await obs.stop()
        if gw is not None:
            await asyncio.to_thread(gw.stop)
        await asyncio.to_thread(worker.stop)

    # windows after the worker's first commit (the first seconds may go to the group forming)
    first_commit = next((s.t for s in obs.samples if s.committed_total > 0), None)
    assert first_commit is not None, f"nothing was ever committed\n{worker.log_tail()}"
    commit_stalls = []
    w = first_commit
    while w + COMMIT_WINDOW_S <= t_end:
        inside = [s.committed_total for s in obs.samples if w <= s.t <= w + COMMIT_WINDOW_S]
        if not inside or max(inside) <= min(inside):
            commit_stalls.append(round(w - t0, 1))
        w += COMMIT_WINDOW_S
    topic_at = sorted(c["_arrived"] for c in obs.cues)
    quiet_topic, quiet_screen = [], []
    w = t0
    while w + CUE_WINDOW_S <= t_end:
        if not any(w <= t < w + CUE_WINDOW_S for t in topic_at):
            quiet_topic.append(round(w - t0, 1))
        before = max((n for t, n in screen_at if t <= w), default=0)
        after = max((n for t, n in screen_at if t <= w + CUE_WINDOW_S), default=0)
        if after <= before:
            quiet_screen.append(round(w - t0, 1))
        w += CUE_WINDOW_S
    ids = {c["cue_id"] for c in obs.cues}
    print(f"\n[soak short] {len(records)} events in {RUN_S:.0f} s ({len(records) / RUN_S:.0f}/s), released "
          f"{released:.0f}; committed {obs.samples[-1].committed_total} (lag {obs.samples[-1].lag}); cues "
          f"{len(ids)}/{len(expected)} on the topic, {len(screen)} on the screen; commit stall "
          f"{obs.commit_stall_s(first_commit, t_end):.1f} s; RSS worker {rss[0][1] / MIB:.0f} -> "
          f"{rss[-1][1] / MIB:.0f} MiB, gateway {rss[0][2] / MIB:.0f} -> {rss[-1][2] / MIB:.0f} MiB")
    assert not commit_stalls, f"committed offsets did not advance in the {COMMIT_WINDOW_S:.0f}-s windows at {commit_stalls}"
    assert not quiet_topic, f"no new cue on live.cues in the {CUE_WINDOW_S:.0f}-s windows at {quiet_topic}"
    assert not quiet_screen, f"no new cue on the screen in the {CUE_WINDOW_S:.0f}-s windows at {quiet_screen}"
    assert ids == expected, f"missing {sorted(expected - ids)[:3]}, extra {sorted(ids - expected)[:3]}"
    assert screen == expected, f"screen missing {sorted(expected - screen)[:3]}"
