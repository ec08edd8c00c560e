"""The simulator: reproducible byte for byte, valid on the wire, and shaped like a real show."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from livecue.recording import read_recording, Record
from livecue.sim import SCENARIOS, generate
from livecue.sim.send import pace_order, parse_speed, parse_start
from livecue.sim.show import DEFAULT_START_TS
from schemas.decode import decode_event
from schemas.events import TOPIC_OF_TYPE, Chat, Order, SessionEnd, SessionStart, StockSet, Viewers

ROOT = Path(__file__).resolve().parents[2]


def _simulate(out: Path, *extra: str) -> bytes:
    subprocess.run(
        [sys.executable, "-m", "livecue.cli", "simulate", "--out", str(out), "--quiet",
         "--duration", "120", *extra],
        check=True, cwd=ROOT, timeout=60,
    )
    return out.read_bytes()


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(tmp_path: Path) -> None:
    a = _simulate(tmp_path / "a.jsonl", "--seed", "7")
    b = _simulate(tmp_path / "b.jsonl", "--seed", "7")
    c = _simulate(tmp_path / "c.jsonl", "--seed", "8")
    assert len(a) > 10_000
    assert a == b
    assert a != c


def test_generate_is_pure_in_process() -> None:
    assert generate(5, 2, "flash_sale", duration=60) == generate(5, 2, "flash_sale", duration=60)
    assert generate(5, 2, "flash_sale", duration=60) != generate(5, 2, "flash_sale", duration=60, start_ts=DEFAULT_START_TS + 1)


def test_every_line_decodes_with_its_key_and_topic(tmp_path: Path) -> None:
    path = tmp_path / "show.jsonl"
    _simulate(path, "--rooms", "3", "--room-prefix", "r", "--scenario", "mixed")
    rooms: set[str] = set()
    types: Counter[str] = Counter()
    for rec in read_recording(path):
        assert isinstance(rec, Record)
        ev = decode_event(rec.value, key=rec.key_bytes, topic=rec.topic)
        assert rec.key == ev.room_id
        rooms.add(ev.room_id)
        types[ev.type] += 1
    assert rooms == {"r1", "r2", "r3"}
    assert set(types) == set(TOPIC_OF_TYPE) - {"room_reset"}  # every platform event type (a reset is an operator's)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_orders_and_ordering_invariants(scenario: str) -> None:
    events = generate(11, 3, scenario, duration=300, rate=40)
    last_ts: dict[tuple[str, str], int] = {}
    statuses: dict[str, list[str]] = defaultdict(list)
    order_sku: dict[str, tuple[str, str, int]] = {}
    event_ids = set()
    for ev in events:
        assert ev.event_id not in event_ids
        event_ids.add(ev.event_id)
        k = (ev.room_id, TOPIC_OF_TYPE[ev.type])
        assert ev.ts >= last_ts.get(k, 0), "per-room ts must not decrease within a topic"
        last_ts[k] = ev.ts
        if isinstance(ev, Order):
            statuses[ev.order_id].append(ev.status)
            assert order_sku.setdefault(ev.order_id, (ev.room_id, ev.sku_id, ev.amount_cents)) == (
                ev.room_id, ev.sku_id, ev.amount_cents)
    assert statuses
    for seq in statuses.values():
        assert seq in (["created"], ["created", "paid"], ["created", "cancelled"])
    lifecycle = Counter(tuple(s) for s in statuses.values())
    assert lifecycle[("created", "paid")] > lifecycle[("created", "cancelled")] > 0
    # each room: session_start first, session_end last
    for room in {ev.room_id for ev in events}:
        mine = [ev for ev in events if ev.room_id == room]
        assert isinstance(mine[0], SessionStart) and isinstance(mine[-1], SessionEnd)


def test_rate_is_approximately_respected() -> None:
    for rate in (10, 30, 200):
        n = len(generate(2, 2, "steady", duration=300, rate=rate))
        assert 0.75 * rate * 600 < n < 1.3 * rate * 600, (rate, n)


def test_viewer_samples_every_two_to_five_seconds() -> None:
    events = [e for e in generate(3, 1, "mixed", duration=300) if isinstance(e, Viewers)]
    gaps = [(b.ts - a.ts) / 1000 for a, b in zip(events, events[1:])]
    assert gaps and min(gaps) >= 1.9 and max(gaps) <= 6.1


def test_flash_sale_holds_then_releases_and_the_chat_says_missed_it() -> None:
    events = generate(4, 1, "flash_sale", duration=200)
    hero = next(i.sku_id for i in events[0].lineup if i.role == "hero")  # type: ignore[union-attr]
    stock = [(e.ts, e.stock) for e in events if isinstance(e, StockSet) and e.sku_id == hero]
    assert stock[0][1] == 0 and any(s > 0 for _, s in stock[1:])  # 憋单 then 放单
    release_ts = next(ts for ts, s in stock if s > 0)
    created = [e for e in events if isinstance(e, Order) and e.sku_id == hero and e.status == "created"]
    held_ts = stock[0][0]
    assert not [o for o in created if held_ts < o.ts < release_ts]  # nothing sells while held
    burst = [o for o in created if release_ts <= o.ts < release_ts + 15_000]
    assert sum(o.qty for o in burst) >= 40  # pent-up demand floods the release
    missed = [e for e in events if isinstance(e, Chat) and "没抢到" in e.text and e.ts > release_ts]
    assert len(missed) >= 5
    held_chat = [e for e in events if isinstance(e, Chat) and held_ts < e.ts < release_ts]
    intent = [e for e in held_chat if any(w in e.text for w in ("链接", "怎么买", "多少钱", "还有吗", "上车", "拍"))]
    assert len(intent) / len(held_chat) > 0.3


def test_popularity_drop_drains_the_room() -> None:
    events = generate(4, 1, "popularity_drop", duration=300)
    online = [(e.ts - events[0].ts, e.online) for e in events if isinstance(e, Viewers)]
    before = max(o for t, o in online if t < 75_000)
    after = min(o for t, o in online if 150_000 < t < 290_000)
    assert after < 0.6 * before


def test_chat_is_mostly_chinese_with_some_english() -> None:
    chats = [e.text for e in generate(9, 2, "mixed", duration=300) if isinstance(e, Chat)]
    ascii_only = sum(t.isascii() for t in chats)
    assert 0.01 < ascii_only / len(chats) < 0.2
    assert len(set(chats)) > 100


def test_pace_order_keeps_each_topic_and_key_in_order() -> None:
    def rec(topic: str, key: str, ts: int, n: int) -> Record:
        return Record(topic, key, orjson.dumps({"ts": ts, "n": n}))

    recs = [rec("a", "r1", 10, 0), rec("b", "r1", 5, 1), rec("a", "r1", 8, 2),  # out of order in a
            rec("a", "r2", 1, 3), Record("a", "r2", b"not json"), rec("b", "r1", 20, 4)]
    out = [r for _, r in pace_order(recs)]
    assert sorted(out, key=id) == sorted(recs, key=id)
    for k in {(r.topic, r.key) for r in recs}:
        assert [r for r in out if (r.topic, r.key) == k] == [r for r in recs if (r.topic, r.key) == k]
    assert out[0] == recs[3]  # ts 1 goes first


def test_cli_value_parsers() -> None:
    assert parse_speed("max") is None and parse_speed("10") == 10.0
    with pytest.raises(ValueError):
        parse_speed("0")
    assert parse_start("2026-11-20T12:00:00Z") == DEFAULT_START_TS
    assert parse_start("now", now_ms=123) == 123
    assert parse_start(str(DEFAULT_START_TS)) == DEFAULT_START_TS
