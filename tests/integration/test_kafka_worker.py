"""The worker on Apache Kafka itself (KRaft, jars from Maven Central): the same properties the
Tansu tests prove in test_worker.py / test_replay_worker.py.

- a librdkafka-produced show gives exactly the backtest's cue ids;
- malformed events land one for one in live.deadletter and the worker keeps running;
- kill -9 mid-show loses no cue, and the state restored from the (compacted) changelog equals
  a recomputation from the input;
- a recording replayed at --speed max gives the backtest's cues, ids and event times.

Each test gets a one-node cluster of its own (``fresh_kafka``). Group-join and resume times are
printed (``-s`` shows them), never asserted.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from harness import WorkerProc, collect, metric_value, produce, recompute, records_of, start_worker
from kafka_harness import changelog_last, fresh_kafka, kafka_settings
from livecue.config import Settings, settings_env
from livecue.kafka_cluster import KafkaCluster
from livecue.recording import Record, read_recording
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from stream.core import dump_state
from stream.playbook import default_playbook
from stream.processor import decode_room_value

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    with fresh_kafka(tmp_path) as c:
        yield c


@pytest.fixture
def settings(cluster: KafkaCluster, tmp_path: Path, uid: str) -> Settings:
    return kafka_settings(cluster, tmp_path, uid)


def _show(uid: str, rooms: int = 2, duration: float = 240.0, seed: int = 7) -> tuple[list[Record], list[str]]:
    ids = [f"k{uid}-{i}" for i in range(rooms)]
    return records_of(generate(seed, ids, "mixed", duration=duration, rate=25.0)), ids


def _expected_ids(records: list[Record], rooms: list[str]) -> set[str]:
    ids: set[str] = set()
    for r in rooms:
        ids |= {c.cue_id for c in recompute(records, r).cues}
    return ids


async def _cues(cluster: KafkaCluster, rooms: list[str], want: set[str], timeout: float) -> list[dict]:
    rs = set(rooms)
    return await collect(
        cluster.bootstrap, "live.cues", lambda v: v.get("room_id") in rs,
        lambda got: want <= {c["cue_id"] for c in got}, timeout,
    )


def _timed_worker(settings: Settings, log: Path, worker_id: str) -> WorkerProc:
    t0 = time.monotonic()
    w = start_worker(settings, log, worker_id)
    print(f"[kafka] worker {worker_id}: start to partitions assigned {time.monotonic() - t0:.2f}s")
    return w


async def test_show_on_kafka_yields_the_backtest_cue_ids(
    cluster: KafkaCluster, settings: Settings, tmp_path: Path, uid: str
) -> None:
    records, rooms = _show(uid)
    expected = _expected_ids(records, rooms)
    assert len(expected) >= 3, "the mixed show should fire several cues"
    w = _timed_worker(settings, tmp_path / "worker.log", "w1")
    try:
        t0 = time.monotonic()
        produce(cluster.bootstrap, records)
        got = await _cues(cluster, rooms, expected, timeout=90)
        print(f"[kafka] {len(records)} records produced to all {len(expected)} cues: {time.monotonic() - t0:.2f}s")
        got_ids = {c["cue_id"] for c in got}
        assert got_ids == expected, w.log_tail()
        for c in got:
            assert c["type"] == "cue" and len(c["headline"]) <= 60 and c["emitted_at"] > 0
        # The worker sends the latest snapshot of each room per batch; Kafka hands a catching-up
        # worker large batches, so there are fewer snapshots than on Tansu, but each room's last
        # one is at the show's end.
        last_ts = {r: max(orjson.loads(x.value)["ts"] for x in records if x.key == r) for r in rooms}
        stats = await collect(cluster.bootstrap, "live.room_stats", lambda v: v.get("room_id") in rooms,
                              lambda got: {s["room_id"] for s in got if s["ts"] >= last_ts[s["room_id"]] - 1000} == set(rooms),
                              timeout=30)
        assert {s["room_id"] for s in stats} == set(rooms)
        assert {s["tier"] for s in stats} <= {"hot", "warm", "cold"}
        for r in rooms:
            assert max(s["ts"] for s in stats if s["room_id"] == r) >= last_ts[r] - 1000
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and metric_value(w.metrics(), "livecue_events_consumed_total") < len(records):
            await asyncio.sleep(0.2)
        text = w.metrics()
        assert metric_value(text, "livecue_events_consumed_total") == len(records)
        assert metric_value(text, "livecue_cues_total") >= len(expected)
    finally:
        w.stop()
    assert w.proc.returncode == 0, w.log_tail()


BAD = [
    (b"not json", "value: not valid JSON"),
    (b"\xff\xfe\x00", "value: not valid UTF-8"),
    (b"[1, 2]", "value: JSON is not an object"),
    (b'{"type": "like", "event_id": "e", "room_id": "ROOM", "ts": 1795000000000, "count": 0}', "count: must be positive"),
    (b'{"type": "teleport", "event_id": "e", "room_id": "ROOM", "ts": 1795000000000}', "type: unknown"),
    (b'{"type": "like", "event_id": "e", "room_id": "OTHER", "ts": 1795000000000, "count": 3}', "key: Kafka key disagrees with room_id"),
]


async def test_malformed_events_land_one_for_one_in_deadletter_on_kafka(
    cluster: KafkaCluster, settings: Settings, tmp_path: Path, uid: str
) -> None:
    room = f"kdl{uid}"
    bad = [(v.replace(b"ROOM", room.encode()), reason) for v, reason in BAD]
    good = records_of(generate(3, [room], "mixed", duration=20.0, rate=10.0))
    unknown_sku = orjson.dumps({
        "type": "order", "event_id": f"x{uid}", "room_id": room, "ts": orjson.loads(good[-1].value)["ts"],
        "order_id": "o-x", "user_id": "u", "sku_id": "NO-SUCH-SKU", "qty": 1, "amount_cents": 100,
        "status": "created",
    })
    w = _timed_worker(settings, tmp_path / "worker.log", "w1")
    try:
        produce(cluster.bootstrap, good)
        produce(cluster.bootstrap, [("live.likes", room.encode(), v) for v, _ in bad]
                + [("live.orders", room.encode(), unknown_sku)])
        got = await collect(cluster.bootstrap, "live.deadletter", lambda v: v.get("key") == room,
                            lambda got: len(got) >= len(bad) + 1, timeout=60, settle_s=1.0)
        assert len(got) == len(bad) + 1, w.log_tail()
        by_raw = {base64.b64decode(g["raw_b64"]): g for g in got}
        assert len(by_raw) == len(bad) + 1  # one dead letter per bad record, none twice
        for value, reason in bad:
            dl = by_raw[value]
            assert dl["topic"] == "live.likes" and dl["reason"].startswith(reason), dl
            assert isinstance(dl["partition"], int) and isinstance(dl["offset"], int)
        assert "sku" in by_raw[unknown_sku]["reason"].lower()
        assert metric_value(w.metrics(), "livecue_deadletters_total") >= len(bad) + 1
        assert w.proc.poll() is None  # still running
    finally:
        w.stop()


async def test_kill9_mid_show_on_kafka_loses_nothing_and_state_equals_recomputation(
    cluster: KafkaCluster, settings: Settings, tmp_path: Path, uid: str
) -> None:
    records, rooms = _show(uid, rooms=2, duration=240.0)
    expected = _expected_ids(records, rooms)
    half = len(records) // 2
    w1 = _timed_worker(settings, tmp_path / "w1.log", "w1")
    try:
        produce(cluster.bootstrap, records[:half])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and metric_value(w1.metrics(), "livecue_events_consumed_total") < half // 2:
            await asyncio.sleep(0.05)
        consumed_at_kill = metric_value(w1.metrics(), "livecue_events_consumed_total")
        w1.kill9()
    finally:
        w1.stop()
    assert 0 < consumed_at_kill < len(records), "the kill must land mid-show"
    produce(cluster.bootstrap, records[half:])
    t_restart = time.monotonic()
    w2 = _timed_worker(settings, tmp_path / "w2.log", "w2")
    try:
        got = await _cues(cluster, rooms, expected, timeout=120)
        got_ids = {c["cue_id"] for c in got}
        assert expected <= got_ids, w2.log_tail()
        assert got_ids <= expected  # duplicates only ever repeat an expected id
        dups = len(got) - len(got_ids)
        print(f"[kafka] kill -9 after {consumed_at_kill:.0f} events: restart to all {len(expected)} cues "
              f"{time.monotonic() - t_restart:.2f}s, {dups} duplicate cue records before dedupe")
        changelog = f"{settings.app_id}-room_state-changelog"
        want = {r: dump_state(recompute(records, r).state) for r in rooms}
        last: dict[str, bytes] = {}
        for _ in range(40):
            last = await changelog_last(cluster.bootstrap, changelog, rooms)
            if all(last.get(r) is not None and dump_state(decode_room_value(last[r])[1]) == want[r] for r in rooms):
                break
            await asyncio.sleep(0.5)
        for r in rooms:
            assert r in last, f"no state for {r} in {changelog}"
            assert dump_state(decode_room_value(last[r])[1]) == want[r]
        # On Kafka the changelog is a real compacted topic.
        assert await _topic_config(cluster, changelog, "cleanup.policy") == "compact"
    finally:
        w2.stop()


async def _topic_config(cluster: KafkaCluster, topic: str, name: str) -> str | None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        resp = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        for r in resp:
            for res in r.resources:
                for entry in res[4]:
                    if entry[0] == name:
                        return str(entry[1])
        return None
    finally:
        await admin.close()


async def test_replayed_recording_on_kafka_gives_the_backtest_cues(
    cluster: KafkaCluster, settings: Settings, uid: str, tmp_path: Path
) -> None:
    show = tmp_path / "show.jsonl"
    prefix = f"krw-{uid}-"
    rooms = {prefix + "1", prefix + "2"}
    subprocess.run([sys.executable, "-m", "livecue.cli", "simulate", "--out", str(show), "--rooms", "2",
                    "--room-prefix", prefix, "--scenario", "mixed", "--duration", "300", "--seed", "5",
                    "--quiet"], cwd=ROOT, check=True, timeout=60)
    expected = run_backtest(list(read_recording(show)), default_playbook())
    assert {c.kind for c in expected.cues} >= {"push_stock", "release_orders", "switch_to_traffic_driver"}
    # Same grace as the Tansu replay test: a max-speed replay's records of one moment reach the
    # broker up to a few hundred ms apart.
    s = settings.replace(align_grace_ms=1500)
    worker = _timed_worker(s, tmp_path / "worker.log", f"replay-{uid}")
    try:
        env = {**os.environ, **settings_env(s)}
        done = subprocess.run([sys.executable, "-m", "livecue.cli", "replay", str(show), "--speed", "max",
                               "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        want_ids = {c.cue_id for c in expected.cues}
        found = await collect(cluster.bootstrap, "live.cues", lambda v: v.get("room_id") in rooms,
                              lambda vs: want_ids <= {v["cue_id"] for v in vs}, timeout=120, settle_s=3)
        got = {v["cue_id"]: v for v in found}
    finally:
        worker.stop()
    want = {c.cue_id: c for c in expected.cues}
    diff = [f"missing {c.room_id} {c.kind} {c.sku_id} ts={c.ts}" for i, c in want.items() if i not in got]
    diff += [f"extra {v['room_id']} {v['kind']} {v['sku_id']} ts={v['ts']}" for i, v in got.items() if i not in want]
    assert set(got) == set(want), "\n".join(diff) + "\n" + worker.log_tail(60)
    for c in expected.cues:
        w = got[c.cue_id]
        assert (w["ts"], w["kind"], w["sku_id"], w["target_sku_id"], w["severity"]) == (
            c.ts, c.kind, c.sku_id, c.target_sku_id, c.severity)
