"""``livecue simulate``: a seeded simulated live show for N rooms, to Kafka or to a JSONL file."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import Counter
from collections.abc import Iterator

from livecue.config import Settings
from livecue.recording import Record, record_of, write_recording
from livecue.sim import DEFAULT_START_TS, SCENARIOS, generate, room_ids
from livecue.kafka_client import client_kwargs
from livecue.sim.send import Progress, parse_speed, parse_start, send_paced

NAME = "simulate"
HELP = "simulate live shows (seeded, reproducible) into Kafka, or into a recording file with --out"
SETTINGS = ("broker", "linger_ms", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same show, byte for byte)")
    p.add_argument("--rooms", type=int, default=2, help="number of rooms (default 2)")
    p.add_argument("--room-prefix", default="room-", help="room ids are PREFIX1..PREFIXN (default room-)")
    p.add_argument("--scenario", choices=tuple(SCENARIOS), default="mixed",
                   help="scripted beats: " + "; ".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values()))
    p.add_argument("--start", default="2026-11-20T12:00:00Z",
                   help="event time of the show's start: ISO 8601, epoch ms, or 'now' (default 2026-11-20T12:00:00Z)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of show (event time, default 600)")
    p.add_argument("--rate", type=float, default=30.0, help="approximate events per second of event time, per room (default 30)")
    p.add_argument("--out", metavar="FILE", help="write a JSONL recording to FILE ('-' = stdout) instead of Kafka")
    p.add_argument("--speed", default="1", help="Kafka pacing: 1 = real time, N = N times faster, max = no pacing (default 1)")
    p.add_argument("--loop", action="store_true",
                   help="Kafka only: when a show ends, start the next one (next seed) until Ctrl-C")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def _shows(args: argparse.Namespace, start_ts: int, ids: tuple[str, ...]) -> Iterator[tuple[int | None, Record]]:
    seed = args.seed
    while True:
        for ev in generate(seed, ids, args.scenario, start_ts, args.duration, args.rate):
            yield ev.ts, record_of(ev)
        if not args.loop:
            return
        seed += 1
        start_ts += int(args.duration * 1000) + 5000  # a short break between two shows


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        start_ts = parse_start(args.start) if args.start else DEFAULT_START_TS
        speed = parse_speed(args.speed)
    except ValueError as exc:
        print(f"livecue simulate: {exc}", file=sys.stderr)
        return 2
    if args.rooms < 1 or args.duration <= 0 or args.rate <= 0:
        print("livecue simulate: --rooms, --duration and --rate must be positive", file=sys.stderr)
        return 2
    ids = room_ids(args.rooms, args.room_prefix)
    if args.out:
        events = generate(args.seed, ids, args.scenario, start_ts, args.duration, args.rate)
        if args.out == "-":
            n = write_recording(sys.stdout.buffer, events)
            sys.stdout.flush()
        else:
            n = write_recording(args.out, events)
        if not args.quiet:
            print(f"wrote {n} events for {len(ids)} rooms ({args.scenario}, seed {args.seed}) to {args.out}",
                  file=sys.stderr)
        return 0
    counts = asyncio.run(_to_kafka(args, settings, start_ts, speed, ids))
    print("sent " + ", ".join(f"{t}={n}" for t, n in sorted(counts.items())), file=sys.stderr)
    return 0


async def _to_kafka(args: argparse.Namespace, settings: Settings, start_ts: int,
                    speed: float | None, ids: tuple[str, ...]) -> Counter[str]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    progress = None if args.quiet else Progress("simulate: sent")
    print(f"simulating {len(ids)} rooms ({', '.join(ids[:4])}{'...' if len(ids) > 4 else ''}), "
          f"scenario {args.scenario}, into {settings.broker_url}", file=sys.stderr, flush=True)
    return await send_paced(_shows(args, start_ts, ids), settings.broker, linger_ms=settings.linger_ms,
                            speed=speed, progress=progress, stop=stop, producer_options=client_kwargs(settings))
