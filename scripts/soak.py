#!/usr/bin/env python3
"""Soak: a steady show for a long run through a worker and a gateway; prints progress and a table.

    .venv/bin/python scripts/soak.py --minutes 60 [--rate 700] [--broker tansu|kafka] [--json OUT]

Starts a broker of its own (Tansu by default, or one Apache Kafka node), one ``livecue worker``,
one ``livecue gateway`` with a controller screen (websocket) on every room, and plays a steady
show (rooms in cohorts whose shows start apart, event time = wall time) at about ``--rate``
events/s. Every ``--sample-s`` seconds it prints: events sent, the group's committed offsets and
lag (committed vs the fetch high watermark of each input partition), cues on live.cues and on the
screen, and the RSS of the worker, the gateway and the broker.

At the end, the verdict: worker and gateway RSS growth after warm-up (median of the last
``--sample-s``-spaced samples of the final 5 minutes vs those of the 5 minutes after warm-up;
must be < 10 %), committed offsets advancing (largest commit stall while lagging), cues flowing
(sample intervals without a new cue), and every cue on the topic reached the screen.
Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from consumers.tokens import mint  # noqa: E402
from fault_tools import Observer, PacedProducer, rss_bytes, screen_counter, start_gateway, steady_show  # noqa: E402
from harness import metric_value, start_worker  # noqa: E402
from livecue.broker import EmbeddedBroker, create_topics  # noqa: E402
from livecue.config import load_settings  # noqa: E402
from livecue.kafka_cluster import KafkaCluster  # noqa: E402

PER_ROOM = 50.0  # events a second a room: a busy room
MIB = 1024 * 1024


def _growth(rows: list[dict[str, Any]], key: str, warm_s: float, tail_s: float = 300.0) -> tuple[float, float, float]:
    """(baseline, final, growth) of ``key`` over rows: median over [warm-up, warm-up + 5 min]
    vs median over the last 5 minutes."""
    end = rows[-1]["t_s"]
    base = [r[key] for r in rows if warm_s <= r["t_s"] <= warm_s + tail_s]
    last = [r[key] for r in rows if r["t_s"] >= end - tail_s]
    if not base or not last:
        return 0.0, 0.0, float("nan")
    b, f = statistics.median(base), statistics.median(last)
    return b, f, f / b - 1 if b else float("nan")


async def soak(args: argparse.Namespace, tmp: Path, uid: str, env: dict[str, str], bootstrap: str,
               broker_pid: int) -> int:
    seconds = args.minutes * 60
    warm_s = args.warmup_minutes * 60 if args.warmup_minutes is not None else min(600.0, seconds / 4)
    rooms = max(1, round(args.rate / PER_ROOM))
    print(f"soak: {args.minutes} min on {args.broker}, ~{args.rate:.0f} events/s in {rooms} rooms, "
          f"warm-up {warm_s / 60:.0f} min, files in {tmp}", flush=True)
    settings = load_settings(env)
    worker = gw = producer = obs = None
    screen: set[str] = set()
    stop = asyncio.Event()
    interrupted = asyncio.Event()  # Ctrl-C / SIGTERM: stop early, still print what was measured
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, interrupted.set)
    rows: list[dict[str, Any]] = []
    producer_error = ""
    try:
        worker = start_worker(settings, tmp / "worker.log", "soak")
        gw = start_gateway(settings, tmp / "gateway.log")
        ids = [f"soak{uid}-{i}" for i in range(rooms)]
        obs = await Observer(bootstrap, settings.app_id, interval_s=2.0, output_topics=("live.cues",),
                             rooms=frozenset(ids)).start()
        tok = mint(settings.token_secret, "controller", ids, int(seconds) + 3600, "soak", time.time())
        screen_task = asyncio.create_task(screen_counter(gw.ws_url, tok, screen, stop))
        await asyncio.sleep(2)
        producer = PacedProducer(bootstrap, steady_show(f"soak{uid}-", rooms, seconds, PER_ROOM,
                                                        int(time.time() * 1000))).start()
        t0 = time.monotonic()
        hdr = (f"{'min':>6} {'sent':>10} {'ev/s':>7} {'committed':>10} {'lag':>7} {'cues':>6} {'screen':>6} "
               f"{'worker MiB':>10} {'gateway MiB':>11} {'broker MiB':>10}")
        print(hdr, flush=True)
        prev_sent, prev_t = 0, t0
        end_at = t0 + seconds + 20  # a little time after the last event for the lag to drain
        while time.monotonic() < end_at and not interrupted.is_set():
            try:
                await asyncio.wait_for(interrupted.wait(), min(args.sample_s, max(0.1, end_at - time.monotonic())))
            except TimeoutError:
                pass
            now = time.monotonic()
            if worker.proc.poll() is not None or gw.proc.poll() is not None:
                print("soak: a process exited\n" + worker.log_tail(), flush=True)
                break
            s = obs.samples[-1] if obs.samples else None
            sent = producer.sent
            try:
                released = metric_value(worker.metrics(), "livecue_events_released_total")
            except OSError:
                released = float("nan")
            row = {
                "t_s": round(now - t0, 1), "sent": sent, "eps": round((sent - prev_sent) / max(1e-9, now - prev_t)),
                "released": released,
                "committed": s.committed_total if s else 0, "lag": s.lag if s else -1,
                "cues": len({c["cue_id"] for c in obs.cues}), "screen": len(screen),
                "worker_rss": rss_bytes(worker.proc.pid), "gateway_rss": rss_bytes(gw.proc.pid),
                "broker_rss": rss_bytes(broker_pid) if broker_pid else 0,
            }
            rows.append(row)
            prev_sent, prev_t = sent, now
            print(f"{row['t_s'] / 60:6.1f} {sent:10,} {row['eps']:7,} {row['committed']:10,} {row['lag']:7,} "
                  f"{row['cues']:6,} {row['screen']:6,} {row['worker_rss'] / MIB:10.1f} "
                  f"{row['gateway_rss'] / MIB:11.1f} {row['broker_rss'] / MIB:10.1f}", flush=True)
        producer.stop()
        try:
            producer.join(120)
        except AssertionError as exc:  # a broker that stalls past the producer's timeouts: judged below
            producer_error = str(exc)
        stop.set()
        screen_task.cancel()
        await asyncio.gather(screen_task, return_exceptions=True)
    finally:
        if obs is not None:
            await obs.stop()
        for p in (gw, worker):
            if p is not None:
                p.stop()
    if len(rows) < 3:
        print("soak: too short to judge")
        return 1
    # verdict
    wb, wf, wg = _growth(rows, "worker_rss", warm_s)
    gb, gf, gg = _growth(rows, "gateway_rss", warm_s)
    stall = obs.commit_stall_s(t0, t0 + seconds) if obs else float("nan")
    # an interval is fine when the committed offsets moved, or there was nothing left to commit
    committed_steps = sum(1 for a, b in zip(rows, rows[1:], strict=False)
                          if b["committed"] > a["committed"] or b["lag"] == 0)
    cue_steps = [b["cues"] - a["cues"] for a, b in zip(rows, rows[1:], strict=False)]
    quiet = sum(1 for d in cue_steps if d == 0)
    topic_ids = {c["cue_id"] for c in obs.cues} if obs else set()
    missing_on_screen = len(topic_ids - screen)
    print("\nsummary (every 5 minutes):")
    print(f"{'min':>6} {'sent':>10} {'committed':>10} {'lag':>7} {'cues':>6} {'worker MiB':>10} {'gateway MiB':>11}")
    step = max(1, round(300 / args.sample_s))
    for r in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
        print(f"{r['t_s'] / 60:6.1f} {r['sent']:10,} {r['committed']:10,} {r['lag']:7,} {r['cues']:6,} "
              f"{r['worker_rss'] / MIB:10.1f} {r['gateway_rss'] / MIB:11.1f}")
    checks = {
        f"worker RSS growth after warm-up {wb / MIB:.1f} -> {wf / MIB:.1f} MiB = {wg * 100:+.1f} % (< 10 %)": wg < 0.10,
        f"gateway RSS growth after warm-up {gb / MIB:.1f} -> {gf / MIB:.1f} MiB = {gg * 100:+.1f} % (< 10 %)": gg < 0.10,
        f"commits advanced (or nothing to commit) in {committed_steps}/{len(rows) - 1} sample intervals; "
        "largest stall while lagging "
        f"{stall:.1f} s (< 60 s)": stall < 60 and committed_steps >= (len(rows) - 1) * 0.9,
        f"cues flowing: {len(topic_ids)} cues, {quiet}/{len(cue_steps)} intervals of {args.sample_s:.0f} s "
        "without a new cue": quiet <= len(cue_steps) // 10,
        f"every cue on live.cues reached the screen: {len(topic_ids) - missing_on_screen}/{len(topic_ids)}":
            missing_on_screen == 0,
        f"final lag {rows[-1]['lag']} records": rows[-1]["lag"] < args.rate * 10,
        f"the producer delivered every event{': ' + producer_error if producer_error else ''}": not producer_error,
    }
    print("\nverdict:")
    for text, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {text}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "checks": {k: v for k, v in checks.items()}}, indent=1))
    return 0 if all(checks.values()) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=700.0, help="events a second in all (default 700)")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    p.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples (default 30)")
    p.add_argument("--warmup-minutes", type=float, default=None, help="default: a quarter of the run, at most 10")
    p.add_argument("--json", help="also write the rows and checks to this file")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="livecue-soak-"))
    uid = uuid.uuid4().hex[:8]
    env = {
        "LIVECUE_APP_ID": f"livecue-soak-{uid}", "LIVECUE_DATA_DIR": str(tmp / "data"),
        "LIVECUE_METRICS_PORT": "0", "LIVECUE_GATEWAY_PORT": "0", "LIVECUE_LOG_FORMAT": "text",
        "LIVECUE_TOKEN_SECRET": "soak-secret-" + uid * 6,
    }
    if args.broker == "kafka":
        kafka = KafkaCluster(nodes=1, base_dir=tmp / "kafka").start()
        try:
            asyncio.run(kafka.create_topics(4))
            env["LIVECUE_BROKER"] = kafka.url
            pid = kafka.nodes[0].pid or 0
            return asyncio.run(soak(args, tmp, uid, env, kafka.bootstrap, pid))
        finally:
            kafka.stop()
    tansu = EmbeddedBroker(log_path=tmp / "tansu.log").start()
    try:
        asyncio.run(create_topics(tansu.bootstrap, partitions=4))
        # Tansu forms a group only after the rebalance timeout: keep it short (as the tests do)
        env.update({"LIVECUE_BROKER": tansu.url, "LIVECUE_REBALANCE_TIMEOUT_S": "3",
                    "LIVECUE_SESSION_TIMEOUT_S": "6", "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5"})
        return asyncio.run(soak(args, tmp, uid, env, tansu.bootstrap, tansu.pid or 0))
    finally:
        tansu.stop()


if __name__ == "__main__":
    sys.exit(main())
