"""Peers doing the same stateful work as a worker on the same input topics: Quix Streams, Bytewax.

Each peer runs in a child process of its own (``python -m bench.peers quix|bytewax ...``), reads
the six input topics from the beginning and, per event: decodes the JSON value, updates a per-room
state (event count, likes, GMV, last ts) and counts the event in a per-room 5 s tumbling window
keyed by event time (``ts``). That is the work LiveCue's core does at its cheapest (bucketed
windows, one state per room), without its decisions: a peer's figure is an upper bound for what
that framework would do with LiveCue's logic.

The child prints one JSON line on stdout: ``{"events", "eps", "cpu_us_per_event", "windows"}``,
timed from its first event to its ``--events``-th (wall clock for eps, the process's CPU time,
every thread included, for µs/event). :func:`run_peer` starts the child and returns that dict, or
raises :class:`PeerUnavailable` with the reason when the peer cannot run here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from livecue.config import Settings
from schemas.events import INPUT_TOPICS

__all__ = ["PEERS", "PeerUnavailable", "run_peer", "TOPIC_CONFIGS"]

#: Source topics get these configs when the bench creates them: Quix Streams reads them back
#: from every topic it consumes, and Tansu returns only the configs a topic was created with.
TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}

PEERS = ("quix", "bytewax")
WINDOW_MS = 5000
#: Events of one room arrive on six topics read at different speeds: a window stays open this
#: long in event time for stragglers (both peers alike).
GRACE_MS = 10_000


class PeerUnavailable(Exception):
    """A peer that cannot run here; ``str()`` says exactly why."""


class _Meter:
    """Counts events; notes wall and CPU time at the first and at the ``target``-th."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.n = 0
        self.windows = 0
        self.t0 = self.c0 = 0.0
        self.t1 = self.c1 = 0.0

    def tick(self) -> bool:
        """Count one event; True once the target is reached."""
        self.n += 1
        if self.n == 1:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        if self.n == self.target:
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            return True
        return False

    def result(self) -> dict[str, Any]:
        done = self.n >= self.target and self.target > 1
        counted = self.target - 1  # events after the first, over the time after the first
        wall, cpu = self.t1 - self.t0, self.c1 - self.c0
        return {
            "events": self.n,
            "eps": counted / wall if done and wall > 0 else None,
            "cpu_us_per_event": cpu * 1e6 / counted if done else None,
            "windows": self.windows,
        }


def _update(state: dict[str, Any] | None, ev: dict[str, Any]) -> dict[str, Any]:
    """The per-room state update both peers apply to every event (a fresh dict, never mutated)."""
    s = dict(state) if state else {"n": 0, "likes": 0, "gmv": 0, "last_ts": 0}
    s["n"] += 1
    t = ev.get("type")
    if t == "like":
        s["likes"] += int(ev.get("count", 1))
    elif t == "order" and ev.get("status") == "paid":
        s["gmv"] += int(ev.get("amount_cents", 0))
    s["last_ts"] = max(s["last_ts"], int(ev.get("ts", 0)))
    return s


# -- Quix Streams -----------------------------------------------------------------------------

_COMMIT_INTERVAL_S = float(os.environ.get("LIVECUE_COMMIT_INTERVAL_S", Settings().commit_interval_s))


def _run_quix(bootstrap: str, target: int, group: str, state_dir: Path) -> dict[str, Any]:
    from quixstreams import Application

    meter = _Meter(target)
    app = Application(
        broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
        state_dir=str(state_dir), loglevel=os.environ.get("BENCH_PEER_LOGLEVEL", "WARNING"),  # type: ignore[arg-type]
        commit_interval=_COMMIT_INTERVAL_S,  # the LiveCue worker's (same run, same durability)
        auto_create_topics=True, use_changelog_topics=os.environ.get("BENCH_QUIX_CHANGELOG", "1") == "1",
        # Group timeouts like the LiveCue worker's (librdkafka's defaults are minutes). The poll
        # interval stays at 30 s: at 6 s a loaded 2-core host made Quix miss it, leave the group
        # and fail its next commit ("Unknown member").
        consumer_extra_config={"max.poll.interval.ms": 30000, "session.timeout.ms": 6000,
                               "heartbeat.interval.ms": 500},
    )

    def ts_of(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
        return int(value["ts"]) if isinstance(value, dict) and "ts" in value else int(timestamp)

    topics = [app.topic(t, value_deserializer="json", key_deserializer="str", timestamp_extractor=ts_of)
              for t in INPUT_TOPICS]
    sdf = app.dataframe(topics[0])
    for t in topics[1:]:
        sdf = sdf.concat(app.dataframe(t))

    def update(ev: dict[str, Any], state: Any) -> None:
        state.set("room", _update(state.get("room"), ev))
        if meter.tick():
            app.stop()

    sdf = sdf.update(update, stateful=True)
    sdf = sdf.tumbling_window(WINDOW_MS, grace_ms=GRACE_MS).count().final()

    def window_done(_w: Any) -> None:
        meter.windows += 1

    sdf = sdf.update(window_done)
    app.run()
    return meter.result()


# -- Bytewax ----------------------------------------------------------------------------------


def _run_bytewax(bootstrap: str, target: int, group: str, state_dir: Path) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    import bytewax.operators as op
    import orjson
    from bytewax.connectors.kafka import operators as kop
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, count_window
    from bytewax.testing import run_main

    meter = _Meter(target)
    flow = Dataflow("livecue_bench_peer")
    src = kop.input("in", flow, brokers=[bootstrap], topics=list(INPUT_TOPICS), tail=False,
                    add_config={"group.id": group})
    events = op.map("decode", src.oks, lambda m: orjson.loads(m.value or b"null"))
    keyed = op.key_on("room", events, lambda ev: str(ev["room_id"]))

    def update(state: dict[str, Any] | None, ev: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        new = _update(state, ev)
        meter.tick()
        return new, ev

    updated = op.stateful_map("state", keyed, update)
    clock: EventClock[dict[str, Any]] = EventClock(lambda ev: datetime.fromtimestamp(ev["ts"] / 1000, UTC),
                       wait_for_system_duration=timedelta(milliseconds=GRACE_MS))
    windower = TumblingWindower(length=timedelta(milliseconds=WINDOW_MS),
                                align_to=datetime(2020, 1, 1, tzinfo=UTC))
    wins = count_window("count", op.map("unkey", updated, lambda kv: kv[1]), clock, windower,
                        lambda ev: str(ev["room_id"]))

    def window_done(_step: str, _w: Any) -> None:
        meter.windows += 1

    op.inspect("windows", wins.down, window_done)
    run_main(flow)  # type: ignore[no-untyped-call]  # tail=False: ends at the end of every partition
    return meter.result()


_RUNNERS = {"quix": _run_quix, "bytewax": _run_bytewax}


def _check_importable(peer: str) -> None:
    module = {"quix": "quixstreams", "bytewax": "bytewax"}[peer]
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        raise PeerUnavailable(f"{module} cannot be imported ({last}); install the extra: "
                              "pip install -e '.[bench]'")


def run_peer(peer: str, bootstrap: str, events: int, work_dir: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``peer`` over the input topics in a child process; its result dict (see the module doc).

    Raises :class:`PeerUnavailable` with the reason if it is not installed, fails, or does not
    reach ``events`` within ``timeout_s``.
    """
    _check_importable(peer)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"{peer}.log"
    cmd = [sys.executable, "-m", "bench.peers", peer, "--bootstrap", bootstrap, "--events", str(events),
           "--group", f"bench-{peer}-{os.getpid()}-{int(time.time())}", "--state-dir", str(work_dir / f"{peer}-state")]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise PeerUnavailable(f"{peer} did not process {events} events within {timeout_s:.0f} s "
                                  f"(log: {log_path})") from None
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise PeerUnavailable(f"{peer} exited with {proc.returncode}: {' | '.join(tail)[-400:]} (log: {log_path})")
    result: dict[str, Any] = json.loads(lines[-1])
    if result.get("eps") is None:
        raise PeerUnavailable(f"{peer} saw {result.get('events')} of {events} events before it stopped "
                              f"(log: {log_path})")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="one peer over the input topics (child of livecue bench)")
    ap.add_argument("peer", choices=PEERS)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--state-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="bench-peer-")))
    a = ap.parse_args(argv)
    result = _RUNNERS[a.peer](a.bootstrap, a.events, a.group, a.state_dir)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
