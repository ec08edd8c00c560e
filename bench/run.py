"""``livecue bench``'s run: every part against brokers it starts itself, every figure from one run.

Parts (``--only`` selects some):

``ceiling``   raw aiokafka consume + orjson decode of the many-room backlog (the median of 3 reads)
``worker``    a fresh ``livecue worker`` catching up the many-room backlog (``rss`` with it)
``dense``     the same on the dense backlog (10 busy rooms)
``quix``      Quix Streams, the same stateful work on the many-room backlog
``bytewax``   Bytewax, likewise
``e2e``       event → cue on a websocket screen, paced at each ``--rates`` (worker + gateway)
``floor``     two plain Kafka hops at the same rates, measured the same way: from the six input
              topics (what a worker reads), and from one topic (the lighter floor of before)
``fanout``    one cue to ``--screens`` screens
``scale``     two workers of one group on the many-room backlog vs one (implies ``worker``)

Brokers: one (A) holds the many-room backlog for ceiling, worker and peers; the dense backlog,
the two-worker run and the live parts each get a fresh one, so that a fresh consumer group reads
exactly that part's events. Every figure of a run comes from the same host at the same time.

``--broker kafka`` runs every part on Apache Kafka instead (one KRaft node from Maven Central's
jars, :class:`livecue.kafka_cluster.KafkaCluster`, a fresh one wherever the embedded broker would
be fresh): the broker users run, whose fetch cost does not grow with what a partition holds.

Each latency figure (the floor at a rate, e2e at a rate, the fan-out) gets a broker of its own:
the embedded broker keeps everything in memory and slows as it fills (the floor at 20,000/s run
three times on the same topics: p99 97, 355, 846 ms), so sharing one would make whichever runs
last look worse, and e2e at the highest rate ran after the floor and the lower rate on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from livecue.broker import EmbeddedBroker, create_topics
from livecue.kafka_cluster import KafkaCluster
from schemas.events import INPUT_TOPICS
from stream.core import _native

from .common import Child, env_with, proc_rss_mb, progress, start_child
from .worker import start_workers
from .peers import PEERS, TOPIC_CONFIGS, PeerUnavailable, run_peer
from .workload import Workload, dense, many_room

__all__ = ["Options", "PARTS", "run_bench", "KEYS", "render_table"]

#: what a part runs against: the embedded Tansu, or Apache Kafka (``Options.broker == "kafka"``)
Broker = EmbeddedBroker | KafkaCluster

#: reads of the backlog by the ceiling consumer; the median is the ceiling
CEILING_READS = 3
PARTS = ("ceiling", "worker", "dense", "quix", "bytewax", "e2e", "floor", "fanout", "rss", "scale")
ALIASES = {"peers": ("quix", "bytewax"), "latency": ("e2e", "floor"), "all": PARTS}

#: The JSON's headline keys: always present, a number or null (with a reason in ``reasons``).
KEYS = ("ceiling_eps", "worker_eps", "worker_dense_eps", "quix_eps", "bytewax_eps", "e2e_p99_ms",
        "floor_p99_ms", "fanout_p99_ms", "rss_mb_1000_rooms", "scale_2w_ratio", "forced_releases")
RATIOS = ("worker_share_of_ceiling", "worker_dense_share_of_ceiling", "worker_vs_quix", "worker_vs_bytewax",
          "e2e_over_floor")


@dataclass
class Options:
    events: int = 600_000
    rooms: int = 1000
    dense_rooms: int = 10
    partitions: int = 8
    rates: tuple[float, ...] = (2000.0, 20000.0)
    latency_seconds: float = 10.0
    latency_warmup_s: float = 5.0
    screens: int = 1000
    fanout_cues: int = 10
    parts: tuple[str, ...] = PARTS
    work_dir: Path | None = None
    peer_timeout_s: float = 600.0
    quix_changelog: bool = True
    broker: str = "tansu"
    command: str = "livecue bench"
    extra: dict[str, Any] = field(default_factory=dict)


def parse_parts(text: str) -> tuple[str, ...]:
    """``ceiling,worker`` → the parts, in run order; ValueError naming an unknown one."""
    wanted: set[str] = set()
    for name in (p.strip() for p in text.split(",")):
        if not name:
            continue
        if name in ALIASES:
            wanted.update(ALIASES[name])
        elif name in PARTS:
            wanted.add(name)
        else:
            raise ValueError(f"unknown part {name!r} (parts: {', '.join(PARTS)}; or peers, latency, all)")
    if "scale" in wanted or "rss" in wanted:
        wanted.add("worker")
    return tuple(p for p in PARTS if p in wanted)


class _Run:
    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.work = opts.work_dir or Path(tempfile.mkdtemp(prefix="livecue-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.res: dict[str, Any] = {k: None for k in KEYS}
        self.res.update({k: None for k in RATIOS})
        self.reasons: dict[str, str] = {}
        self.details: dict[str, Any] = {}
        self.failures: list[str] = []
        self._many: Workload | None = None

    # -- helpers ---------------------------------------------------------------------------

    def part(self, name: str, keys: tuple[str, ...], fn: Callable[[], None]) -> None:
        if name not in self.o.parts:
            for k in keys:
                self.reasons.setdefault(k, "not selected (--only)")
            return
        t0 = time.monotonic()
        progress(f"== {name}")
        try:
            fn()
        except Exception as exc:  # a failed part leaves its figures null, with the reason
            msg = f"{type(exc).__name__}: {exc}"
            progress(f"{name} failed: {msg}")
            self.failures.append(f"{name}: {msg}")
            for k in keys:
                if self.res.get(k) is None:
                    self.reasons.setdefault(k, f"{name} failed: {msg}"[:500])
        self.details.setdefault("part_seconds", {})[name] = round(time.monotonic() - t0, 1)

    @contextlib.contextmanager
    def broker(self, name: str) -> Iterator[Broker]:
        b: Broker
        if self.o.broker == "kafka":
            b = KafkaCluster(nodes=1, base_dir=self.work / f"kafka-{name}").start()
        else:
            b = EmbeddedBroker(log_path=self.work / f"tansu-{name}.log").start()
        try:
            asyncio.run(_create_input_topics(b.bootstrap, self.o.partitions))
            yield b
        finally:
            b.stop()

    def many(self) -> Workload:
        if self._many is None:
            progress(f"generating the many-room workload: {self.o.events:,} events, {self.o.rooms} rooms")
            self._many = many_room(self.o.events, rooms=self.o.rooms)
            self.details["many_room_workload"] = self._many.describe()
        return self._many

    def produce(self, b: Broker, w: Workload) -> None:
        from .common import produce_backlog

        eps = asyncio.run(produce_backlog(b.bootstrap, w.records, f"{w.name} backlog"))
        self.details.setdefault("produce_eps", {})[w.name] = round(eps)

    def worker_env(self, b: Broker, app_id: str) -> dict[str, str]:
        from .worker import worker_settings_env

        return worker_settings_env(b.url, app_id, self.work / f"data-{app_id}",
                                   LIVECUE_PARTITIONS=str(self.o.partitions))

    def catch_up_one(self, b: Broker, w: Workload, label: str) -> dict[str, Any]:
        from .worker import catch_up, start_worker

        app_id = f"bench-{label}-{secrets.token_hex(3)}"
        wk = start_worker(self.worker_env(b, app_id), self.work / f"worker-{label}.log", label)
        try:
            out = catch_up([wk], w.events, label)
            out["rss_mb"] = round(proc_rss_mb(wk.pid), 1)
        finally:
            wk.stop()
        return out

    # -- parts -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.time()
        o = self.o
        need_a = {"ceiling", "worker", "rss", "quix", "bytewax"} & set(o.parts)
        if need_a:
            with self.broker("many-room") as b:
                w = self.many()
                self.produce(b, w)
                self.part("ceiling", ("ceiling_eps",), lambda: self._ceiling(b, w))
                self.part("worker", ("worker_eps", "rss_mb_1000_rooms", "forced_releases"), lambda: self._worker(b, w))
                for peer in PEERS:
                    self.part(peer, (f"{peer}_eps",), lambda peer=peer: self._peer(peer, b, w))  # type: ignore[misc]
        else:
            for k, part in (("ceiling_eps", "ceiling"), ("worker_eps", "worker"), ("quix_eps", "quix"),
                            ("bytewax_eps", "bytewax"), ("rss_mb_1000_rooms", "rss")):
                self.part(part, (k,), lambda: None)
        self.part("dense", ("worker_dense_eps",), self._dense)
        self.part("scale", ("scale_2w_ratio",), self._scale)
        if {"e2e", "floor", "fanout"} & set(o.parts):
            self.part("floor", ("floor_p99_ms",), self._floor)
            self.part("e2e", ("e2e_p99_ms",), self._e2e)
            self.part("fanout", ("fanout_p99_ms",), self._fanout)
        else:
            for k, part in (("e2e_p99_ms", "e2e"), ("floor_p99_ms", "floor"), ("fanout_p99_ms", "fanout")):
                self.part(part, (k,), lambda: None)
        self._ratios()
        self.res["forced_releases"] = self._forced_total()
        if self.res["forced_releases"] is None:
            self.reasons.setdefault("forced_releases", "no worker run in this bench")
        return self._result(started)

    def _ceiling(self, b: Broker, w: Workload) -> None:
        from .ceiling import median_read, raw_ceiling

        # one ~3 s read of the backlog swung 139-221k events/s between runs on this host (3 Dec),
        # which moved the worker's share more than any change measured: the median of 3 reads
        runs = []
        for i in range(CEILING_READS):
            runs.append(asyncio.run(raw_ceiling(b.bootstrap, w.events)))
            progress(f"ceiling: read {i + 1}/{CEILING_READS}: {runs[-1]['eps']:,.0f} events/s")
        c = median_read(runs)
        self.details["ceiling"] = c
        self.res["ceiling_eps"] = round(c["eps"], 1)
        self.res["ceiling_cpu_us_per_event"] = round(c["cpu_us_per_event"], 2)

    def _worker(self, b: Broker, w: Workload) -> None:
        self.details["core"] = _native.MODE  # the workers run this venv's build of the core
        out = self.catch_up_one(b, w, "many-room")
        self.details["worker"] = out
        self._set_eps("worker_eps", "worker_cpu_us_per_event", out, "many-room worker")
        self.res["rss_mb_1000_rooms"] = out["rss_mb"]
        self.details["rss"] = {"rooms": w.rooms, "rss_mb": out["rss_mb"], "when": "after the many-room catch-up"}

    def _set_eps(self, key: str, cpu_key: str, out: dict[str, Any], label: str) -> None:
        if out["eps"] is not None:
            self.res[key] = round(out["eps"], 1)
        else:
            self.reasons[key] = f"{label}: no progress measured ({out['events_counted']} events counted)"
        if not out["complete"]:
            self.reasons[key] = (f"{label}: stopped at {out['events_counted']:,} events "
                                 f"({out['progress_metric']}); rate up to the last progress")
        self.res[cpu_key] = round(out["cpu_us_per_event"], 2) if out["cpu_us_per_event"] is not None else None

    def _peer(self, peer: str, b: Broker, w: Workload) -> None:
        try:
            if peer == "quix" and not self.o.quix_changelog:
                os.environ["BENCH_QUIX_CHANGELOG"] = "0"
            out = run_peer(peer, b.bootstrap, w.events, self.work, self.o.peer_timeout_s)
        except PeerUnavailable as exc:
            self.reasons[f"{peer}_eps"] = str(exc)
            self.details[peer] = {"error": str(exc)}
            progress(f"{peer}: cannot run: {exc}")
            return
        finally:
            os.environ.pop("BENCH_QUIX_CHANGELOG", None)
        if peer == "quix":
            out["changelog_topics"] = self.o.quix_changelog
        self.details[peer] = out
        self.res[f"{peer}_eps"] = round(out["eps"], 1)
        progress(f"{peer}: {out['eps']:,.0f} events/s, {out['cpu_us_per_event']:.1f} µs/event")

    def _dense(self) -> None:
        progress(f"generating the dense workload: {self.o.events:,} events, {self.o.dense_rooms} rooms")
        w = dense(self.o.events, rooms=self.o.dense_rooms)
        self.details["dense_workload"] = w.describe()
        with self.broker("dense") as b:
            self.produce(b, w)
            out = self.catch_up_one(b, w, "dense")
        self.details["dense"] = out
        self._set_eps("worker_dense_eps", "worker_dense_cpu_us_per_event", out, "dense worker")

    def _scale(self) -> None:
        """Two workers of one group on the many-room backlog, measured like the one-worker run:
        backlog first, then both workers started together (Tansu forms the group after the
        rebalance timeout, so both join its first generation), clock from the first progress."""
        from .worker import catch_up, per_worker, start_worker

        w = self.many()
        with self.broker("scale") as b:
            self.produce(b, w)
            app_id = f"bench-scale-{secrets.token_hex(3)}"
            env = {**self.worker_env(b, app_id), "LIVECUE_REBALANCE_TIMEOUT_S": "4"}
            ws = start_workers([{**env, "LIVECUE_WORKER_ID": f"scale-{i}"} for i in range(2)],
                               [self.work / f"worker-scale-{i}.log" for i in range(2)], "scale")
            try:
                out = catch_up(ws, w.events, "2 workers")
                out["per_worker_events"] = per_worker(ws)
            finally:
                for wk in ws:
                    wk.stop()
        one = self.res.get("worker_eps")
        out["eps_2w"] = out["eps"]
        out["eps_1w"] = one
        self.details["scale"] = out
        if out["eps"] is not None and one:
            self.res["scale_2w_ratio"] = _sig(out["eps"] / one)
        else:
            self.reasons["scale_2w_ratio"] = "no one-worker or two-worker rate to compare"
        if min(out["per_worker_events"]) == 0:
            self.reasons["scale_2w_ratio"] = "one of the two workers processed nothing (it never got partitions)"
            self.res["scale_2w_ratio"] = None

    @contextlib.contextmanager
    def live_broker(self, name: str) -> Iterator[Broker]:
        """A fresh broker with every topic of a live run (see the module docstring)."""
        with self.broker(name) as b:
            asyncio.run(create_topics(b.bootstrap, self.o.partitions))
            yield b

    def _floor(self) -> None:
        from .latency import floor

        runs, one_topic_runs = [], []
        for i, rate in enumerate(self.o.rates):
            for one_topic, out, name in ((False, runs, f"floor-{i}"), (True, one_topic_runs, f"floor1-{i}")):
                with self.live_broker(name) as b:
                    r = asyncio.run(floor(b.bootstrap, rate, self.o.latency_seconds, f"fl{i}-",
                                          warmup_s=self.o.latency_warmup_s, one_topic=one_topic))
                out.append({"rate": rate, **r})
        self.details["floor"] = {
            "runs": runs, "first_hop": f"the {len(INPUT_TOPICS)} input topics x {self.o.partitions} partitions",
            "one_topic_runs": one_topic_runs, "one_topic_first_hop": "one topic x 8 partitions"}
        top, top1 = runs[-1], one_topic_runs[-1]
        self.res["floor_p99_ms"] = _r(top["p99_ms"])
        self.res["floor_p50_ms"] = _r(top["p50_ms"])
        self.res["floor_one_topic_p99_ms"] = _r(top1["p99_ms"])
        self.res["floor_one_topic_p50_ms"] = _r(top1["p50_ms"])

    @contextlib.contextmanager
    def gateway(self, b: Broker, name: str) -> Iterator[tuple[Child, str, str]]:
        """A gateway on ``b``: (child, websocket URL, token secret)."""
        secret = secrets.token_hex(32)
        genv = env_with({"LIVECUE_BROKER": b.url, "LIVECUE_TOKEN_SECRET": secret, "LIVECUE_GATEWAY_PORT": "0",
                         "LIVECUE_MAX_CONNECTIONS": str(self.o.screens + 100),
                         "LIVECUE_GATEWAY_MAX_UNAUTHENTICATED": "4096",
                         "LIVECUE_GATEWAY_MAX_UNAUTHENTICATED_PER_ADDRESS": "4096",
                         "LIVECUE_GATEWAY_METRICS_PORT": "0",
                         "LIVECUE_LOG_FORMAT": "json", "LIVECUE_LOG_LEVEL": "WARNING"})
        gw = start_child("gateway", ["livecue.cli", "gateway", "--port", "0"], genv, self.work / f"gateway-{name}.log",
                         "gateway ready on ", timeout=60)
        try:
            yield gw, gw.first_line.split("(websocket ", 1)[1].split(",", 1)[0].strip(), secret
        finally:
            gw.stop()

    def _e2e(self) -> None:
        from .latency import e2e
        from .worker import start_worker

        runs = []
        for i, rate in enumerate(self.o.rates):
            with self.live_broker(f"e2e-{i}") as b, self.gateway(b, f"e2e-{i}") as (_gw, ws_url, secret):
                app_id = f"bench-e2e-{secrets.token_hex(3)}"
                wk = start_worker(self.worker_env(b, app_id), self.work / f"worker-e2e-{i}.log", f"e2e-{i}")
                try:
                    asyncio.run(_wait_group(b.bootstrap, app_id, 1, 90))
                    r = asyncio.run(e2e(b.bootstrap, ws_url, secret, wk.metrics_url, rate, self.o.latency_seconds,
                                        f"e2e{i}-", drain_timeout_s=max(60.0, rate * self.o.latency_seconds / 1000),
                                        warmup_s=self.o.latency_warmup_s))
                finally:
                    wk.stop()
            runs.append({"rate": rate, **r})
        self.details["e2e"] = {"runs": runs}
        top = runs[-1]
        self.res["e2e_p99_ms"] = _r(top["p99_ms"])
        self.res["e2e_p50_ms"] = _r(top["p50_ms"])
        if top["p99_ms"] is None:
            self.reasons["e2e_p99_ms"] = f"no cue reached the screen at {top['rate']:,.0f}/s"

    def _fanout(self) -> None:
        from .fanout import fanout

        with self.live_broker("fanout") as b, self.gateway(b, "fanout") as (gw, ws_url, secret):
            out = asyncio.run(fanout(b.bootstrap, ws_url, secret, self.o.screens, self.o.fanout_cues, "fanout-room"))
            out["gateway_rss_mb"] = round(proc_rss_mb(gw.pid), 1) if gw.alive() else None
        self.details["fanout"] = out
        self.res["fanout_p99_ms"] = _r(out["p99_ms"])
        self.res["fanout_p50_ms"] = _r(out["p50_ms"])
        if out["p99_ms"] is None:
            self.reasons["fanout_p99_ms"] = "no delivery measured"

    # -- result ----------------------------------------------------------------------------

    def _forced_total(self) -> int | None:
        runs = [self.details[k] for k in ("worker", "dense", "scale") if isinstance(self.details.get(k), dict)
                and "forced_releases" in self.details[k]]
        return sum(int(r["forced_releases"]) for r in runs) if runs else None

    def _ratios(self) -> None:
        r = self.res

        def ratio(a: str, b: str, key: str) -> None:
            if r.get(a) and r.get(b):
                r[key] = _sig(r[a] / r[b])
            else:
                self.reasons.setdefault(key, f"needs {a} and {b}")

        ratio("worker_eps", "ceiling_eps", "worker_share_of_ceiling")
        ratio("worker_dense_eps", "ceiling_eps", "worker_dense_share_of_ceiling")
        ratio("worker_eps", "quix_eps", "worker_vs_quix")
        ratio("worker_eps", "bytewax_eps", "worker_vs_bytewax")
        ratio("e2e_p99_ms", "floor_p99_ms", "e2e_over_floor")
        if "floor_one_topic_p99_ms" in r:
            ratio("e2e_p99_ms", "floor_one_topic_p99_ms", "e2e_over_one_topic_floor")

    def _result(self, started: float) -> dict[str, Any]:
        o = self.o
        out: dict[str, Any] = {
            "command": o.command,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1),
            "parts": list(o.parts),
            **self.res,
            "reasons": {k: v for k, v in self.reasons.items() if self.res.get(k) is None},
            "failures": self.failures,
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                     "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
            "settings": {"events": o.events, "rooms": o.rooms, "dense_rooms": o.dense_rooms,
                         "partitions": o.partitions, "rates": list(o.rates), "broker": o.broker,
                         "latency_seconds": o.latency_seconds, "latency_warmup_s": o.latency_warmup_s,
                         "screens": o.screens,
                         "fanout_cues": o.fanout_cues, **o.extra},
            "details": self.details,
            "work_dir": str(self.work),
        }
        return out


def _sig(v: float) -> float:
    """A ratio to 4 significant digits."""
    return float(f"{v:.4g}")


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


async def _create_input_topics(bootstrap: str, partitions: int) -> None:
    from .common import create_topics_with_configs

    await create_topics_with_configs(bootstrap, INPUT_TOPICS, partitions, TOPIC_CONFIGS)
    await create_topics(bootstrap, partitions)


async def _wait_group(bootstrap: str, group: str, members: int, timeout_s: float) -> int:
    """Wait until consumer group ``group`` is Stable with ``members`` members (each then owns
    partitions); the member count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                for resp in await admin.describe_consumer_groups([group]):
                    for g in resp.groups:
                        _err, _gid, state, _ptype, _proto, mem = g[:6]
                        seen = len(mem)
                        if state == "Stable" and seen >= members:
                            return seen
            await asyncio.sleep(0.3)
        raise RuntimeError(f"group {group} not stable with {members} members within {timeout_s:.0f} s "
                           f"(last seen {seen})")
    finally:
        await admin.close()


def run_bench(opts: Options) -> dict[str, Any]:
    """Run the selected parts; the result dict (every key of :data:`KEYS`, null with a reason
    when a figure could not be had)."""
    return _Run(opts).run()


# -- table ---------------------------------------------------------------------------------------


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        s = f"{v:,.0f}" if abs(v) >= 100 else (f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}")
    else:
        s = f"{v:,}" if isinstance(v, int) else str(v)
    return f"{s} {unit}".rstrip()


def render_table(res: dict[str, Any]) -> str:
    """The result as a plain-text table (what ``livecue bench`` prints on stdout)."""
    d = res.get("details", {})
    reasons = res.get("reasons", {})
    mw = d.get("many_room_workload", {})
    dw = d.get("dense_workload", {})
    rows: list[tuple[str, str, str]] = []

    def row(label: str, key: str, unit: str, note: str = "") -> None:
        v = res.get(key)
        rows.append((label, _fmt(v, unit), note if v is not None else reasons.get(key, "")))

    many = f"{mw.get('events', 0):,} events, {mw.get('rooms', 0)} rooms, {mw.get('events_per_room_per_s', 0)} ev/room/s"
    reads = d.get("ceiling", {}).get("reads_eps") or []
    spread = f"median of {len(reads)} reads ({_fmt(min(reads))}-{_fmt(max(reads))}); " if len(reads) > 1 else ""
    row("ceiling: aiokafka + orjson", "ceiling_eps", "events/s",
        f"{_fmt(res.get('ceiling_cpu_us_per_event'))} µs/event CPU; {spread}{many}")
    row("worker, many-room", "worker_eps", "events/s",
        f"{_fmt(res.get('worker_cpu_us_per_event'))} µs/event CPU; {_fmt(res.get('worker_share_of_ceiling'))} of ceiling"
        f"; progress from {d.get('worker', {}).get('progress_metric', '?')}; core {d.get('core', '?')}")
    row("worker, dense", "worker_dense_eps", "events/s",
        f"{_fmt(res.get('worker_dense_cpu_us_per_event'))} µs/event CPU; "
        f"{_fmt(res.get('worker_dense_share_of_ceiling'))} of ceiling; {dw.get('events', 0):,} events, "
        f"{dw.get('rooms', 0)} rooms")
    for peer, name in (("quix", "Quix Streams"), ("bytewax", "Bytewax")):
        p = d.get(peer, {})
        note = "; no changelog topics (--quick)" if p.get("changelog_topics") is False else ""
        row(f"peer: {name}", f"{peer}_eps", "events/s",
            f"{_fmt(p.get('cpu_us_per_event'))} µs/event CPU; worker/{peer} = {_fmt(res.get(f'worker_vs_{peer}'))}{note}")
    for kind, runs_key, key in (("e2e", "runs", "e2e_p99_ms"), ("floor", "runs", "floor_p99_ms"),
                                ("floor", "one_topic_runs", "floor_one_topic_p99_ms")):
        runs = d.get(kind, {}).get(runs_key, [])
        for r in runs:
            label = {"runs": "event → cue on screen" if kind == "e2e" else "floor: 2 Kafka hops",
                     "one_topic_runs": "floor, 1st hop 1 topic"}[runs_key]
            samples = f"{r.get('samples', 0):,} {'cues' if kind == 'e2e' else 'records'}"
            at_worker = (f"; at the worker p50 {_fmt(r.get('worker_p50_ms'), 'ms')}, p99 {_fmt(r.get('worker_p99_ms'), 'ms')}"
                         if kind == "e2e" else "; from the 6 input topics" if runs_key == "runs" else "")
            rows.append((f"{label} @ {r['rate']:,.0f}/s", f"p99 {_fmt(r.get('p99_ms'), 'ms')}",
                         f"p50 {_fmt(r.get('p50_ms'), 'ms')}; {samples}; offered {_fmt(r.get('offered_eps'))}/s{at_worker}"))
        if not runs and runs_key == "runs":
            row(f"{kind} p99", key, "ms")
    rows.append(("e2e p99 / floor p99", _fmt(res.get("e2e_over_floor")), reasons.get("e2e_over_floor", "")
                 if res.get("e2e_over_floor") is None else
                 f"at the highest rate; over the 1-topic floor {_fmt(res.get('e2e_over_one_topic_floor'))}"))
    f = d.get("fanout", {})
    row(f"fan-out to {f.get('screens', '?')} screens, p99", "fanout_p99_ms", "ms",
        f"p50 {_fmt(res.get('fanout_p50_ms'), 'ms')}; {f.get('deliveries', 0):,}/{f.get('expected_deliveries', 0):,} deliveries")
    row(f"RSS, one worker, {d.get('rss', {}).get('rooms', '?')} rooms", "rss_mb_1000_rooms", "MiB")
    s = d.get("scale", {})
    split = " / ".join(f"{n:,}" for n in s.get("per_worker_events", []))
    row("2 workers / 1 worker", "scale_2w_ratio", "",
        f"{_fmt(s.get('eps_2w'))} vs {_fmt(s.get('eps_1w'))} events/s; events per worker {split}")
    w = d.get("worker", {})
    if s.get("host_busy_cores") is not None and w.get("host_busy_cores") is not None:
        rows.append(("  cores busy: workers / host", f"{_fmt(s.get('worker_cores'))} / {_fmt(s.get('host_busy_cores'))}",
                     f"of {s.get('host_cores')}; one worker {_fmt(w.get('worker_cores'))} / "
                     f"{_fmt(w.get('host_busy_cores'))} (the rest: broker, bench); second worker began "
                     f"{_fmt(s.get('start_skew_s'))} s after the first"))
    row("forced releases (aligner)", "forced_releases", "", "all worker catch-ups of this run")
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    lines = [f"{'figure':<{w1}}  {'value':>{w2}}  detail", f"{'-' * w1}  {'-' * w2}  {'-' * 40}"]
    lines += [f"{a:<{w1}}  {b:>{w2}}  {c}" for a, b, c in rows]
    return "\n".join(lines)
