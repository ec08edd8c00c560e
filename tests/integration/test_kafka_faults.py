"""Broker faults on Apache Kafka with a show running through a worker.

On 3 nodes (replication 3, min.insync.replicas 2):

1. kill -9 the node leading the input partition of a room mid-show, produce on, restart it;
2. then kill -9 the node leading that room's changelog partition, produce the rest.

No cue is lost, no other cue appears (the cue ids equal the backtest's, which the clean-run tests
pin), the state in the changelog equals a recomputation, and the time from each kill until the
worker consumes again is printed.

On 1 node: the whole cluster stopped mid-show (data on disk) and started again; the worker and
the gateway reconnect by themselves and a controller screen gets every cue of its room.

The worker creates its changelog with Faust's ``topic_replication_factor`` (1, in
stream/app.py), which no kill can survive; the test creates the changelog and Faust's leader
topic beforehand with replication 3, as an operator of a replicated cluster has to today.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from harness import EXACT_GRACE_MS, collect, explain_state, metric_value, produce, recompute, records_of, start_worker
from kafka_harness import changelog_last, fresh_kafka, kafka_settings
from livecue.config import Settings
from livecue.kafka_cluster import KafkaCluster
from livecue.recording import Record
from livecue.sim.show import generate
from schemas.events import INPUT_TOPICS
from stream.core import dump_state
from stream.processor import decode_room_value

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    with fresh_kafka(tmp_path, nodes=3) as c:
        yield c


async def _precreate_worker_topics(cluster: KafkaCluster, settings: Settings) -> str:
    changelog = f"{settings.app_id}-room_state-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([
            NewTopic(changelog, num_partitions=settings.partitions, replication_factor=3,
                     topic_configs={"cleanup.policy": "compact"}),
            NewTopic(f"{settings.app_id}-__assignor-__leader", num_partitions=1, replication_factor=3),
        ])
    finally:
        await admin.close()
    return changelog


def _alive(cluster: KafkaCluster) -> str:
    """Bootstrap of the running nodes only (a client given a dead node first waits on it)."""
    return ",".join(n.bootstrap for n in cluster.nodes if n.alive())


async def _leader(cluster: KafkaCluster, topic: str, partition: int, not_: int | None = None,
                  timeout: float = 60.0) -> int:
    """The partition's leader (one other than ``not_``), asking only running nodes, retrying
    while the cluster moves leadership."""
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=_alive(cluster), request_timeout_ms=5000)
        try:
            await admin.start()
            (d,) = await admin.describe_topics([topic])
            for p in d["partitions"]:
                if p["partition"] == partition and p["leader"] >= 0 and p["leader"] != not_:
                    return int(p["leader"])
        except KafkaError:
            pass
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
    raise AssertionError(f"no leader for {topic}-{partition} other than {not_} within {timeout}s")


async def _leaders_back(cluster: KafkaCluster, topics: tuple[str, ...], timeout: float) -> None:
    """Wait until every partition of ``topics`` has a leader."""
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=_alive(cluster), request_timeout_ms=5000)
        try:
            await admin.start()
            described = await admin.describe_topics(list(topics))
            if all(d["error_code"] == 0 and d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
                   for d in described):
                return
        except KafkaError:
            pass
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
    raise AssertionError(f"partitions of {topics} without a leader {timeout}s after the restart")


async def _partition_of(cluster: KafkaCluster, topic: str, room: str, key_field: str = "room_id") -> int:
    got = await collect(_alive(cluster), topic, lambda v: v.get(key_field) == room, lambda g: len(g) >= 1, timeout=30)
    assert got, f"no record of {room} on {topic}"
    return int(got[0]["_partition"])


async def _consumed_at_least(w, n: float, timeout: float) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if metric_value(w.metrics(), "livecue_events_consumed_total") >= n:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    raise AssertionError(f"worker did not reach {n} consumed events within {timeout}s: {w.log_tail()}")


async def test_killing_the_leaders_of_an_input_and_a_changelog_partition_loses_no_cue(
    cluster: KafkaCluster, tmp_path: Path, uid: str
) -> None:
    rooms = [f"kf{uid}-{i}" for i in range(2)]
    records: list[Record] = records_of(generate(11, rooms, "mixed", duration=240.0, rate=25.0))
    expected: set[str] = set()
    for r in rooms:
        expected |= {c.cue_id for c in recompute(records, r).cues}
    assert len(expected) >= 3
    # While leadership moves, producers re-route after a metadata refresh: records of one moment
    # reach the brokers up to about a second apart. The default 100 ms grace for quiet topics
    # releases events past them (one extra push_stock in a measured run); an exact result waits
    # longer, as the max-speed replay test does. 1500 ms once fell short in CI (a viewers sample
    # released after a later record of another topic: its bucket's online count not stamped).
    settings = kafka_settings(cluster, tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=os.environ.get("LIVECUE_TEST_FAULT_GRACE_MS", "3000"))
    changelog = await _precreate_worker_topics(cluster, settings)
    third = len(records) // 3
    w = start_worker(settings, tmp_path / "worker.log", "w1")
    try:
        produce(cluster.bootstrap, records[:third], idempotent=True)
        await _consumed_at_least(w, third, 60)

        # 1. the leader of room 0's live.chat partition
        p_in = await _partition_of(cluster, "live.chat", rooms[0])
        victim = await _leader(cluster, "live.chat", p_in)
        cluster.kill(victim)
        t_kill = time.monotonic()
        new_leader = await _leader(cluster, "live.chat", p_in, not_=victim)
        failover1 = time.monotonic() - t_kill
        sending = asyncio.create_task(asyncio.to_thread(produce, cluster.bootstrap, records[third:2 * third], None, True))
        await _consumed_at_least(w, third + 1, 60)
        resume1 = time.monotonic() - t_kill
        await sending
        await _consumed_at_least(w, 2 * third, 90)
        print(f"[kafka 3 nodes] kill -9 node {victim} (leader of live.chat-{p_in}): node {new_leader} leads after {failover1:.2f}s; "
              f"worker consumes again {resume1:.2f}s after the kill, second third done after "
              f"{time.monotonic() - t_kill:.2f}s")
        cluster.restart_node(victim)

        # 2. the leader of room 0's changelog partition
        p_cl = await _changelog_partition(cluster, changelog, rooms[0])
        victim2 = await _leader(cluster, changelog, p_cl)
        cluster.kill(victim2)
        t_kill2 = time.monotonic()
        new_leader2 = await _leader(cluster, changelog, p_cl, not_=victim2)
        failover2 = time.monotonic() - t_kill2
        sending = asyncio.create_task(asyncio.to_thread(produce, cluster.bootstrap, records[2 * third:], None, True))
        await _consumed_at_least(w, 2 * third + 1, 60)
        resume2 = time.monotonic() - t_kill2
        await sending
        await _consumed_at_least(w, len(records), 120)
        print(f"[kafka 3 nodes] kill -9 node {victim2} (leader of {changelog}-{p_cl}): node {new_leader2} leads after {failover2:.2f}s; worker consumes again "
              f"{resume2:.2f}s after the kill, all consumed after {time.monotonic() - t_kill2:.2f}s")

        cluster.restart_node(victim2)
        got = await collect(_alive(cluster), "live.cues", lambda v: v.get("room_id") in rooms,
                            lambda g: expected <= {c["cue_id"] for c in g}, timeout=90)
        got_ids = {c["cue_id"] for c in got}
        by_id = {c.cue_id: c for r in rooms for c in recompute(records, r).cues}
        diff = [f"missing {by_id[i].room_id} {by_id[i].kind} {by_id[i].sku_id} ts={by_id[i].ts}" for i in expected - got_ids]
        diff += [f"extra {c['room_id']} {c['kind']} {c['sku_id']} ts={c['ts']}" for c in got if c["cue_id"] not in expected]
        forced = metric_value(w.metrics(), "livecue_aligner_forced_total")
        assert got_ids == expected, "\n".join(diff) + f"\nforced releases: {forced}\n" + w.log_tail(15)
        print(f"[kafka 3 nodes] cues: expected {len(expected)}, delivered {len(got)} records, "
              f"{len(got) - len(got_ids)} duplicates before dedupe, 0 missing")
        # the reference folds the records in the order sent: the topics must hold them so
        assert not (bad := await _not_as_sent(_alive(cluster), records, rooms)), \
            "precondition: each topic holds each room's records once, in the order sent\n" + "\n".join(bad)
        want = {r: dump_state(recompute(records, r).state) for r in rooms}
        state: dict[str, bytes] = {}
        for _ in range(40):
            state = await changelog_last(_alive(cluster), changelog, rooms)
            if all(r in state and dump_state(decode_room_value(state[r])[1]) == want[r] for r in rooms):
                break
            await asyncio.sleep(0.5)
        for r in rooms:
            assert dump_state(decode_room_value(state[r])[1]) == want[r], \
                explain_state(r, state.get(r), want[r]) + "\n" + w.log_tail(40)
        assert w.proc.poll() is None, "the worker rode out both broker deaths"
    finally:
        w.stop()


async def _not_as_sent(bootstrap: str, records: list[Record], rooms: list[str]) -> list[str]:
    """Where an input topic does not hold a room's records exactly once and in the order they
    were sent (a producer retry without idempotence can reorder a partition when its leader
    dies: the worker then rightly folds another input than the reference)."""
    problems = []
    for topic in INPUT_TOPICS:
        sent: dict[str, list[str]] = {r: [] for r in rooms}
        for rec in records:
            if rec.topic == topic and rec.key in sent:
                sent[rec.key].append(orjson.loads(rec.value)["event_id"])
        n = sum(len(v) for v in sent.values())
        held = await collect(bootstrap, topic, lambda v: v.get("room_id") in sent,
                             lambda g, n=n: len(g) >= n, timeout=30, settle_s=0.5)
        for r in rooms:
            got = [v["event_id"] for v in held if v["room_id"] == r]
            if got != sent[r]:
                i = next((i for i, (a, b) in enumerate(zip(got, sent[r])) if a != b), min(len(got), len(sent[r])))
                problems.append(f"{topic} {r}: {len(got)} held, {len(sent[r])} sent, first difference at "
                                f"#{i}: held {got[i:i + 3]}, sent {sent[r][i:i + 3]}")
    return problems


async def _changelog_partition(cluster: KafkaCluster, topic: str, room: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=_alive(cluster), enable_auto_commit=False)
    await c.start()
    try:
        await c._client._wait_on_metadata(topic)  # noqa: SLF001 - as harness.collect
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or set())]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            for tp, msgs in (await c.getmany(timeout_ms=300)).items():
                if any(m.key == room.encode() for m in msgs):
                    return tp.partition
        raise AssertionError(f"{room} not in {topic}")
    finally:
        await c.stop()


async def test_whole_cluster_restart_mid_show_worker_and_gateway_carry_on(tmp_path: Path, uid: str) -> None:
    """Stop the (one-node) cluster mid-show with its data on disk, start it again: the worker and
    the gateway reconnect by themselves (no restart, no crash), nothing committed is lost, and a
    controller screen ends up with every cue of its room."""
    from prometheus_client import CollectorRegistry
    from websockets.asyncio.client import connect

    from consumers.gateway import Gateway, Limits
    from consumers.tokens import mint

    rooms = [f"kr{uid}-{i}" for i in range(2)]
    records = records_of(generate(5, rooms, "mixed", duration=240.0, rate=25.0))
    expected = {r: {c.cue_id for c in recompute(records, r).cues} for r in rooms}
    assert sum(len(v) for v in expected.values()) >= 3
    half = len(records) // 2
    cluster = KafkaCluster(nodes=1, base_dir=tmp_path / "kafka")
    with cluster:
        await cluster.create_topics(4)
        # the show is produced in bursts and compared with the backtest (harness.EXACT_GRACE_MS)
        settings = kafka_settings(cluster, tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
        w = start_worker(settings, tmp_path / "worker.log", "w1")
        gw = Gateway(settings, CollectorRegistry(), limits=Limits(ready_timeout_s=30))
        await gw.start()
        screen: set[str] = set()
        try:
            tok = mint(settings.token_secret, "controller", [rooms[0]], 3600, "tester", time.time())
            async with connect(gw.ws_url) as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": tok}).decode())

                async def read() -> None:
                    async for raw in ws:
                        m = orjson.loads(raw)
                        if m["type"] == "cue":
                            screen.add(m["cue_id"])

                reader = asyncio.create_task(read())
                produce(cluster.bootstrap, records[:half], idempotent=True)
                await _consumed_at_least(w, half, 60)
                log_before = len((tmp_path / "worker.log").read_text().splitlines())

                t_stop = time.monotonic()
                await asyncio.to_thread(cluster.stop_nodes)
                await asyncio.sleep(3)  # the whole cluster is down
                await asyncio.to_thread(cluster.start_nodes)
                t_up = time.monotonic()
                print(f"[kafka] cluster down for {t_up - t_stop:.1f}s (shutdown + 3 s + start)")
                # The second half goes out once every input partition has its leader again: a
                # producer that meets a partition still loading delays that topic's records by
                # seconds and the worker, rightly, decides without them (cues then differ from
                # the backtest: input order across topics is the producer's to keep).
                await _leaders_back(cluster, INPUT_TOPICS, timeout=60)

                sending = asyncio.create_task(asyncio.to_thread(produce, cluster.bootstrap, records[half:], None, True))
                await _consumed_at_least(w, half + 1, 90)
                print(f"[kafka] worker consumes again {time.monotonic() - t_up:.2f}s after the cluster is back")
                await sending
                await _consumed_at_least(w, len(records), 120)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not expected[rooms[0]] <= screen:
                    await asyncio.sleep(0.2)
                reader.cancel()
            # Not asserted, measured: aiokafka logs every reconnect attempt of the worker's
            # clients (about 50,000 lines for an 8 s outage on 2 cores; docs/operations.md).
            log_during = len((tmp_path / "worker.log").read_text().splitlines()) - log_before
            print(f"[kafka] worker log lines from the stop to the end: {log_during}")
            # Nothing lost: every backtest cue reached the screen and the topic. Not asserted: no
            # other cue. Right after the restart the worker sometimes fires one the backtest does
            # not (3 runs in 7 at load 8-14 with the 1500 ms grace; 1 in 3 with every leader back
            # before the second half): docs/operations.md, "Whole-cluster restart", known problem.
            assert expected[rooms[0]] <= screen, "the screen got every cue of its room across the restart"
            got = await collect(cluster.bootstrap, "live.cues", lambda v: v.get("room_id") in rooms,
                                lambda g: set().union(*expected.values()) <= {c["cue_id"] for c in g}, timeout=60)
            on_topic = {c["cue_id"] for c in got}
            assert set().union(*expected.values()) <= on_topic
            print(f"[kafka] cues not in the backtest after the restart: "
                  f"{sorted(on_topic - set().union(*expected.values())) or 'none'}")
            assert w.proc.poll() is None, "the worker rode out the restart without exiting"
        finally:
            await gw.stop()
            w.stop()
