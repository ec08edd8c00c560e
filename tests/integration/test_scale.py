"""Scale out and in under load: a show runs at a steady rate into one worker; a second worker
joins the group (Faust rebalance), later the first leaves (clean stop). Nothing is lost, nothing
stalls, the lag comes back.

Checked, with the figures printed (``-s``):

- every cue of the backtest of the same input is on live.cues (after dedupe by cue_id), and no
  other id; duplicates on the topic are counted and reported;
- every room's state in the changelog equals a recomputation (each event applied exactly once);
- no stall over 60 s: neither the group's committed offsets (while there is lag) nor the output
  (cues and room_stats) stand still longer;
- after the join and after the leave, the lag (committed offsets vs each input partition's fetch
  high watermark; Tansu's ListOffsets(latest) is wrong) is back to normal past its peak within
  60 s (after the join: before the leave, which comes at least 8 s after the new worker got its
  partitions; a loaded host's lag may rise again, what must not happen is that it stays up),
  where normal is twice the largest lag seen with one worker at steady state, or one second of
  input.

Runs on Apache Kafka (group joins are fast there). ``LIVECUE_SCALE_BROKERS=kafka,tansu`` adds
the Tansu run (~20 s longer: its groups form only after the rebalance timeout); CI runs Kafka only
to stay in its time budget. The bounds are failure bounds, not performance targets.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fault_tools import EXACT_GRACE_MS, Observer, PacedProducer, changelog_states, steady_show, tansu_settings
from harness import WorkerProc, explain_state, fresh_broker, metric_value, recompute, start_worker
from kafka_harness import fresh_kafka, kafka_settings
from livecue.config import Settings
from livecue.sim.backtest import run_backtest
from stream.core import dump_state
from stream.playbook import default_playbook
from stream.processor import decode_room_value

pytestmark = pytest.mark.slow

BROKERS = [b.strip() for b in os.environ.get("LIVECUE_SCALE_BROKERS", "kafka").split(",") if b.strip()]
ROOMS = 10
PER_ROOM = 40.0  # events a room a second: ~300 events/s in all
SHOW_S = 20.0  # a show restarts in each room every ~20 s: cues all along the run
RUN_S = 40.0
JOIN_AT, LEAVE_AT = 10.0, 24.0  # seconds into the run
SETTLE_S = 8.0
BOUND_S = 60.0


@pytest.fixture(params=BROKERS)
def on_broker(request: pytest.FixtureRequest, tmp_path: Path, uid: str) -> Iterator[tuple[str, str, Settings]]:
    """(broker kind, bootstrap, worker settings) on a broker of the test's own (started outside
    the test's event loop: the broker helpers run their own)."""
    with broker_of(request.param, tmp_path, uid) as (bootstrap, settings):
        yield request.param, bootstrap, settings


@contextmanager
def broker_of(kind: str, tmp_path: Path, uid: str) -> Iterator[tuple[str, Settings]]:
    """(bootstrap, worker settings) on a broker of the test's own."""
    if kind == "kafka":
        with fresh_kafka(tmp_path) as c:
            yield c.bootstrap, kafka_settings(c, tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
    elif kind == "tansu":
        with fresh_broker(tmp_path) as b:
            yield b.bootstrap, tansu_settings(b.url, tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
    else:
        raise AssertionError(f"unknown broker {kind!r} in LIVECUE_SCALE_BROKERS (kafka, tansu)")


async def _released(w: WorkerProc) -> float:
    text = await asyncio.to_thread(w.metrics)
    return metric_value(text, "livecue_events_released_total")


async def test_a_worker_joins_and_one_leaves_under_load(
    on_broker: tuple[str, str, Settings], tmp_path: Path, uid: str
) -> None:
    kind, bootstrap, settings = on_broker
    start_ms = int(time.time() * 1000)
    items = list(steady_show(f"sc{uid}-", ROOMS, RUN_S, PER_ROOM, start_ms, cohorts=4, show_s=SHOW_S))
    records = [r for _, r in items]
    rooms = sorted({r.key for r in records if r.key})
    expected = {c.cue_id for c in run_backtest(records, default_playbook()).cues}
    assert len(expected) >= 9, "precondition: the shows fire cues all along"
    rate = len(records) / RUN_S
    a = await asyncio.to_thread(start_worker, settings, tmp_path / "a.log", "a")
    b: WorkerProc | None = None
    obs = await Observer(bootstrap, settings.app_id, rooms=frozenset(rooms)).start()
    producer = PacedProducer(bootstrap, items)
    try:
        producer.start()
        t0 = producer.t0
        await asyncio.sleep(max(0.0, t0 + JOIN_AT - time.monotonic()))
        obs.mark("join")
        b = await asyncio.to_thread(start_worker, settings, tmp_path / "b.log", "b")
        obs.mark("joined")
        # leave under load, but never sooner than SETTLE_S after b got its partitions
        await asyncio.sleep(max(0.0, max(t0 + LEAVE_AT, obs.marks["joined"] + SETTLE_S) - time.monotonic()))
        assert await _released(b) > 0, f"precondition: worker b got partitions and work\n{b.log_tail()}"
        obs.mark("leave")
        await asyncio.to_thread(a.stop)
        obs.mark("left")
        assert a.proc.returncode == 0, a.log_tail()
        before = await _released(b)
        await asyncio.to_thread(producer.join, RUN_S + 30)
        obs.mark("produced")
        assert await _released(b) > before, "precondition: b took over a's partitions"
        # drain: everything committed, every expected cue seen
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            s = obs.samples[-1] if obs.samples else None
            ids = {c["cue_id"] for c in obs.cues}
            if s and s.t > obs.marks["produced"] and s.lag == 0 and expected <= ids:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # anything extra (a duplicate) has time to show up
        obs.mark("end")
    finally:
        producer.stop()
        await obs.stop()
        for w in (a, b):
            if w is not None:
                await asyncio.to_thread(w.stop)
        log_b = b.log_tail() if b is not None else ""
    changelog = f"{settings.app_id}-room_state-changelog"
    last, _n = await changelog_states(bootstrap, changelog)

    m = obs.marks
    got = [c["cue_id"] for c in obs.cues]
    ids = set(got)
    dups = len(got) - len(ids)
    steady = obs.lag_between(t0 + 3.0, m["join"])  # one worker, past the show's first seconds
    assert steady, "precondition: lag samples before the join"
    normal = max(2 * max(steady), int(rate))
    back_join = obs.lag_back_after(m["join"], normal, m["leave"])  # the join's own phase
    back_leave = obs.lag_back_after(m["leave"], normal, min(m["end"], m["leave"] + BOUND_S))
    stall = obs.commit_stall_s(t0, m["end"])
    gap = obs.output_gap_s(t0 + 2.0, m["produced"])
    peak_join = max(obs.lag_between(m["join"], m["leave"]), default=0)
    peak_leave = max(obs.lag_between(m["leave"], m["produced"]), default=0)
    print(f"\n[scale {kind}] {len(records)} events ({rate:.0f}/s), {len(rooms)} rooms; cues expected "
          f"{len(expected)}, on topic {len(got)}, distinct {len(ids)}, duplicates {dups}; "
          f"b joined in {m['joined'] - m['join']:.1f} s, a left in {m['left'] - m['leave']:.1f} s; "
          f"lag steady max {max(steady)}, peak after join {peak_join}, after leave {peak_leave}, "
          f"normal <= {normal}; back to normal {back_join if back_join is None else round(back_join, 1)} s "
          f"after the join started, {back_leave if back_leave is None else round(back_leave, 1)} s after the leave; "
          f"largest commit stall {stall:.1f} s, largest output gap {gap:.1f} s")
    assert expected <= ids, f"lost cues: {sorted(expected - ids)[:5]}\n{log_b}"
    assert ids <= expected, f"cues not in the backtest: {sorted(ids - expected)[:5]}"
    want = {r: dump_state(recompute(records, r).state) for r in rooms}
    states = {r: dump_state(decode_room_value(last[r])[1]) for r in rooms if r in last}
    wrong = [r for r in rooms if states.get(r) != want[r]]
    assert not wrong, (f"{len(wrong)} rooms whose changelog state is not the recomputation: {wrong[:3]}\n"
                       + explain_state(wrong[0], last.get(wrong[0]), want[wrong[0]])
                       + f"\n--- worker a\n{a.log_tail(40)}\n--- worker b\n{log_b}")
    assert stall < BOUND_S, f"committed offsets stood still {stall:.1f} s while lagging"
    assert gap < BOUND_S, f"no output for {gap:.1f} s"
    assert back_join is not None, f"lag not back to <= {normal} after the join, before the leave"
    assert back_leave is not None, f"lag not back to <= {normal} within {BOUND_S} s of the leave"
