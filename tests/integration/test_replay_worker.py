"""A recorded show replayed at --speed max through a real worker fires exactly the cues the
offline backtest of the same file finds: same ids, same event times. On Tansu and Apache Kafka.

The worker merges each partition by event time (Kafka Streams' model), so a replay equals the
backtest when the partitions it reads hold it in time order: its group starts at the inputs' tail
(``group_at_tail``), never amid another show of the same hours (earlier tests' replays)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brokers import BrokerUnderTest
from harness import EXACT_GRACE_MS, collect, group_at_tail, start_worker
from livecue.config import settings_env
from livecue.recording import read_recording
from livecue.sim.backtest import run_backtest
from stream.playbook import default_playbook

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


async def test_replayed_recording_through_the_worker_gives_the_backtest_cues(
    any_broker: BrokerUnderTest, uid: str, tmp_path: Path
) -> None:
    broker = any_broker
    show = tmp_path / "show.jsonl"
    prefix = f"rw-{uid}-"
    rooms = {prefix + "1", prefix + "2"}
    # Each simulated room draws from a random stream seeded with its id, so a show simulated under
    # this test's random ids differed from run to run (one in CI fired no release_orders). It is
    # simulated under fixed ids, the same show every run, and then given this test's own ids (the
    # broker is shared with other tests).
    fixed = "rw-show-"
    simulated = tmp_path / "simulated.jsonl"
    subprocess.run([sys.executable, "-m", "livecue.cli", "simulate", "--out", str(simulated), "--rooms", "2",
                    "--room-prefix", fixed, "--scenario", "mixed", "--duration", "300", "--seed", "5",
                    "--quiet"], cwd=ROOT, check=True, timeout=60)
    show.write_text(simulated.read_text().replace(fixed, prefix))
    expected = run_backtest(list(read_recording(show)), default_playbook())
    assert {c.kind for c in expected.cues} >= {"push_stock", "release_orders", "switch_to_traffic_driver"}

    # A max-speed replay squeezes minutes of show into a second: records of one moment reach the
    # broker up to a few hundred ms apart on a loaded machine. An exact replay waits that long for
    # quiet topics (live traffic keeps the 100 ms default).
    settings = broker.settings(tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
    await group_at_tail(broker.bootstrap, settings.app_id)
    worker = start_worker(settings, tmp_path / "worker.log", f"replay-{uid}")
    metrics, dls = "", []
    try:
        env = {**os.environ, **settings_env(settings)}
        done = subprocess.run([sys.executable, "-m", "livecue.cli", "replay", str(show), "--speed", "max",
                               "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        want_ids = {c.cue_id for c in expected.cues}
        # settle 3 s after the expected cues are in, to catch any extra cue
        found = await collect(broker.bootstrap, "live.cues", lambda v: v.get("room_id") in rooms,
                              lambda vs: want_ids <= {v["cue_id"] for v in vs}, timeout=120, settle_s=3)
        got = {v["cue_id"]: v for v in found}
        metrics = "\n".join(line for line in worker.metrics().splitlines()
                             if line.startswith(("livecue_deadletters_total", "livecue_events_", "livecue_aligner",
                                                 "livecue_rooms")))
        dls = await collect(broker.bootstrap, "live.deadletter", lambda v: v.get("key") in rooms,
                            lambda vs: False, timeout=3)
    finally:
        worker.stop()
    log = worker.log_tail(60) + "\n" + metrics + "\n" + "\n".join(
        f"deadletter {d['key']} {d['topic']} {d['reason']}" for d in dls[:20])
    want = {c.cue_id: c for c in expected.cues}
    diff = [f"missing {c.room_id} {c.kind} {c.sku_id} ts={c.ts}" for i, c in want.items() if i not in got]
    diff += [f"extra {v['room_id']} {v['kind']} {v['sku_id']} ts={v['ts']}" for i, v in got.items() if i not in want]
    assert set(got) == set(want), "\n".join(diff) + "\n" + log
    for c in expected.cues:  # same event time and decision, whatever the wall-clock speed
        w = got[c.cue_id]
        assert (w["ts"], w["kind"], w["sku_id"], w["target_sku_id"], w["severity"]) == (
            c.ts, c.kind, c.sku_id, c.target_sku_id, c.severity)
