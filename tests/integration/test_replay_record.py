"""Record / replay round-trip through the real broker: what is replayed is what is recorded."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson

from livecue.broker import EmbeddedBroker
from livecue.recording import Record, read_recording

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livecue.cli", *args], cwd=ROOT, timeout=timeout,
                          capture_output=True, text=True, check=True)


def _streams(path: Path) -> dict[tuple[str, str | None], list[object]]:
    out: dict[tuple[str, str | None], list[object]] = defaultdict(list)
    for rec in read_recording(path):
        assert isinstance(rec, Record)
        out[(rec.topic, rec.key)].append(orjson.loads(rec.value))
    return out


def test_replay_at_max_speed_then_record_gives_the_same_events(broker: EmbeddedBroker, uid: str, tmp_path: Path) -> None:
    show = tmp_path / "show.jsonl"
    prefix = f"rr-{uid}-"
    _cli("simulate", "--out", str(show), "--rooms", "2", "--room-prefix", prefix, "--duration", "60",
         "--scenario", "flash_sale", "--seed", "21", "--quiet")
    sent = _streams(show)
    n = sum(len(v) for v in sent.values())
    assert n > 2000

    done = _cli("replay", str(show), "--speed", "max", "--broker", broker.url)
    assert f"replayed {n} of {n} records" in done.stderr
    assert "live.chat=" in done.stderr and "live.orders=" in done.stderr

    back = tmp_path / "back.jsonl"
    rec = _cli("record", "--broker", broker.url, "--out", str(back), "--room", prefix + "1", "--room", prefix + "2",
               "--idle", "4", "--duration", "90", "--quiet")
    assert "recorded " in rec.stderr
    got = _streams(back)
    assert got.keys() == sent.keys()
    for k in sent:  # per topic and room: same events, same order (Kafka keeps one key's order)
        assert got[k] == sent[k], k


def test_replay_skips_unreadable_lines_and_says_so(broker: EmbeddedBroker, uid: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"topic": "live.likes", "key": f"bad-{uid}",
            "value": {"event_id": "e1", "room_id": f"bad-{uid}", "ts": 1795176000000, "count": 3, "type": "like"}}
    raw = {"topic": "live.chat", "key": f"bad-{uid}", "value_text": "a bad record is replayed as it was"}
    path.write_bytes(orjson.dumps(good) + b"\nnot json at all\n" + orjson.dumps(raw) + b"\n")
    done = _cli("replay", str(path), "--speed", "max", "--broker", broker.url)
    assert "bad.jsonl:2: skipped, line: not valid JSON" in done.stderr
    assert "replayed 2 of 2 records (1 unreadable lines skipped)" in done.stderr


def test_simulate_into_kafka_sends_exactly_the_file_it_would_write(broker: EmbeddedBroker, uid: str, tmp_path: Path) -> None:
    prefix = f"sk-{uid}-"
    common = ("--rooms", "2", "--room-prefix", prefix, "--duration", "30", "--seed", "3", "--scenario", "mixed")
    show = tmp_path / "show.jsonl"
    _cli("simulate", "--out", str(show), "--quiet", *common)
    sent = _cli("simulate", "--broker", broker.url, "--speed", "max", *common)
    expected = _streams(show)
    n = sum(len(v) for v in expected.values())
    assert "simulate: sent " in sent.stderr and f"live.chat={len(expected[('live.chat', prefix + '1')]) + len(expected[('live.chat', prefix + '2')])}" in sent.stderr
    back = tmp_path / "back.jsonl"
    _cli("record", "--broker", broker.url, "--out", str(back), "--room", prefix + "1", "--room", prefix + "2",
         "--idle", "4", "--duration", "60", "--quiet")
    got = _streams(back)
    assert sum(len(v) for v in got.values()) == n
    assert got == expected
