"""A recorded show replayed at --speed max through a real worker fires exactly the cues the
offline backtest of the same file finds: same ids, same event times."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from livecue.broker import EmbeddedBroker
from livecue.recording import read_recording
from livecue.sim.backtest import run_backtest
from stream.playbook import default_playbook

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _env(broker: EmbeddedBroker, uid: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({  # as tests/conftest.py's test_settings: Tansu forms groups after the rebalance timeout
        "LIVECUE_BROKER": broker.url, "LIVECUE_APP_ID": f"livecue-replay-{uid}",
        "LIVECUE_DATA_DIR": str(tmp_path / "data"), "LIVECUE_METRICS_PORT": "0",
        "LIVECUE_REBALANCE_TIMEOUT_S": "3", "LIVECUE_SESSION_TIMEOUT_S": "6",
        "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5", "LIVECUE_COMMIT_INTERVAL_S": "0.2",
        "LIVECUE_LOG_FORMAT": "text", "LIVECUE_WORKER_ID": f"replay-{uid}", "PYTHONUNBUFFERED": "1",
        # A max-speed replay squeezes minutes of show into a second: records of one moment reach
        # the broker up to a few hundred ms apart on a loaded machine. An exact replay waits that
        # long for quiet topics (live traffic keeps the 100 ms default).
        "LIVECUE_ALIGN_GRACE_MS": "1500",
    })
    return env


def _start_worker(env: dict[str, str], log_path: Path, timeout: float = 60) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "livecue.cli", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    url = None
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = re.search(r"metrics: (http://\S+)", line)
        url = m.group(1) if m else None
    assert url, log_path.read_text(errors="replace")[-3000:]
    while time.monotonic() < deadline:  # owns partitions once it reports consumer lag
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if b"livecue_consumer_lag{" in r.read():
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("worker never got partitions: " + log_path.read_text(errors="replace")[-3000:])


async def _cues(bootstrap: str, rooms: set[str], want: set[str], timeout: float) -> dict[str, dict]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await c.start()
    got: dict[str, dict] = {}
    try:
        tps = [TopicPartition("live.cues", p) for p in sorted(c.partitions_for_topic("live.cues") or ())]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        settle: float | None = None
        while time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=200)).values():
                for m in msgs:
                    v = orjson.loads(m.value)
                    if v.get("room_id") in rooms:
                        got[v["cue_id"]] = v
            if want <= got.keys():
                settle = settle or time.monotonic() + 3  # a few more seconds to catch any extra cue
                if time.monotonic() >= settle:
                    break
    finally:
        await c.stop()
    return got


async def test_replayed_recording_through_the_worker_gives_the_backtest_cues(
    broker: EmbeddedBroker, uid: str, tmp_path: Path
) -> None:
    show = tmp_path / "show.jsonl"
    prefix = f"rw-{uid}-"
    rooms = {prefix + "1", prefix + "2"}
    subprocess.run([sys.executable, "-m", "livecue.cli", "simulate", "--out", str(show), "--rooms", "2",
                    "--room-prefix", prefix, "--scenario", "mixed", "--duration", "300", "--seed", "5",
                    "--quiet"], cwd=ROOT, check=True, timeout=60)
    expected = run_backtest(list(read_recording(show)), default_playbook())
    assert {c.kind for c in expected.cues} >= {"push_stock", "release_orders", "switch_to_traffic_driver"}

    env = _env(broker, uid, tmp_path)
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        done = subprocess.run([sys.executable, "-m", "livecue.cli", "replay", str(show), "--speed", "max",
                               "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        got = await _cues(broker.bootstrap, rooms, {c.cue_id for c in expected.cues}, timeout=120)
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    want = {c.cue_id: c for c in expected.cues}
    diff = [f"missing {c.room_id} {c.kind} {c.sku_id} ts={c.ts}" for i, c in want.items() if i not in got]
    diff += [f"extra {v['room_id']} {v['kind']} {v['sku_id']} ts={v['ts']}" for i, v in got.items() if i not in want]
    assert set(got) == set(want), "\n".join(diff) + "\n" + log
    for c in expected.cues:  # same event time and decision, whatever the wall-clock speed
        w = got[c.cue_id]
        assert (w["ts"], w["kind"], w["sku_id"], w["target_sku_id"], w["severity"]) == (
            c.ts, c.kind, c.sku_id, c.target_sku_id, c.severity)
