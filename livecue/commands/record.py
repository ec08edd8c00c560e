"""``livecue record``: consume the six input topics and write a JSONL recording."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition

from livecue.broker import topic_partitions
from livecue.config import Settings
from livecue.kafka_client import client_kwargs
from livecue.recording import Record, dumps_line
from livecue.sim.send import Progress
from schemas.events import INPUT_TOPICS

NAME = "record"
HELP = "record the input topics (live.room, chat, likes, viewers, cart, orders) into a JSONL file"
SETTINGS = ("broker", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE", help="recording to write ('-' = stdout)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--idle", type=float, default=None,
                   help="stop once nothing new arrived for S seconds (after catching up)")
    p.add_argument("--from-end", action="store_true", help="only what arrives from now on (default: from the beginning)")
    p.add_argument("--room", action="append", default=[], metavar="ROOM_ID",
                   help="keep only this room (by Kafka key; repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace, settings: Settings) -> int:
    counts = asyncio.run(record(args, settings))
    print("recorded " + (", ".join(f"{t}={n}" for t, n in sorted(counts.items())) or "nothing"),
          file=sys.stderr)
    return 0


async def record(args: argparse.Namespace, settings: Settings) -> Counter[str]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rooms = {r.encode() for r in args.room}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **client_kwargs(settings))
    await consumer.start()
    counts: Counter[str] = Counter()
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
    progress = None if args.quiet else Progress("record: got")
    try:
        # Ask for the topics by name: Apache Kafka's metadata names only the topics a client asks
        # for (Tansu's lists them all), so a fresh consumer's cache knows none of them yet.
        parts = await topic_partitions(settings.broker, INPUT_TOPICS, security=client_kwargs(settings))
        tps = [TopicPartition(t, p) for t in INPUT_TOPICS for p in range(parts.get(t, 0))]
        missing = [t for t in INPUT_TOPICS if not parts.get(t)]
        if missing:
            print(f"livecue record: topics not found (yet): {', '.join(missing)}", file=sys.stderr)
        consumer.assign(tps)
        if args.from_end:
            await consumer.seek_to_end(*tps)
        else:
            await consumer.seek_to_beginning(*tps)
        t0 = last = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if args.duration is not None and now - t0 >= args.duration:
                break
            if args.idle is not None and now - last >= args.idle:
                break
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            n = 0
            for tp, msgs in batch.items():
                for m in msgs:
                    if rooms and m.key not in rooms:
                        continue
                    key = None if m.key is None else m.key.decode("utf-8", "replace")
                    out.write(dumps_line(Record(tp.topic, key, m.value or b"")) + b"\n")
                    counts[tp.topic] += 1
                    n += 1
            if n:
                last = time.monotonic()
                out.flush()
                if progress is not None:
                    progress.update(n)
    finally:
        await consumer.stop()
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
        if progress is not None:
            progress.done()
    return counts
