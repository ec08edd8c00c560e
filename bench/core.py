"""``python -m bench.core``: µs per event of :func:`stream.core.step_many` on a simulated show.

The mix is a busy room: ~85% chat (Chinese, ~20% with purchase intent, a few "没抢到"),
then likes, viewer samples, cart adds and orders (created, most later paid), and the odd room
event (on-air switches, stock_set). Events are pre-built (decoding is :mod:`bench.decode`'s
job) and fed in batches of ``--batch`` like the worker does. Timing is the best of ``--rounds``
passes, each over a fresh room state. Also reports the per-kind cost of chat alone, the state's
dump size, and the intent matcher (one compiled alternation) per chat.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from schemas.events import (
    CartAdd, Chat, Event, Like, LineupItem, Order, SessionStart, SkuOnAir, StockSet, Viewers,
)
from stream.core import Playbook, dump_state, new_state, state_size, step_many

ROOM = "bench-room"
T0 = 1_760_000_000_000
CHAT_PLAIN = ["主播好漂亮", "哈哈哈哈哈", "666666", "这个颜色好看吗", "今天直播到几点", "来了来了",
              "主播声音好好听", "支持支持", "hello from Shenzhen", "第一次来", "好看好看好看"]
CHAT_INTENT = ["链接在哪里", "怎么买啊", "多少钱", "还有吗", "拍了拍了", "上车", "没抢到！！", "想买",
               "where is the link", "how much"]


def simulate(n: int, seed: int = 7) -> list[Event]:
    rnd = random.Random(seed)
    lineup = tuple(LineupItem(f"sku{i}", f"商品{i}", ("traffic_driver", "hero", "profit",
                                                      "giveaway")[i % 4], 1000 * (i + 1), 5000)
                   for i in range(20))
    evs: list[Event] = [SessionStart("e0", ROOM, T0, "s1", lineup),
                        SkuOnAir("e1", ROOM, T0, "sku1")]
    t = T0
    open_orders: list[str] = []
    for i in range(n):
        t += rnd.choice((0, 0, 1, 1, 2, 3))  # ~600 events per second of event time
        eid = f"b{i}"
        r = rnd.random()
        if r < 0.85:
            text = rnd.choice(CHAT_INTENT) if rnd.random() < 0.2 else rnd.choice(CHAT_PLAIN)
            evs.append(Chat(eid, ROOM, t, f"user{rnd.randrange(5000)}", text))
        elif r < 0.92:
            evs.append(Like(eid, ROOM, t, rnd.randint(1, 30)))
        elif r < 0.94:
            evs.append(Viewers(eid, ROOM, t, 5000 + rnd.randrange(500), rnd.randrange(50),
                               rnd.randrange(50)))
        elif r < 0.97:
            evs.append(CartAdd(eid, ROOM, t, f"user{rnd.randrange(5000)}",
                               f"sku{rnd.randrange(20)}", 1))
        elif r < 0.9995:
            if open_orders and rnd.random() < 0.6:
                oid = open_orders.pop(rnd.randrange(len(open_orders)))
                evs.append(Order(eid, ROOM, t, oid, "u", "sku1", 1, 1000, "paid"))
            else:
                oid = f"o{i}"
                open_orders.append(oid)
                evs.append(Order(eid, ROOM, t, oid, "u", f"sku{rnd.randrange(20)}", 1, 1000,
                                 "created"))
        elif r < 0.9998:
            evs.append(SkuOnAir(eid, ROOM, t, f"sku{rnd.randrange(20)}"))
        else:
            evs.append(StockSet(eid, ROOM, t, f"sku{rnd.randrange(20)}", rnd.randrange(200)))
    return evs


def run(evs: list[Event], pb: Playbook, batch: int, rounds: int) -> tuple[float, int, int, int]:
    best = float("inf")
    cues = stats = 0
    state = new_state(ROOM)
    for _ in range(rounds):
        state = new_state(ROOM)
        gc.collect()
        t = time.perf_counter()
        cues = stats = 0
        for i in range(0, len(evs), batch):
            res = step_many(state, evs[i:i + batch], pb)
            state = res.state
            cues += len(res.cues)
            stats += len(res.stats)
        best = min(best, time.perf_counter() - t)
    return best / len(evs) * 1e6, cues, stats, len(dump_state(state))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="30k events, 1 round")
    a = ap.parse_args()
    if a.quick:
        a.events, a.rounds = 30_000, 1
    pb = Playbook()
    evs = simulate(a.events)
    us, cues, stats, size = run(evs, pb, a.batch, a.rounds)
    span_s = (evs[-1].ts - evs[0].ts) / 1000
    print(f"mix:  {us:.2f} µs/event over {len(evs)} events ({span_s:.0f} s of event time, "
          f"{cues} cues, {stats} stats), batch {a.batch}")
    chats = [e for e in evs if isinstance(e, Chat)]
    head = [e for e in evs[:2]]
    us_chat, _, _, _ = run(head + chats, pb, a.batch, a.rounds)
    print(f"chat: {us_chat:.2f} µs/event ({len(chats)} chats only)")
    state = step_many(new_state(ROOM), evs, pb).state
    print(f"state: {size} bytes dumped, state_size() estimate {state_size(state)}")
    rx = pb.intent_re
    assert rx is not None
    texts = [c.text for c in chats[:50_000]]
    t = time.perf_counter()
    for x in texts:
        rx.search(x.lower())
    print(f"intent regex: {(time.perf_counter() - t) / len(texts) * 1e6:.2f} µs/chat "
          f"({len(pb.intent.words) + len(pb.intent.missed_words)} words, one alternation)")


if __name__ == "__main__":
    main()
