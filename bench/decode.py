"""``python -m bench.decode``: µs per event of :func:`schemas.decode_event`, against plain
``orjson.loads`` of the same bytes measured in the same run.

Workloads (each a fixed set of distinct records, decoded as a worker does: with the Kafka key
and the source topic):

- ``chat``     valid chat messages, Chinese text of realistic length (the bulk of a live room);
- ``mix``      the realistic mix of valid events (mostly chat, then likes, viewers, cart, orders,
               room events);
- ``bad-json``, ``bad-field``, ``unknown-type``: invalid input (dead-letter path).

For each it prints µs/event for decode_event, for the worker's per-topic decoder (msgspec's
short way, then decode_event for what it does not take; invalid records pay both) and for the
baseline, and the ratios. Timing is the best of ``--rounds`` passes over the records (the least
disturbed by other work on the machine); progress goes to stderr. ``--quick`` runs a short pass
(seconds) for a smoke check.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from schemas import TOPIC_OF_TYPE, InvalidEvent, decode_event, encode
from schemas.decode import decoder_for
from schemas.events import CartAdd, Chat, LineupItem, Like, Order, SessionStart, SkuOnAir, StockSet, Viewers

__all__ = ["Workload", "build_workloads", "measure", "main"]

Record = tuple[bytes, bytes, str]  # value, key, topic

TS0 = 1_718_000_000_000
_PHRASES = (
    "链接在哪", "怎么买", "多少钱", "还有吗", "拍了", "没抢到", "上车", "主播好漂亮", "这个颜色好看",
    "已下单", "能便宜点吗", "发什么快递", "有赠品吗", "尺码偏大吗", "再上一点库存吧", "支持七天无理由吗",
    "家人们冲", "刚来，讲的是哪个", "求讲解三号链接", "好评", "哈哈哈", "666", "❤️", "🔥🔥",
)
_SKUS = tuple(f"sku-{i:03d}" for i in range(12))


def _chat(rng: random.Random, i: int, room: str) -> Chat:
    text = "".join(rng.choice(_PHRASES) for _ in range(rng.choice((1, 1, 1, 2, 3))))
    return Chat(f"evt-{i:08d}", room, TS0 + i * 7, f"u-{rng.randrange(10**7)}", text)


def _valid_event(rng: random.Random, i: int, room: str) -> Any:
    r = rng.random()
    ts = TS0 + i * 7
    eid = f"evt-{i:08d}"
    if r < 0.80:
        return _chat(rng, i, room)
    if r < 0.88:
        return Like(eid, room, ts, rng.randrange(1, 200))
    if r < 0.93:
        return Viewers(eid, room, ts, rng.randrange(1000, 50000), rng.randrange(0, 500), rng.randrange(0, 400))
    if r < 0.96:
        return CartAdd(eid, room, ts, f"u-{rng.randrange(10**7)}", rng.choice(_SKUS), rng.randrange(1, 4))
    if r < 0.985:
        qty = rng.randrange(1, 4)
        status = rng.choice(("created", "paid", "paid", "cancelled"))
        return Order(eid, room, ts, f"ord-{i}", f"u-{rng.randrange(10**7)}", rng.choice(_SKUS), qty, qty * 9900, status)
    if r < 0.995:
        return rng.choice((SkuOnAir(eid, room, ts, rng.choice(_SKUS)), StockSet(eid, room, ts, rng.choice(_SKUS), 100)))
    lineup = tuple(
        LineupItem(s, f"商品{s}", ("traffic_driver", "giveaway", "hero", "profit")[k % 4], 990 * (k + 1), 500)
        for k, s in enumerate(_SKUS)
    )
    return SessionStart(eid, room, ts, "sess-1", lineup)


def _record(event: Any) -> Record:
    return encode(event), event.room_id.encode(), TOPIC_OF_TYPE[event.type]


def _bad_json(rng: random.Random, i: int, room: str) -> Record:
    value, key, topic = _record(_chat(rng, i, room))
    cut = rng.randrange(1, len(value) - 1)  # truncated record, the common real-world bad JSON
    return value[:cut], key, topic


def _bad_field(rng: random.Random, i: int, room: str) -> Record:
    obj = orjson.loads(encode(_chat(rng, i, room)))
    field, bad = rng.choice((("ts", str(obj["ts"])), ("ts", obj["ts"] / 1000), ("user_id", None), ("text", 12)))
    obj[field] = bad
    return orjson.dumps(obj), room.encode(), "live.chat"


def _unknown_type(rng: random.Random, i: int, room: str) -> Record:
    obj = orjson.loads(encode(_chat(rng, i, room)))
    obj["type"] = rng.choice(("gift", "follow", "share", "chat_v2"))
    return orjson.dumps(obj), room.encode(), "live.chat"


@dataclass(frozen=True)
class Workload:
    name: str
    records: Sequence[Record]
    valid: bool


def build_workloads(n: int, seed: int = 7) -> list[Workload]:
    """The benchmark's workloads, ``n`` distinct records each (deterministic for a seed)."""
    rng = random.Random(seed)
    rooms = [f"room-{k}" for k in range(50)]

    def make(fn: Callable[[random.Random, int, str], Any], as_event: bool) -> list[Record]:
        out = []
        for i in range(n):
            x = fn(rng, i, rng.choice(rooms))
            out.append(_record(x) if as_event else x)
        return out

    return [
        Workload("chat", make(_chat, True), True),
        Workload("mix", make(_valid_event, True), True),
        Workload("bad-json", make(_bad_json, False), False),
        Workload("bad-field", make(_bad_field, False), False),
        Workload("unknown-type", make(_unknown_type, False), False),
    ]


def _time_decode(records: Sequence[Record]) -> float:
    dec = decode_event
    invalid = InvalidEvent
    t0 = time.perf_counter_ns()
    for value, key, topic in records:
        try:
            dec(value, key, topic)
        except invalid:
            pass
    return (time.perf_counter_ns() - t0) / 1000


def _time_worker(records: Sequence[Record]) -> float:
    """The worker's path: the per-topic decoder (:func:`schemas.decode.decoder_for`)."""
    decoders = {topic: decoder_for(topic) for topic in {t for _v, _k, t in records}}
    invalid = InvalidEvent
    t0 = time.perf_counter_ns()
    for value, key, topic in records:
        try:
            decoders[topic](value, key)
        except invalid:
            pass
    return (time.perf_counter_ns() - t0) / 1000


def _time_baseline(records: Sequence[Record]) -> float:
    loads = orjson.loads
    error = orjson.JSONDecodeError
    t0 = time.perf_counter_ns()
    for value, _key, _topic in records:
        try:
            loads(value)
        except error:
            pass
    return (time.perf_counter_ns() - t0) / 1000


def measure(workload: Workload, rounds: int,
            progress: Callable[[str], None] | None = None) -> tuple[float, float, float]:
    """Best-of-``rounds`` µs/event for (decode_event, orjson.loads baseline, the worker's
    per-topic decoder), interleaved."""
    n = len(workload.records)
    _check(workload)
    best_dec = best_base = best_worker = float("inf")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            best_base = min(best_base, _time_baseline(workload.records) / n)
            best_dec = min(best_dec, _time_decode(workload.records) / n)
            best_worker = min(best_worker, _time_worker(workload.records) / n)
            if progress:
                progress(f"{workload.name}: round {r + 1}/{rounds}  decode {best_dec:.2f} µs  "
                         f"worker {best_worker:.2f} µs  baseline {best_base:.2f} µs")
    finally:
        if gc_was_enabled:
            gc.enable()
    return best_dec, best_base, best_worker


def _check(workload: Workload) -> None:
    """The workload is what it claims: every record valid, or every record rejected."""
    for value, key, topic in workload.records:
        try:
            decode_event(value, key, topic)
            ok = True
        except InvalidEvent:
            ok = False
        if ok is not workload.valid:
            raise SystemExit(f"bench.decode: workload {workload.name} has a record that is {'valid' if ok else 'invalid'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--records", type=int, default=20_000, help="distinct records per workload")
    parser.add_argument("-r", "--rounds", type=int, default=15, help="timed passes per workload (best is kept)")
    parser.add_argument("--quick", action="store_true", help="short run: 2,000 records x 3 rounds")
    parser.add_argument("--only", nargs="*", help="workloads to run (default: all)")
    args = parser.parse_args(argv)
    n, rounds = (2_000, 3) if args.quick else (args.records, args.rounds)

    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:
        print(("\r\033[K" if tty else "") + msg, end="" if tty else "\n", file=sys.stderr, flush=True)

    progress(f"building workloads: {n} records each")
    workloads = [w for w in build_workloads(n) if not args.only or w.name in args.only]
    rows = []
    for w in workloads:
        rows.append((w, *measure(w, rounds, progress)))
    if tty:
        print(file=sys.stderr)

    sizes = {w.name: sum(len(v) for v, _, _ in w.records) / len(w.records) for w in workloads}
    print(f"decode_event vs orjson.loads, {n} records x best of {rounds} rounds, Python {sys.version.split()[0]}, orjson {orjson.__version__}")
    print("worker: the worker's per-topic decoder (msgspec, then decode_event for what it does not take)")
    print(f"{'workload':<14}{'bytes/rec':>10}{'decode µs':>11}{'worker µs':>11}{'orjson µs':>11}{'ratio':>8}"
          f"{'w. ratio':>9}{'decode/s':>12}")
    for w, dec, base, wrk in rows:
        print(f"{w.name:<14}{sizes[w.name]:>10.0f}{dec:>11.2f}{wrk:>11.2f}{base:>11.2f}{dec / base:>7.1f}x"
              f"{wrk / base:>8.1f}x{1e6 / dec:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
