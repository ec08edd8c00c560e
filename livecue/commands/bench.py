"""``livecue bench``: the measuring instrument of the worker, the gateway and their peers.

One command, its own embedded Tansu brokers (or Apache Kafka with ``--broker kafka``), every figure from the same run on the same host:
the raw aiokafka ceiling, the worker on a many-room and a dense backlog, Quix Streams and
Bytewax on the same events, event → cue on a websocket screen beside the two-hop Kafka floor,
fan-out to many screens, the worker's RSS, and two workers against one. Progress goes to
stderr; stdout gets the command line and a table; ``--chart`` a PNG and ``--json`` the figures.
The parts are described in :mod:`bench.run`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from livecue.config import Settings

#: ``--broker``: the embedded Tansu, or Apache Kafka (bench.run.Options.broker)
BROKERS = ("tansu", "kafka")

NAME = "bench"
HELP = "measure the worker, the gateway and peers (Quix Streams, Bytewax) in one run on an embedded broker"
SETTINGS = ("log_format", "log_level")

#: ``--quick``: the sizes that finish in under 3 minutes on a 2-core host.
QUICK = {"events": 200_000, "latency_seconds": 4.0, "latency_warmup": 2.0, "fanout_cues": 5, "peer_timeout": 150.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"smaller sizes for CI, under 3 minutes ({QUICK['events']:,} events per backlog, "
                        f"{QUICK['latency_seconds']:.0f} s per paced rate, Quix without changelog topics)")
    p.add_argument("--only", default="all", metavar="PARTS",
                   help="comma-separated parts: ceiling, worker, dense, quix, bytewax, e2e, floor, fanout, "
                        "rss, scale (or peers, latency, all; default all)")
    p.add_argument("--events", type=int, default=None, help="events per backlog (default 600,000; --quick 60,000)")
    p.add_argument("--rooms", type=int, default=1000, help="rooms of the many-room workload (default 1000)")
    p.add_argument("--dense-rooms", type=int, default=10, help="rooms of the dense workload (default 10)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of the input topics (default 8)")
    p.add_argument("--rates", default="2000,20000",
                   help="paced rates (events/s) for e2e and floor; the JSON's e2e_p99_ms is the last (default 2000,20000)")
    p.add_argument("--latency-seconds", type=float, default=None, help="seconds paced at each rate (default 10)")
    p.add_argument("--latency-warmup", type=float, default=None,
                   help="seconds paced at each rate before measuring, in rooms not measured, for e2e and floor "
                        "alike (default 5; --quick 2)")
    p.add_argument("--screens", type=int, default=1000, help="screens for the fan-out part (default 1000)")
    p.add_argument("--fanout-cues", type=int, default=None, help="cues sent to the screens (default 10)")
    p.add_argument("--peer-timeout", type=float, default=None, help="seconds a peer may take (default 600)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the figures as JSON")
    p.add_argument("--chart", type=Path, default=Path("artifacts/livecue-bench.png"), metavar="FILE",
                   help="PNG chart of the run (default artifacts/livecue-bench.png)")
    p.add_argument("--broker", choices=BROKERS, default="tansu",
                   help="the brokers it starts: the embedded Tansu (default) or Apache Kafka (one KRaft node "
                        "from Maven Central's jars, resolved with Maven on first use)")
    p.add_argument("--work-dir", type=Path, default=None, help="logs and state of the run's processes (default: a temp dir)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from bench.chart import ChartUnavailable, require_matplotlib, write_chart
    from bench.run import Options, parse_parts, render_table, run_bench

    command = shlex.join(["livecue", *sys.argv[1:]]) if sys.argv and "bench" in sys.argv else "livecue bench"
    print(f"$ {command}", flush=True)
    try:
        require_matplotlib()
        parts = parse_parts(args.only)
        rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
        if not rates or any(r <= 0 for r in rates):
            raise ValueError("--rates must be positive numbers")
    except ChartUnavailable as exc:
        print(f"livecue bench: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"livecue bench: {exc}", file=sys.stderr)
        return 2
    q = args.quick
    opts = Options(
        events=args.events or int(QUICK["events"] if q else 600_000),
        rooms=args.rooms, dense_rooms=args.dense_rooms, partitions=args.partitions, rates=rates,
        latency_seconds=args.latency_seconds or (QUICK["latency_seconds"] if q else 10.0),
        latency_warmup_s=(args.latency_warmup if args.latency_warmup is not None
                          else (QUICK["latency_warmup"] if q else 5.0)),
        screens=args.screens, fanout_cues=args.fanout_cues or (int(QUICK["fanout_cues"]) if q else 10),
        parts=parts, work_dir=args.work_dir,
        peer_timeout_s=args.peer_timeout or (QUICK["peer_timeout"] if q else 600.0),
        # Quix's changelog recovery on Tansu spends seconds per changelog partition before its first
        # event: --quick leaves its changelog topics out (its figure then flatters it, if anything).
        quix_changelog=not q, command=command, extra={"quick": q}, broker=args.broker,
    )
    result = run_bench(opts)
    print(render_table(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"json: {args.json}", flush=True)
    write_chart(result, args.chart)
    print(f"chart: {args.chart}", flush=True)
    if result["failures"]:
        print("failed parts: " + "; ".join(result["failures"]), file=sys.stderr)
        return 1
    return 0
