"""Backtest: each scenario fires the cue it is built for; bad input is counted, never fatal;
the CLI prints cues with event times and compares two playbooks."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from livecue.recording import dumps_line, record_of, write_recording
from livecue.sim import generate
from livecue.sim.backtest import BacktestResult, compare, run_backtest
from schemas.events import SessionStart
from stream.playbook import default_playbook, load_playbook

ROOT = Path(__file__).resolve().parents[2]
PB = default_playbook()


def _kinds_by_room(r: BacktestResult) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for c in r.cues:
        out[c.room_id].add(c.kind)
    return out


def _lineup(events: list, room: str) -> dict[str, str]:
    start = next(e for e in events if isinstance(e, SessionStart) and e.room_id == room)
    return {i.role: i.sku_id for i in reversed(start.lineup)}  # first SKU of each role wins


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flash_sale_fires_release_orders_and_push_stock_in_every_room(seed: int) -> None:
    events = generate(seed, 2, "flash_sale", duration=300)
    r = run_backtest(events, PB)
    for room in ("room-1", "room-2"):
        hero = _lineup(events, room)["hero"]
        mine = [c for c in r.cues if c.room_id == room]
        release = [c for c in mine if c.kind == "release_orders" and c.sku_id == hero]
        assert release, mine
        assert [c for c in mine if c.kind == "push_stock" and c.sku_id == hero]
        assert not [c for c in mine if c.kind == "switch_to_traffic_driver"]
    # after a batch sells out, the room cries 没抢到: a critical release cue quotes it
    assert any(c.kind == "release_orders" and c.severity == "critical" and c.evidence["missed_per_min"] > 0
               for c in r.cues)
    assert r.rejected == [] and r.stats_count > 500


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_popularity_drop_fires_switch_to_traffic_driver_while_the_profit_sku_is_on_air(seed: int) -> None:
    events = generate(seed, 2, "popularity_drop", duration=420)
    r = run_backtest(events, PB)
    for room in ("room-1", "room-2"):
        skus = _lineup(events, room)
        switch = [c for c in r.cues if c.room_id == room and c.kind == "switch_to_traffic_driver"]
        assert len(switch) == 1, switch
        c = switch[0]
        offset_s = (c.ts - r.started[room]) / 1000
        assert 75 < offset_s < 300  # after the audience starts to drain, before the show switches
        assert (c.sku_id, c.target_sku_id) == (skus["profit"], skus["traffic_driver"])


def test_steady_room_is_never_told_to_switch() -> None:
    r = run_backtest(generate(1, 2, "steady", duration=600), PB)
    assert not {"switch_to_traffic_driver", "release_orders"} & {c.kind for c in r.cues}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mixed_fires_all_three_kinds_and_a_cue_within_the_first_half_minute(seed: int) -> None:
    r = run_backtest(generate(seed, 2, "mixed", duration=600), PB)
    for room, kinds in _kinds_by_room(r).items():
        assert {"push_stock", "release_orders", "switch_to_traffic_driver"} <= kinds, room
        first = min(c.ts for c in r.cues if c.room_id == room)
        assert first - r.started[room] <= 30_000


def test_lines_records_events_and_any_cross_topic_interleaving_give_the_same_cues() -> None:
    events = generate(4, 2, "mixed", duration=240)
    base = run_backtest(events, PB)
    assert base.cues
    ids = [c.cue_id for c in base.cues]
    assert [c.cue_id for c in run_backtest([dumps_line(e) for e in events], PB).cues] == ids
    assert [c.cue_id for c in run_backtest([record_of(e) for e in events], PB).cues] == ids
    # A recording interleaves topics arbitrarily (each topic-partition keeps its own order).
    by_topic: dict[str, list[bytes]] = defaultdict(list)
    for e in events:
        rec = record_of(e)
        by_topic[rec.topic].append(dumps_line(rec))
    rng = random.Random(0)
    shuffled: list[bytes] = []
    queues = [list(q) for q in by_topic.values()]
    while queues:
        q = rng.choice(queues)
        shuffled.append(q.pop(0))
        if not q:
            queues.remove(q)
    assert shuffled != [dumps_line(e) for e in events]
    again = run_backtest(shuffled, PB)
    assert [c.cue_id for c in again.cues] == ids
    assert again.cues == base.cues


def test_bad_lines_are_counted_with_reasons_and_change_nothing() -> None:
    events = generate(4, 1, "flash_sale", duration=150)
    good = [dumps_line(e) for e in events]
    chat = orjson.loads(good[5])
    wrong_key = orjson.dumps({**chat, "key": "someone-else"})
    bad_value = orjson.dumps({**chat, "value": {**chat["value"], "ts": "soon"}})
    wrong_topic = orjson.dumps({**chat, "topic": "live.likes"})
    output_topic = orjson.dumps({"topic": "live.cues", "key": "room-1", "value": {"type": "cue"}})
    mixed = good[:10] + [b"{not json", wrong_key, bad_value, wrong_topic, output_topic, b"\xff\xfe"] + good[10:]
    r = run_backtest(mixed, PB)
    clean = run_backtest(good, PB)
    assert r.cues == clean.cues and r.events == clean.events
    assert [(x.line_no, x.reason) for x in r.rejected] == [
        (11, "line: not valid JSON"),
        (12, "key: Kafka key disagrees with room_id"),
        (13, "ts: must be an integer"),
        (14, "type: chat does not belong on topic live.likes"),
        (15, "topic: live.cues is not an input topic"),
        (16, "line: not valid JSON"),
    ]


def test_compare_lists_cues_only_in_one_playbook() -> None:
    events = generate(2, 2, "mixed", duration=300)
    a = run_backtest(events, PB)
    b = run_backtest(events, PB.__class__(push_stock=PB.push_stock.__class__(enabled=False)))
    diff = compare(a, b)
    assert diff.only_a and {c.kind for c in diff.only_a} == {"push_stock"}
    assert diff.only_b == []
    assert len(diff.both) == len(a.cues) - len(diff.only_a) == len(b.cues)


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "livecue.cli", "backtest", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_prints_cues_with_times_and_compares_two_playbook_files(tmp_path: Path) -> None:
    show = tmp_path / "show.jsonl"
    events = generate(3, 2, "mixed", duration=300)
    write_recording(show, events)
    with open(show, "ab") as f:
        f.write(b"this line is broken\n")
    text = _cli(str(show))
    assert "room room-1" in text and "room room-2" in text
    assert "2026-11-20T12:00:" in text and "+0:00:" in text  # ISO time and offset from the start
    assert "push_stock" in text and "release_orders" in text and "switch_to_traffic_driver" in text
    assert "evidence: " in text and "1 rejected" in text and "line: not valid JSON" in text

    doc = orjson.loads(_cli(str(show), "--json"))
    expected = run_backtest(events, PB)
    assert [c["cue_id"] for c in doc["cues"]] == [c.cue_id for c in expected.cues]
    assert doc["rejected"] == 1 and doc["cues"][0]["offset_s"] >= 0

    # A controller's tweak: push stock only when it sells out within 10 s instead of 30 s.
    tuned = tmp_path / "tuned.toml"
    tuned.write_text("[push_stock]\neta_s = 10.0\n", encoding="utf-8")
    b = run_backtest(events, load_playbook(tuned))
    diff = compare(expected, b)
    assert diff.only_a and {c.kind for c in diff.only_a + diff.only_b} == {"push_stock"}
    out = _cli(str(show), "--compare", str(tuned))
    assert f"only with A ({len(diff.only_a)}):" in out and f"only with B ({len(diff.only_b)}):" in out
    assert f"same id in both: {len(diff.both)}" in out
    for c in diff.only_a:
        assert c.cue_id in out
    cmp_doc = orjson.loads(_cli(str(show), "--compare", str(tuned), "--json"))
    assert [c["cue_id"] for c in cmp_doc["only_a"]] == [c.cue_id for c in diff.only_a]
    # The tweak shows in what fires: every "selling out" warning under B quotes an ETA within
    # 10 s, while A warned earlier, at ETAs the tuned playbook no longer considers urgent.
    def warn_etas(result: object) -> list[float]:
        return [c.evidence["eta_s"] for c in result.cues  # type: ignore[attr-defined]
                if c.kind == "push_stock" and c.severity == "warn"]

    assert warn_etas(b) and all(eta <= 10.0 for eta in warn_etas(b))
    assert any(eta > 10.0 for eta in warn_etas(expected))
