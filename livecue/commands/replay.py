"""``livecue replay``: send a JSONL recording back into Kafka, paced by its event times."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import Counter

from livecue.config import Settings
from livecue.recording import BadLine, Record, read_recording
from livecue.kafka_client import client_kwargs
from livecue.sim.send import Progress, pace_order, parse_speed, send_paced

NAME = "replay"
HELP = "replay a recording into Kafka, keeping each room's order and event times (--speed 1|N|max)"
SETTINGS = ("broker", "linger_ms", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="JSONL recording (livecue record / simulate --out)")
    p.add_argument("--speed", default="1", help="1 = real time (default), N = N times faster, max = no pacing")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        print(f"livecue replay: {exc}", file=sys.stderr)
        return 2
    records: list[Record] = []
    bad = 0
    for item in read_recording(args.file):
        if isinstance(item, BadLine):
            bad += 1
            print(f"livecue replay: {args.file}:{item.line_no}: skipped, {item.reason}", file=sys.stderr)
        else:
            records.append(item)
    counts = asyncio.run(_replay(records, settings, speed, args.quiet))
    total = sum(counts.values())
    print(f"replayed {total} of {len(records)} records"
          + (f" ({bad} unreadable lines skipped)" if bad else "") + ": "
          + ", ".join(f"{t}={n}" for t, n in sorted(counts.items())), file=sys.stderr)
    return 0 if total == len(records) else 1


async def _replay(records: list[Record], settings: Settings, speed: float | None, quiet: bool) -> Counter[str]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await send_paced(pace_order(records), settings.broker, linger_ms=settings.linger_ms, speed=speed,
                            progress=None if quiet else Progress("replay: sent"), stop=stop,
                            producer_options=client_kwargs(settings))
