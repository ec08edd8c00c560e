"""A worker state of many rooms, killed and restored from its changelog: the measured run behind
``scripts/restore_bench.py`` (10,000 rooms on both brokers; ``--rooms 1000 --brokers tansu`` is a
~45 s check, kept out of CI for its time budget; test_restore.py covers the restore mechanism).

:func:`restore_run` on a broker of its own:

1. a worker takes ``rooms`` rooms through ``rounds`` rounds of events (a session start, then
   viewers or likes: one event a room a round), plus four simulated shows that fire cues; after
   each round it waits until the group committed every input record, so each room's state is
   written to the changelog at least once a round (writes >> keys: what compaction is for);
2. counts the changelog: writes made (the sum of its partitions' end offsets) and records it
   holds (read from the beginning); on Kafka it then waits for the cleaner and counts again;
3. kills the worker (SIGKILL), produces one more round for every room and the shows' rest, starts
   a fresh worker (new data dir: state can only come from the changelog), and measures from the
   spawn: partitions assigned, processing again (its first released event: Faust starts the
   input streams only once the changelog is read), first post-restart cue on live.cues, every
   input committed (on Tansu the group first waits out the killed member's session timeout);
4. checks every cue of the backtest is on live.cues and that a sample of rooms' states in the
   changelog equal a recomputation of their events, before the kill and after the restart (the
   post-restart round applied on top of the restored state).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from collections.abc import Iterator

from fault_tools import EXACT_GRACE_MS, Observer, changelog_states, tansu_settings
from harness import WorkerProc, fresh_broker, metric_value, produce, recompute, start_worker
from kafka_harness import kafka_settings
from livecue.config import Settings
from livecue.kafka_cluster import KafkaCluster
from livecue.recording import Record, record_of
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from schemas.events import Event, LineupItem, Like, SessionStart, Viewers
from stream.core import dump_state
from stream.playbook import default_playbook
from stream.processor import decode_room_value

__all__ = ["RestoreFigures", "restore_run"]

#: Kafka: small segments and an eager cleaner, so compaction shows within a run (production
#: segments roll at 1 GiB or segment.ms; the cleaner never touches the active segment).
COMPACTING = {
    "log.segment.bytes": str(1024 * 1024),
    "log.cleaner.backoff.ms": "500",
    "log.cleaner.min.cleanable.ratio": "0.01",
    "log.cleaner.min.compaction.lag.ms": "0",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
}


@dataclass
class RestoreFigures:
    broker: str
    rooms: int
    events_before: int = 0
    events_after: int = 0
    input_records_on_broker: int = 0  # more than produced: the producer re-sent (timeouts, no idempotence)
    changelog_writes: int = 0
    changelog_records: int = 0
    changelog_read_s: float = 0.0  # a plain consumer reading it from the beginning to its end
    changelog_records_compacted: int | None = None
    compaction_wait_s: float | None = None
    build_s: float = 0.0
    spawn_to_assigned_s: float = 0.0
    spawn_to_processing_s: float | None = None
    spawn_to_first_cue_s: float | None = None
    spawn_to_caught_up_s: float | None = None
    cues_expected: int = 0
    cues_after_restart_expected: int = 0
    cues_missing: list[str] = field(default_factory=list)
    cues_unexpected: list[str] = field(default_factory=list)
    cue_duplicates: int = 0
    sampled_rooms: int = 0
    wrong_rooms: list[str] = field(default_factory=list)
    wrong_before_kill: list[str] = field(default_factory=list)
    wrong_detail: list[str] = field(default_factory=list)
    shows_exact: int = 0  # of the 4 shows (several topics a room: reported, not judged)

    def lines(self) -> list[str]:
        def s(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f} s"
        comp = ("not compacted (Tansu keeps every write)" if self.changelog_records_compacted is None
                else f"{self.changelog_records_compacted:,} records after compaction ({s(self.compaction_wait_s)} after the last write)")
        return [
            f"[restore {self.broker}] {self.rooms:,} rooms; {self.events_before:,} events before the kill "
            f"(built in {self.build_s:.1f} s), {self.events_after:,} after; input records on the broker "
            f"{self.input_records_on_broker:,}",
            f"  changelog: {self.changelog_writes:,} writes made, {self.changelog_records:,} records held before the kill "
            f"(read by a plain consumer in {self.changelog_read_s:.1f} s); {comp}",
            f"  fresh worker, from spawn: partitions assigned {s(self.spawn_to_assigned_s)}, restored and "
            f"processing {s(self.spawn_to_processing_s)}, first cue "
            f"{s(self.spawn_to_first_cue_s)}, every input committed {s(self.spawn_to_caught_up_s)}",
            f"  cues: {self.cues_expected} expected ({self.cues_after_restart_expected} after the restart), "
            f"missing {len(self.cues_missing)}, unexpected {len(self.cues_unexpected)}, duplicates on the topic "
            f"{self.cue_duplicates}; state == recomputation for {self.sampled_rooms - len(self.wrong_rooms)}/"
            f"{self.sampled_rooms} sampled rooms (before the kill: {self.sampled_rooms - len(self.wrong_before_kill)}/"
            f"{self.sampled_rooms}); shows' state == recomputation {self.shows_exact}/4",
            *self.wrong_detail,
        ]

    @property
    def ok(self) -> bool:
        return not (self.cues_missing or self.cues_unexpected or self.wrong_rooms
                    or self.wrong_before_kill) and self.spawn_to_first_cue_s is not None


def _room_events(room: str, rnd: int, ts: int) -> list[Event]:
    """One room's events of a round, all on one topic: a room's order across topics is then
    the production order whatever the broker's timing (the worker's merge releases a record
    after a short grace when the other topics are caught up, so a record that reaches a slow
    broker later than a newer one on another topic can be applied after it)."""
    if rnd == 0:
        lineup = (LineupItem("td", "引流款", "traffic_driver", 990, 500),
                  LineupItem("pf", "利润款", "profit", 29900, 80))
        return [SessionStart(f"{room}-s", room, ts, f"sess-{room}", lineup)]
    if rnd % 2:
        return [Viewers(f"{room}-v{rnd}", room, ts, 100 + 7 * rnd, 10 + rnd, 3)]
    return [Like(f"{room}-l{rnd}", room, ts, 1 + rnd)]


def _workload(prefix: str, rooms: int, rounds: int, base: int) -> tuple[list[list[Record]], list[Record], list[str]]:
    """(records of each round before the kill, records after it, show rooms): in event-time
    order, so every partition holds its records in time order."""
    ids = [f"{prefix}{i}" for i in range(rooms)]
    step = 40_000
    shows = [f"{prefix}show{i}" for i in range(4)]
    kill_ts = base + (rounds - 1) * step + step // 2
    # the shows open 30 s before the kill: cues fire before it and after it
    show_events = generate(3, shows, "mixed", start_ts=kill_ts - 30_000, duration=150.0, rate=30.0)
    timed: list[tuple[int, int, Event]] = [(ev.ts, 0, ev) for ev in show_events]
    for rnd in range(rounds + 1):
        for i, r in enumerate(ids):
            for ev in _room_events(r, rnd, base + rnd * step + i % 1000):
                timed.append((ev.ts, 1, ev))
    timed.sort(key=lambda x: (x[0], x[1]))
    chunks: list[list[Record]] = [[] for _ in range(rounds)]
    after: list[Record] = []
    for ts, _k, ev in timed:
        if ts >= kill_ts:
            after.append(record_of(ev))
        else:
            chunks[min(rounds - 1, (ts - base) // step)].append(record_of(ev))
    return chunks, after, shows


@contextmanager
def _broker(kind: str, tmp: Path, uid: str, env: dict[str, str]) -> Iterator[tuple[str, Settings, KafkaCluster | None]]:
    if kind == "kafka":
        c = KafkaCluster(nodes=1, base_dir=tmp / "kafka", extra_config=COMPACTING).start()
        try:
            asyncio.run(c.create_topics(4))
            yield c.bootstrap, kafka_settings(c, tmp, uid, **{"LIVECUE_COMMIT_INTERVAL_S": "1.0", **env}), c
        finally:
            c.stop()
    elif kind == "tansu":
        with fresh_broker(tmp) as b:
            yield b.bootstrap, tansu_settings(b.url, tmp, uid, LIVECUE_COMMIT_INTERVAL_S="1.0", **env), None
    else:
        raise AssertionError(f"unknown broker {kind!r} (kafka, tansu)")


async def _wait_committed(obs: Observer, n: int, timeout: float) -> bool:
    """Wait until the group committed ``n`` input records in all (and nothing lags)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = obs.samples[-1] if obs.samples else None
        if s is not None and s.committed_total >= n and s.lag == 0:
            return True
        await asyncio.sleep(0.2)
    return False


def restore_run(kind: str, rooms: int, tmp: Path, uid: str, rounds: int = 3, sample: int = 200,
                timeout: float = 300.0, env: dict[str, str] | None = None) -> RestoreFigures:
    """The run described in the module docstring (``env``: more LIVECUE_* settings for the
    workers); raises AssertionError when a step times out."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"LIVECUE_ALIGN_GRACE_MS": EXACT_GRACE_MS, **(env or {})}  # the shows' cues are compared with the backtest
    with _broker(kind, tmp, uid, env) as (bootstrap, settings, _cluster):
        return asyncio.run(_run(kind, rooms, tmp, uid, rounds, sample, timeout, bootstrap, settings))


async def _run(kind: str, rooms: int, tmp: Path, uid: str, rounds: int, sample: int, timeout: float,
               bootstrap: str, settings: Settings) -> RestoreFigures:
    fig = RestoreFigures(kind, rooms)
    base = int(time.time() * 1000) - 20 * 60_000  # in the past: nothing is "from the future"
    chunks, after, shows = _workload(f"rs{uid}-", rooms, rounds, base)
    everything = [r for c in chunks for r in c] + after
    fig.events_before, fig.events_after = sum(map(len, chunks)), len(after)
    backtest = run_backtest(everything, default_playbook()).cues
    expected = {c.cue_id for c in backtest}
    kill_ts = min(_ts(r) for r in after)
    after_ids = {c.cue_id for c in backtest if c.ts >= kill_ts}
    fig.cues_expected, fig.cues_after_restart_expected = len(expected), len(after_ids)
    assert after_ids, "precondition: the shows fire cues after the restart"
    changelog = f"{settings.app_id}-room_state-changelog"

    w1 = await asyncio.to_thread(start_worker, settings, tmp / "w1.log", "w1")
    obs = await Observer(bootstrap, settings.app_id, output_topics=("live.cues",), interval_s=0.25).start()
    w2: WorkerProc | None = None
    try:
        t = time.monotonic()
        done = 0
        for chunk in chunks:
            await asyncio.to_thread(produce, bootstrap, chunk)
            done += len(chunk)
            assert await _wait_committed(obs, done, timeout), f"a round was never committed\n{w1.log_tail()}"
        fig.build_s = time.monotonic() - t
        await asyncio.sleep(1.0)  # the flush after the last commit
        t = time.monotonic()
        last, held = await changelog_states(bootstrap, changelog)
        fig.changelog_read_s = time.monotonic() - t
        fig.changelog_records = held
        fig.changelog_writes = await _changelog_end(bootstrap, changelog)
        assert len([k for k in last if k.startswith(f"rs{uid}-")]) == rooms + len(shows), \
            f"precondition: every room's state in the changelog ({len(last)})"
        picked = _sample(uid, rooms, sample)
        before = [r for c in chunks for r in c]
        fig.wrong_before_kill = _wrong(picked, before, last, fig.wrong_detail, "before the kill")
        await asyncio.to_thread(w1.kill9)
        if kind == "kafka":
            t = time.monotonic()
            deadline = t + 90
            while time.monotonic() < deadline:
                _l, held = await changelog_states(bootstrap, changelog)
                if held < fig.changelog_writes // 2:
                    break
                await asyncio.sleep(2.0)
            fig.changelog_records_compacted, fig.compaction_wait_s = held, time.monotonic() - t
        await asyncio.to_thread(produce, bootstrap, after)
        log2 = tmp / "w2.log"
        cues_before = len(obs.cues)
        spawn = time.monotonic()
        w2 = await asyncio.to_thread(start_worker, settings.replace(data_dir=tmp / "data2"), log2, "w2")
        fig.spawn_to_assigned_s = time.monotonic() - spawn
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fig.spawn_to_processing_s is None:
                text = await asyncio.to_thread(w2.metrics)
                if metric_value(text, "livecue_events_released_total") > 0:
                    fig.spawn_to_processing_s = time.monotonic() - spawn
            new = [c for c in obs.cues[cues_before:] if c["cue_id"] in after_ids]
            if new and fig.spawn_to_first_cue_s is None:
                fig.spawn_to_first_cue_s = new[0]["_arrived"] - spawn
            s = obs.samples[-1] if obs.samples else None
            if fig.spawn_to_caught_up_s is None and s is not None and s.t > spawn and s.lag == 0 \
                    and s.committed_total >= len(everything):
                fig.spawn_to_caught_up_s = s.t - spawn
            if fig.spawn_to_caught_up_s is not None and expected <= {c["cue_id"] for c in obs.cues}:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # time for anything extra to show up
        fig.input_records_on_broker = sum(obs.ends().values())
    finally:
        await obs.stop()
        for w in (w1, w2):
            if w is not None:
                await asyncio.to_thread(w.stop)
    got = [c["cue_id"] for c in obs.cues]
    fig.cues_missing = sorted(expected - set(got))
    fig.cues_unexpected = sorted(set(got) - expected)
    fig.cue_duplicates = len(got) - len(set(got))
    # state: a sample of rooms and the shows, against a recomputation of all their events
    last, _held = await changelog_states(bootstrap, changelog)
    fig.sampled_rooms = len(picked)
    fig.wrong_rooms = _wrong(picked, everything, last, fig.wrong_detail, "after the restart")
    fig.shows_exact = len(shows) - len(_wrong(shows, everything, last, [], "shows"))
    return fig


def _sample(uid: str, rooms: int, n: int) -> list[str]:
    return random.Random(rooms).sample([f"rs{uid}-{i}" for i in range(rooms)], min(n, rooms))


def _wrong(picked: list[str], records: list[Record], last: dict[str, bytes], detail: list[str], when: str) -> list[str]:
    """Rooms of ``picked`` whose changelog state is not the recomputation of ``records``."""
    by_room: dict[str, list[Record]] = defaultdict(list)
    keep = set(picked)
    for r in records:
        if r.key in keep:
            by_room[r.key].append(r)
    wrong = []
    for room in picked:
        want = dump_state(recompute(by_room[room], room).state)
        got = dump_state(decode_room_value(last[room])[1]) if room in last else None
        if got != want:
            wrong.append(room)
            if len(detail) < 4:
                detail.append(f"  {when}: {room}: changelog {(got or b'-')[:300]!r}... vs recomputed {want[:300]!r}...")
    return wrong


def _ts(rec: Record) -> int:
    return int(orjson.loads(rec.value)["ts"])


async def _changelog_end(bootstrap: str, topic: str) -> int:
    """Writes made to a changelog: the sum of its partitions' fetch high watermarks."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50,
                         max_partition_fetch_bytes=1024)
    await c.start()
    try:
        await c._client._wait_on_metadata(topic)  # noqa: SLF001 - this client has not seen the topic yet
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(tps)
        await c.seek_to_end(*tps)
        for _ in range(50):
            await c.getmany(*tps, timeout_ms=100)
            if all(c.highwater(tp) is not None for tp in tps):
                break
        return sum(c.highwater(tp) or 0 for tp in tps)
    finally:
        await c.stop()

